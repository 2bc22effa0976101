"""Why pretraining runs in float32 on CPUs: bfloat16 autocast's cost there, a benchmark.

``sslrobot pretrain`` turns bfloat16 autocast on by default only on GPUs that compute it
natively, and refuses it on a CPU. This times the same pretraining update (forward, backward,
optimizer step, EMA: ``PretrainRun.update``) of the default encoder and objective on one
synthetic batch, in float32 and under ``torch.autocast("cpu", torch.bfloat16)`` (forced past
the trainer's refusal), interleaved repeat by repeat with their order alternating, and reports
the median of the paired per-repeat ratios.

Usage:
    python scripts/bench_cpu_autocast.py               # 5 repeats of 5 updates, batch 64
    python scripts/bench_cpu_autocast.py --quick       # 2 repeats of 2 updates
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sslrobot.pretraining.config import PretrainConfig
from sslrobot.pretraining.synthetic import MovingSquareDataset
from sslrobot.pretraining.trainer import PretrainRun, close_batches


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--updates", type=int, default=5, help="timed updates per repeat")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--objective", default="fdm+future")
    parser.add_argument("--quick", action="store_true", help="2 repeats of 2 updates")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.updates = 2, 2
    return args


def run_on_one_batch(out: Path, objective: str, batch_size: int) -> tuple[PretrainRun, tuple]:
    """A CPU pretraining run on synthetic 64 px windows, and one augmented batch's inputs
    to ``PretrainRun.update`` (what both CPU benchmarks time, the data path left out)."""
    dataset = MovingSquareDataset(
        num_episodes=16, episode_length=32, num_steps=3, image_size=64, action_dim=4
    )
    config = PretrainConfig(
        out=str(out), objective=objective, steps=10**6, batch_size=batch_size, device="cpu",
        image_every=0, tensorboard=False, checkpoint_every=0, prefetch=0,
    )  # fmt: skip
    run = PretrainRun(config, dataset, progress=False)
    batches = run.batches(0)
    try:
        return run, run.augment(*run.to_device(next(batches)), 0)
    finally:
        close_batches(batches)


def seconds_per_update(run: PretrainRun, inputs: tuple, updates: int, autocast: bool) -> float:
    run.amp = autocast  # the trainer refuses it on a CPU; forced here to measure it
    run.update(*inputs)  # not timed: the first call of a mode warms its kernels
    start = time.perf_counter()
    for _ in range(updates):
        run.update(*inputs)
    return (time.perf_counter() - start) / updates


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"settings: objective {args.objective}, default encoder, batch {args.batch_size} at "
        f"64 px, K=3, {args.repeats} repeats x {args.updates} updates, {args.threads} threads, "
        f"torch {torch.__version__}"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"bf16 CPU capability: {torch.backends.cpu.get_cpu_capability()}, "
        f"load average (1 min) {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        run, inputs = run_on_one_batch(Path(tmp) / "run", args.objective, args.batch_size)
        times: dict[str, list[float]] = {"float32": [], "bfloat16 autocast": []}
        for repeat in range(args.repeats):
            modes = [("float32", False), ("bfloat16 autocast", True)]
            for name, autocast in modes if repeat % 2 == 0 else modes[::-1]:
                times[name].append(seconds_per_update(run, inputs, args.updates, autocast))
            print(
                f"repeat {repeat + 1}/{args.repeats}: "
                + ", ".join(f"{n} {1000 * t[-1]:.0f} ms/update" for n, t in times.items()),
                flush=True,
            )
        run.close()
    plain, mixed = times.values()
    paired = [m / p for p, m in zip(plain, mixed, strict=True)]
    print("\n| update | ms (median) | x float32's time (median of paired ratios) |")
    print("| --- | ---: | ---: |")
    print(f"| float32 | {1000 * statistics.median(plain):.0f} | 1.00x |")
    print(f"| bfloat16 autocast | {1000 * statistics.median(mixed):.0f} | "
          f"{statistics.median(paired):.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
