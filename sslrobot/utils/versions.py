"""Installed package versions, saved beside datasets and results so numbers can be traced."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from importlib import metadata
from typing import TypeVar

M = TypeVar("M", str, None)


def package_versions(names: Sequence[str], missing: M) -> dict[str, str | M]:
    """Python's version and each package's installed version (``missing`` where it is absent).

    Args:
        names: Distribution names, e.g. ``("torch", "mujoco")``.
        missing: The value for a package that is not installed (``None`` for JSON's null, or
            a readable string for a report).
    """
    versions: dict[str, str | M] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = missing
    return versions


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; elsewhere ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_description() -> dict[str, str | int | None]:
    """What a seeded CPU result depends on beyond the package versions.

    The same seed gives bit-identical training on one machine, but not across CPUs: torch's
    kernels (oneDNN convolutions above all) take other code paths, with other rounding, on
    another instruction set (``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512 ...),
    and the rounding grows over thousands of steps (docs/results/findings.md). The report
    records these so that two runs' differences can be traced to the machine.
    """
    import torch  # here: the rest of this module stays importable without torch

    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
