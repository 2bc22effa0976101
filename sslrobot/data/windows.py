"""PyTorch dataset of fixed-length windows (frames t..t+K, actions t..t+K-1) for SSL training."""

from __future__ import annotations

import bisect
import contextlib
import errno
import numbers
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from sslrobot.data.dataset import open_dataset, split_episode_ids
from sslrobot.data.storage import FRAME_ARRAYS, episode_path, locate_arrays
from sslrobot.data.verify import episode_problems

Split = Literal["train", "val", "all"]
#: Arrays in every window (the evaluation-only ``state`` only on request).
_WINDOW_ARRAYS = ("pixels", "proprio", "action", "reward")


class WindowDataset(Dataset):
    """Windows of ``num_steps`` transitions that never cross an episode boundary.

    Item ``j`` is a dict of tensors for one window starting at step ``t`` of one episode:
    ``pixels`` uint8 (K+1, H, W, 3), ``proprio`` float32 (K+1, P), ``action`` float32 (K, A),
    ``reward`` float32 (K,) and, only with ``include_state=True``, the evaluation-only
    ``state`` float32 (K+1, S). An episode of L steps gives L-K+1 windows (none if L < K).

    Memory: each item reads exactly its window's rows with ``os.preadv`` into fresh arrays (no
    memory map, so no file pages are charged to the process), and at most
    ``max_open_episodes`` episodes keep their files open (LRU): resident memory stays flat as
    the dataset grows. By default that is a share of the process's open-file limit
    (``default_open_episodes``): with windows drawn at random, an LRU much smaller than the
    dataset reopens a file for nearly every window, which cost half the reading time. The
    index holds one path per episode and one offset per array and episode (one file per
    episode in format 2, one per array in format 1). Files are opened
    lazily in whichever process reads, and the dataset pickles without open files, so it works
    with ``DataLoader(num_workers>0)``; threads may share one reader (a window's files are
    opened and read under a lock, so an eviction never closes a file another thread reads).

    Episodes that fail the check (truncated or missing files, headers or shapes that disagree
    with the metadata, and with ``verify_checksums=True`` a checksum mismatch) are skipped with a
    warning, or refused with ``strict=True``.
    """

    def __init__(
        self,
        root: Path | str,
        num_steps: int,
        split: Split = "train",
        val_fraction: float = 0.1,
        seed: int = 0,
        include_state: bool = False,
        strict: bool = False,
        verify_checksums: bool = False,
        max_open_episodes: int | None = None,
        arrays: tuple[str, ...] = _WINDOW_ARRAYS,
        exclude_episodes: Collection[int] = (),
    ) -> None:
        """Index the windows of one split.

        Args:
            root: Dataset directory.
            num_steps: K, transitions per window (>= 0; K=0 gives single frames).
            split: ``"train"``, ``"val"`` or ``"all"``; by episode, see ``split_episode_ids``.
            val_fraction: Fraction of episodes held out for validation.
            seed: Seed of the split.
            include_state: Add the privileged ``state`` (evaluation/probes only).
            strict: Raise instead of warning when an episode is corrupt.
            verify_checksums: Check every byte's checksum when indexing (slower; catches bit
                flips).
            max_open_episodes: Episodes whose files stay open at once per process (default:
                ``default_open_episodes``).
            arrays: Which of ``pixels``, ``proprio``, ``action``, ``reward`` each window holds
                (pretraining reads only ``("pixels", "action")``).
            exclude_episodes: Episode ids to leave out of the split (e.g. those a model trained
                on before the dataset grew, which a grown split can move into ``val``).

        Raises:
            ValueError: bad arguments, a corrupt episode with ``strict=True``, or no window.
        """
        if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral):
            raise ValueError(f"num_steps must be an integer >= 0, got {num_steps!r}")
        num_steps = int(num_steps)  # NumPy's integers too
        if num_steps < 0:
            raise ValueError(f"num_steps must be an integer >= 0, got {num_steps!r}")
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        if max_open_episodes is not None and max_open_episodes < 1:
            raise ValueError(f"max_open_episodes must be >= 1, got {max_open_episodes}")
        dataset = open_dataset(root)
        self.root = dataset.root
        self.manifest = dataset.manifest
        self.num_steps = num_steps
        self.include_state = include_state
        self.max_open_episodes = max_open_episodes
        train, val = split_episode_ids(dataset.episode_ids, val_fraction, seed)
        candidates = {"train": train, "val": val, "all": dataset.episode_ids}[split]
        excluded = {int(i) for i in exclude_episodes}
        candidates = [i for i in candidates if i not in excluded]
        self.skipped: dict[int, list[str]] = {}
        unknown = sorted(set(arrays) - set(_WINDOW_ARRAYS))
        if unknown or not arrays:
            raise ValueError(f"arrays must name some of {_WINDOW_ARRAYS}, got {arrays!r}")
        self._names = [*arrays, *(["state"] if include_state else [])]
        repeated = sorted({name for name in self._names if self._names.count(name) > 1})
        if repeated:  # one offset per name: a repeat would misalign every episode's table
            raise ValueError(
                f"arrays name {repeated} more than once (with include_state={include_state}), "
                f"got {arrays!r}"
            )
        self._rows: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}  # name -> row dtype, shape
        episode_ids, lengths, offsets = [], [], []
        self._paths: list[tuple[str, ...]] = []  # per episode, the file of each array
        for episode_id in candidates:
            problems = episode_problems(self.root, episode_id, self.manifest, verify_checksums)
            if not problems:
                path = episode_path(self.root, episode_id)
                episode_paths, episode_offsets, length, problems = self._layout(path)
            if problems:
                message = f"episode {episode_id} of {self.root} is corrupt: " + "; ".join(problems)
                if strict:
                    raise ValueError(message + " (strict=True; run `sslrobot data verify`)")
                warnings.warn(message + "; skipping it (run `sslrobot data verify`)", stacklevel=2)
                self.skipped[episode_id] = problems
                continue
            episode_ids.append(episode_id)
            lengths.append(length)
            offsets.append(episode_offsets)
            self._paths.append(episode_paths)
        self.episode_ids: list[int] = episode_ids
        #: Files per episode (one in format 2), and whether the LRU's size is the default.
        self.files_per_episode = max((len(set(paths)) for paths in self._paths), default=1)
        self.default_open = max_open_episodes is None
        if self.default_open:
            self.max_open_episodes = default_open_episodes(self.files_per_episode)
        self._offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, len(self._names))
        counts = np.maximum(np.asarray(lengths, dtype=np.int64) - num_steps + 1, 0)
        self._ends = np.cumsum(counts)  # window j is in the first episode with _ends > j
        self._starts = self._ends - counts
        if len(self) == 0:
            raise ValueError(
                f"no window of {num_steps} steps in the {split!r} split of {self.root} "
                f"({len(episode_ids)} usable episodes, lengths {sorted(set(lengths))[:10]})"
            )
        self._files: OrderedDict[int, list[int]] = OrderedDict()  # position -> open fds
        self._position_of: dict[int, int] | None = None  # episode id -> position, when asked
        # Held while a window's files are opened and read: another thread's LRU eviction
        # would otherwise close a descriptor mid-read, or hand its number to another
        # episode's file (wrong frames, no error). Reads release the GIL under it anyway.
        self._lock = threading.RLock()

    def _layout(self, path: Path) -> tuple[tuple[str, ...], list[int], int, list[str]]:
        """Files and data offsets of the arrays of one episode, its length L in steps (from
        the headers; ``episode_problems`` checked them against the metadata), and problems (a
        missing array, rows unlike the other episodes')."""
        try:
            locations = locate_arrays(path, self._names)
        except (FileNotFoundError, ValueError) as error:
            return (), [], 0, [str(error)]
        files, offsets, problems = [], [], []
        texts: dict[Path, str] = {}  # one string per file: format 2 keeps every array in one
        for name, where in locations.items():
            row = self._rows.setdefault(name, (where.dtype, tuple(where.shape[1:])))
            if row != (where.dtype, tuple(where.shape[1:])):
                problems.append(
                    f"{path}: {name} rows {where.dtype} {where.shape[1:]} unlike other "
                    f"episodes' {row}"
                )
            files.append(texts.setdefault(where.path, str(where.path)))
            offsets.append(where.offset)
        name, where = next(iter(locations.items()))
        length = where.shape[0] - (1 if name in FRAME_ARRAYS else 0)
        return tuple(files), offsets, length, problems

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of the frames."""
        return tuple(self.manifest["frame_shape"])

    @property
    def action_dim(self) -> int:
        """A, the action width."""
        return int(self.manifest["action_dim"])

    @property
    def proprio_dim(self) -> int:
        """P, the proprio width."""
        return int(self.manifest["proprio_dim"])

    def _locate(self, index: int) -> tuple[int, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} windows")
        position = int(np.searchsorted(self._ends, index, side="right"))
        return position, index - int(self._starts[position])

    def locate(self, index: int) -> tuple[int, int]:
        """``(episode_id, t)`` of window ``index``: it covers frames t..t+K of that episode."""
        position, t = self._locate(index)
        return self.episode_ids[position], t

    def episode_windows(self, episode_id: int) -> tuple[int, int]:
        """``(index of the episode's first window, its number of windows)``: window
        ``first + t`` covers frames t..t+K (``locate``'s inverse).

        Raises:
            KeyError: the episode is not indexed (another split, skipped, or not collected).
        """
        if self._position_of is None:
            self._position_of = {int(e): p for p, e in enumerate(self.episode_ids)}
        position = self._position_of.get(int(episode_id))
        if position is None:
            raise KeyError(f"episode {episode_id} is not among the windows of {self.root}")
        start = int(self._starts[position])
        return start, int(self._ends[position]) - start

    def _open(self, position: int) -> list[int]:
        """One descriptor per array of an episode (the same one for arrays in one file)."""
        fds = self._files.get(position)
        if fds is None:
            by_path: dict[str, int] = {}
            try:
                for path in self._paths[position]:
                    if path not in by_path:
                        by_path[path] = self._open_file(path)
            except OSError:  # a later array's file (format 1): close the ones already open
                _close_all(list(by_path.values()))
                raise
            fds = [by_path[path] for path in self._paths[position]]
            self._files[position] = fds
            if len(self._files) > self.max_open_episodes:
                _close_all(self._files.popitem(last=False)[1])  # least recently used
        else:
            self._files.move_to_end(position)
        return fds

    def _open_file(self, path: str) -> int:
        """``os.open`` for reading; at the process's open-file limit (other readers and files
        share it), closes this reader's files and tries once more."""
        try:
            return os.open(path, os.O_RDONLY)
        except OSError as error:
            if error.errno != errno.EMFILE or not self._files:
                raise
            self.close()
            return os.open(path, os.O_RDONLY)

    def _read_into(self, out: np.ndarray, position: int, column: int, fd: int, start: int) -> None:
        """Fill ``out`` (rows, *row_shape) with rows start.. of one array of one episode."""
        if not out.nbytes:
            return
        row_bytes = out.nbytes // out.shape[0]
        offset = int(self._offsets[position, column]) + start * row_bytes
        if os.preadv(fd, [memoryview(out).cast("B")], offset) != out.nbytes:
            path = self._paths[position][column]
            raise OSError(
                f"short read of {self._names[column]} from {path} (truncated since the dataset "
                "was indexed?)"
            )

    def _window_rows(self, name: str) -> int:
        return self.num_steps + 1 if name in FRAME_ARRAYS else self.num_steps

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        position, t = self._locate(index)
        arrays = []
        with self._lock:
            fds = self._open(position)
            for column, name in enumerate(self._names):
                dtype, row_shape = self._rows[name]
                array = np.empty((self._window_rows(name), *row_shape), dtype=dtype)
                self._read_into(array, position, column, fds[column], t)
                arrays.append(array)
        item = {}
        for name, array in zip(self._names, arrays, strict=True):
            if name != "pixels":
                array = array.astype(np.float32, copy=False)
            item[name] = torch.from_numpy(array)  # pixels (K+1, H, W, 3), action (K, A), ...
        return item

    def read_batch(self, indices: list[int]) -> dict[str, np.ndarray]:
        """A batch as one dict of stacked arrays (``pixels`` (B, K+1, H, W, 3), ...).

        Each window is read straight into its slot of the batch, so there are no per-window
        tensors and no second copy when collating; the pretraining loader reads through it
        (``scripts/bench_pretrain.py`` measures the data path against the model's own step).
        """
        outs = []
        for name in self._names:
            dtype, row_shape = self._rows[name]
            outs.append(np.empty((len(indices), self._window_rows(name), *row_shape), dtype=dtype))
        for slot, index in enumerate(indices):
            position, t = self._locate(int(index))
            with self._lock:
                fds = self._open(position)  # once per window: the LRU may close it for the next
                for column, out in enumerate(outs):
                    self._read_into(out[slot], position, column, fds[column], t)
        return {
            name: out if name == "pixels" else out.astype(np.float32, copy=False)
            for name, out in zip(self._names, outs, strict=True)
        }

    def close(self) -> None:
        """Close the files this process has open (reopened on the next read)."""
        with self._lock:
            while self._files:
                _close_all(self._files.popitem()[1])

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"] = OrderedDict()  # open files stay in the process that opened them
        del state["_lock"]  # a lock does not pickle; each process gets its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()


#: Most files a process's readers keep open by default, whatever the limit (containers
#: often set limits of a million, which would make the LRU unbounded).
MAX_DEFAULT_OPEN_FILES = 4096


def default_open_episodes(files_per_episode: int, readers: int = 1) -> int:
    """Episodes a reader keeps open by default: an eighth of the process's open-file limit
    (``RLIMIT_NOFILE``, soft; at most ``MAX_DEFAULT_OPEN_FILES``), in files, shared by the
    ``readers`` that draw on it at once (the parts of a mixed dataset); at least 8 episodes.
    A run's validation reader takes another eighth, and whatever else the process opens fits
    in the rest; a reader that still meets the limit closes its files and retries. 1,024
    files (a common default) give 128 episodes of one file; 20,000 give 2,500.
    """
    try:
        import resource  # POSIX only

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if limit == resource.RLIM_INFINITY:
            limit = 1 << 20
    except (ImportError, OSError, ValueError):
        limit = 1024
    files = min(limit // 8, MAX_DEFAULT_OPEN_FILES) // max(1, readers)
    return max(8, files // max(1, files_per_episode))


def _close_all(fds: list[int]) -> None:
    for fd in set(fds):
        os.close(fd)


class MixedWindowDataset(ConcatDataset):
    """The windows of several datasets as one: pretraining on mixed streams (for example every
    task's), so that one encoder serves several tasks and its transfer can be measured.

    The parts must agree on what the trainer stacks into a batch: frame shape, action width,
    and the width of any other array read (proprio, for ``--decoder-proprio``; tasks with
    other robots differ there, so mix them reading pixels and actions only). Each keeps its
    own episode split. Sampling is uniform over windows, so a part weighs as much as it has
    windows.
    """

    def __init__(self, parts: list[WindowDataset]) -> None:
        if not parts:
            raise ValueError("MixedWindowDataset needs at least one dataset")
        first = parts[0]
        for part in parts[1:]:
            for name in ("frame_shape", "action_dim"):
                if getattr(part, name) != getattr(first, name):
                    raise ValueError(
                        f"cannot mix {part.root} with {first.root}: {name} "
                        f"{getattr(part, name)} vs {getattr(first, name)} (mixed streams need "
                        "the same image size and action width; collect with matching settings)"
                    )
        # Other arrays the parts read (proprio, state) are mixed too when their widths agree.
        shapes = [{k: tuple(v.shape) for k, v in part[0].items()} for part in parts]
        for part, part_shapes in zip(parts[1:], shapes[1:], strict=True):
            for name in sorted(set(shapes[0]) & set(part_shapes)):
                if part_shapes[name] != shapes[0][name]:
                    raise ValueError(
                        f"cannot mix {part.root} with {first.root}: their {name} windows are "
                        f"{part_shapes[name]} vs {shapes[0][name]} (e.g. proprio of tasks with "
                        "other robots); pretrain without the option that reads it"
                    )
        super().__init__(parts)
        self.parts = parts
        for part in parts:  # one process reads them all: they share its open-file budget
            if part.default_open:
                part.max_open_episodes = default_open_episodes(part.files_per_episode, len(parts))
        self._mixed = sorted(set.intersection(*(set(s) for s in shapes)))

    def read_batch(self, indices: list[int]) -> dict[str, np.ndarray]:
        """``WindowDataset.read_batch`` over the parts, in the order of ``indices``."""
        located = [self._part_of(int(index)) for index in indices]
        batch: dict[str, np.ndarray] = {}
        for which, part in enumerate(self.parts):
            slots = [slot for slot, (p, _) in enumerate(located) if p == which]
            if not slots:
                continue
            arrays = part.read_batch([located[slot][1] for slot in slots])
            for name in self._mixed:  # every array all parts read, of one width
                if name not in batch:
                    batch[name] = np.empty(
                        (len(indices), *arrays[name].shape[1:]), arrays[name].dtype
                    )
                batch[name][slots] = arrays[name]
        return batch

    def _part_of(self, index: int) -> tuple[int, int]:
        """(part, index within it) of window ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} windows")
        part = bisect.bisect_right(self.cumulative_sizes, index)
        return part, index - (self.cumulative_sizes[part - 1] if part else 0)

    def close(self) -> None:
        """Close the files every part has open."""
        for part in self.parts:
            part.close()


def open_windows(
    roots: str | Path | list[str | Path] | tuple[str | Path, ...],
    num_steps: int,
    split: Split = "train",
    val_fraction: float = 0.1,
    seed: int = 0,
    arrays: tuple[str, ...] = _WINDOW_ARRAYS,
    verify_checksums: bool = False,
) -> WindowDataset | MixedWindowDataset:
    """``WindowDataset`` of one directory, or ``MixedWindowDataset`` of several."""
    if isinstance(roots, str | Path):
        roots = [roots]
    if not roots:
        raise ValueError("open_windows needs at least one dataset directory, got none")
    parts = [
        WindowDataset(
            root,
            num_steps,
            split=split,
            val_fraction=val_fraction,
            seed=seed,
            arrays=arrays,
            verify_checksums=verify_checksums,
        )
        for root in roots
    ]
    return parts[0] if len(parts) == 1 else MixedWindowDataset(parts)
