"""Dataset manifest: what was collected, how, with which versions, and how much of it exists."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sslrobot.data.fileio import atomic_write_json
from sslrobot.data.storage import (
    CURRENT_FORMAT_VERSION,
    FORMAT_VERSIONS,
    episode_path,
    list_episode_ids,
    read_meta,
)
from sslrobot.utils.versions import package_versions as installed_versions

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "sslrobot-episodes"
#: What new datasets are written in; every version in ``storage.FORMAT_VERSIONS`` is read.
FORMAT_VERSION = CURRENT_FORMAT_VERSION
#: Manifest fields that must agree between runs that write into one directory (resume, shards):
#: mixing them would silently blend two different datasets.
IDENTITY_FIELDS: tuple[str, ...] = (
    "format",
    "format_version",
    "env_id",
    "env_kwargs",
    "max_episode_steps",
    "policy",
    "base_seed",
    "image_size",
)
#: What the env reported when probed: checked too where the dataset recorded it (manifests of
#: older versions lack some), since the same id and arguments can give other shapes, bounds
#: or state once the env's code changes.
DESCRIBED_FIELDS: tuple[str, ...] = (
    "env_spec",
    "frame_shape",
    "proprio_dim",
    "action_dim",
    "action_low",
    "action_high",
    "state_dim",
    "state_names",
)
_VERSIONED_PACKAGES = ("sslrobot", "mujoco", "gymnasium", "numpy")
#: JSON's names of what ``json.loads`` returns, for errors about a manifest of the wrong kind.
_JSON_KINDS: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that determine what the data looks like."""
    return installed_versions(_VERSIONED_PACKAGES, missing=None)


def utc_now() -> str:
    """Current time as an ISO-8601 UTC string (for ``created``/``updated``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_manifest(root: Path) -> dict[str, Any]:
    """Parse ``root/manifest.json``.

    Raises:
        FileNotFoundError: ``root`` holds no manifest (not a dataset directory).
        ValueError: the manifest is not valid JSON or not an sslrobot dataset.
    """
    path = Path(root) / MANIFEST_NAME
    if not Path(root).exists():
        raise FileNotFoundError(f"dataset directory {root} does not exist")
    if not path.is_file():
        inside = Path(root) / "dataset"  # `sslrobot run`'s data stage keeps it one level down
        hint = (
            f" (the dataset of a run's stage is {inside})"
            if (inside / MANIFEST_NAME).is_file()
            else ""
        )
        raise FileNotFoundError(
            f"{path} not found: {root} is not an sslrobot dataset directory{hint}"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(manifest, dict):  # valid JSON, but an array or a number has no fields
        raise ValueError(
            f"{path} is not an sslrobot dataset manifest: it holds a JSON "
            f"{_JSON_KINDS.get(type(manifest), type(manifest).__name__)}, not an object"
        )
    if manifest.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    if manifest.get("format_version") not in FORMAT_VERSIONS:
        raise ValueError(
            f"{path}: format_version {manifest.get('format_version')} is not supported "
            f"(this sslrobot reads versions {list(FORMAT_VERSIONS)})"
        )
    _check_reader_fields(manifest, path)
    return manifest


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: The fields every reader of a dataset relies on, with what each must hold: a hand-edited or
#: foreign manifest without them passed `data verify` and failed later as a bare KeyError or
#: TypeError naming no file.
_READER_FIELDS: dict[str, tuple[str, Any]] = {
    "env_id": ("a string", lambda v: isinstance(v, str) and bool(v)),
    "frame_shape": (
        "a list of 3 positive integers (H, W, C)",
        lambda v: isinstance(v, list) and len(v) == 3 and all(_count(x) and x > 0 for x in v),
    ),
    "action_dim": ("a non-negative integer", _count),
    "proprio_dim": ("a non-negative integer", _count),
    "num_episodes_requested": ("a non-negative integer", _count),
}


def _check_reader_fields(manifest: dict[str, Any], path: Path) -> None:
    """Raises ValueError naming ``path``, the field and its value when one is missing or of
    the wrong kind."""
    check_fields(manifest, path, _READER_FIELDS, "is it a collected dataset's?")


def check_fields(
    manifest: dict[str, Any], path: Path, fields: dict[str, tuple[str, Any]], missing_hint: str
) -> None:
    """Raises ValueError naming ``path``, the field and its value when one of ``fields``
    (name -> (what it must hold, a test of the value)) is missing or fails its test;
    ``missing_hint`` ends the message of a missing one."""
    for name, (kind, valid) in fields.items():
        if name not in manifest:
            raise ValueError(f"{path} lacks {name!r} ({kind}); {missing_hint}")
        if not valid(manifest[name]):
            raise ValueError(f"{path}: {name} must be {kind}, got {manifest[name]!r}")


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Atomically write ``root/manifest.json``."""
    atomic_write_json(Path(root) / MANIFEST_NAME, manifest)


