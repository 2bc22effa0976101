"""What each visual choice of the scenes costs on a software renderer: a benchmark.

The scenes are built for llvmpipe (``assets/*.xml``: no shadows, no multisampling, low
tessellation); the README quoted what each costs from measurements made by hand while building
them. This measures them: for each task, the shipped model and three variants of it (shadows:
every light casts one into a 4,096 px map, MuJoCo's default size; 4x multisampling, MuJoCo's
default; MuJoCo's default tessellation, 28 slices x 16 stacks), each with its own renderer,
render the same sequence of states from random actions. Only the render call is timed (scene
update, draw, read-back; each renderer draws one untimed frame first); variants are interleaved
repeat by repeat, alternating their order, and each is reported as the median of its
per-repeat ratios to the shipped model (paired), with their range: a repeat of 200 frames
lasts ~0.1 s, so the machine's noise moves single ratios by about 0.1.

Usage:
    python scripts/bench_render_choices.py                 # 7 repeats of 200 frames, 64 px
    python scripts/bench_render_choices.py --quick         # 2 repeats of 40 frames
    LP_NUM_THREADS=1 python scripts/bench_render_choices.py
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

import sslrobot.envs  # noqa: F401 - registers the ids
from sslrobot.envs.core.render import Renderer

TASKS = ("sslrobot/Reach-v0", "sslrobot/Navigate-v1")


def with_shadows(model: mujoco.MjModel) -> None:
    model.light_castshadow[:] = 1
    model.vis.quality.shadowsize = 4096


def with_multisampling(model: mujoco.MjModel) -> None:
    model.vis.quality.offsamples = 4


def with_default_tessellation(model: mujoco.MjModel) -> None:
    model.vis.quality.numslices = 28
    model.vis.quality.numstacks = 16


VARIANTS: dict[str, Callable[[mujoco.MjModel], None] | None] = {
    "shipped": None,
    "shadows (4,096 px map)": with_shadows,
    "4x multisampling": with_multisampling,
    "default tessellation (28 x 16)": with_default_tessellation,
}


@dataclass
class Variant:
    """One model variant with its own renderer and data, drawing a task's recorded states."""

    name: str
    model: mujoco.MjModel
    data: mujoco.MjData
    renderer: Renderer

    def render_all(self, states: list[np.ndarray], camera_id: int) -> float:
        """Frames per second over ``states``, timing the render calls only."""
        spent = 0.0
        for state in states:
            mujoco.mj_setState(self.model, self.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
            mujoco.mj_forward(self.model, self.data)
            start = time.perf_counter()
            self.renderer.render(self.data, camera_id)
            spent += time.perf_counter() - start
        return len(states) / spent


def recorded_states(env: gym.Env, num_frames: int, seed: int) -> list[np.ndarray]:
    """States of ``num_frames`` steps of random actions (resets included): everything
    integration reads, the mocap bodies (Reach's target, Navigate-v1's goal and pillars) too."""
    physics = env.unwrapped.physics
    size = mujoco.mj_stateSize(physics.model, mujoco.mjtState.mjSTATE_INTEGRATION)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    states = []
    for _ in range(num_frames):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
        state = np.empty(size)
        mujoco.mj_getState(physics.model, physics.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        states.append(state)
    return states


def make_variants(env: gym.Env, image_size: int) -> list[Variant]:
    """Copies of the env's model (its look as drawn at the last reset), one per variant."""
    variants = []
    for name, change in VARIANTS.items():
        model = copy.copy(env.unwrapped.physics.model)
        if change is not None:
            change(model)
        renderer = Renderer(model, image_size, image_size)
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        renderer.render(data, env.unwrapped._camera_id)  # untimed: the first frame builds
        variants.append(Variant(name, model, data, renderer))  # the GL state (20-85 ms here)
    return variants


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--frames", type=int, default=200, help="rendered per variant and repeat")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 repeats of 40 frames")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.frames = 2, 40
    if args.repeats < 1 or args.frames < 1:
        parser.error("--repeats and --frames must be >= 1")
    return args


def main() -> None:
    args = parse_args()
    print(
        f"settings: tasks {list(TASKS)}, {args.repeats} repeats x {args.frames} frames per "
        f"variant, {args.image_size} px, seed {args.seed}; render call only"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, mujoco {mujoco.__version__}, "
        f"MUJOCO_GL={os.environ.get('MUJOCO_GL', '(unset)')}, "
        f"LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS', '(unset: the renderer sets 0)')}, "
        f"load average (1 min) {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for task in TASKS:
        env = gym.make(task, image_size=args.image_size)
        try:
            states = recorded_states(env, args.frames, args.seed)
            variants = make_variants(env, args.image_size)
            camera_id = env.unwrapped._camera_id
            rates: dict[str, list[float]] = {v.name: [] for v in variants}
            for repeat in range(args.repeats):
                order = variants if repeat % 2 == 0 else variants[::-1]
                for variant in order:
                    rates[variant.name].append(variant.render_all(states, camera_id))
                shown = ", ".join(f"{name} {values[-1]:.0f}/s" for name, values in rates.items())
                print(f"{task} repeat {repeat + 1}/{args.repeats}: {shown}", flush=True)
            shipped = rates["shipped"]
            for name, values in rates.items():
                paired = [value / base for value, base in zip(values, shipped, strict=True)]
                rows.append((task, name, statistics.median(values), paired))
            for variant in variants:
                variant.renderer.close()
        finally:
            env.close()
    print(
        "\n| task | model | frames/s (median) | x shipped (median of paired ratios) | their range |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    for task, name, rate, paired in rows:
        spread = f"{min(paired):.2f}-{max(paired):.2f}"
        print(f"| {task} | {name} | {rate:,.0f} | {statistics.median(paired):.2f}x | {spread} |")


if __name__ == "__main__":
    main()
