"""What busy-waiting OpenMP threads cost a pretraining step on a shared CPU: a benchmark.

The README tells users of a CPU shared with other work to set ``OMP_WAIT_POLICY=PASSIVE``.
This times the default pretraining update (``PretrainRun.update``, float32, 2 torch threads,
batch 64) in a fresh process with the variable unset (OpenMP's default, threads spin while
they wait) and with it ``PASSIVE``, each once on an idle machine and once while another
process keeps one core busy, interleaved repeat by repeat. OpenMP reads the variable when it
starts, so each measurement is its own process. Reports samples/s and, per condition, the
median of the paired PASSIVE / unset ratios.

Usage:
    python scripts/bench_omp_wait.py               # 3 repeats of 8 updates per process
    python scripts/bench_omp_wait.py --quick       # 1 repeat of 3 updates
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD_FLAG = "--child-updates"


def child(updates: int, batch_size: int, threads: int) -> None:
    """In a fresh process: samples/s of ``updates`` timed pretraining updates (JSON line)."""
    import torch
    from bench_cpu_autocast import run_on_one_batch  # a sibling script

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        run, inputs = run_on_one_batch(Path(tmp) / "run", "fdm+future", batch_size)
        run.update(*inputs)  # untimed warm-up
        start = time.perf_counter()
        for _ in range(updates):
            run.update(*inputs)
        seconds = time.perf_counter() - start
        run.close()
    print(json.dumps({"samples_per_s": updates * batch_size / seconds}))


def spin(stop_after: float) -> None:
    """Keep one core busy (the "other work" of a shared machine)."""
    end = time.perf_counter() + stop_after
    value = 0
    while time.perf_counter() < end:
        value += 1


def measure(policy: str | None, args: argparse.Namespace) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, __file__, CHILD_FLAG, str(args.updates),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the timed process failed:\n{done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["samples_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--updates", type=int, default=8, help="timed updates per process")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 3 updates")
    parser.add_argument(CHILD_FLAG, type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_updates is not None:
        child(args.child_updates, args.batch_size, args.threads)
        return
    if args.quick:
        args.repeats, args.updates = 1, 3
    print(
        f"settings: default pretraining update (fdm+future, keypoint encoder), batch "
        f"{args.batch_size} at 64 px, {args.threads} torch threads, {args.updates} timed "
        f"updates per process, {args.repeats} repeats; load: one other process spinning"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python "
        f"{platform.python_version()}, load average (1 min) {os.getloadavg()[0]:.2f}"
    )
    rates: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for loaded in (False, True):
            load = None
            if loaded:
                load = multiprocessing.get_context("spawn").Process(target=spin, args=(600.0,))
                load.start()
            try:
                policies = [None, "PASSIVE"] if repeat % 2 == 0 else ["PASSIVE", None]
                for policy in policies:
                    key = ("loaded" if loaded else "idle", policy or "unset")
                    rates.setdefault(key, []).append(measure(policy, args))
            finally:
                if load is not None:
                    load.terminate()
                    load.join()
        shown = ", ".join(f"{c}/{p} {v[-1]:.0f}" for (c, p), v in rates.items())
        print(f"repeat {repeat + 1}/{args.repeats} (samples/s): {shown}", flush=True)
    print("\n| machine | OMP_WAIT_POLICY unset | PASSIVE | PASSIVE / unset (median of paired) |")
    print("| --- | ---: | ---: | ---: |")
    for condition in ("idle", "loaded"):
        unset, passive = rates[(condition, "unset")], rates[(condition, "PASSIVE")]
        paired = [p / u for u, p in zip(unset, passive, strict=True)]
        print(f"| {condition} | {statistics.median(unset):.0f} | {statistics.median(passive):.0f}"
              f" | {statistics.median(paired):.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