#: The identity fields that say what the episodes hold (not how they are stored: the same
#: stream collected in format 1 or 2 holds the same episodes).
EPISODE_FIELDS: tuple[str, ...] = tuple(
    field for field in IDENTITY_FIELDS if field not in ("format", "format_version")
)


def dataset_identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest fields that say which episodes a dataset holds: collection is
    deterministic, so two datasets with the same identity hold the same episode for an id,
    wherever they are and however stored (a copy, a move, a recollection with the same
    settings, in either format)."""
    return {field: manifest.get(field) for field in EPISODE_FIELDS}


def check_same_dataset(existing: dict[str, Any], new: dict[str, Any], root: Path) -> None:
    """Refuse to add episodes made with other settings to an existing dataset.

    Raises:
        ValueError: naming each differing field with both values.
    """
    described = [field for field in DESCRIBED_FIELDS if field in existing]
    diffs = [
        _difference(field, existing.get(field), new.get(field))
        for field in (*IDENTITY_FIELDS, *described)
        if not _same(field, existing.get(field), new.get(field))
    ]
    if diffs:
        raise ValueError(
            f"{root} already holds a dataset collected with other settings or another version "
            "of the env (" + "; ".join(diffs) + "); use the same settings and versions to "
            "resume or add shards, or choose another --out"
        )
    old, now = existing.get("versions") or {}, new.get("versions") or {}
    changed = {name: (old[name], now.get(name)) for name in old if old[name] != now.get(name)}
    if changed:  # the same env may still record the same data: a warning, not a refusal
        warnings.warn(
            f"{root} was collected with other package versions ("
            + ", ".join(f"{name} {a} -> {b}" for name, (a, b) in changed.items())
            + "); new episodes are added, and the manifest keeps the earlier versions under "
            "versions_earlier",
            stacklevel=3,
        )


def _difference(field: str, old: Any, new: Any) -> str:
    """One field's difference, said per key for the env's arguments: the whole dicts named
    ``--env-kwargs`` where the user had changed ``--visual-preset`` (the command line writes
    a bare key that is one of its options as that option)."""
    if field == "env_kwargs" and isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(k for k in {*old, *new} if old.get(k, _ABSENT) != new.get(k, _ABSENT))
        shown = (
            f"{key} {old.get(key, _ABSENT)!r} in the dataset vs {new.get(key, _ABSENT)!r} now"
            for key in keys
        )
        return f"{field}: " + ", ".join(shown)
    return f"{field}: {old!r} in the dataset vs {new!r} now"


class _Absent:
    def __repr__(self) -> str:
        return "(not given)"


_ABSENT = _Absent()


def _same(field: str, old: Any, new: Any) -> bool:
    """Whether a resumed dataset's recorded ``field`` matches this run's. An ``env_spec``
    whose entry point was recorded as a callable's repr (``<function f at 0x...>``, by
    datasets from before ``entry_point_name``) holds a memory address, which never matched:
    its entry point is then left out of the comparison."""
    specs = field == "env_spec" and isinstance(old, dict) and isinstance(new, dict)
    if specs and any(str(spec.get("entry_point", "")).startswith("<") for spec in (old, new)):
        old, new = ({k: v for k, v in spec.items() if k != "entry_point"} for spec in (old, new))
    return old == new


def count_episodes(root: Path) -> dict[str, int]:
    """Counts of the committed episodes, from their metadata (steps = actions, frames = L+1)."""
    ids = list_episode_ids(root)
    steps = readable = 0
    for episode_id in ids:
        try:
            steps += int(read_meta(episode_path(root, episode_id))["length"])
            readable += 1
        except (ValueError, KeyError, TypeError):
            continue  # a corrupt episode is reported by `data verify`, not counted in frames
    return {"episodes": len(ids), "steps": steps, "frames": steps + readable}
