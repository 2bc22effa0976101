"""Self-supervised pretraining: objectives, the world model, the trainer and its outputs.

Names are imported lazily, so ``import sslrobot.pretraining`` stays cheap until one is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PretrainConfig": "sslrobot.pretraining.config",
    "pretrain": "sslrobot.pretraining.trainer",
    "PretrainRun": "sslrobot.pretraining.trainer",
    "NonFiniteLossError": "sslrobot.pretraining.trainer",
    "WorldModel": "sslrobot.pretraining.world_model",
    "WorldModelConfig": "sslrobot.pretraining.world_model",
    "load_world_model": "sslrobot.pretraining.world_model",
    "MovingSquareDataset": "sslrobot.pretraining.synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sslrobot.pretraining' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, for tab completion and ``help()`` (``dir()`` listed only what was
    imported)."""
    return sorted({*globals(), *__all__})
