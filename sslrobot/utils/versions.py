"""Installed package versions, saved beside datasets and results so numbers can be traced."""

from __future__ import annotations

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
