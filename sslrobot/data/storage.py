"""On-disk episode layout: one file per episode, committed atomically (format 2).

Layout of a dataset directory (chosen by measurement, see ``scripts/bench_data.py``)::

    DIR/manifest.json                  dataset-level description (see manifest.py)
    DIR/episodes/ep_000042.npz         one episode: an uncompressed zip (``archive.py``) of
        pixels.npy                     uint8 (L+1, H, W, 3)
        proprio.npy                    float32 (L+1, P)
        action.npy                     float32 (L, A)
        reward.npy                     float32 (L,)
        terminated.npy                 bool (L,)
        truncated.npy                  bool (L,)
        state.eval_only.npy            float32 (L+1, S), privileged: probes/experts only
        meta.json                      length, seed, policy, size/shape/dtype of every array

An episode is written to ``episodes/.tmp-...`` and linked to ``ep_<id>.npz`` only once it is
complete, so a visible episode is always whole; a crash leaves at most a ``.tmp-`` file, which
readers ignore and ``collect --resume`` removes. Members are stored uncompressed, so a reader
maps or reads exactly the frames of the windows it samples; every member has a CRC-32.

Format 1 (datasets written before format 2, still read and resumed in their own format) kept
each episode as a directory ``ep_<id>/`` of the same ``.npy`` files plus ``meta.json`` with a
sha256 per file, committed by renaming the directory. Format 2 writes one file instead of
eight plus a directory: on ext4 here file creation was most of what storage added to the
collector's loop.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sslrobot.data.archive import crc_problems, list_members, read_json_member, write_archive
from sslrobot.data.fileio import write_error, write_new_file
from sslrobot.utils.io import fsync_dir

#: Dataset format versions this module reads and writes (``manifest.json``'s format_version).
FORMAT_VERSIONS: tuple[int, ...] = (1, 2)
#: What new datasets are written in.
CURRENT_FORMAT_VERSION = 2
EPISODES_DIR = "episodes"
EPISODE_PREFIX = "ep_"
ARCHIVE_SUFFIX = ".npz"
TMP_PREFIX = ".tmp-"
#: Committed episodes found broken by ``collect --resume`` are renamed aside, never deleted.
SET_ASIDE_PREFIX = ".broken-"
META_NAME = "meta.json"
#: Array name -> member (file) name. The privileged state's name says it is for evaluation only.
ARRAY_FILES: dict[str, str] = {
    "pixels": "pixels.npy",
    "proprio": "proprio.npy",
    "action": "action.npy",
    "reward": "reward.npy",
    "terminated": "terminated.npy",
    "truncated": "truncated.npy",
    "state": "state.eval_only.npy",
}
#: Arrays that no trainer should read: loaded only with ``include_state=True``.
EVAL_ONLY_ARRAYS: tuple[str, ...] = ("state",)
#: Arrays with one row per frame (L+1); the others have one row per step (L).
FRAME_ARRAYS: tuple[str, ...] = ("pixels", "proprio", "state")
#: Required dtype per array.
ARRAY_DTYPES: dict[str, np.dtype] = {
    "pixels": np.dtype(np.uint8),
    "proprio": np.dtype(np.float32),
    "action": np.dtype(np.float32),
    "reward": np.dtype(np.float32),
    "terminated": np.dtype(np.bool_),
    "truncated": np.dtype(np.bool_),
    "state": np.dtype(np.float32),
}
REQUIRED_ARRAYS: tuple[str, ...] = tuple(k for k in ARRAY_FILES if k not in EVAL_ONLY_ARRAYS)
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArrayLocation:
    """Where one array of one episode lies: ``shape``/``dtype`` data from byte ``offset`` of
    ``path`` (its own ``.npy`` file in format 1, the episode's archive in format 2)."""

    path: Path
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def episode_dir_name(episode_id: int) -> str:
    """Name of episode ``episode_id`` without suffix (zero-padded: names sort like numbers)."""
    return f"{EPISODE_PREFIX}{episode_id:06d}"


def episode_path(root: Path, episode_id: int) -> Path:
    """Path of committed episode ``episode_id`` under dataset ``root``: its archive (format 2)
    or, in a format-1 dataset, its directory; the archive's path if neither exists."""
    directory = Path(root) / EPISODES_DIR / episode_dir_name(episode_id)
    archive = directory.with_name(directory.name + ARCHIVE_SUFFIX)
    if not archive.exists() and directory.is_dir():
        return directory
    return archive


def is_archive(path: Path) -> bool:
    """Whether a committed episode path is a format-2 archive (else a format-1 directory)."""
    return Path(path).suffix == ARCHIVE_SUFFIX


def list_episode_ids(root: Path) -> list[int]:
    """Sorted ids of the committed (complete) episodes under ``root``; temp files are ignored."""
    directory = Path(root) / EPISODES_DIR
    if not directory.is_dir():
        return []
    ids = set()
    for entry in os.scandir(directory):
        name = entry.name
        if not name.startswith(EPISODE_PREFIX):
            continue
        digits = name[len(EPISODE_PREFIX) :].removesuffix(ARCHIVE_SUFFIX)
        if digits.isdigit():
            ids.add(int(digits))
    return sorted(ids)


def list_temp_paths(root: Path) -> list[Path]:
    """Leftover in-flight episodes (from a crash or a running collector): files or, from a
    format-1 writer, directories."""
    directory = Path(root) / EPISODES_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(TMP_PREFIX))


