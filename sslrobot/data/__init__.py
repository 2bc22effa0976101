"""Collection, crash-safe episode storage and training windows for self-supervised learning.

``WindowDataset`` and ``LookTwinWindows`` need torch and are imported on first use, so
collection workers (which only import this package's collection side) start without loading
torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sslrobot.data.collect_config import CollectConfig, parse_shard
from sslrobot.data.collection import collect
from sslrobot.data.dataset import EpisodeDataset, open_dataset, split_episode_ids
from sslrobot.data.fileio import DatasetWriteError
from sslrobot.data.frames import DegenerateFramesError
from sslrobot.data.policies import POLICY_NAMES, parse_mixture
from sslrobot.data.verify import VerifyReport, dataset_summary, verify_dataset

if TYPE_CHECKING:
    from sslrobot.data.look_twins import LookTwinWindows
    from sslrobot.data.windows import WindowDataset

__all__ = [
    "POLICY_NAMES",
    "CollectConfig",
    "DatasetWriteError",
    "DegenerateFramesError",
    "EpisodeDataset",
    "LookTwinWindows",
    "VerifyReport",
    "WindowDataset",
    "collect",
    "dataset_summary",
    "open_dataset",
    "parse_mixture",
    "parse_shard",
    "split_episode_ids",
    "verify_dataset",
]


def __getattr__(name: str) -> Any:
    if name == "WindowDataset":
        from sslrobot.data.windows import WindowDataset

        return WindowDataset
    if name == "LookTwinWindows":
        from sslrobot.data.look_twins import LookTwinWindows

        return LookTwinWindows
    raise AttributeError(f"module 'sslrobot.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, for tab completion and ``help()`` (``dir()`` listed only what was
    imported)."""
    return sorted({*globals(), *__all__})
