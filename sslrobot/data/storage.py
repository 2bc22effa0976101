"""On-disk episode layout: one directory of raw ``.npy`` files per episode, committed atomically.

Layout of a dataset directory (chosen by measurement, see ``scripts/bench_data.py --formats``)::

    DIR/manifest.json                       dataset-level description (see manifest.py)
    DIR/episodes/ep_000042/meta.json        length, seed, policy, sha256 + size of every file
    DIR/episodes/ep_000042/pixels.npy       uint8 (L+1, H, W, 3)
    DIR/episodes/ep_000042/proprio.npy      float32 (L+1, P)
    DIR/episodes/ep_000042/action.npy       float32 (L, A)
    DIR/episodes/ep_000042/reward.npy       float32 (L,)
    DIR/episodes/ep_000042/terminated.npy   bool (L,)
    DIR/episodes/ep_000042/truncated.npy    bool (L,)
    DIR/episodes/ep_000042/state.eval_only.npy  float32 (L+1, S), privileged: probes/experts only

An episode is written under ``episodes/.tmp-...`` and renamed to ``ep_<id>`` only once every
file is fsynced, so a visible episode directory is always complete; a crash leaves at most a
``.tmp-`` directory, which readers ignore and ``collect --resume`` removes. Raw ``.npy`` files
are memory-mappable, so a reader touches only the frames of the windows it samples.
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sslrobot.data.fileio import write_error, write_new_file
from sslrobot.utils.io import fsync_dir

EPISODES_DIR = "episodes"
EPISODE_PREFIX = "ep_"
TMP_PREFIX = ".tmp-"
#: Committed episodes found broken by ``collect --resume`` are renamed aside, never deleted.
SET_ASIDE_PREFIX = ".broken-"
META_NAME = "meta.json"
#: Array name -> file name. The privileged state's name says it is for evaluation only.
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


def episode_dir_name(episode_id: int) -> str:
    """Directory name of episode ``episode_id`` (zero-padded so names sort like numbers)."""
    return f"{EPISODE_PREFIX}{episode_id:06d}"


def episode_path(root: Path, episode_id: int) -> Path:
    """Path of the committed directory of ``episode_id`` under dataset ``root``."""
    return Path(root) / EPISODES_DIR / episode_dir_name(episode_id)


def list_episode_ids(root: Path) -> list[int]:
    """Sorted ids of the committed (complete) episodes under ``root``; temp dirs are ignored."""
    directory = Path(root) / EPISODES_DIR
    if not directory.is_dir():
        return []
    ids = []
    for entry in os.scandir(directory):
        name = entry.name
        if name.startswith(EPISODE_PREFIX) and name[len(EPISODE_PREFIX) :].isdigit():
            ids.append(int(name[len(EPISODE_PREFIX) :]))
    return sorted(ids)


def list_temp_dirs(root: Path) -> list[Path]:
    """Leftover in-flight episode directories (from a crash or a running collector)."""
    directory = Path(root) / EPISODES_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(TMP_PREFIX))


def list_set_aside_dirs(root: Path) -> list[Path]:
    """Broken episodes that ``collect --resume`` moved aside before collecting them again."""
    directory = Path(root) / EPISODES_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(SET_ASIDE_PREFIX))


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
    """Prefix of the temp directories that may hold an in-flight copy of ``episode_id``."""
    return f"{TMP_PREFIX}{episode_dir_name(episode_id)}-"


def temp_dir_episode_id(path: Path) -> int | None:
    """Episode id of an in-flight temp directory (``None`` if the name is not one of ours)."""
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
) -> Path:
    """Write one episode and commit it atomically; return its directory.

    Every file is written inside a temp directory, its sha256 and size go into ``meta.json``,
    then the directory is renamed to ``ep_<id>``. Killing the process at any point leaves only
    the temp directory; an episode that already exists is never overwritten. The rename alone
    protects against process crashes (SIGKILL); ``fsync=True`` also flushes every file and
    directory to the disk before and after the rename, so that a power loss or kernel crash
    cannot leave a committed episode with missing data (it costs about as much as the env
    loop on a slow disk, see ``scripts/bench_data.py``).

    Args:
        root: Dataset directory (``episodes/`` is created if missing).
        episode_id: Episode index (its seed is ``base_seed + episode_id``).
        arrays: Episode arrays as in the module docstring (``state`` optional).
        meta: JSON-serialisable episode metadata; ``episode_id``, ``length``, ``files`` and
            ``eval_only`` are filled in here.
        fsync: Flush files and directories to the disk (power-loss safety).

    Raises:
        ValueError: the arrays do not follow the layout.
        DatasetWriteError: the disk is full or the directory is not writable; the message names
            the path, the temp directory is removed and the committed episodes are untouched.
        FileExistsError: the episode is already committed.
    """
    length = validate_episode_arrays(arrays)
    episodes_dir = Path(root) / EPISODES_DIR
    final = episodes_dir / episode_dir_name(episode_id)
    if final.exists():
        raise FileExistsError(f"episode {episode_id} already exists at {final}; not overwriting")
    tmp = episodes_dir / f"{temp_dir_prefix(episode_id)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    files: dict[str, dict[str, Any]] = {}
    try:
        episodes_dir.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        for name, array in arrays.items():
            chunks = _npy_chunks(array)
            write_new_file(tmp / ARRAY_FILES[name], chunks, fsync)
            digest = hashlib.sha256()
            for chunk in chunks:
                digest.update(chunk)
            files[ARRAY_FILES[name]] = {
                "array": name,
                "sha256": digest.hexdigest(),
                "bytes": sum(len(chunk) for chunk in chunks),
                "dtype": array.dtype.str,
                "shape": list(array.shape),
            }
        full_meta = {
            **meta,
            "episode_id": int(episode_id),
            "length": length,
            "files": files,
            "eval_only": [k for k in EVAL_ONLY_ARRAYS if k in arrays],
        }
        text = json.dumps(full_meta, sort_keys=True) + "\n"  # compact: the C encoder is fast
        write_new_file(tmp / META_NAME, [text.encode("utf-8")], fsync)
        if fsync:
            fsync_dir(tmp)
        os.rename(tmp, final)  # atomic commit; fails rather than overwrite a non-empty dir
        if fsync:
            fsync_dir(episodes_dir)
    except OSError as error:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        if final.exists() and error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(f"episode {episode_id} already exists at {final}") from error
        raise write_error(tmp, f"write episode {episode_id} to", error) from error
    return final


def read_meta(episode_dir: Path) -> dict[str, Any]:
    """Parse an episode's ``meta.json``.

    Raises:
        ValueError: the file is missing or not valid JSON (names the file).
    """
    path = Path(episode_dir) / META_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read episode metadata {path}: {error}") from error


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of a ``.npy`` file, reading only its header."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
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


def check_episode(episode_dir: Path, checksums: bool) -> list[str]:
    """Problems found in one committed episode directory (empty list: the episode is sound).

    The structural check (metadata parses, every recorded file exists with the recorded size,
    ``.npy`` headers match the recorded shape and dtype, lengths agree) reads a few hundred
    bytes per file; ``checksums=True`` also re-hashes every file, which catches bit flips.
    """
    episode_dir = Path(episode_dir)
    try:
        meta = read_meta(episode_dir)
    except ValueError as error:
        return [str(error)]
    problems: list[str] = []
    files = meta.get("files")
    length = meta.get("length")
    if not isinstance(files, dict) or not isinstance(length, int):
        return [f"{episode_dir / META_NAME}: missing 'files' or 'length'"]
    recorded = {info.get("array"): name for name, info in files.items()}
    for name in REQUIRED_ARRAYS:
        if name not in recorded:
            problems.append(f"{episode_dir}: array {name!r} is not recorded in {META_NAME}")
    for file_name, info in files.items():
        path = episode_dir / file_name
        try:
            size = path.stat().st_size
            if size != info["bytes"]:
                problems.append(
                    f"{path}: {size} bytes on disk, {info['bytes']} recorded (truncated?)"
                )
                continue
            shape, dtype, _ = read_npy_header(path)
        except (OSError, ValueError, KeyError) as error:
            problems.append(f"{path}: unreadable ({error})")
            continue
        array = info.get("array")
        rows = length + 1 if array in FRAME_ARRAYS else length
        if list(shape) != info.get("shape") or dtype.str != info.get("dtype") or shape[0] != rows:
            problems.append(
                f"{path}: header says shape {shape} dtype {dtype.str}, recorded "
                f"{info.get('shape')} {info.get('dtype')} (episode length {length})"
            )
            continue
        if checksums and sha256_file(path) != info.get("sha256"):
            problems.append(f"{path}: sha256 does not match the recorded checksum (corrupt)")
    return problems


def load_array(episode_dir: Path, name: str, mmap: bool = True) -> np.ndarray:
    """Load one array of an episode, memory-mapped read-only by default.

    Raises:
        FileNotFoundError: the episode has no such array (e.g. ``state`` for an env without one).
    """
    path = Path(episode_dir) / ARRAY_FILES[name]
    if not path.exists():
        raise FileNotFoundError(f"episode {episode_dir} has no {name!r} array ({path} missing)")
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
