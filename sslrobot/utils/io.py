"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(
    path: str | Path, write: Callable[[BinaryIO], None], *, sync_dir: bool = False
) -> Path:
    """Write through ``write(file)`` into a temp file beside ``path``, fsync, then rename.

    Args:
        path: The file to create or replace; missing parent directories are created.
        write: Writes the whole content into the open binary file it is given.
        sync_dir: Also fsync the directory after the rename, so that the rename itself
            survives a power loss (a process crash is covered without it).

    Raises:
        OSError: naming ``path`` (with the original ``errno``) when the directory is unwritable
            or the disk is full; the previous file at ``path``, if any, is left untouched.
    """

    def fill(fd: int, tmp: Path) -> None:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())

    return _replace(Path(path), fill, ".tmp", sync_dir)


def atomic_write_to_name(
    path: str | Path, write: Callable[[Path], None], *, sync_dir: bool = False
) -> Path:
    """Like ``atomic_write``, for writers that need a file name rather than an open file.

    ``write(tmp)`` gets a temp path beside ``path`` with the same suffix (ffmpeg and SB3 pick
    the format, or append an extension, from it), writes the whole file there, and closes it.
    """

    def fill(fd: int, tmp: Path) -> None:
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as file:
            os.fsync(file.fileno())

    path = Path(path)
    return _replace(path, fill, path.suffix, sync_dir)


def atomic_copy(source: str | Path, target: str | Path) -> Path:
    """``shutil.copyfile`` that leaves ``target`` whole or as it was, like every artifact."""
    return atomic_write_to_name(target, lambda tmp: shutil.copyfile(source, tmp))


def temp_prefix(path: str | Path) -> str:
    """How the names of in-flight temp files for ``path`` start (for cleanup and checks)."""
    return f".{Path(path).name}."


#: A temp file ``_replace`` makes: ``.NAME.`` (``temp_prefix``), mkstemp's 8 random
#: characters, then ``.tmp`` or NAME's own suffix.
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[A-Za-z0-9]+)?")


def remove_interrupted_writes(root: str | Path) -> list[Path]:
    """Remove, under ``root``, the temp files of atomic writes that a kill cut short (a kill
    -9 skips their cleanup, and nothing else ever removed them: whole weights and videos).

    Only files named as ``_replace`` names them, with the suffix it gives; call it only where
    no other process writes under ``root`` (under the lock of the command that owns it).
    Returns the removed paths.
    """
    removed = []
    for folder, _, files in os.walk(root):
        for name in files:
            match = _TEMP_NAME.fullmatch(name)
            if match is None:
                continue
            suffix = match.group("suffix") or ""
            if suffix not in (".tmp", Path(match.group("name")).suffix):
                continue
            path = Path(folder) / name
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _replace(path: Path, fill: Callable[[int, Path], None], suffix: str, sync_dir: bool) -> Path:
    """Create a temp file beside ``path``, let ``fill`` write it (and own ``fd``), rename it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=suffix, dir=path.parent)
    except OSError as error:
        raise _naming(error, path) from error
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts are meant to be shared
        except BaseException:
            os.close(fd)
            raise
        fill(fd, tmp)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _naming(error, path) from error
        raise
    if sync_dir:  # the new file is in place: a failure here must not say it was not written
        try:
            fsync_dir(path.parent)
        except OSError as error:
            raise OSError(
                error.errno, f"wrote {path} but could not sync its directory: {error.strerror}"
            ) from error
    return path


def _naming(error: OSError, path: Path) -> OSError:
    """The same kind of error (errno kept), with a message that names ``path``."""
    return OSError(error.errno, f"cannot write {path}: {error.strerror or error}")


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it: setting it to 0
    and back gave a file another thread created meanwhile mode 0666."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: str | Path) -> None:
    """Flush a directory's entries (after a create or rename) so they survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path, *, fsync: bool = False) -> None:
    """``mkdir -p``; with ``fsync``, flush each created folder's entry in its parent, top down,
    so that a power loss cannot lose the folder durable writes go into (their own fsyncs
    reach the files and the folder's entries, not the folder's place in its parent)."""
    created = []
    ancestor = Path(path)
    while not ancestor.exists() and ancestor != ancestor.parent:
        created.append(ancestor)
        ancestor = ancestor.parent
    Path(path).mkdir(parents=True, exist_ok=True)
    if fsync:
        for folder in reversed(created):
            fsync_dir(folder.parent)


