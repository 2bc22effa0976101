"""How long ``sslrobot run --preset quick`` takes from the command line: a benchmark.

The README promises the quick preset (every stage at toy sizes) in under a minute. This runs
the command as a user would, each time in a new directory (so nothing is reused) and in a new
Python process (imports and GL set-up included), and prints each wall time and their median.
The first run of a fresh machine is the slowest (files and libraries not yet cached), so the
runs are listed in order.

Usage:
    python scripts/bench_quick_preset.py               # 3 runs
    python scripts/bench_quick_preset.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    print(
        f"settings: {args.runs} runs of `sslrobot run --preset quick --device {args.device}`, "
        "each in a new directory and process"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python "
        f"{platform.python_version()}, MUJOCO_GL={os.environ.get('MUJOCO_GL', '(unset)')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
        f"load average (1 min) {os.getloadavg()[0]:.2f}"
    )
    seconds = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "sslrobot", "run", "--preset", "quick",
                       "--device", args.device, "--out", str(Path(tmp) / "run"),
                       "--no-progress"]  # fmt: skip
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            seconds.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"run {index + 1} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        print(f"run {index + 1}/{args.runs}: {seconds[-1]:.1f} s", flush=True)
    print(
        f"\nmedian {statistics.median(seconds):.1f} s, range {min(seconds):.1f}-"
        f"{max(seconds):.1f} s over {args.runs} runs"
    )


if __name__ == "__main__":
    main()
