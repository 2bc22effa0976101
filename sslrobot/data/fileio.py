"""Dataset writes: errors that name the path and a remedy, on top of ``sslrobot.utils.io``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sslrobot.utils.io import atomic_write


class DatasetWriteError(OSError):
    """Writing to a dataset directory failed (disk full, permission, missing directory).

    Subclasses ``OSError`` (keeping ``errno``) so callers that catch ``OSError`` still do; the
    message always names the path so the user knows which disk or directory to fix.
    """


def write_error(path: Path, action: str, error: OSError) -> DatasetWriteError:
    """Wrap ``error`` into a ``DatasetWriteError`` whose message names ``path`` and a remedy."""
    reason = error.strerror or str(error)
    return DatasetWriteError(error.errno, f"cannot {action} {path}: {reason}{_remedy(error)}")


def _remedy(error: OSError) -> str:
    """What the user can do about a failed write, from its ``errno``."""
    if error.errno in (28, 122):  # ENOSPC, EDQUOT
        return "; free some space or choose another --out (episodes already written are intact)"
    if error.errno in (13, 30, 1):  # EACCES, EROFS, EPERM
        return "; choose a writable --out directory"
    return ""


def write_new_file(path: Path, chunks: Sequence[bytes | memoryview], fsync: bool) -> None:
    """Write ``chunks`` to a new file at ``path`` (fails if it exists); fsync when asked.

    Not atomic on its own: callers write into a temp location and rename.
    """
    with open(path, "xb") as f:
        for chunk in chunks:
            f.write(chunk)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (``utils.io.atomic_write``).

    The directory is fsynced too: the manifest is what makes a dataset directory one.

    Raises:
        DatasetWriteError: the directory is not writable or the disk is full; ``path`` keeps its
            previous content and no temp file is left behind.
    """
    try:
        atomic_write(path, lambda file: file.write(data), sync_dir=True)
    except OSError as error:  # its message already says "cannot write <path>: <reason>"
        raise DatasetWriteError(error.errno, f"{error.strerror}{_remedy(error)}") from error


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON (stable diffs between runs).

    Unlike ``utils.io.atomic_write_json`` there is no ``default=str``: a value that is not JSON
    is a bug in the manifest, not something to stringify.
    """
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
