"""sslrobot: self-supervised visual pretraining for simulated robots, end to end.

Importing the package registers the environments (``sslrobot/Reach-v0`` ...) but does not
import torch, so that environment-only users start fast; ``load_encoder`` loads it on use.
"""

from __future__ import annotations

from typing import Any

from sslrobot import envs as envs  # registers the gymnasium ids

__version__ = "0.1.0"
__all__ = ["__version__", "envs", "load_encoder"]


def __getattr__(name: str) -> Any:
    if name == "load_encoder":
        from sslrobot.load import load_encoder

        return load_encoder
    raise AttributeError(f"module 'sslrobot' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, for tab completion and ``help()`` (``dir()`` listed only what was
    imported)."""
    return sorted({*globals(), *__all__})
