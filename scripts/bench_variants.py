"""One pretraining variant on a finished run's data, scored the way the run scores encoders.

Pretrains an encoder on ``RUN/TASK/data/unlabeled`` with the given ``sslrobot pretrain``
options (optionally in several processes through ``torchrun``), probes it, trains BC heads on
``RUN/TASK/data/demos`` for each seed and evaluates each on the train look (and, with
``--heldout``, the held-out look). ``--encoder DIR`` skips pretraining and scores an existing
encoder, e.g. to vary only the BC head (``--bc-args``). The session-4 experiments in the README:

    python scripts/bench_variants.py --run runs/default4 --task Reach-v0 --steps 9000 --processes 2
    python scripts/bench_variants.py --run runs/default4 --task Reach-v0 --processes 2 \
        --pretrain-args="--feature-dim 16"
    python scripts/bench_variants.py --run runs/default4 --task Reach-v0 --processes 2 \
        --pretrain-args="--color-jitter 0.4" --heldout
    python scripts/bench_variants.py --run runs/default4 --task Reach-v0 --steps 1500 \
        --objective fdm+future+contrastive --episodes 50 --eval-seed 0
    python scripts/bench_variants.py --run runs/default4 --task Reach-v0 \
        --encoder runs/default4/Reach-v0/pretrain/fdm+future/encoder --bc-args="--steps 300"
    (the same with --bc-args="--steps 3000", "--weight-decay 1.0", "--hidden-dims 64,64")

``--baseline`` also probes the same architecture's random initialisation and prints the gap
(issue 4's measure); a bare ``--seeds`` skips the policies. Session 8, the linear-readout
encoder on each task:

    python scripts/bench_variants.py --run runs/default5 --task Navigate-v0 --arch cnn \
        --steps 12000 --processes 2 --baseline --seeds

``--baseline-seeds 0 1 2 3 4`` probes five random initialisations and prints the gap's mean and
range over them (session 9: the run's seed 0 was the weakest of five on Navigate).

Prints its settings, the probe (mean R^2 and the task objects' variables), PSNR at k=1, and
success per seed and mean for each look.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_readout import check_demos_and_seeds, check_seeds

from sslrobot.data import open_dataset
from sslrobot.pipeline.presets import EVAL_SEED_BASE
from sslrobot.pretraining.artifacts import ENCODER_WEIGHTS

#: The BC budget of the default preset, which ``--bc-args`` may override.
BC_STEPS, BC_BATCH = 1000, 128


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `sslrobot run` dir")
    parser.add_argument("--task", default="Reach-v0", help="task directory in the run")
    parser.add_argument("--out", type=Path, default=None, help="default: RUN/variants/<tag>")
    parser.add_argument("--encoder", type=Path, default=None, help="score this encoder instead")
    parser.add_argument("--objective", default="fdm+future")
    parser.add_argument("--arch", default="keypoints", help="pretrain --encoder-arch")
    parser.add_argument(
        "--steps", type=int, default=4500,
        help="pretraining steps (the default preset now pretrains 6000; findings' commands "
        "without --steps ran 4500)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=128, help="global, over processes")
    parser.add_argument("--processes", type=int, default=1, help="torchrun ranks (1 thread each)")
    parser.add_argument("--pretrain-args", default="", help="more `sslrobot pretrain` options")
    parser.add_argument(
        "--pretrain-data", type=Path, default=None,
        help="pretrain on this dataset instead of the run's (e.g. a larger stream of the same "
        "task); the probe and the policies still use the run's data",
    )  # fmt: skip
    parser.add_argument("--bc-args", default="", help="more `sslrobot train-policy` options")
    parser.add_argument("--num-demos", type=int, default=25)
    parser.add_argument(
        "--seeds", type=int, nargs="*", default=[0, 1, 2],
        help="BC training seeds; none (a bare --seeds) scores the representation only",
    )  # fmt: skip
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes per seed")
    parser.add_argument(
        "--eval-seed", type=int, default=None,
        help="first evaluation seed (default: the run's, its seed + 300000)",
    )  # fmt: skip
    parser.add_argument("--heldout", action="store_true", help="also the held-out visual preset")
    parser.add_argument(
        "--baseline", action="store_true",
        help="also probe a randomly initialised encoder (`--objective none --steps 0`) of the "
        "same architecture and --pretrain-args, and print the probe gap (issue 4's measure)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-seeds", type=int, nargs="+", default=[0],
        help="initialisation seeds of the --baseline encoder: with several, the gap is printed "
        "as mean and spread over them (how much of a gap the random init alone moves)",
    )  # fmt: skip
    return parser.parse_args()


def bc_budget(bc_args: str) -> tuple[int, int]:
    """The BC steps and batch size that ran: ``--bc-args`` comes after the preset's budget
    on the command line, so its ``--steps`` / ``--batch-size`` win, as argparse keeps the
    last value."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--steps", type=int, default=BC_STEPS)
    parser.add_argument("--batch-size", type=int, default=BC_BATCH)
    known, _ = parser.parse_known_args(shlex.split(bc_args))
    return known.steps, known.batch_size


