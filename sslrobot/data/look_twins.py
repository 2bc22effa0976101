"""Windows paired with the same episodes rendered in another look (a dataset's look twin).

A look twin is the same collection (env, policy, seeds, image size, time limit) with another
visual preset. The looks of sslrobot's envs are drawn from the reset's random stream whatever
the preset and are never part of the physics (colours, light, camera offset, non-colliding
distractors), so episode i of both datasets holds one trajectory, frame for frame, in two
looks. Pretraining can then read the varied look and take its targets from the twin rendered
in the authored look (``sslrobot collect --visual-preset none``): the targets then show only
what the state puts in view, never the episode's colours, light or distractor, which the
unlabeled stream otherwise cannot tell apart from a static target (both stay put within an
episode and change between them). RCAN (James et al. 2019) translates randomised renders to
canonical ones for the same reason. It is a simulator's signal, not a label: no state is read.

``LookTwinWindows`` checks that the twin really is one (the manifests agree on everything but
the look, and every paired episode's actions and proprioception are equal) before it pairs a
window with its twin window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sslrobot.data.dataset import open_dataset
from sslrobot.data.manifest import EPISODE_FIELDS
from sslrobot.data.windows import WindowDataset

#: Key of the twin's frames in a window or batch: uint8 (K+1, H, W, 3) like ``pixels``.
TWIN_PIXELS = "twin_pixels"
#: The env argument a twin may differ in (the look); every other identity field must agree.
LOOK_ARGUMENT = "visual_preset"


def look_twin_problems(
    primary: dict[str, Any], twin: dict[str, Any], primary_root: Path, twin_root: Path
) -> list[str]:
    """What keeps ``twin``'s manifest from describing a look twin of ``primary``'s: each
    identity field (but the env's ``visual_preset``) that differs, with both values, and a
    look that does not (a twin in the same look would change nothing, unsaid)."""
    looks = [(m.get("env_kwargs") or {}).get(LOOK_ARGUMENT) for m in (primary, twin)]
    problems = []
    if looks[0] == looks[1]:
        problems.append(f"{LOOK_ARGUMENT}: {looks[0]!r} in both (a twin shows another look)")
    for field in EPISODE_FIELDS:
        mine, theirs = primary.get(field), twin.get(field)
        if field == "env_kwargs":
            mine = {k: v for k, v in (mine or {}).items() if k != LOOK_ARGUMENT}
            theirs = {k: v for k, v in (theirs or {}).items() if k != LOOK_ARGUMENT}
        if mine != theirs:
            problems.append(f"{field}: {mine!r} in {primary_root}, {theirs!r} in {twin_root}")
    return problems


class LookTwinWindows(Dataset):
    """The windows of ``windows``, each with the same window of the look twin's frames under
    ``TWIN_PIXELS``.

    Args:
        windows: The windows the encoder reads (one dataset, any split).
        twin_root: The look twin's dataset directory.
        verify_checksums: Check every byte of the twin's paired episodes when indexing, as
            pretraining and the probe do for the windows themselves (the twin's frames are
            the targets: a flipped bit would train or score unseen).
        check_trajectories: Compare every paired episode's actions and proprioception (one
            read of two small arrays per episode); off only for tests of other checks.

    Raises:
        ValueError: ``twin_root`` is not a look twin of the windows' dataset: a manifest
            field differs, an episode is missing or has another length, or a trajectory
            differs (each names the field or episode and both directories).
    """

    def __init__(
        self,
        windows: WindowDataset,
        twin_root: str | Path,
        check_trajectories: bool = True,
        verify_checksums: bool = False,
    ) -> None:
        if not isinstance(windows, WindowDataset):
            raise ValueError(
                "a look twin pairs the windows of one dataset directory, got "
                f"{type(windows).__name__} (mixed datasets have no single twin)"
            )
        twin_dataset = open_dataset(twin_root)
        twin_root = Path(twin_root)
        problems = look_twin_problems(
            windows.manifest, twin_dataset.manifest, windows.root, twin_root
        )
        if problems:
            raise ValueError(
                f"{twin_root} is not a look twin of {windows.root} (the same collection in "
                "another --visual-preset): " + "; ".join(problems)
            )
        missing = sorted(set(windows.episode_ids) - set(twin_dataset.episode_ids))
        if missing:
            raise ValueError(
                f"the look twin {twin_root} lacks episodes {missing[:10]} of {windows.root} "
                f"({len(missing)} in all): collect them with `sslrobot collect --out "
                f"{twin_root} --resume --episodes {max(windows.episode_ids) + 1}` and the "
                "twin's other options"
            )
        twin = WindowDataset(
            twin_root,
            windows.num_steps,
            split="all",
            arrays=("pixels",),
            strict=True,
            verify_checksums=verify_checksums,
            exclude_episodes=set(twin_dataset.episode_ids) - set(windows.episode_ids),
        )
        self.windows, self.twin = windows, twin
        self._twin_start = {}  # episode id -> index of its first window in the twin
        for episode_id in windows.episode_ids:
            mine, theirs = windows.episode_windows(episode_id), twin.episode_windows(episode_id)
            if mine[1] != theirs[1]:
                raise ValueError(
                    f"episode {episode_id} has {mine[1]} windows in {windows.root} and "
                    f"{theirs[1]} in its look twin {twin_root}: their lengths differ"
                )
            self._twin_start[episode_id] = theirs[0]
        if check_trajectories:
            self._check_trajectories()

    def _check_trajectories(self) -> None:
        primary, twin = open_dataset(self.windows.root), open_dataset(self.twin.root)
        for episode_id in self.windows.episode_ids:
            mine, theirs = primary.load_episode(episode_id), twin.load_episode(episode_id)
            for name in ("action", "proprio"):
                if not np.array_equal(mine[name], theirs[name]):
                    raise ValueError(
                        f"episode {episode_id}'s {name} differs between {self.windows.root} and "
                        f"{self.twin.root}: not the same trajectory in another look (an env "
                        "whose look changes its physics, or other collection settings)"
                    )

    # The attributes pretraining reads of a WindowDataset (which episodes, which dataset).
    @property
    def root(self) -> Path:
        return self.windows.root

    @property
    def manifest(self) -> dict[str, Any]:
        return self.windows.manifest

    @property
    def episode_ids(self) -> list[int]:
        return self.windows.episode_ids

    @property
    def twin_root(self) -> Path:
        """The look twin's directory."""
        return self.twin.root

    def __len__(self) -> int:
        return len(self.windows)

    def _twin_index(self, index: int) -> int:
        episode_id, t = self.windows.locate(int(index))
        return self._twin_start[episode_id] + t

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.windows[index]
        item[TWIN_PIXELS] = self.twin[self._twin_index(index)]["pixels"]
        return item

    def read_batch(self, indices: list[int]) -> dict[str, np.ndarray]:
        """``WindowDataset.read_batch`` with the twin's frames of the same windows."""
        batch = self.windows.read_batch(indices)
        twin = self.twin.read_batch([self._twin_index(i) for i in indices])
        batch[TWIN_PIXELS] = twin["pixels"]
        return batch

    def close(self) -> None:
        """Close both datasets' files."""
        self.windows.close()
        self.twin.close()
