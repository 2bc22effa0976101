"""Which command's output a path is, checked before a command writes there.

Each command marks its output directory with one file (a dataset's manifest, an encoder's
configs, a policy's config). A command given another's directory, or one of its files, as
``--out`` refuses it by name before any work, instead of mixing its own files in or
overwriting the file that makes the other artifact loadable (``evaluate --out
DATA/manifest.json`` left a dataset no command could read).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The file that marks each command's output directory, and what that directory is.
MARKERS: tuple[tuple[str, str], ...] = (
    ("manifest.json", "a dataset (`sslrobot collect --out`)"),
    ("pretrain_config.json", "an encoder (`sslrobot pretrain --out`)"),
    ("encoder_config.json", "an encoder (`sslrobot pretrain --out`)"),
    ("policy_config.json", "a policy (`sslrobot train-policy --out`)"),
)
DATASET, ENCODER, POLICY = MARKERS[0][1], MARKERS[1][1], MARKERS[3][1]
#: Larger than any evaluation or probe record (an evaluation of thousands of episodes is a
#: few MB): a bigger file is not one, and is not read whole to find out.
MAX_RESULT_BYTES = 64 * 2**20


def artifact_kind(directory: Path) -> str | None:
    """What ``directory`` holds by its marker file (``DATASET``, ``ENCODER``, ``POLICY``), or
    None for a directory no command marked (or no directory)."""
    return next((kind for name, kind in MARKERS if (Path(directory) / name).is_file()), None)


def refuse_path_under_file(path: Path, option: str = "--out") -> None:
    """Refuse a path one of whose parents is a file (the OS's 'Not a directory' or 'File
    exists' came only at the first write, naming neither the option nor the file).

    Raises:
        ValueError: naming the option, the path and the file in the way.
    """
    path = Path(path)
    blocking = next((p for p in path.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ValueError(f"{option} {path}: {blocking} is a file, not a directory")


def refuse_other_artifact(out: Path, own: str, option: str = "--out") -> None:
    """Refuse, before any work, an output directory that is a file, lies under a file, or is
    another command's output (``own``: the kind this command writes, which it may reuse).

    Raises:
        ValueError: naming the directory and what it is.
    """
    out = Path(out)
    refuse_path_under_file(out, option)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {out} is a file, not a directory; choose another {option}")
    kind = artifact_kind(out)
    if kind is not None and kind != own:
        raise ValueError(
            f"{option} {out} is {kind}, not {own.split(' (')[0]}'s directory; choose another "
            f"{option}"
        )


def check_result_file(
    path: Path, is_same_kind: Callable[[Any], bool], kind: str, option: str = "--out"
) -> None:
    """Refuse, before any work, a JSON result path that could not be written, or whose
    writing would destroy something else: a directory, a path under a file, an unwritable
    directory, or an existing file that is not a ``kind`` (a dataset's manifest, a policy's
    config: the command used to overwrite it). An earlier result of the same kind is replaced,
    as a rerun should.

    Raises:
        ValueError: a directory, a file in the way, or a file of another kind.
        OSError: the nearest existing folder of the path cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a directory; give a file name (result.json)")
    refuse_path_under_file(path, option)
    if path.exists():
        same = path.is_file() and path.stat().st_size <= MAX_RESULT_BYTES
        try:  # read only a regular file of a result's size: a FIFO or a device would block
            same = same and is_same_kind(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            same = False
        if not same:
            owner = artifact_kind(path.parent)
            held = f" (a file of {owner})" if owner is not None else ""
            raise ValueError(
                f"{option} {path} exists and is not {kind}{held}: writing would overwrite it; "
                f"choose another {option}, or delete the file if it is yours to lose"
            )
    # The nearest folder that exists must take the new ones: checked, not made, so that a
    # run refused after this check (a device, a policy) leaves no empty folder behind; the
    # result's atomic write makes them.
    parent = next(p for p in path.parents if p.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OSError(f"cannot write {option} {path}: {parent} is not writable")
