"""Environment speed: pixel steps/s, physics-only steps/s and the ratio to Gymnasium's Pusher.

Measures every id in ``sslrobot.envs.ENV_IDS`` whose module exists (one process, random
actions, resets included) and Gymnasium's ``Pusher-v5`` with ``render_mode="rgb_array"`` at the
same image size, interleaved repeat by repeat so that load from other work on the machine hits
all of them alike. Prints its settings, the median of the repeats, and a markdown table.

Usage:
    python scripts/bench_envs.py            # 7 repeats of 2,000 steps (Pusher: 200 frames)
    python scripts/bench_envs.py --quick    # 3 repeats of 500 steps (Pusher: 50 frames)
    LP_NUM_THREADS=1 python scripts/bench_envs.py   # override the renderer's llvmpipe threads
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

# A script (not the library) may pick the GL backend for the whole process: Gymnasium's own
# MuJoCo renderer reads MUJOCO_GL when it is imported. sslrobot would pick EGL by itself.
os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import mujoco
import numpy as np

import sslrobot.envs

PUSHER_ID = "Pusher-v5"


def available_env_ids() -> list[str]:
    """Registered sslrobot ids whose entry-point module is importable (others are skipped)."""
    ids = []
    for env_id in sslrobot.envs.ENV_IDS:
        module = gym.spec(env_id).entry_point.split(":")[0]
        if importlib.util.find_spec(module) is None:
            print(f"skipping {env_id}: module {module} does not exist yet")
            continue
        ids.append(env_id)
    return ids


def render_pusher(env: gym.Env) -> np.ndarray:
    """One ``rgb_array`` frame of a Gymnasium MuJoCo env, its own GL context made current first.

    Gymnasium's offscreen viewer does not make its context current before drawing; once
    another context (sslrobot's) is current in the process it would draw into that one with
    the wrong GL objects: fast, and wrong. Making it current is part of the fair cost.
    """
    renderer = env.unwrapped.mujoco_renderer
    renderer._get_viewer(render_mode="rgb_array").make_context_current()
    return env.render()


@dataclass(frozen=True)
class Rate:
    """Steps per second of wall-clock time, and per second of this process's CPU time (all
    its threads): the second is less disturbed by other work on a shared machine."""

    wall: float
    cpu: float


def steps_per_second(env: gym.Env, num_steps: int, seed: int, render: bool = False) -> Rate:
    """Rate of ``env.step`` under uniform random actions, episode resets included.

    ``render=True`` also renders a frame every step with ``render_pusher`` (for Gymnasium
    MuJoCo envs, whose observation is not the image).
    """
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    actions = rng.uniform(low, high, size=(num_steps, *env.action_space.shape))
    actions = actions.astype(env.action_space.dtype)
    env.reset(seed=seed)
    wall, cpu = time.perf_counter(), time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if render:
            render_pusher(env)
        if terminated or truncated:
            env.reset()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Rate(wall=num_steps / wall, cpu=num_steps / max(cpu, 1e-9))


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _times(ratio: float) -> str:
    """``12x``, or ``n/a`` when Pusher was not measured (``--no-pusher``)."""
    return f"{ratio:.0f}x" if math.isfinite(ratio) else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats of 500 steps")
    parser.add_argument("--repeats", type=int, default=None, help="repeats (median reported)")
    parser.add_argument("--steps", type=int, default=None, help="sslrobot steps per repeat")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--visual-preset", default="train")
    parser.add_argument("--no-pusher", action="store_true", help="skip Gymnasium's Pusher-v5")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    num_steps = args.steps or (500 if args.quick else 2000)
    pusher_steps = max(20, num_steps // 10)  # Pusher renders ~100x slower
    env_ids = available_env_ids()

    settings = {
        "python": platform.python_version(),
        "mujoco": mujoco.__version__,
        "gymnasium": gym.__version__,
        "cpus": os.cpu_count(),
        "load average (1 min)": round(os.getloadavg()[0], 2),
        "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
        "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS", "unset (sslrobot's renderer sets 0)"),
        "image size": args.image_size,
        "visual preset": args.visual_preset,
        "actions": "uniform random, episode resets included",
        "repeats": repeats,
        "steps per repeat": f"{num_steps} (Pusher-v5: {pusher_steps}, step + render each)",
    }
    for key, value in settings.items():
        print(f"{key}: {value}")

    pixel_envs = {
        env_id: gym.make(env_id, image_size=args.image_size, visual_preset=args.visual_preset)
        for env_id in env_ids
    }
    state_envs = {
        env_id: gym.make(env_id, obs_mode="state", visual_preset=args.visual_preset)
        for env_id in env_ids
    }
    pusher = None
    if not args.no_pusher:
        pusher = gym.make(
            PUSHER_ID, render_mode="rgb_array", width=args.image_size, height=args.image_size
        )
    # Warm-up: GL contexts (sslrobot's first, so LP_NUM_THREADS is the same for all), caches.
    for env_id in env_ids:
        steps_per_second(pixel_envs[env_id], 50, seed=0)
        steps_per_second(state_envs[env_id], 50, seed=0)
    if pusher is not None:
        steps_per_second(pusher, 5, seed=0, render=True)
        if render_pusher(pusher).std() == 0:
            raise RuntimeError(f"{PUSHER_ID} renders a constant image; the comparison is void")

    pixel: dict[str, list[Rate]] = {env_id: [] for env_id in env_ids}
    physics: dict[str, list[Rate]] = {env_id: [] for env_id in env_ids}
    ratio: dict[str, list[float]] = {env_id: [] for env_id in env_ids}
    cpu_ratio: dict[str, list[float]] = {env_id: [] for env_id in env_ids}
    pusher_rates: list[Rate] = []
    for repeat in range(repeats):
        seed = 1 + repeat
        pusher_rate = Rate(float("nan"), float("nan"))
        if pusher is not None:
            pusher_rate = steps_per_second(pusher, pusher_steps, seed=seed, render=True)
            pusher_rates.append(pusher_rate)
        for env_id in env_ids:
            rate = steps_per_second(pixel_envs[env_id], num_steps, seed=seed)
            pixel[env_id].append(rate)
            physics[env_id].append(steps_per_second(state_envs[env_id], num_steps, seed=seed))
            ratio[env_id].append(rate.wall / pusher_rate.wall)
            cpu_ratio[env_id].append(rate.cpu / pusher_rate.cpu)
        print(
            f"repeat {repeat + 1}/{repeats}: {PUSHER_ID} {pusher_rate.wall:.0f}/s, "
            + ", ".join(f"{env_id} {pixel[env_id][-1].wall:.0f}/s" for env_id in env_ids)
        )
    backend = next(
        (env.unwrapped._renderer.backend for env in pixel_envs.values() if env.unwrapped._renderer),
        "none",
    )
    print(
        f"sslrobot renderer backend: {backend}; load average (1 min) now {os.getloadavg()[0]:.2f}"
    )

    print()
    size = f"{args.image_size}x{args.image_size}"
    print(
        f"| environment ({size}) | pixel steps/s | physics-only steps/s | x {PUSHER_ID} "
        "| pixel steps per CPU-s | x {PUSHER_ID} (CPU) |".replace("{PUSHER_ID}", PUSHER_ID)
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for env_id in env_ids:
        print(
            f"| {env_id} | {_median([r.wall for r in pixel[env_id]]):,.0f} "
            f"| {_median([r.wall for r in physics[env_id]]):,.0f} "
            f"| {_times(_median(ratio[env_id]))} "
            f"| {_median([r.cpu for r in pixel[env_id]]):,.0f} "
            f"| {_times(_median(cpu_ratio[env_id]))} |"
        )
    if pusher is not None:
        print(
            f"| {PUSHER_ID} (render_mode=rgb_array) "
            f"| {_median([r.wall for r in pusher_rates]):,.1f} | | 1x "
            f"| {_median([r.cpu for r in pusher_rates]):,.1f} | 1x |"
        )
    print(
        "\nmedians over repeats; a ratio is the median of per-repeat ratios (measured side by "
        "side). CPU-s: this process's CPU time, all threads."
    )
    for env in [*pixel_envs.values(), *state_envs.values()]:
        env.close()
    if pusher is not None:
        pusher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
