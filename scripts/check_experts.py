"""Scripted-expert success rate of every sslrobot environment over many seeds.

Runs ``sslrobot.envs.expert_action`` for one episode per seed (0 .. N-1) within each id's step
limit, in ``obs_mode="state"`` (the expert reads the privileged state; no rendering), and
prints the success rate, episode lengths and the failing seeds. Exits with status 1 if any
rate is below ``--min-rate`` (default 0.95, the issue's bar).

Usage:
    python scripts/check_experts.py                 # 200 seeds per environment
    python scripts/check_experts.py --seeds 50 --envs sslrobot/Push-v0
    python scripts/check_experts.py --noise 0.3     # noisy expert: AR(1) Gaussian noise
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import warnings

import gymnasium as gym
import numpy as np

import sslrobot.envs


def run_expert(
    env_id: str, seed: int, noise: float = 0.0, correlation: float = 0.9
) -> tuple[bool, int]:
    """One expert episode; returns (success, steps). ``noise`` adds AR(1) Gaussian noise of
    that stationary standard deviation to every action (then clips to [-1, 1])."""
    with warnings.catch_warnings():  # older versions are checked on purpose
        warnings.filterwarnings("ignore", ".*is out of date", DeprecationWarning)
        env = gym.make(env_id, obs_mode="state")
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    perturbation = np.zeros(env.action_space.shape)
    innovation = noise * np.sqrt(1.0 - correlation**2)
    steps, info, done = 0, {}, False
    while not done:
        action = sslrobot.envs.expert_action(env)
        if noise > 0.0:
            perturbation = correlation * perturbation + innovation * rng.normal(size=action.shape)
            action = np.clip(action + perturbation, -1.0, 1.0).astype(np.float32)
        _, _, terminated, truncated, info = env.step(action)
        steps += 1
        done = terminated or truncated
    env.close()
    return bool(info["is_success"]), steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="episodes (seeds 0..N-1)")
    parser.add_argument("--envs", nargs="*", default=None, help="ids (default: all)")
    parser.add_argument("--min-rate", type=float, default=0.95, help="exit 1 below this rate")
    parser.add_argument("--noise", type=float, default=0.0, help="AR(1) action noise std")
    args = parser.parse_args()
    env_ids = args.envs or list(sslrobot.envs.ENV_IDS)
    print(f"seeds: 0..{args.seeds - 1}, action noise std: {args.noise}, min rate: {args.min_rate}")
    print()
    print("| environment | step limit | success rate | steps p50 / p95 / max (successes) | time |")
    print("| --- | ---: | ---: | ---: | ---: |")
    all_pass = True
    failures: dict[str, list[int]] = {}
    for env_id in env_ids:
        module = gym.spec(env_id).entry_point.split(":")[0]
        if importlib.util.find_spec(module) is None:
            print(f"| {env_id} | skipped: module {module} does not exist yet | | | |")
            continue
        start = time.perf_counter()
        results = [run_expert(env_id, seed, noise=args.noise) for seed in range(args.seeds)]
        successes = np.array([success for success, _ in results])
        lengths = np.array([steps for success, steps in results if success])
        rate = float(successes.mean())
        all_pass &= rate >= args.min_rate
        failures[env_id] = [seed for seed, (success, _) in enumerate(results) if not success]
        p50, p95, top = np.percentile(lengths, [50, 95, 100]) if lengths.size else [0, 0, 0]
        print(
            f"| {env_id} | {sslrobot.envs.MAX_EPISODE_STEPS[env_id]} | {rate:.1%} "
            f"| {p50:.0f} / {p95:.0f} / {top:.0f} | {time.perf_counter() - start:.0f} s |"
        )
    print()
    for env_id, seeds in failures.items():
        if seeds:
            print(f"{env_id} failed seeds: {seeds}")
    print("PASS" if all_pass else f"FAIL: some rate is below {args.min_rate}")
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
