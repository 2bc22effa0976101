"""What an RL resume checkpoint keeps beyond SB3's files so that the resumed run continues
step for step: the sub-environments' episodes in progress and the random generators.

SB3's ``load`` reseeds every generator with the run's seed and resets the environments, so a
run resumed from its model and replay buffer alone restarted its episodes from their first
reset seeds and drew other actions and minibatches than the uninterrupted run would have.
Here each sub-environment keeps how its current episode began (the reset seed, or its own
generator's state when it was reset without one) and the actions since; a resume replays
them into fresh environments (MuJoCo is deterministic for the same inputs on the same
machine) and puts back the global generators SB3 samples from (torch: actions; numpy:
replay-buffer minibatches; the action space: SAC's first random steps). Replaying beats
saving the simulator's state: it needs nothing from the env beyond the gymnasium API, and it
restores what a reset set up outside the physics (the episode's look, its targets).
"""

from __future__ import annotations

import copy
import json
import random
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

FILE = "continuation_{step}.json"


class EpisodeRecorder(gym.Wrapper):
    """Keeps how the episode in progress began and the actions taken in it since."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.start: dict[str, Any] | None = None
        self.actions: list[list[float]] = []

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        # Without a seed the reset draws from the env's own generator: its state before the
        # draw is what a replay needs (gymnasium's seeding makes one if there is none yet).
        generator = None if seed is not None else self.unwrapped.np_random.bit_generator.state
        self.start = {
            "seed": None if seed is None else int(seed),
            "generator": copy.deepcopy(generator),
            "options": options,
        }
        self.actions = []
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        # Floats of float32 actions are exact in JSON (a double holds every float32).
        self.actions.append(np.asarray(action, dtype=np.float64).ravel().tolist())
        return self.env.step(action)

    def episode(self) -> dict[str, Any]:
        """The episode in progress as JSON-serialisable data."""
        if self.start is None:
            raise RuntimeError("EpisodeRecorder: no episode yet (reset the env first)")
        return {"start": self.start, "actions": self.actions}


def replay_episode(env: gym.Env, episode: dict[str, Any], action_space: gym.Space) -> Any:
    """Reset ``env`` (a fresh one, wrapped like the recorded one) as ``episode`` began and take
    its actions; returns the last observation."""
    start = episode["start"]
    if start["generator"] is not None:
        state = start["generator"]
        bit_generator = getattr(np.random, state["bit_generator"])()
        bit_generator.state = state
        env.unwrapped.np_random = np.random.Generator(bit_generator)
    observation, _ = env.reset(seed=start["seed"], options=start["options"])
    for action in episode["actions"]:
        observation, *_ = env.step(np.asarray(action, dtype=action_space.dtype))
    return observation


def random_state(model: Any) -> dict[str, Any]:
    """The generators SB3 draws from while it learns, as JSON-serialisable data."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_key = numpy_state["state"]["key"].tolist()
    version, internal, gauss = random.getstate()
    # The learner's own GPU's generator only: reading every GPU's started CUDA in CPU runs.
    device = torch.device(model.device)
    cuda = (
        {"index": _index(device), "state": torch.cuda.get_rng_state(device).tolist()}
        if device.type == "cuda"
        else None
    )
    return {
        "torch": torch.get_rng_state().tolist(),
        "cuda": cuda,
        "numpy": {**numpy_state, "state": {**numpy_state["state"], "key": numpy_key}},
        "python": [version, list(internal), gauss],
        "action_space": model.action_space.np_random.bit_generator.state,
    }


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _cuda_device_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def set_random_state(model: Any, state: dict[str, Any]) -> None:
    """Put back the generators ``random_state`` saved (the GPU's when the learner is on the
    same GPU again; files before session 31 saved every GPU's, put back on as many)."""
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    cuda, device = state.get("cuda"), torch.device(model.device)
    if isinstance(cuda, dict) and device.type == "cuda" and _index(device) == cuda["index"]:
        torch.cuda.set_rng_state(torch.tensor(cuda["state"], dtype=torch.uint8), device)
    elif isinstance(cuda, list) and cuda and len(cuda) == _cuda_device_count():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in cuda])
    numpy_state = state["numpy"]
    key = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state({**numpy_state, "state": {**numpy_state["state"], "key": key}})
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    model.action_space.np_random.bit_generator.state = state["action_space"]


def save_continuation(path: Path, model: Any, venv: Any) -> None:
    """Write the episodes in progress of ``venv`` (a DummyVecEnv of ``EpisodeRecorder``-wrapped
    envs) and the generators, at a point where ``model`` is about to step them."""
    from sslrobot.utils.io import atomic_write_json

    episodes = [env.get_wrapper_attr("episode")() for env in venv.envs]
    atomic_write_json(path, {"episodes": episodes, "random_state": random_state(model)})


def read_continuation(path: Path) -> dict[str, Any]:
    """The saved continuation (``json`` errors and ``OSError`` propagate)."""
    return json.loads(path.read_text())


def continue_episodes(continuation: dict[str, Any], model: Any, venv: Any, encode: Any) -> None:
    """Replay the saved episodes into ``venv``'s fresh sub-envs and hand SB3 their current
    observations (``encode`` turns the stacked raw observations into the policy inputs), so
    that ``learn`` steps on where the interrupted run stopped instead of resetting.

    The observations SB3 saved with the model are the check: replayed ones that differ (an
    env that is not deterministic, or changed since) are used, with a warning that the run no
    longer follows the uninterrupted one step for step.
    """
    episodes = continuation["episodes"]
    if len(episodes) != len(venv.envs):
        raise ValueError(
            f"the checkpoint holds {len(episodes)} sub-environments' episodes, the run has "
            f"{len(venv.envs)}"
        )
    observations = [
        replay_episode(env, episode, venv.action_space)
        for env, episode in zip(venv.envs, episodes, strict=True)
    ]
    if isinstance(observations[0], dict):
        stacked: Any = {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    else:
        stacked = np.stack(observations)
    replayed = encode(stacked)
    saved = model._last_obs
    if saved is not None and not np.array_equal(np.asarray(saved), replayed):
        warnings.warn(
            "the environments did not replay to the observations the checkpoint saved: the "
            "resumed run continues from the replayed ones, not step for step the interrupted run",
            stacklevel=2,
        )
    model._last_obs = replayed