def unlike_the_run(
    args: argparse.Namespace, run_config: dict, bc_steps: int, bc_batch: int
) -> list[str]:
    """Where this script's heads or pretraining differ from the run's (its budget and horizon
    are the default preset's unless given, not read from the run): said, so that a row is
    not compared with the run's own as if alike."""
    lines = []
    if (bc_steps, bc_batch) != (run_config.get("bc_steps"), run_config.get("bc_batch_size")):
        lines.append(
            f"BC {bc_steps} steps at batch {bc_batch}; the run's: {run_config.get('bc_steps')} "
            f"at {run_config.get('bc_batch_size')} (--bc-args='--steps N --batch-size B')"
        )
    copies = run_config.get("bc_augment_copies", 0)
    if copies and "--augment-copies" not in args.bc_args:
        lines.append(
            f"plain BC heads; the run's frozen encoders' heads fit {copies} copies "
            f"(--bc-args='--augment-copies {copies} --augment-color "
            f"{run_config.get('bc_augment_color')}')"
        )
    if "--num-steps-ahead" not in args.pretrain_args and args.run_horizon != 3:
        lines.append(
            f"pretraining horizon 3; the run's: {args.run_horizon} "
            f"(--pretrain-args='--num-steps-ahead {args.run_horizon}')"
        )
    return lines


def sslrobot(*args: str, log: Path) -> None:
    """Run an ``sslrobot`` subcommand, its output appended to ``log``; fail loudly."""
    with log.open("a") as file:
        subprocess.run(
            [sys.executable, "-m", "sslrobot", *args], check=True, stdout=file, stderr=file
        )


