"""Which of the held-out look's changes costs a trained policy its success? A diagnostic.

The ``heldout`` visual preset changes four things at once against ``train``: the surfaces'
palette, the light level, how far the camera is jittered, and the distractors (two, in colours
``train`` never uses; on the arm tasks one of a shape ``train`` never shows). This evaluates
trained policies (``train-policy --out`` directories, e.g. a run's or ``bench_variants.py``'s)
on the same seeded episodes under ``train``, under ``heldout``, and under ``heldout-FACTOR``
presets: ``train`` with that one factor taken from ``heldout``. The variation draws the same
random numbers whatever the preset, so every preset's episodes share their task (targets,
start poses). Usage (session 27; raw output in docs/results/benchmarks/):

    python scripts/bench_heldout_factors.py --env sslrobot/Reach-v0 --episodes 100 \\
        --policies 'fdm+future=runs/reach27/Reach-v0/policy/fdm+future/demos25/seed*/policy' \\
                   'none=runs/reach27/Reach-v0/policy/none/demos25/seed*/policy'

Prints its settings, success per policy and preset, and each group's mean over its policies.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import time

import numpy as np
from bench_nuisance import FACTORS

from sslrobot.envs.core.variation import PRESETS
from sslrobot.evaluation.evaluate import evaluate


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True, help="the task the policies were trained on")
    parser.add_argument(
        "--policies",
        nargs="+",
        required=True,
        help="NAME=GLOB: a group of train-policy directories (e.g. one per training seed)",
    )
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes each")
    parser.add_argument("--eval-seed", type=int, default=300_000, help="first evaluation seed")
    parser.add_argument(
        "--factors",
        nargs="*",
        default=list(FACTORS),
        choices=list(FACTORS),
        help="factors held out one at a time (none: train and heldout only)",
    )
    return parser.parse_args()


def register_heldout_factor_presets(factors: list[str]) -> list[str]:
    """Adds ``heldout-FACTOR`` to the envs' presets in this process: ``train`` with that
    factor's ranges taken from ``heldout``. Returns the new presets' names."""
    train, heldout = PRESETS["train"], PRESETS["heldout"]
    names = []
    for factor in factors:
        taken = {name: getattr(heldout, name) for name in FACTORS[factor]}
        PRESETS[f"heldout-{factor}"] = dataclasses.replace(train, **taken)
        names.append(f"heldout-{factor}")
    return names


def policy_groups(specs: list[str]) -> dict[str, list[str]]:
    """``NAME=GLOB`` -> {NAME: sorted matching directories}; an empty match is an error."""
    groups = {}
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        if not sep or not name or not pattern:
            raise SystemExit(f"--policies takes NAME=GLOB, got {spec!r}")
        found = sorted(glob.glob(pattern))
        if not found:
            raise SystemExit(f"--policies {spec!r}: no directory matches {pattern!r}")
        groups[name] = found
    return groups


def main() -> None:
    args = parse_args()
    print("bench_heldout_factors:", json.dumps({k: str(v) for k, v in vars(args).items()}))
    presets = ["train", "heldout", *register_heldout_factor_presets(args.factors)]
    groups = policy_groups(args.policies)
    start = time.perf_counter()
    results: dict[tuple[str, str], list[float]] = {}
    for name, directories in groups.items():
        for directory in directories:
            for preset in presets:
                record = evaluate(
                    directory, args.env, args.episodes, args.eval_seed, visual_preset=preset
                )
                rate = float(record["success_rate"])
                results.setdefault((name, preset), []).append(rate)
                print(f"{name:14s} {directory} {preset:22s} {rate:.3f}", flush=True)
    print(f"mean success over each group's policies, {args.episodes} episodes each:")
    print(f"  {'':14s} " + " ".join(f"{p:>21s}" for p in presets))
    for name in groups:
        means = [np.mean(results[name, p]) for p in presets]
        print(f"  {name:14s} " + " ".join(f"{m:21.3f}" for m in means))
    print(json.dumps({f"{n}/{p}": float(np.mean(r)) for (n, p), r in results.items()}))
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
