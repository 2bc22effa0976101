"""Read-only, memory-mapped access to a collected dataset, and the by-episode train/val split."""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sslrobot.data.manifest import read_manifest
from sslrobot.data.storage import (
    ARRAY_FILES,
    EVAL_ONLY_ARRAYS,
    episode_path,
    list_episode_ids,
    locate_arrays,
    map_array,
    read_meta,
)


def _split_key(seed: int, episode_id: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{episode_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def split_episode_ids(
    episode_ids: Sequence[int], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split episodes (never frames) into train and validation, deterministically from ``seed``.

    Episodes are ranked by a hash of ``(seed, episode_id)`` and the lowest-ranked
    ``round(val_fraction * n)`` go to validation (at least one when ``val_fraction > 0`` and
    there are two or more episodes; at least one always stays in train). The ranking of an
    episode does not depend on the others, so the split barely moves when a dataset grows,
    but the cut is a rank: a few episodes near it change sides, either way (100 -> 200
    episodes at 10% moved a validation episode into training). What must not mix them
    records the ids instead: pretraining keeps its training ids, and probes score only
    episodes every pretraining held out.

    Returns:
        ``(train_ids, val_ids)``, each sorted.

    Raises:
        ValueError: ``val_fraction`` outside [0, 1).
    """
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, numbers.Real)
        or not 0.0 <= val_fraction < 1.0
    ):
        raise ValueError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    ids = sorted(set(int(i) for i in episode_ids))
    num_val = round(val_fraction * len(ids))
    if val_fraction > 0 and len(ids) >= 2:
        num_val = max(num_val, 1)
    num_val = min(num_val, max(len(ids) - 1, 0))  # one episode stays in train, as said
    ranked = sorted(ids, key=lambda i: _split_key(seed, i))
    val = sorted(ranked[:num_val])
    train = sorted(ranked[num_val:])
    return train, val


class EpisodeDataset:
    """A dataset directory opened read-only; arrays are memory-mapped, loaded page by page.

    Attributes:
        root: The dataset directory.
        manifest: The parsed ``manifest.json``.
        episode_ids: Sorted ids of the committed episodes.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.manifest: dict[str, Any] = read_manifest(self.root)
        self.episode_ids: list[int] = list_episode_ids(self.root)

    def __len__(self) -> int:
        return len(self.episode_ids)

    def __repr__(self) -> str:
        env_id = self.manifest.get("env_id")
        return f"EpisodeDataset({str(self.root)!r}, env={env_id!r}, episodes={len(self)})"

    def episode_path(self, episode_id: int) -> Path:
        """Path of a committed episode: its ``.npz`` archive (a directory in format 1).

        Raises:
            KeyError: no such episode in this dataset.
        """
        path = episode_path(self.root, episode_id)
        if not path.exists():
            raise KeyError(
                f"episode {episode_id} is not in {self.root} (it has {len(self)} episodes)"
            )
        return path

    def meta(self, episode_id: int) -> dict[str, Any]:
        """The episode's metadata (length, seed, policy, return, success, array shapes)."""
        return read_meta(self.episode_path(episode_id))

    def load_episode(
        self,
        episode_id: int,
        include_state: bool = False,
        verify: bool = False,
        in_memory: bool = False,
    ) -> dict[str, np.ndarray]:
        """Arrays of one episode, memory-mapped read-only (copy before modifying).

        Each mapped array keeps a file open while it lives (six or seven per episode): a
        caller that holds many episodes at once reads them ``in_memory`` instead, or one at
        a time, or it meets the process's open-file limit (1024 on many systems: about 170
        episodes).

        Args:
            episode_id: Episode id.
            include_state: Also load the privileged ``state`` (L+1, S): evaluation only.
            verify: Check every byte's checksum and the metadata first (one read of the
                episode): memory-mapped reads skip the checksums, so a flipped bit in the
                frames would otherwise be used unseen. Probes and demonstrations ask for it;
                pretraining checks its windows itself.
            in_memory: Read the arrays into memory (writable, no file kept open).

        Returns:
            ``pixels`` (L+1, H, W, 3) uint8, ``proprio`` (L+1, P), ``action`` (L, A),
            ``reward`` (L,), ``terminated`` (L,), ``truncated`` (L,) [+ ``state`` (L+1, S)].

        Raises:
            FileNotFoundError: ``include_state`` for an episode without a privileged state.
            ValueError: the episode's archive is damaged (truncated, unreadable headers);
                the message says how to find every damaged episode and collect them again.
        """
        if isinstance(episode_id, bool) or not isinstance(episode_id, numbers.Integral):
            raise ValueError(f"episode_id must be an integer id, got {episode_id!r}")
        path = self.episode_path(episode_id)
        names = [k for k in ARRAY_FILES if include_state or k not in EVAL_ONLY_ARRAYS]
        hint = (
            f"; `sslrobot data verify {self.root}` lists every damaged episode: move their "
            f"files out of {self.root / 'episodes'} and `sslrobot collect --out {self.root} "
            "--resume` (with the collection's other options) collects them again (by itself it "
            "checks only the episodes of an interrupted run)"
        )
        if verify:
            from sslrobot.data.verify import episode_problems

            problems = episode_problems(self.root, episode_id, self.manifest, checksums=True)
            if problems:
                raise ValueError(
                    f"episode {episode_id} of {self.root} is damaged: " + "; ".join(problems) + hint
                )
        try:
            locations = locate_arrays(path, names)
        except ValueError as error:
            raise ValueError(f"{error}{hint}") from error
        return {name: map_array(where, mmap=not in_memory) for name, where in locations.items()}

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
        """``(train_ids, val_ids)`` by episode; see ``split_episode_ids``."""
        return split_episode_ids(self.episode_ids, val_fraction, seed)


def open_dataset(root: Path | str) -> EpisodeDataset:
    """Open a dataset directory written by ``sslrobot collect`` (read-only, memory-mapped).

    Raises:
        FileNotFoundError: ``root`` has no ``manifest.json``.
        ValueError: the manifest is invalid or of an unsupported format version.
    """
    return EpisodeDataset(root)
