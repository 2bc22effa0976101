"""Does the CPU's instruction set change a seeded CPU run? A check, not a benchmark.

The same seeded pretraining (and, with ``--demos``, the state oracle's BC head) is run as is
twice, then with each instruction-set cap below set in its environment, as on a CPU without
the wider vector units; each run's weights are compared with the first's. Runs identical as is
but not under a cap mean that results move between machine classes with the instruction set
(README, "Reproducibility"), not with anything the package does.

    python scripts/check_cpu_isa.py --data runs/reach27c/Reach-v0/data/unlabeled/dataset \
        --demos runs/reach27c/Reach-v0/data/demos/dataset
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file

#: Environment variables that cap torch's CPU kernels at AVX2: oneDNN (convolutions), MKL
#: (matrix products, in its conditional-numerical-reproducibility mode) and ATen's own.
CAPS = {
    "oneDNN at AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "MKL at AVX2": {"MKL_CBWR": "AVX2"},
    "ATen at AVX2": {"ATEN_CPU_CAPABILITY": "avx2"},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="an unlabeled dataset to pretrain on")
    parser.add_argument("--demos", help="expert demonstrations for the state oracle's BC head")
    parser.add_argument("--steps", type=int, default=30, help="pretraining steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bc-steps", type=int, default=1000)
    return parser.parse_args()


def largest_difference(a: Path, b: Path) -> float:
    """The largest absolute difference between two safetensors files' tensors."""
    first, second = load_file(str(a)), load_file(str(b))
    return max(float((first[k].double() - second[k].double()).abs().max()) for k in first)


def run(command: list[str], extra_env: dict[str, str]) -> None:
    env = {**os.environ, **extra_env}
    command = [sys.executable, "-m", "sslrobot", *command]
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)


def _slug(label: str) -> str:
    return label.replace(" ", "_").replace(",", "")


def compare(make: Callable[[Path, dict], None], weights: str, root: Path) -> dict[str, float]:
    """Run ``make(out, env)`` as is twice and under each cap; differences from the first."""
    runs = {"as is": {}, "as is, again": {}, **CAPS}
    for label, extra in runs.items():
        make(root / _slug(label), extra)
    reference = root / _slug("as is") / weights
    return {
        label: largest_difference(reference, root / _slug(label) / weights)
        for label in runs
        if label != "as is"
    }


def main() -> None:
    args = parse_args()
    import torch

    from sslrobot.data.manifest import read_manifest

    print("check_cpu_isa:", json.dumps(vars(args)))
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    pretrain = [
        "pretrain", "--data", args.data, "--objective", "fdm+future", "--encoder-arch",
        "keypoints", "--steps", str(args.steps), "--batch-size", str(args.batch_size),
        "--threads", "1", "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results["pretraining"] = compare(
            lambda out, extra: run([*pretrain, "--out", str(out)], extra),
            "model.safetensors",
            root / "pretrain",
        )
        if args.demos:
            env_id = read_manifest(Path(args.demos))["env_id"]
            bc = [
                "train-policy", "--env", env_id, "--encoder", "state", "--algo", "bc",
                "--demos", args.demos, "--num-demos", "25", "--seed", "0", "--steps",
                str(args.bc_steps), "--batch-size", "128", "--device", "cpu", "--no-progress",
            ]  # fmt: skip
            results["state BC head"] = compare(
                lambda out, extra: run([*bc, "--out", str(out)], extra),
                "final.safetensors",
                root / "bc",
            )
    for name, differences in results.items():
        for label, difference in differences.items():
            verdict = "bit-identical" if difference == 0 else f"differ (largest {difference:.3g})"
            print(f"{name}, {label} vs as is: {verdict}")


if __name__ == "__main__":
    main()
