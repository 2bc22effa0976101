"""What does the visual variation cost 25-demonstration BC on frozen features? A diagnostic.

The ``train`` visual preset changes, per episode, the surfaces' colours, the light, the camera's
position (by up to 1 cm) and whether a distractor is shown: things a pixel objective must
encode and that change between episodes just as the task's objects do, so a head fitted on 25
demonstrations sees them vary with the actions as much as the target. On a finished run's
task this trains the run's BC head (``scripts/bench_readout.py``'s, the run's steps and batch)
twice per encoder and seed, side by side on the same evaluation seeds:

- on the run's demonstrations (``train`` preset), evaluated in ``train``: the run's protocol;
- on demonstrations of the same seeds collected again in each of ``--presets`` (default
  ``none``: the authored look every episode), evaluated in that preset: the same task without
  the variation. ``only-FACTOR`` presets keep one of ``train``'s factors (``surfaces``,
  ``light``, ``camera``, ``distractors``) and drop the others, to tell which one costs what.

The encoders are the ones the run pretrained (``--encoders`` names under the task's
``pretrain/``), ``none`` (a random encoder per training seed, as the run's) and ``state`` (the
privileged state: the oracle, whose input the look does not touch). The encoders saw only the
``train`` preset in pretraining. Usage (session 18; raw output in
docs/results/benchmarks/bench_nuisance_session18.txt):

    python scripts/bench_nuisance.py --run runs/reach16 --task Reach-v0 \\
        --encoders fdm+future none state
    python scripts/bench_nuisance.py --run runs/reach16 --task Reach-v0 --encoders fdm+future \\
        --presets only-surfaces only-light only-camera only-distractors

Prints its settings, success per seed for each encoder and preset, and the means.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from bench_readout import (
    add_run_arguments,
    check_demos_and_seeds,
    encode,
    open_run,
    train_head,
)

from sslrobot.data import CollectConfig, collect, open_dataset
from sslrobot.envs.core.variation import PRESETS
from sslrobot.evaluation.rollouts import run_episodes
from sslrobot.policy.demos import load_transitions
from sslrobot.policy.encoders import resolve_encoder
from sslrobot.policy.environment import make_env


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    parser.add_argument(
        "--encoders",
        nargs="+",
        default=["fdm+future", "none", "state"],
        help="objectives pretrained in the run, none, state",
    )
    parser.add_argument(
        "--presets",
        nargs="+",
        default=["none"],
        help="visual presets compared with train: the envs' (none, heldout) or only-FACTOR",
    )
    parser.set_defaults(encoder=None)
    args = parser.parse_args()
    if args.encoder is not None:
        parser.error("this benchmark takes --encoders (several), not --encoder")
    return args


#: ``train``'s factors, each as the ``VisualPreset`` fields that turn it on.
FACTORS = {
    "surfaces": ("surface_palette",),
    "light": ("light_scale",),
    "camera": ("camera_jitter",),
    "distractors": ("num_distractors", "distractor_palette"),
}


def register_single_factor_presets() -> None:
    """Adds ``only-FACTOR`` to the envs' presets in this process (collection runs in it too):
    ``train``'s ranges for that factor, the authored look for the others. The variation draws
    the same random numbers whatever the preset, so the episodes' physics stay the same."""
    train, plain = PRESETS["train"], PRESETS["none"]
    for factor, fields in FACTORS.items():
        kept = {name: getattr(train, name) for name in fields}
        PRESETS[f"only-{factor}"] = dataclasses.replace(plain, **kept)


def demos_in_preset(run: Path, task: str, preset: str, num_demos: int) -> Path:
    """The run's demonstrations (same seeds, same expert) collected again in ``preset``, under
    ``RUN/variants/TASK-demos-PRESET``; a finished collection is reused (resumed)."""
    manifest = open_dataset(run / task / "data" / "demos" / "dataset").manifest
    out = run / "variants" / f"{task}-demos-{preset}"
    config = CollectConfig(
        env_id=f"sslrobot/{task}",
        out=out,
        policy="expert",
        num_episodes=num_demos,
        seed=int(manifest["base_seed"]),
        image_size=int(manifest["frame_shape"][0]),
        env_kwargs={"visual_preset": preset},  # as session 18 collected them (resumable)
        resume=(out / "manifest.json").exists(),
    )
    return Path(collect(config, progress=False))


def success(
    name: str,
    spec: str,
    demos_dir: Path,
    preset: str,
    seed: int,
    args: argparse.Namespace,
    config: dict,
) -> float:
    """Trains the run's head on ``demos_dir``'s first ``--num-demos`` demonstrations with
    ``name``'s input and returns its success rate over the evaluation seeds in ``preset``."""
    demos = open_dataset(demos_dir)
    transitions = load_transitions(
        demos, list(demos.episode_ids)[: args.num_demos], pixels=True, state=True
    )
    encoder = None
    if name == "state":
        inputs = transitions.state.astype(np.float64)
    else:
        encoder = resolve_encoder(spec, config["image_size"], seed, config["encoder_arch"]).module
        encoder.eval()
        inputs = np.c_[encode(encoder, transitions.pixels), transitions.proprio]
    head = train_head(
        inputs, transitions.actions, seed, config["bc_steps"], config["bc_batch_size"]
    )
    obs_mode = "state" if name == "state" else "pixels"
    env = make_env(f"sslrobot/{args.task}", config["image_size"], obs_mode, visual_preset=preset)

    def act(obs: object) -> np.ndarray:
        if encoder is None:
            return head(np.asarray(obs, dtype=np.float64))
        features = encode(encoder, np.asarray(obs["pixels"])[None])[0]
        return head(np.r_[features, np.asarray(obs["proprio"], dtype=np.float64)])

    try:
        seeds = [args.eval_seed + i for i in range(args.episodes)]
        episodes, _ = run_episodes(env, act, seeds)
    finally:
        env.close()
    return float(np.mean([e.success for e in episodes]))


def main() -> None:
    args = parse_args()
    config, run_demos, _ = open_run(args, "bench_nuisance")
    check_demos_and_seeds(args, run_demos)  # the train look's side slices the run's own
    start = time.perf_counter()
    print(f"BC budget (the run's): {config['bc_steps']} steps at batch {config['bc_batch_size']}")
    register_single_factor_presets()
    presets = {"train": Path(run_demos.root)}
    for preset in args.presets:
        presets[preset] = demos_in_preset(args.run, args.task, preset, args.num_demos)
    results: dict[tuple[str, str], list[float]] = {}
    for name in args.encoders:
        spec = (
            name
            if name in ("none", "state")
            else str(args.run / args.task / "pretrain" / name / "encoder")
        )
        for seed in args.seeds:
            for preset, demos_dir in presets.items():
                torch.manual_seed(seed)
                rate = success(name, spec, demos_dir, preset, seed, args, config)
                results.setdefault((name, preset), []).append(rate)
                print(f"{name:12s} seed {seed} demos and evaluation in {preset}: {rate:.3f}")
    print("mean success (seeds):")
    for (name, preset), rates in results.items():
        print(f"  {name:12s} {preset:17s} {[round(r, 3) for r in rates]} -> {np.mean(rates):.3f}")
    print(json.dumps({f"{n}/{p}": float(np.mean(r)) for (n, p), r in results.items()}))
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