def list_set_aside_paths(root: Path) -> list[Path]:
    """Broken episodes that ``collect --resume`` moved aside before collecting them again."""
    directory = Path(root) / EPISODES_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(SET_ASIDE_PREFIX))


def remove_path(path: Path) -> None:
    """Delete a file or a directory tree (in-flight leftovers of either format)."""
    if Path(path).is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):  # e.g. never created: cleanup must not mask errors
            os.unlink(path)


def set_aside(root: Path, episode_id: int) -> Path:
    """Rename a committed episode out of the dataset (kept for inspection); return where to."""
    source = episode_path(root, episode_id)
    target = source.with_name(f"{SET_ASIDE_PREFIX}{source.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(source, target)
    except OSError as error:
        raise write_error(source, "move aside broken episode", error) from error
    return target


def temp_dir_prefix(episode_id: int) -> str:
    """Prefix of the temp files (or directories) that may hold an in-flight ``episode_id``."""
    return f"{TMP_PREFIX}{episode_dir_name(episode_id)}-"


def temp_dir_episode_id(path: Path) -> int | None:
    """Episode id of an in-flight temp path (``None`` if the name is not one of ours)."""
    prefix = TMP_PREFIX + EPISODE_PREFIX
    name = Path(path).name
    if not name.startswith(prefix):
        return None
    digits = name[len(prefix) :].split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


def _npy_chunks(array: np.ndarray) -> list[bytes | memoryview]:
    """The bytes of ``np.save(array)`` as (header, data view): no copy of the data."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return [header.getvalue(), memoryview(array.reshape(-1)).cast("B")]


def validate_episode_arrays(arrays: Mapping[str, np.ndarray]) -> int:
    """Check names, dtypes and lengths of one episode's arrays; return its length L (steps).

    Raises:
        ValueError: a required array is missing, an unknown one is present, or a dtype/length
            does not follow the layout above.
    """
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    unknown = [k for k in arrays if k not in ARRAY_FILES]
    if missing or unknown:
        raise ValueError(f"episode arrays: missing {missing}, unknown {unknown}")
    length = int(arrays["action"].shape[0])
    for name, array in arrays.items():
        if array.dtype != ARRAY_DTYPES[name]:
            raise ValueError(
                f"episode array {name!r} has dtype {array.dtype}, expected {ARRAY_DTYPES[name]}"
            )
        rows = length + 1 if name in FRAME_ARRAYS else length
        if array.shape[0] != rows:
            raise ValueError(
                f"episode array {name!r} has {array.shape[0]} rows, expected {rows} (L={length})"
            )
    pixels = arrays["pixels"]
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"pixels must have shape (L+1, H, W, 3), got {pixels.shape}")
    return length


def write_episode(
    root: Path,
    episode_id: int,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    fsync: bool = False,
    format_version: int = CURRENT_FORMAT_VERSION,
) -> Path:
    """Write one episode and commit it atomically; return its path.

    Everything is written to a temp path, which becomes ``ep_<id>.npz`` (or, in format 1, the
    directory ``ep_<id>``) only once complete. Killing the process at any point leaves only the
    temp path; an episode that already exists is never overwritten. The commit alone protects
    against process crashes (SIGKILL); ``fsync=True`` also flushes the data and the directory
    to the disk around it, so that a power loss or kernel crash cannot leave a committed
    episode with missing data (it costs about as much as the env loop on a slow disk, see
    ``scripts/bench_data.py``).

    Args:
        root: Dataset directory (``episodes/`` is created if missing).
        episode_id: Episode index (its seed is ``base_seed + episode_id``).
        arrays: Episode arrays as in the module docstring (``state`` optional).
        meta: JSON-serialisable episode metadata; ``episode_id``, ``length``, ``files`` and
            ``eval_only`` are filled in here.
        fsync: Flush files and directories to the disk (power-loss safety).
        format_version: The dataset's format (1 only to extend a format-1 dataset).

    Raises:
        ValueError: the arrays do not follow the layout, or an unknown format version.
        DatasetWriteError: the disk is full or the directory is not writable; the message names
            the path, the temp path is removed and the committed episodes are untouched.
        FileExistsError: the episode is already committed.
    """
    if format_version not in FORMAT_VERSIONS:
        raise ValueError(f"format_version must be one of {FORMAT_VERSIONS}, got {format_version}")
    length = validate_episode_arrays(arrays)
    episodes_dir = Path(root) / EPISODES_DIR
    existing = episode_path(root, episode_id)
    if existing.exists():
        raise FileExistsError(f"episode {episode_id} already exists at {existing}; not overwriting")
    name = episode_dir_name(episode_id)
    final = episodes_dir / (name if format_version == 1 else name + ARCHIVE_SUFFIX)
    tmp = episodes_dir / f"{temp_dir_prefix(episode_id)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    chunks = {ARRAY_FILES[key]: _npy_chunks(array) for key, array in arrays.items()}
    files = {
        ARRAY_FILES[key]: {
            "array": key,
            "bytes": sum(len(chunk) for chunk in chunks[ARRAY_FILES[key]]),
            "dtype": array.dtype.str,
            "shape": list(array.shape),
        }
        for key, array in arrays.items()
    }
    meta = {
        **meta,
        "episode_id": int(episode_id),
        "length": length,
        "files": files,
        "eval_only": [k for k in EVAL_ONLY_ARRAYS if k in arrays],
    }
    try:
        created = not episodes_dir.is_dir()
        episodes_dir.mkdir(parents=True, exist_ok=True)
        if fsync and created:  # the new folder's own entry in the dataset directory
            fsync_dir(episodes_dir.parent)
        if format_version == 1:
            _commit_directory(tmp, final, chunks, meta, fsync)
        else:
            _commit_archive(tmp, final, chunks, meta, fsync)
        if fsync:
            fsync_dir(episodes_dir)
    except OSError as error:
        remove_path(tmp)
        if final.exists() and error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(f"episode {episode_id} already exists at {final}") from error
        raise write_error(tmp, f"write episode {episode_id} to", error) from error
    return final


def _meta_text(meta: Mapping[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True) + "\n"  # compact: the C encoder is fast


def _commit_archive(
    tmp: Path,
    final: Path,
    chunks: Mapping[str, Sequence[bytes | memoryview]],
    meta: Mapping[str, Any],
    fsync: bool,
) -> None:
    """Format 2: write the archive at ``tmp``, then link it to ``final`` (never overwrites)."""
    with open(tmp, "xb") as file:
        write_archive(file, chunks, {META_NAME: _meta_text(meta)})
        if fsync:
            file.flush()
            os.fsync(file.fileno())
    try:
        os.link(tmp, final)  # atomic, and fails with EEXIST rather than replace
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links: check, then rename
        if final.exists():
            raise FileExistsError(errno.EEXIST, "episode exists", str(final)) from None
        os.rename(tmp, final)
    else:
        os.unlink(tmp)


def _commit_directory(
    tmp: Path,
    final: Path,
    chunks: Mapping[str, Sequence[bytes | memoryview]],
    meta: dict[str, Any],
    fsync: bool,
) -> None:
    """Format 1: ``.npy`` files with a sha256 each in a directory renamed to ``final``."""
    tmp.mkdir()
    for file_name, parts in chunks.items():
        write_new_file(tmp / file_name, parts, fsync)
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        meta["files"][file_name]["sha256"] = digest.hexdigest()
    write_new_file(tmp / META_NAME, [_meta_text(meta).encode("utf-8")], fsync)
    if fsync:
        fsync_dir(tmp)
    os.rename(tmp, final)  # atomic commit; fails rather than overwrite a non-empty dir


def read_meta(path: Path) -> dict[str, Any]:
    """An episode's ``meta.json`` (``path`` from ``episode_path``: archive or directory).

    Raises:
        ValueError: the metadata is missing, corrupt or not valid JSON (names the file).
    """
    path = Path(path)
    if is_archive(path):
        meta, where = read_json_member(path, META_NAME), f"{path} member {META_NAME}"
    else:
        where = path / META_NAME
        try:
            meta = json.loads(where.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read episode metadata {where}: {error}") from error
    if not isinstance(meta, dict):  # every reader looks fields up by name
        raise ValueError(
            f"episode metadata {where} holds a JSON {type(meta).__name__}, not an object"
        )
    return meta


def read_npy_header(path: Path, offset: int = 0) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of the ``.npy`` bytes at ``offset`` of ``path``,
    reading only the header.

    Raises:
        OSError: the file cannot be read.
        ValueError: the header is damaged (NumPy parses it as Python literals, so a flipped
            bit there raises whatever the tokenizer does: all of it is named here).
    """
    with open(path, "rb") as f:
        f.seek(offset)
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except OSError:
            raise
        except Exception as error:  # any parse failure is a damaged header
            message = f"{path}: unreadable .npy header at byte {offset} ({error!r})"
            raise ValueError(message) from error
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered arrays are not written by sslrobot")
        return tuple(shape), np.dtype(dtype), f.tell()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (memory stays flat for large files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stored_files(path: Path, names: Sequence[str]) -> dict[str, tuple[Path, int, int] | str]:
    """Per stored file name: ``(file, offset, size)`` where its bytes lie, or a problem."""
    if is_archive(path):
        members = list_members(path)  # ValueError: not a complete archive
        return {
            name: (path, members[name].offset, members[name].size)
            if name in members
            else f"{path}: member {name} is missing"
            for name in names
        }
    stored: dict[str, tuple[Path, int, int] | str] = {}
    for name in names:
        try:
            stored[name] = (path / name, 0, (path / name).stat().st_size)
        except OSError as error:
            stored[name] = f"{path / name}: unreadable ({error})"
    return stored


def check_episode(path: Path, checksums: bool) -> list[str]:
    """Problems found in one committed episode (empty list: the episode is sound).

    The structural check (metadata parses, every recorded array is stored with the recorded
    size, ``.npy`` headers match the recorded shape and dtype, lengths agree) reads a few
    hundred bytes per array; ``checksums=True`` also re-reads every byte against its checksum
    (CRC-32 per archive member, sha256 per format-1 file), which catches bit flips.
    """
    return check_episode_and_meta(path, checksums)[0]


def check_episode_and_meta(path: Path, checksums: bool) -> tuple[list[str], dict[str, Any]]:
    """``check_episode``'s problems and the metadata it parsed (``{}`` if unreadable), so that
    callers that also need the metadata do not read it twice."""
    path = Path(path)
    try:
        meta = read_meta(path)
    except ValueError as error:
        return [str(error)], {}
    return _problems(path, meta, checksums), meta


def _problems(path: Path, meta: dict[str, Any], checksums: bool) -> list[str]:
    files = meta.get("files")
    length = meta.get("length")
    if not isinstance(files, dict) or not isinstance(length, int):
        return [f"{path}: metadata lacks 'files' or 'length'"]
    # A hand-edited or damaged format-1 meta.json (plain text, no checksum of its own) made
    # `data verify` and `collect --resume` fail with an AttributeError naming no file.
    malformed = [name for name, info in files.items() if not isinstance(info, dict)]
    if malformed:
        return [
            f"{path / META_NAME}: the record of {name!r} is {files[name]!r}, not an object "
            "(array, bytes, dtype, shape)"
            for name in malformed
        ]
    recorded = {info.get("array"): name for name, info in files.items()}
    problems = [
        f"{path}: array {name!r} is not recorded in {META_NAME}"
        for name in REQUIRED_ARRAYS
        if name not in recorded
    ]
    try:
        stored = _stored_files(path, list(files))
    except ValueError as error:
        return [*problems, str(error)]
    for file_name, info in files.items():
        where = stored[file_name]
        if isinstance(where, str):
            problems.append(where)
            continue
        file, offset, size = where
        label = file if file != path else f"{path} member {file_name}"
        try:
            if size != info["bytes"]:
                problems.append(
                    f"{label}: {size} bytes stored, {info['bytes']} recorded (truncated?)"
                )
                continue
            shape, dtype, _ = read_npy_header(file, offset)
        except (OSError, ValueError, KeyError) as error:
            problems.append(f"{label}: unreadable ({error})")
            continue
        rows = length + 1 if info.get("array") in FRAME_ARRAYS else length
        if list(shape) != info.get("shape") or dtype.str != info.get("dtype") or shape[0] != rows:
            problems.append(
                f"{label}: header says shape {shape} dtype {dtype.str}, recorded "
                f"{info.get('shape')} {info.get('dtype')} (episode length {length})"
            )
            continue
        if checksums and not is_archive(path) and sha256_file(file) != info.get("sha256"):
            problems.append(f"{file}: sha256 does not match the recorded checksum (corrupt)")
    if checksums and is_archive(path) and not problems:
        problems.extend(crc_problems(path))
    return problems


def locate_arrays(path: Path, names: Sequence[str]) -> dict[str, ArrayLocation]:
    """Where each of ``names`` lies in committed episode ``path`` (headers only, no data).

    Raises:
        FileNotFoundError: the episode has no such array (e.g. ``state`` for an env without
            one; names the array and the episode).
        ValueError: the episode's archive is incomplete or a header is unreadable.
    """
    path = Path(path)
    stored = _stored_files(path, [ARRAY_FILES[name] for name in names])
    locations = {}
    for name in names:
        where = stored[ARRAY_FILES[name]]
        if isinstance(where, str):
            raise FileNotFoundError(f"episode {path} has no {name!r} array ({where})")
        file, offset, _ = where
        shape, dtype, data_offset = read_npy_header(file, offset)
        locations[name] = ArrayLocation(file, data_offset, shape, dtype)
    return locations


def map_array(location: ArrayLocation, mmap: bool = True) -> np.ndarray:
    """The array at ``location``: memory-mapped read-only by default, else read into memory."""
    if location.nbytes == 0:  # an empty file region cannot be mapped
        return np.empty(location.shape, location.dtype)
    if mmap:
        return np.memmap(
            location.path, location.dtype, "r", location.offset, location.shape, order="C"
        )
    count = location.nbytes // location.dtype.itemsize
    data = np.fromfile(location.path, location.dtype, count, offset=location.offset)
    return data.reshape(location.shape)
