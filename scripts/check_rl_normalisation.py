"""Do the RL normaliser's statistics cover what the policy will see? A check.

``train-policy --algo rl`` without ``--demos`` standardises its inputs with statistics of
``rl_norm_steps`` random-action steps, and clips them at ``normalizer.CLIP`` standard
deviations. What an episode fixes (Reach's target, Navigate's landmarks) is drawn once per
episode, so too few episodes give it a tiny spread, and an expert's later episodes sit at the
clip, their information gone. This fits the statistics as ``train-policy`` does (state
observations, one env, seed 0) and counts, over ``--episodes`` expert episodes, how often each
state variable reaches the clip. Usage (session 34; raw output:
docs/results/benchmarks/check_rl_normalisation_session34.txt):

    python scripts/check_rl_normalisation.py
    python scripts/check_rl_normalisation.py --tasks Navigate-v1 --steps 2000
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

import sslrobot.envs  # noqa: F401  (registers the tasks)
from sslrobot.policy.normalizer import CLIP, Normalizer
from sslrobot.policy.rl import NORM_EPISODE_STEPS, _random_observations


def clipped_share(task: str, steps: int, episodes: int) -> tuple[int, int, dict[str, float]]:
    """(random frames, expert steps, {state variable: share of expert steps at the clip})."""
    env_id = f"sslrobot/{task}"
    venv = DummyVecEnv([lambda: gym.make(env_id, obs_mode="state")])
    data = np.concatenate(_random_observations(venv, steps, 0))
    venv.close()
    norm = Normalizer(data.shape[1]).fit(data)
    env = gym.make(env_id, obs_mode="state")
    names = env.unwrapped.state_names
    hits, count = np.zeros(data.shape[1]), 0
    for seed in range(episodes):
        env.reset(seed=500_000 + seed)  # seeds no run of the package collects or evaluates
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(env.unwrapped.expert_action())
            hits += ((torch.as_tensor(obs) - norm.mean) / norm.std).abs().numpy() >= CLIP
            count += 1
            done = terminated or truncated
    env.close()
    return len(data), count, {names[i]: hits[i] / count for i in np.nonzero(hits)[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["Reach-v0", "Push-v0", "Navigate-v1"])
    parser.add_argument("--steps", type=int, default=500, help="rl_norm_steps (its default)")
    parser.add_argument("--episodes", type=int, default=20, help="expert episodes scored")
    args = parser.parse_args()
    print(f"settings: {vars(args)}; a reset every {NORM_EPISODE_STEPS} random steps, "
          f"clip at {CLIP} standard deviations")  # fmt: skip
    for task in args.tasks:
        frames, steps, shares = clipped_share(task, args.steps, args.episodes)
        named = ", ".join(f"{name} {100 * share:.1f}%" for name, share in shares.items())
        print(f"{task}: {frames} random frames; {steps} expert steps; at the clip: "
              f"{named or 'none'}")  # fmt: skip


if __name__ == "__main__":
    main()
