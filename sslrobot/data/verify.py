"""Checking a dataset (structure, shapes, checksums) and summarising it for `data info`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sslrobot.data.manifest import read_manifest
from sslrobot.data.storage import (
    check_episode_and_meta,
    episode_path,
    list_episode_ids,
    list_set_aside_paths,
    list_temp_paths,
    read_meta,
)

# array name -> (manifest key, the dims of the array's shape that must equal it)
_SHAPE_CHECKS: dict[str, tuple[str, slice]] = {
    "pixels": ("frame_shape", slice(1, None)),
    "proprio": ("proprio_dim", slice(1, 2)),
    "action": ("action_dim", slice(1, 2)),
    "state": ("state_dim", slice(1, 2)),
}


def _manifest_problems(meta: dict[str, Any], manifest: dict[str, Any], path: Path) -> list[str]:
    problems = []
    for file_name, info in meta.get("files", {}).items():
        check = _SHAPE_CHECKS.get(info.get("array"))
        if check is None or manifest.get(check[0]) is None:
            continue
        key, dims = check
        expected = manifest[key] if isinstance(manifest[key], list) else [manifest[key]]
        if list(info["shape"][dims]) != list(expected):
            problems.append(
                f"{path} ({file_name}): shape {info['shape']} disagrees with the "
                f"manifest's {key}={manifest[key]}"
            )
    return problems


def episode_problems(
    root: Path, episode_id: int, manifest: dict[str, Any], checksums: bool
) -> list[str]:
    """Everything wrong with one committed episode (empty: sound), see ``check_episode``."""
    path = episode_path(root, episode_id)
    problems, meta = check_episode_and_meta(path, checksums=checksums)
    if problems:
        return problems
    stored = meta.get("episode_id")
    if stored is not None and int(stored) != int(episode_id):  # a copied or renamed file
        return [f"{path}: holds episode {stored}, not {episode_id} as its name says"]
    # Episode i is reset with base_seed + i: one copied in from another dataset (another
    # base seed) under the same id passed every other check.
    seed, base = meta.get("seed"), manifest.get("base_seed")
    if isinstance(seed, int) and isinstance(base, int) and seed != base + int(episode_id):
        return [
            f"{path}: episode {episode_id} was reset with seed {seed}, not this dataset's "
            f"base seed {base} + {episode_id}: copied from another dataset?"
        ]
    return _foreign_problems(meta, manifest, path, episode_id) or _manifest_problems(
        meta, manifest, path
    )


def _foreign_problems(
    meta: dict[str, Any], manifest: dict[str, Any], path: Path, episode_id: int
) -> list[str]:
    """An episode of another dataset under the same id and base seed (most datasets keep the
    default seed 0) passed the seed check: what acted in it and how long it ran must be this
    dataset's too. Fields an older episode or manifest lacks are not compared."""
    acted, collecting = meta.get("policy"), manifest.get("policy")
    if isinstance(acted, dict) and isinstance(collecting, dict):
        if acted.get("via") == "mixture":  # one component of the dataset's mixture
            components = (collecting.get("params") or {}).get("components") or {}
            component = components.get(acted.get("name"))
            same = (
                collecting.get("name") == "mixture"
                and isinstance(component, dict)
                and acted.get("params") == component.get("params")
            )
        else:
            same = (acted.get("name"), acted.get("params")) == (
                collecting.get("name"),
                collecting.get("params"),
            )
        if not same:
            shown = {k: v for k, v in acted.items() if k != "via"}
            return [
                f"{path}: episode {episode_id} was collected by policy {shown}, not this "
                f"dataset's {collecting}: copied from another dataset?"
            ]
    limit = manifest.get("max_episode_steps")
    steps = [
        int(info["shape"][0])
        for info in meta.get("files", {}).values()
        if info.get("array") == "action" and info.get("shape")
    ]
    if isinstance(limit, int) and steps and steps[0] > limit:
        return [
            f"{path}: episode {episode_id} has {steps[0]} steps, over this dataset's "
            f"max_episode_steps {limit}: copied from another dataset?"
        ]
    return []


