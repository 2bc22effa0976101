"""Online RL on frozen encoders: does pretraining help SAC as it helps behaviour cloning?

Trains Stable-Baselines3 SAC (``sslrobot train-policy --algo rl``, the package's RL path) on
the features of a finished run's frozen encoders, on the task's dense reward, without
demonstrations or (``--num-demos``) with the run's expert demonstrations in a share of every
batch (RLPD's symmetric sampling, ``train-policy --rl-demo-share``), then evaluates every
policy like the run's BC policies (``sslrobot evaluate``, the run's evaluation seeds) and
prints, with the settings:

1. success per encoder (mean over training seeds, two-level bootstrap 95% CI, no narrower
   than Wilson's) and the wall time per run;
2. the training curve (SB3's ``rollout/success_rate`` over the last 100 training episodes)
   at a few points, and as a PNG.

Encoders: a pretrained objective of the run (``fdm+future`` -> ``RUN/TASK/pretrain/fdm+future/
encoder``), ``none`` (a frozen random encoder of the run's architecture), ``state`` (the
privileged-state oracle, which needs no rendering) or ``LABEL=DIR``, any ``pretrain --out``
directory (e.g. a ``bench_variants.py`` encoder). Runs execute ``--jobs`` at a time, one
thread each; finished runs and evaluations are skipped, so a killed benchmark resumes.

Usage:
    python scripts/bench_rl.py --run runs/default7 --task Reach-v0 --steps 30000 --seeds 0 1
    python scripts/bench_rl.py --run runs/default7 --task Reach-v0 --steps 300 --seeds 0 \
        --episodes 5 --out /tmp/bench_rl_quick          # every code path, about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from across_tasks import CRITIC_STATE

from sslrobot.evaluation.evaluate import aggregate_results
from sslrobot.evaluation.plots import plot_loss_curves, read_metrics_csv
from sslrobot.pipeline.run import EVAL_SEED_BASE

CURVE_KEY, STEP_KEY = "rollout/success_rate", "time/total_timesteps"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `sslrobot run` dir")
    parser.add_argument("--task", default="Reach-v0")
    parser.add_argument(
        "--encoders",
        nargs="+",
        default=["fdm+future", "none", "state"],
        help="objectives of --run, none, state, or LABEL=DIR (a `pretrain --out` directory)",
    )
    parser.add_argument("--steps", type=int, default=30_000, help="environment steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per run")
    parser.add_argument(
        "--num-demos",
        type=int,
        default=0,
        help="the run's first N expert demonstrations, sampled into SAC's batches "
        "(--demo-share of each; they also set the feature statistics); 0: none",
    )
    parser.add_argument(
        "--demo-share",
        type=float,
        default=0.5,
        help="with --num-demos: share of every batch drawn from them (RLPD: 0.5)",
    )
    parser.add_argument(
        "--critic-state",
        action="store_true",
        help="SAC's critics read the privileged state, the actor the frozen features "
        "(train-policy --rl-critic-input state); results under ENCODER+critic-state",
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_rl"))
    args = parser.parse_args()
    if args.critic_state and "state" in args.encoders:
        parser.error("--critic-state: the state oracle's critics read the state already; "
                     "run it without --critic-state")  # fmt: skip
    return args


def run_label(args: argparse.Namespace, name: str) -> str:
    """Where an encoder's runs lie and what the table calls them: its label, with
    ``+critic-state`` for critics on the state (``across_tasks.py`` reads it so)."""
    label = name.partition("=")[0]
    return f"{label}{CRITIC_STATE}" if args.critic_state else label


def encoder_argument(args: argparse.Namespace, name: str) -> str:
    """``--encoder`` of ``train-policy`` for an encoder name of this benchmark."""
    if name in ("none", "state"):
        return name
    label, _, directory = name.partition("=")
    path = Path(directory) if directory else args.run / args.task / "pretrain" / label / "encoder"
    if not (path / "encoder_config.json").is_file():
        raise SystemExit(f"--encoders {name}: no pretrained encoder at {path}")
    return str(path)


def _resolved(encoder: str) -> str:
    """An encoder argument as compared: a directory by its absolute path, a name as it is."""
    return encoder if encoder in ("none", "state", "scratch") else str(Path(encoder).resolve())


def run_one(args: argparse.Namespace, config: dict, name: str, seed: int) -> dict:
    """Train (unless done) and evaluate (unless done) one SAC policy; returns its record."""
    label = run_label(args, name)
    out = args.out / args.task / label / f"seed{seed}"
    policy, result, log = out / "policy", out / "result.json", out / "log.txt"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def sslrobot(*options: str) -> None:
        with log.open("a") as file:
            command = [sys.executable, "-m", "sslrobot", *options]
            subprocess.run(command, check=True, stdout=file, stderr=file, env=env)

    # Reuse earlier outputs only when they were made with these settings (the table's header
    # prints the current ones): the same steps, task, image size and encoder (another --run
    # or LABEL=DIR under the same label trains anew).
    encoder = encoder_argument(args, name)
    wanted = {
        "steps": args.steps,
        "env_id": f"sslrobot/{args.task}",
        "encoder": _resolved(encoder),
        "encoder_arch": config["encoder_arch"],
        "image_size": config["image_size"],
        "num_demos": args.num_demos or None,
        "rl_demo_share": args.demo_share if args.num_demos else 0.0,
        "rl_critic_input": "state" if args.critic_state else "policy",
    }
    # Settings older policies did not record, at the value they then had.
    recorded_before = {"rl_demo_share": 0.0, "rl_critic_input": "policy"}
    if name == "state":  # the oracle reads no pixels: whatever architecture it recorded
        del wanted["encoder_arch"]  # (older runs: the benchmark's) changes nothing it learns
    config_file = policy / "policy_config.json"
    if config_file.is_file():
        trained = json.loads(config_file.read_text()).get("train_config", {})
        made = {key: trained.get(key, recorded_before.get(key)) for key in wanted} | {
            "encoder": _resolved(str(trained.get("encoder")))
        }
        if made != wanted:
            print(f"{policy}: made with other settings ({made}); training it anew", flush=True)
            shutil.rmtree(policy)
            result.unlink(missing_ok=True)
    if result.is_file():
        done = json.loads(result.read_text())
        if (done.get("num_episodes"), done.get("eval_seed")) != (
            args.episodes,
            config["seed"] + EVAL_SEED_BASE,
        ):
            result.unlink()
    if not config_file.is_file():
        arch = [] if name == "state" else ["--encoder-arch", config["encoder_arch"]]
        train = ["train-policy", "--env", f"sslrobot/{args.task}", "--encoder", encoder,
                 *arch, "--image-size", str(config["image_size"]), "--algo", "rl", "--steps",
                 str(args.steps), "--seed", str(seed), "--out", str(policy), "--device", "cpu",
                 "--no-progress"]  # fmt: skip
        if args.num_demos:
            train += ["--demos", str(args.run / args.task / "data" / "demos" / "dataset"),
                      "--num-demos", str(args.num_demos),
                      "--rl-demo-share", str(args.demo_share)]  # fmt: skip
        if args.critic_state:
            train += ["--rl-critic-input", "state"]
        # A run killed after a resume checkpoint continues from it; one train-policy cannot
        # continue (other settings: log.txt says) is trained anew.
        try:
            interrupted = (policy / "checkpoints" / "resume.json").is_file()
            sslrobot(*train, "--resume" if interrupted else "--overwrite")
        except subprocess.CalledProcessError:
            if not interrupted:
                raise
            print(f"{policy}: its checkpoint cannot be continued; training it anew", flush=True)
            sslrobot(*train, "--overwrite")
    if not result.is_file():
        sslrobot("evaluate", "--env", f"sslrobot/{args.task}", "--policy", str(policy),
                 "--episodes", str(args.episodes), "--seed",
                 str(config["seed"] + EVAL_SEED_BASE), "--out", str(result))  # fmt: skip
    record = json.loads(result.read_text())
    record["encoder"] = label
    saved = json.loads((policy / "policy_config.json").read_text())
    record["wall_time_s"] = saved["wall_time_s"]  # the last process's: a resumed run's tail
    record["resumed"] = bool(saved.get("resumed_at_steps"))
    return record


def _has_rows(path: Path) -> bool:
    """Whether SB3 logged anything: it writes its first row after 4 episodes, so a shorter
    run leaves an empty ``progress.csv``."""
    try:
        read_metrics_csv(path)
    except ValueError:
        return False
    return True


def curve_at(path: Path, steps: list[int]) -> list[float | None]:
    """SB3's rolling training success at the logged point nearest each of ``steps``."""
    if not _has_rows(path):
        return [None] * len(steps)
    columns = read_metrics_csv(path)
    x, y = columns[STEP_KEY], columns[CURVE_KEY]
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    return [None if not len(x) else float(y[np.abs(x - step).argmin()]) for step in steps]


