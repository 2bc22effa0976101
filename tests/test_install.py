"""The install pins (scripts/constraints.txt) agree with pyproject.toml's ranges: a range raised
without a new pin would make `scripts/install.sh` fail to resolve on a clean clone."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, Version]:
    """``{canonical name: pinned version}`` of the constraints file; refuses any other form."""
    pins: dict[str, Version] = {}
    for number, line in enumerate((ROOT / "scripts/constraints.txt").read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, version = line.partition("==")
        assert separator and name and version, (
            f"scripts/constraints.txt:{number}: {line!r} is not name==version"
        )
        name = canonicalize_name(name)
        assert name not in pins, f"scripts/constraints.txt:{number}: {name} pinned twice"
        pins[name] = Version(version)
    return pins


def _declared() -> list[Requirement]:
    """The core dependencies and every extra's, as pyproject.toml declares them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines.extend(extra)
    return [Requirement(line) for line in lines]


def test_every_declared_dependency_is_pinned_inside_its_range():
    pins = _pins()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"pyproject.toml needs {requirement}; scripts/constraints.txt: none"
        # Pre-releases count as inside the range only if pinned on purpose.
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"scripts/constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's "
            f"{requirement}"
        )


def test_the_install_script_installs_torch_at_its_pin():
    """install.sh installs torch before the rest (to take the CPU wheel); that version must be
    the constraints' or the second pip call would fail to reconcile them."""
    script = (ROOT / "scripts/install.sh").read_text()
    assert f'"torch=={_pins()["torch"]}"' in script
    assert "-c scripts/constraints.txt" in script