@dataclass
class VerifyReport:
    """Result of ``verify_dataset``.

    Attributes:
        root: The dataset directory.
        num_ok: Episodes that passed every check.
        corrupt: Episode id -> problems (each names the file).
        missing_ids: Ids in ``0..num_episodes_requested-1`` with no committed episode (gaps;
            ``collect --resume`` fills them).
        temp_dirs: In-flight leftovers from an interrupted or running collector (ignored by
            readers).
        set_aside: Broken episodes that ``collect --resume`` moved aside and collected again.
    """

    root: Path
    num_ok: int = 0
    corrupt: dict[int, list[str]] = field(default_factory=dict)
    missing_ids: list[int] = field(default_factory=list)
    temp_dirs: list[Path] = field(default_factory=list)
    set_aside: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no committed episode is corrupt (gaps and temp dirs are not errors)."""
        return not self.corrupt

    def lines(self) -> list[str]:
        """Human-readable report, one finding per line."""
        out = [f"{self.root}: {self.num_ok} episodes OK, {len(self.corrupt)} corrupt"]
        for episode_id, problems in sorted(self.corrupt.items()):
            out.extend(f"CORRUPT episode {episode_id}: {p}" for p in problems)
        if self.missing_ids:
            shown = ", ".join(map(str, self.missing_ids[:20])) + (
                " ..." if len(self.missing_ids) > 20 else ""
            )
            out.append(
                f"missing {len(self.missing_ids)} episode ids "
                f"(collect --resume fills them): {shown}"
            )
        out.extend(
            f"in-flight leftover (ignored, removed by --resume): {p}" for p in self.temp_dirs
        )
        out.extend(f"broken copy set aside by --resume (ignored): {p}" for p in self.set_aside)
        return out


def verify_dataset(root: Path | str, checksums: bool = True) -> VerifyReport:
    """Check every committed episode of ``root``: structure, shapes vs manifest, checksums.

    A corrupt episode is reported, never modified; the other episodes stay readable.

    Raises:
        FileNotFoundError, ValueError: ``root`` has no valid manifest.
    """
    root = Path(root)
    manifest = read_manifest(root)
    report = VerifyReport(
        root=root, temp_dirs=list_temp_paths(root), set_aside=list_set_aside_paths(root)
    )
    ids = list_episode_ids(root)
    for episode_id in ids:
        problems = episode_problems(root, episode_id, manifest, checksums)
        if problems:
            report.corrupt[episode_id] = problems
        else:
            report.num_ok += 1
    requested = int(manifest.get("num_episodes_requested", 0))
    present = set(ids)
    report.missing_ids = [i for i in range(requested) if i not in present]
    return report


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def dataset_summary(root: Path | str) -> dict[str, Any]:
    """Manifest plus statistics computed from the episodes' metadata (no array is read).

    Returns:
        ``{"manifest": ..., "stats": {...}}`` with episode/step/frame counts, length and return
        statistics, success rate, episodes per policy, bytes on disk, gaps and leftovers.
    """
    root = Path(root)
    manifest = read_manifest(root)
    lengths, returns, successes = [], [], []
    policies: dict[str, int] = {}
    unreadable = []
    for episode_id in list_episode_ids(root):
        try:
            meta = read_meta(episode_path(root, episode_id))
            length = int(meta["length"])
            episode_return = float(meta.get("return", np.nan))
            policy = meta.get("policy", {})
            name = str(policy.get("name", "?")) if isinstance(policy, dict) else "?"
        except (ValueError, KeyError, TypeError):  # a hand-edited or damaged meta.json
            unreadable.append(episode_id)
            continue
        lengths.append(length)
        returns.append(episode_return)
        if meta.get("success") is not None:
            successes.append(bool(meta["success"]))
        policies[name] = policies.get(name, 0) + 1
    requested = int(manifest.get("num_episodes_requested", 0))
    present = set(list_episode_ids(root))
    stats: dict[str, Any] = {
        "episodes": len(lengths),
        "steps": int(sum(lengths)),
        "frames": int(sum(lengths) + len(lengths)),
        "episode_length": _describe(lengths),
        "episode_return": _describe(returns),
        "success_rate": float(np.mean(successes)) if successes else None,
        "episodes_per_policy": policies,
        "disk_bytes": _disk_bytes(root),
        "unreadable_metadata": unreadable,
        "missing_ids": [i for i in range(requested) if i not in present],
        "in_flight_leftovers": [str(p) for p in list_temp_paths(root)],
    }
    return {"manifest": manifest, "stats": stats}


def _describe(values: list[float]) -> dict[str, float] | None:
    """Mean, std, min and max of the finite values, and how many were not finite (a return
    missing from a meta.json, or NaN: it made every statistic NaN, and ``--json`` print
    ``NaN``, which is not JSON)."""
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    if not len(finite):
        return None if not values else {"nonfinite": len(array)}
    described = {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }
    return described | ({"nonfinite": len(array) - len(finite)} if len(finite) < len(array) else {})