def pretrain(
    args: argparse.Namespace,
    data: Path,
    out: Path,
    log: Path,
    objective: str | None = None,
    seed: int | None = None,
) -> float:
    """Pretrain the variant (or, with ``objective="none"``, write its random initialisation);
    ``seed`` overrides any ``--seed`` in --pretrain-args. Returns the wall time in seconds."""
    objective = objective or args.objective
    steps = 0 if objective == "none" else args.steps
    options = [
        "pretrain", "--data", str(data), "--out", str(out), "--objective", objective,
        "--steps", str(steps), "--batch-size", str(args.batch_size // args.processes),
        "--num-steps-ahead", "3", "--device", "cpu", "--encoder-arch", args.arch,
        "--no-progress", "--no-tensorboard", "--image-every", "0",
        "--threads", "1" if args.processes > 1 else "2", *shlex.split(args.pretrain_args),
        *(["--seed", str(seed)] if seed is not None else []),
    ]  # fmt: skip
    if "--split-seed" not in args.pretrain_args:  # hold out the run's episodes, as it does
        options += ["--split-seed", str(args.run_seed)]
    start = time.perf_counter()
    if args.processes > 1 and steps > 0:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command = [*launcher, f"--nproc_per_node={args.processes}", "-m", "sslrobot", *options]
        with log.open("a") as file:
            subprocess.run(command, check=True, stdout=file, stderr=file)
    else:
        sslrobot(*options, log=log)
    return time.perf_counter() - start


def run_probe(encoder: Path, data: Path, out: Path, log: Path, seed: int, horizon: int) -> dict:
    """``sslrobot probe`` of ``encoder`` on ``data`` with the run's probe split (the
    pretrainings' held-out episodes: ``val_fraction`` 0.1 by the run's ``seed``) and its
    prediction horizon (the windows scored depend on it; the CLI's default 5 scored other
    ones than the run's 3), so that every encoder of a comparison, random inits too, is scored
    on the same episodes and windows."""
    sslrobot("probe", "--encoder", str(encoder), "--data", str(data), "--out", str(out),
             "--val-fraction", "0.1", "--seed", str(seed), "--horizon", str(horizon),
             "--device", "cpu", log=log)  # fmt: skip
    return json.loads(out.read_text())


def main() -> None:
    args = parse_args()
    run_config = json.loads((args.run / "config.json").read_text())
    args.run_seed = int(run_config.get("seed", 0))
    args.run_horizon = int(run_config.get("num_steps_ahead", 3))
    task_dir = args.run / args.task
    unlabeled, demos = (
        task_dir / "data" / "unlabeled" / "dataset",
        task_dir / "data" / "demos" / "dataset",
    )
    for path in (unlabeled, demos):
        if not (path / "manifest.json").is_file():
            raise SystemExit(f"{path} is not a dataset: give a finished run (--run) and --task")
    if args.eval_seed is None:  # the run's own evaluation episodes, as bench_heads scores
        args.eval_seed = args.run_seed + EVAL_SEED_BASE
    check_seeds(args, run_config)
    check_demos_and_seeds(args, open_dataset(demos))
    bc_steps, bc_batch = bc_budget(args.bc_args)
    source = (  # an encoder is named by its directory and the one above (pretrain --out/encoder)
        f"encoder-{args.encoder.parent.name}-{args.encoder.name}"
        if args.encoder
        else f"{args.objective}-{args.steps}"
    )
    arch = "" if args.arch == "keypoints" else f"-{args.arch}"
    if args.pretrain_data is not None:
        arch += f"-data-{args.pretrain_data.name}"
    tag = f"{source}{arch}-{args.pretrain_args}-{args.bc_args}".replace(" ", "")
    out = args.out or args.run / "variants" / (args.task + "-" + tag.replace("/", "_"))
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    print("bench_variants:", json.dumps({k: str(v) for k, v in vars(args).items()}))
    for line in unlike_the_run(args, run_config, bc_steps, bc_batch):
        print(f"WARNING: {line}")
    print(
        f"BC: {bc_steps} steps at batch {bc_batch} (the default preset's budget: {BC_STEPS} at "
        f"{BC_BATCH}), plain BC "
        "unless --bc-args add options (the preset's heads: "
        "--bc-args='--augment-copies 8 --augment-color 0.6')"
    )
    encoder, seconds = args.encoder, 0.0
    if encoder is None:
        encoder = out / "encoder"
        request = {  # what this variant's pretraining is, beside it once finished
            "objective": args.objective, "steps": args.steps, "batch_size": args.batch_size,
            "processes": args.processes, "arch": args.arch, "pretrain_args": args.pretrain_args,
            "data": str(args.pretrain_data or unlabeled), "run_seed": args.run_seed,
        }  # fmt: skip
        made = out / "encoder_request.json"
        if (encoder / ENCODER_WEIGHTS).is_file():
            earlier = json.loads(made.read_text()) if made.is_file() else None
            if earlier != request:
                raise SystemExit(
                    f"{encoder} was pretrained with other settings ({earlier}, now {request}): "
                    "delete it or give another --out"
                )
            print(f"reusing the finished pretraining in {encoder}")
        elif encoder.is_dir() and any(encoder.iterdir()):
            raise SystemExit(
                f"{encoder} holds an unfinished pretraining (see {log}): continue it with "
                f"`sslrobot pretrain --resume` and the options in {log}, or delete it"
            )
        else:
            seconds = pretrain(args, args.pretrain_data or unlabeled, encoder, log)
            made.write_text(json.dumps(request))
    probe = run_probe(encoder, unlabeled, out / "probe.json", log, args.run_seed, args.run_horizon)
    baselines = []  # one probe per --baseline-seeds seed
    for seed in args.baseline_seeds if args.baseline else []:
        name = "none_encoder" if seed == 0 else f"none_encoder_seed{seed}"
        if not (out / name / "pretrain_config.json").is_file():  # else: reuse it
            pretrain(args, unlabeled, out / name, log, objective="none", seed=seed)
        baselines.append(
            run_probe(
                out / name,
                unlabeled,
                out / f"{name}_probe.json",
                log,
                args.run_seed,
                args.run_horizon,
            )
        )
    baseline = baselines[0] if baselines else None
    objects = {
        name: round(r2, 2)
        for name, r2 in probe["probe/r2"].items()
        if any(word in name for word in ("target", "cube", "goal")) and r2 is not None
    }
    looks = ["train", "heldout"] if args.heldout else ["train"]
    success: dict[str, list[float]] = {look: [] for look in looks}
    for seed in args.seeds:
        policy = out / f"bc_seed{seed}"
        sslrobot("train-policy", "--env", f"sslrobot/{args.task}", "--encoder", str(encoder),
                 "--algo", "bc", "--demos", str(demos), "--num-demos", str(args.num_demos),
                 "--seed", str(seed), "--out", str(policy), "--steps", str(BC_STEPS),
                 "--batch-size", str(BC_BATCH), "--device", "cpu", "--no-progress",
                 "--overwrite", *shlex.split(args.bc_args), log=log)  # fmt: skip
        for look in looks:
            result = policy / f"eval_{look}.json"
            sslrobot("evaluate", "--env", f"sslrobot/{args.task}", "--policy", str(policy),
                     "--episodes", str(args.episodes), "--seed", str(args.eval_seed),
                     "--visual-preset", look, "--out", str(result), log=log)  # fmt: skip
            success[look].append(json.loads(result.read_text())["success_rate"])
    print(f"pretraining: {seconds:.0f} s ({'skipped' if args.encoder else args.steps} steps)")
    print(f"probe R^2 mean {probe['probe/r2_mean']:.3f}; objects {objects}")
    if baseline is not None:
        names = probe["probe/mean_over"]  # the variables one frame determines
        r2, none_r2 = (
            {n: None if m["probe/r2"][n] is None else round(m["probe/r2"][n], 3) for n in names}
            for m in (probe, baseline)
        )  # R^2 is None for a variable constant on the held-out episodes
        print(f"probe R^2 of the averaged variables: {r2}")
        print(
            f"none ({args.arch}, random init) probe R^2 mean {baseline['probe/r2_mean']:.3f} "
            f"{none_r2}; gap {probe['probe/r2_mean'] - baseline['probe/r2_mean']:+.3f}"
        )
    if len(baselines) > 1:
        means = np.array([b["probe/r2_mean"] for b in baselines])
        gaps = probe["probe/r2_mean"] - means
        print(
            f"none over init seeds {args.baseline_seeds}: {np.round(means, 3).tolist()}, mean "
            f"{means.mean():.3f} (std {means.std(ddof=1):.3f}); gap mean {gaps.mean():+.3f}, "
            f"range {gaps.min():+.3f} to {gaps.max():+.3f}"
        )
    if probe.get("pred/psnr_k1") is not None:
        print(
            f"PSNR k=1 {probe['pred/psnr_k1']:.2f} dB "
            f"(copy-last {probe['pred/psnr_copy_last_k1']:.2f})"
        )
    for look, rates in success.items():
        if not rates:
            continue
        mean = sum(rates) / len(rates)
        print(
            f"success ({look} look, {args.episodes} episodes x {len(rates)} seeds): "
            f"{rates} -> {mean:.3f}"
        )
    print(f"files: {out}")


if __name__ == "__main__":
    main()
