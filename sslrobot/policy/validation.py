"""Online validation of a policy while it trains: success on validation-seed episodes.

BC and RL pick their ``best`` checkpoint by it. The seeds start at ``VALIDATION_SEED_BASE``,
apart from the demonstrations' and the evaluation's, so choosing a checkpoint by them does not
flatter its evaluation (``sslrobot evaluate`` warns when the two meet).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sslrobot.policy.checkpoint import Policy
from sslrobot.policy.config import VALIDATION_SEED_BASE
from sslrobot.policy.environment import make_env
from sslrobot.policy.network import ObservationEncoder


def validation_seeds(num_episodes: int) -> list[int]:
    """The reset seeds of ``num_episodes`` validation episodes."""
    return [VALIDATION_SEED_BASE + i for i in range(num_episodes)]


def refuse_validation_on_demo_seeds(
    demo_seeds: list[int], val_seeds: list[int], demos: object
) -> None:
    """Online validation picks the best checkpoint: on seeds the demonstrations started from
    (BC's, or those RL's feature statistics came from) it would pick the one that copies
    them best.

    Raises:
        ValueError: naming the demonstrations and the shared seeds.
    """
    shared = sorted(set(val_seeds) & set(demo_seeds))
    if shared:
        raise ValueError(
            f"demonstrations {demos} start from seeds {shared[:5]} that online validation "
            f"uses (from {VALIDATION_SEED_BASE}); collect them below it, or set val_episodes=0"
        )


class OnlineValidator:
    """Success rate of the policy being trained, on the validation seeds of ``record``.

    Args:
        record: The policy's record so far (``env_id``, ``image_size``, ``obs_mode``,
            ``val_seeds``).
        obs_encoder: The policy's observation encoder, as it is at each check.
        head: Inputs (B, F + P) -> actions (B, A) of the policy as it is at each check.
        visual_preset: The look to validate in: the one the policy trains in.
    """

    def __init__(
        self,
        record: dict[str, Any],
        obs_encoder: ObservationEncoder,
        head: Callable[[torch.Tensor], np.ndarray],
        device: torch.device,
        visual_preset: str,
    ) -> None:
        from sslrobot.evaluation.rollouts import run_episodes

        self._run_episodes = run_episodes
        self.env = make_env(
            record["env_id"], record["image_size"], record["obs_mode"], visual_preset=visual_preset
        )
        self.seeds = list(record["val_seeds"])
        self.policy = Policy(record, "current", obs_encoder, head, device)

    def success_rate(self) -> float:
        results, _ = self._run_episodes(self.env, self.policy, self.seeds)
        return float(np.mean([r.success for r in results]))

    def close(self) -> None:
        self.env.close()
