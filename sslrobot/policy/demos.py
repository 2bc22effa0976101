"""Expert demonstrations for BC: deterministic selection and flat transition arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sslrobot.policy.environment import EnvShapes


@dataclass(frozen=True)
class DemoTransitions:
    """The (observation, action) pairs of some demonstration episodes, concatenated in order.

    Step t of an episode pairs the observation before the action (index t of the L+1 stored
    observations) with the action taken (index t of the L actions); the final observation has
    no action and is dropped.

    Attributes:
        episode_ids: Episodes, in the order their steps appear.
        episode_lengths: Steps per episode, shape (E,).
        actions: Expert actions, float32 (N, A).
        pixels: uint8 frames (N, H, W, 3), or None when not loaded (state oracle).
        proprio: float32 (N, P), or None when not loaded.
        state: Privileged state, float32 (N, S), loaded only for the state oracle.
    """

    episode_ids: tuple[int, ...]
    episode_lengths: np.ndarray
    actions: np.ndarray
    pixels: np.ndarray | None
    proprio: np.ndarray | None
    state: np.ndarray | None

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def select_demo_ids(
    episode_ids: list[int],
    num_demos: int | None,
    num_val_demos: int,
    path: Path,
    offset: int = 0,
) -> tuple[list[int], list[int]]:
    """Training ids (``num_demos`` of them from the ``offset``-th on, in order) and validation
    ids (the last ``num_val_demos``).

    Taking validation episodes from the end keeps them fixed while ``num_demos`` varies, so the
    data-efficiency curve selects checkpoints on one validation set. An ``offset`` takes
    another draw of the same count from one larger set (a training seed's own demonstrations).

    Raises:
        ValueError: naming ``path`` when the dataset has too few episodes.
    """
    available = len(episode_ids)
    wanted = (available - num_val_demos - offset) if num_demos is None else num_demos
    if wanted < 1 or offset + wanted + num_val_demos > available:
        raise ValueError(
            f"demonstrations {path} hold {available} episodes; num_demos={num_demos} plus "
            f"num_val_demos={num_val_demos}"
            + (f" from demo_offset={offset}" if offset else "")
            + " do not fit (collect more with `sslrobot collect --policy expert` or lower them)"
        )
    train_ids = list(episode_ids[offset : offset + wanted])
    val_ids = list(episode_ids[available - num_val_demos :]) if num_val_demos else []
    return train_ids, val_ids


def load_transitions(
    dataset: Any, episode_ids: list[int], pixels: bool, state: bool
) -> DemoTransitions:
    """Load and concatenate the transitions of ``episode_ids`` from an opened dataset.

    Args:
        dataset: The object ``sslrobot.data.open_dataset`` returns.
        episode_ids: Episodes to load, in order.
        pixels: Load frames and proprio (pixel policies).
        state: Load the privileged state (state oracle only).
    """
    actions, frames, proprios, states, lengths = [], [], [], [], []
    for episode_id in episode_ids:
        # In memory: views of mapped arrays would keep ~4 files open per demonstration.
        episode = dataset.load_episode(episode_id, include_state=state, verify=True, in_memory=True)
        action = np.asarray(episode["action"], dtype=np.float32)
        length = action.shape[0]
        lengths.append(length)
        actions.append(action)
        if pixels:
            frames.append(np.asarray(episode["pixels"][:length], dtype=np.uint8))
            proprios.append(np.asarray(episode["proprio"][:length], dtype=np.float32))
        if state:
            states.append(np.asarray(episode["state"][:length], dtype=np.float32))
    return DemoTransitions(
        episode_ids=tuple(episode_ids),
        episode_lengths=np.asarray(lengths, dtype=np.int64),
        actions=np.concatenate(actions),
        pixels=np.concatenate(frames) if pixels else None,
        proprio=np.concatenate(proprios) if pixels else None,
        state=np.concatenate(states) if state else None,
    )


def demos_visual_preset(manifest: dict[str, Any]) -> str:
    """The visual preset the demonstrations were collected under (``train`` unless the
    collection's ``env_kwargs`` named another)."""
    return str((manifest.get("env_kwargs") or {}).get("visual_preset", "train"))


def episode_seeds(dataset: Any, episode_ids: list[int]) -> list[int]:
    """Reset seeds of the demonstrations, so evaluation can flag seeds it shares with them."""
    seeds = []
    for episode_id in episode_ids:
        seed = dataset.meta(episode_id).get("seed")
        seeds.append(int(seed) if seed is not None else int(episode_id))
    return seeds


def check_demo_shapes(transitions: DemoTransitions, shapes: EnvShapes, config: Any) -> None:
    """Demonstrations must match the environment (actions, frames, proprio, state): for BC
    and for RL's normalisation statistics, whose errors would otherwise name neither."""
    where = f"demonstrations {config.demos}"
    if transitions.actions.shape[1] != shapes.action_dim:
        raise ValueError(
            f"{where} have actions of width {transitions.actions.shape[1]}, but {config.env_id} "
            f"takes {shapes.action_dim}"
        )
    if transitions.pixels is not None and transitions.pixels.shape[1:] != shapes.frame_shape:
        # The policy's image size is the pretrained encoder's (or --image-size), not the
        # demonstrations': say so, or the message blames the environment.
        raise ValueError(
            f"{where} hold frames of shape {transitions.pixels.shape[1:]}, but the policy sees "
            f"{config.env_id} at {shapes.frame_shape}, the image size of encoder "
            f"{config.encoder} (or --image-size); collect the demonstrations at that size or "
            f"use an encoder of theirs"
        )
    if transitions.proprio is not None and transitions.proprio.shape[1] != shapes.proprio_dim:
        raise ValueError(
            f"{where} hold proprio of width {transitions.proprio.shape[1]}, but {config.env_id} "
            f"gives {shapes.proprio_dim}"
        )
    if transitions.state is not None and transitions.state.shape[1] != shapes.state_dim:
        raise ValueError(
            f"{where} hold state of width {transitions.state.shape[1]}, but {config.env_id} "
            f"gives {shapes.state_dim}"
        )