def atomic_write_text(path: str | Path, text: str, *, sync_dir: bool = False) -> Path:
    return atomic_write(path, lambda file: file.write(text.encode()), sync_dir=sync_dir)


def atomic_write_json(path: str | Path, value: Any, *, sync_dir: bool = False) -> Path:
    text = json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write_text(path, text, sync_dir=sync_dir)


#: The lock file a command holds in its ``--out`` directory while it writes there.
OUTPUT_LOCK = ".sslrobot.lock"

#: What ``flock`` raises on a filesystem without it (not "another process holds it").
_NO_FLOCK = frozenset({errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP})


@contextlib.contextmanager
def output_lock(out: str | Path, command: str) -> Iterator[None]:
    """Hold ``out``'s writer lock (making ``out``): a second ``command`` writing the same
    directory, say a batch job requeued while the first still runs, is refused instead of
    pruning the first one's checkpoints and overwriting its files.

    A block that fails having written nothing beside the lock (a refused encoder, device or
    demonstrations) leaves no trace: the lock file this call made, and the folders, are
    removed, else a later ``collect --out`` there was refused as a directory not its own."""
    out = Path(out)
    made = next((p for p in (*reversed(out.parents), out) if not p.exists()), None)
    made_lock = not (out / OUTPUT_LOCK).exists()
    out.mkdir(parents=True, exist_ok=True)
    busy = (
        f"another {command} is writing {out}; wait for it to finish (its --resume continues "
        "it if it is stopped) or choose another --out"
    )
    with exclusive_lock(out / OUTPUT_LOCK, busy):
        try:
            yield
        except BaseException:
            if made_lock:
                _remove_if_untouched(out, made)
            raise


def _remove_if_untouched(out: Path, made: Path | None) -> None:
    """Remove ``out``'s lock file, and the folders from ``out`` up to ``made`` (the first
    this run made), when nothing else was written there. Still under the lock, so no other
    writer can have taken it."""
    with contextlib.suppress(OSError):
        if [entry.name for entry in out.iterdir()] != [OUTPUT_LOCK]:
            return
        (out / OUTPUT_LOCK).unlink()
        if made is None:
            return
        for folder in (out, *out.parents):
            folder.rmdir()
            if folder == made:
                break


@contextlib.contextmanager
def exclusive_lock(path: str | Path, busy: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block.

    The operating system drops the lock when the process exits, even on SIGKILL, so a killed
    job never leaves a stale lock behind to clear by hand.

    Args:
        path: The lock file.
        busy: The message when another process holds it (say who, and what to do).
        wait: Wait for the other process instead of raising (for short critical sections).

    Raises:
        BlockingIOError: ``busy``, with the lock's path, if another process holds the lock.
        OSError: from creating the lock file (e.g. an unwritable directory).
    """
    path = Path(path)
    try:  # the umask decides who else may take it, as for every artifact
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        if not path.is_file():
            raise
        fd = os.open(path, os.O_RDONLY)  # another user's lock file: flock needs no write
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise BlockingIOError(error.errno, f"{busy} (lock {path})") from None
        except OSError as error:
            if error.errno not in _NO_FLOCK:
                raise
            raise OSError(
                error.errno,
                f"cannot lock {path}: its filesystem does not support flock ({error.strerror}; "
                "e.g. Lustre without the flock mount option, NFS without a lock service); "
                "write to a local or flock-capable filesystem",
            ) from error
        yield
    finally:
        os.close(fd)