def main() -> None:
    args = parse_args()
    config = json.loads((args.run / "config.json").read_text())
    print(
        "settings:",
        json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}),
    )
    print(
        f"run: {args.run} (encoder_arch {config['encoder_arch']}, image_size "
        f"{config['image_size']}); SAC with the package's defaults"
        + (
            f", the run's first {args.num_demos} demonstrations in {args.demo_share:g} of every "
            "batch"
            if args.num_demos
            else ", no demonstrations"
        )
        + "; machine: "
        f"{platform.platform()}"
    )
    jobs = [(name, seed) for name in args.encoders for seed in args.seeds]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        records = list(pool.map(lambda job: run_one(args, config, *job), jobs))
    print(f"wall time {time.perf_counter() - start:.0f} s ({args.jobs} runs at a time)\n")

    rows = aggregate_results(records, min_seeds=len(args.seeds))
    marks = [args.steps // 4, args.steps // 2, 3 * args.steps // 4, args.steps]
    print(
        f"| encoder | success, {args.episodes} eval episodes x {len(args.seeds)} seeds [95% CI] "
        "| training success at " + " / ".join(f"{m:,}" for m in marks) + " steps "
        "| wall time per run (median) |"
    )
    print("| --- | ---: | ---: | ---: |")
    curves, groups = {}, {}
    for name in (run_label(args, spec) for spec in args.encoders):
        (row,) = [r for r in rows if r["encoder"] == name]
        success = row["success"]
        runs = [args.out / args.task / name / f"seed{seed}" for seed in args.seeds]
        logs = [run / "policy" / "logs" / "progress.csv" for run in runs]
        for seed, path in zip(args.seeds, logs, strict=True):
            if _has_rows(path):
                curves[f"{name} seed {seed}"] = path
                groups[f"{name} seed {seed}"] = name
        points = np.array(
            [[np.nan if v is None else v for v in curve_at(p, marks)] for p in logs], dtype=float
        )
        curve = " / ".join(f"{100 * v:.0f}%" for v in np.nanmean(points, axis=0))
        mine = [r for r in records if r["encoder"] == name]
        wall = np.median([r["wall_time_s"] for r in mine])
        resumed = sum(r["resumed"] for r in mine)
        note = f" ({resumed} resumed: their time is the last process's only)" if resumed else ""
        print(
            f"| {name} | {100 * success['mean']:.1f}% [{100 * success['low']:.1f}, "
            f"{100 * success['high']:.1f}] | {curve} | {wall:.0f} s{note} |"
        )
        print(f"  per seed: {[round(100 * v, 1) for v in row['success_per_seed']]}")
    if not curves:
        print("\nno curves: every run ended before SB3's first log row (4 episodes)")
        return
    plot = plot_loss_curves(
        curves,
        args.out / f"{args.task}_rl_success.png",
        key=CURVE_KEY,
        step_key=STEP_KEY,
        title=f"{args.task}: SAC on frozen features (line style: seed)",
        log_scale=False,
        groups=groups,
    )
    print(f"\ncurves: {plot}")


if __name__ == "__main__":
    main()
