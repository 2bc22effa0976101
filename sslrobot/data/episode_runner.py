"""One env + one policy that rolls out whole episodes and commits each to disk (a worker's job)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sslrobot.data.frames import check_frame, check_frame_stream, get_frame, has_pixel_observation
from sslrobot.data.manifest import utc_now
from sslrobot.data.policies import make_policy
from sslrobot.data.storage import CURRENT_FORMAT_VERSION, write_episode


@dataclass(frozen=True)
class RunSpec:
    """Picklable description of the work, sent to each worker process."""

    root: str
    env_id: str
    make_kwargs: dict[str, Any]
    max_episode_steps: int | None
    policy: str
    noise: float
    noise_correlation: float
    mixture: dict[str, float] | None
    base_seed: int
    shard: str
    fsync: bool = False
    format_version: int = CURRENT_FORMAT_VERSION  # a resumed older dataset keeps its own


def make_env(spec: RunSpec) -> gym.Env:
    """``gymnasium.make`` with the run's kwargs.

    Raises:
        ValueError: the env rejects a kwarg (names the env and the kwargs), or gymnasium
            cannot make it (e.g. its extra dependency is missing; names the env and the cause).
    """
    extra = {} if spec.max_episode_steps is None else {"max_episode_steps": spec.max_episode_steps}
    try:
        return gym.make(spec.env_id, **spec.make_kwargs, **extra)
    except TypeError as error:
        raise ValueError(
            f"gymnasium.make({spec.env_id!r}) rejected the kwargs {spec.make_kwargs}: {error}; "
            "fix them with --env-kwargs"
        ) from error
    except gym.error.Error as error:
        raise env_error(spec.env_id, "be made", error) from error


def env_error(env_id: str, action: str, error: gym.error.Error) -> ValueError:
    """The user-facing error for a gymnasium error of ``env_id`` (``DependencyNotInstalled``
    and its kin are about the user's installation or arguments, not a bug to trace), naming
    the env, what failed and the cause."""
    cause = (
        "a package it needs is not installed"
        if isinstance(error, gym.error.DependencyNotInstalled)
        else type(error).__name__
    )
    return ValueError(f"env {env_id!r} cannot {action} ({cause}): {error}")


def _as_vector(value: Any) -> np.ndarray:
    return np.array(value, dtype=np.float32).reshape(-1)  # a copy: envs may reuse buffers


#: Bytes a frame buffer reserves up front at most: the time limit sizes it (one array, no
#: copies), but a limit of millions of steps on a task that ends on success reserved tens of
#: GB before its first frame; past this the buffer grows by doubling as the episode does.
_FRAME_BUFFER_RESERVE_BYTES = 256 * 2**20


class _FrameBuffer:
    """Frames of one episode in one preallocated array (no per-frame copies to stack later)."""

    def __init__(self, first: np.ndarray, capacity: int) -> None:
        affordable = max(1, _FRAME_BUFFER_RESERVE_BYTES // max(first.nbytes, 1))
        self.data = np.empty((max(min(capacity, affordable), 1), *first.shape), dtype=np.uint8)
        self.size = 0
        self.append(first)

    def append(self, frame: np.ndarray) -> None:
        if self.size == len(self.data):  # longer than the time limit said: grow
            self.data = np.concatenate([self.data, np.empty_like(self.data)])
        self.data[self.size] = frame
        self.size += 1

    def array(self) -> np.ndarray:
        """uint8 (size, H, W, 3)."""
        return self.data[: self.size]


def split_observation(
    obs: Any, info: dict[str, Any], state_in_info: bool | None = None, env_id: str = "the env"
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(proprio, state)`` of one step, both float32 vectors.

    Dict observations give ``obs["proprio"]`` (zero-width if absent); a flat vector observation
    (e.g. Reacher-v5) is recorded as proprio and, lacking ``info["state"]``, also as state.
    Where the state comes from is decided at reset (``state_in_info`` None there; after it,
    whether the reset's info held it): an env giving ``info["state"]`` from its steps only
    had its first row taken from the observation and the rest from the info, silently, or
    failed with a bare shape error.

    Raises:
        ValueError: ``info["state"]`` at a step of an env whose reset gave none.
    """
    if isinstance(obs, dict):
        proprio = _as_vector(obs["proprio"]) if "proprio" in obs else np.zeros(0, np.float32)
        fallback_state = None
    else:
        proprio = _as_vector(obs)
        fallback_state = proprio
    if state_in_info is None:  # the reset decides
        state_in_info = "state" in info
    elif not state_in_info and "state" in info:
        raise ValueError(
            f"{env_id} gives info['state'] from step() but not from reset(): the state column "
            "holds one row per frame, the first from the reset; return it from reset() too"
        )
    if state_in_info:  # missing at a step: None, and the episode is refused for it
        return proprio, _as_vector(info["state"]) if "state" in info else None
    return proprio, fallback_state


class EpisodeRunner:
    """Rolls out and writes episodes with one long-lived env (never re-made between episodes).

    Keeping one env per process also avoids Gymnasium's MuJoCo black-frame bug, which appears
    when an env is closed and another one renders in the same process.
    """

    def __init__(self, spec: RunSpec, env: gym.Env | None = None) -> None:
        """``env``: the collector's probed env (reset with ``base_seed`` and rendered once);
        None: one is made here and put through the same reset and render first. Gymnasium's
        MuJoCo renderer aims its free camera at the scene as it is at a process's first
        render, so without it a pool worker's camera depended on which episode the scheduler
        handed it first (Reacher-v5's pixels differed between runs of one seed)."""
        self.spec = spec
        if env is None:
            env = make_env(spec)
            obs, _ = env.reset(seed=spec.base_seed)
            get_frame(env, obs, has_pixel_observation(env.observation_space))
        self.env = env
        self.policy = make_policy(spec.policy, spec.noise, spec.noise_correlation, spec.mixture)
        self.frames_from_obs = has_pixel_observation(self.env.observation_space)
        max_steps = self.env.spec.max_episode_steps if self.env.spec is not None else None
        self.max_frames = (max_steps or 63) + 1

    def rollout(self, episode_id: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Run episode ``episode_id`` (seed ``base_seed + episode_id``) in memory.

        Returns:
            ``(arrays, meta)`` in the layout of ``sslrobot.data.storage``.

        Raises:
            DegenerateFramesError: a single-colour first frame or a frozen frame stream.
        """
        env, spec = self.env, self.spec
        seed = spec.base_seed + episode_id
        self.policy.reset(env, seed)
        obs, info = env.reset(seed=seed)
        frame = get_frame(env, obs, self.frames_from_obs)
        check_frame(frame, spec.env_id, episode_id, 0)  # fail fast; the rest once per episode
        proprio, state = split_observation(obs, info)
        state_in_info = "state" in info
        frames = _FrameBuffer(frame, self.max_frames)
        proprios, states = [proprio], [state]
        actions, rewards, terminateds, truncateds = [], [], [], []
        terminated = truncated = False
        while not (terminated or truncated):
            action = self.policy.act(env)
            obs, reward, terminated, truncated, info = env.step(action)
            frame = get_frame(env, obs, self.frames_from_obs)
            proprio, state = split_observation(obs, info, state_in_info, spec.env_id)
            frames.append(frame)
            proprios.append(proprio)
            states.append(state)
            actions.append(np.asarray(action, dtype=np.float32).reshape(-1))
            rewards.append(float(reward))
            terminateds.append(bool(terminated))
            truncateds.append(bool(truncated))
        pixels = frames.array()
        check_frame_stream(pixels, spec.env_id, episode_id)
        arrays = {
            "pixels": pixels,
            "proprio": np.stack(proprios),
            "action": np.stack(actions),
            "reward": np.asarray(rewards, dtype=np.float32),
            "terminated": np.asarray(terminateds, dtype=bool),
            "truncated": np.asarray(truncateds, dtype=bool),
        }
        if states[0] is not None:
            if any(s is None for s in states):
                raise ValueError(
                    f"{spec.env_id}: info['state'] is missing at some steps of episode {episode_id}"
                )
            arrays["state"] = np.stack(states)
        success = info.get("is_success")
        meta = {
            "seed": seed,
            "policy": self.policy.episode_record(),
            "return": float(np.sum(arrays["reward"], dtype=np.float64)),
            "success": None if success is None else bool(success),
            "terminated": bool(terminated),
            "truncated": bool(truncated),
            "diverged": bool(info.get("diverged", False)),
            "shard": spec.shard,
            "collected_at": utc_now(),
        }
        return arrays, meta

    def run(self, episode_id: int) -> dict[str, Any]:
        """Roll out episode ``episode_id`` and commit it; return a small summary."""
        return self.commit(episode_id, *self.rollout(episode_id))

    def commit(
        self, episode_id: int, arrays: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> dict[str, Any]:
        """Write a rolled-out episode atomically; return a small summary. Thread-safe: it
        touches no env state, so a writer thread may commit while the env rolls out the next."""
        # FileExistsError: another process committed it first (e.g. a worker orphaned by a
        # killed collector finishing while --resume runs). Same seed, same data: nothing lost.
        with contextlib.suppress(FileExistsError):
            write_episode(
                Path(self.spec.root),
                episode_id,
                arrays,
                meta,
                fsync=self.spec.fsync,
                format_version=self.spec.format_version,
            )
        return {
            "episode_id": episode_id,
            "length": int(arrays["action"].shape[0]),
            "frames": int(arrays["pixels"].shape[0]),
            "return": meta["return"],
            "success": meta["success"],
        }

    def close(self) -> None:
        """Close the env."""
        self.env.close()


_WORKER_RUNNER: EpisodeRunner | None = None
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Worker initializer: on Linux, get SIGKILLed when the collector process dies.

    Without it, killing the collector leaves workers finishing their episodes in the background.
    ``parent_pid`` is the collector's: a collector killed while its workers were still
    starting died before they asked, so no signal comes; a worker whose parent is no longer
    it exits at once instead (such orphans took the queued episodes, wrote them after the
    kill, then blocked forever on the pool's pipe).
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # no cleanup: the parent that would expect any is gone


def run_episode_in_worker(spec: RunSpec, episode_id: int) -> dict[str, Any]:
    """Worker-process entry point: build the runner once per process, then reuse it."""
    global _WORKER_RUNNER
    if _WORKER_RUNNER is None or _WORKER_RUNNER.spec != spec:
        _WORKER_RUNNER = EpisodeRunner(spec)
    return _WORKER_RUNNER.run(episode_id)
