"""Durable, atomic file writes: a reader sees the old content or the new, never a torn file."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class DatasetWriteError(OSError):
    """Writing to a dataset directory failed (disk full, permission, missing directory).

    Subclasses ``OSError`` (keeping ``errno``) so callers that catch ``OSError`` still do; the
    message always names the path so the user knows which disk or directory to fix.
    """


def write_error(path: Path, action: str, error: OSError) -> DatasetWriteError:
    """Wrap ``error`` into a ``DatasetWriteError`` whose message names ``path`` and a remedy."""
    reason = error.strerror or str(error)
    hint = ""
    if error.errno in (28, 122):  # ENOSPC, EDQUOT
        hint = "; free some space or choose another --out (episodes already written are intact)"
    elif error.errno in (13, 30, 1):  # EACCES, EROFS, EPERM
        hint = "; choose a writable --out directory"
    return DatasetWriteError(error.errno, f"cannot {action} {path}: {reason}{hint}")


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (after create/rename) so the rename survives a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    """Replace ``path`` with ``data`` atomically: temp file in the same dir, fsync, os.replace.

    Raises:
        DatasetWriteError: the directory is not writable or the disk is full; ``path`` keeps its
            previous content and no temp file is left behind.
    """
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write_new_file(tmp, [data], fsync=True)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise write_error(path, "write", error) from error


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON (stable diffs between runs)."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
