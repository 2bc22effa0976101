"""Where does a frozen encoder lose the objects: the readout error by the fingertip's distance.

A linear readout of the target from the 8-keypoint transport encoder errs by 0.7 cm (median
over the demonstrations), yet a head given it with the true fingertip succeeds far less often
than one given the true target (46% against 78% on Reach, ``bench_readout.py
--with-fingertip``). A median hides where the errors fall. This script fits the readout of
``bench_readout.py`` (ridge, features -> every state variable) on some unlabeled episodes,
scores it on others that it never saw, and tables the error of each object by the distance
from the fingertip to the object the task steers it to (Reach: the target; Push: the cube).
With ``--policy`` it also scores the frames a BC policy visits on the run's evaluation seeds,
which are not the stream's. Diagnostic only: the privileged state labels the readout, never a
policy. Usage:

    python scripts/check_readout_near_target.py --run runs/default36 --task Reach-v0 \\
        --encoder fdm+future --policy runs/default36/Reach-v0/policy/fdm+future/demos25/seed0/policy

Prints its settings, then per distance bin (for a policy's rollouts also per episode-step
bin) the frame count and the median and 90th percentile of each object's readout error (cm).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_readout import encode, encoder_spec, labelled_frames

from sslrobot.data import open_dataset
from sslrobot.evaluation.probe import fit_ridge, select_alphas
from sslrobot.pipeline.run import EVAL_SEED_BASE
from sslrobot.policy import load_policy
from sslrobot.policy.encoders import resolve_encoder
from sslrobot.policy.environment import make_env

#: Per task: the object the fingertip is steered to, and every object whose readout is scored.
TASK_OBJECTS = {
    "Reach-v0": ("target", ("target",)),
    "Push-v0": ("cube", ("cube", "goal")),
}
#: Edges of the fingertip-to-object distance bins (m); Reach succeeds below 0.045.
DISTANCE_BINS = (0.0, 0.045, 0.07, 0.10, 0.15, 0.25, 10.0)
#: Edges of the episode-step bins of a policy's rollouts (Reach ends at 50, Push at 150).
STEP_BINS = (0, 10, 30, 60, 100, 151)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `sslrobot run` dir")
    parser.add_argument("--task", default="Reach-v0", choices=sorted(TASK_OBJECTS))
    parser.add_argument(
        "--encoder",
        default="fdm+future",
        help="an objective pretrained in the run, none, or an encoder directory",
    )
    parser.add_argument("--fit-episodes", type=int, default=300, help="readout's episodes")
    parser.add_argument("--score-episodes", type=int, default=100, help="held-out episodes")
    parser.add_argument("--policy", type=Path, help="a BC policy dir: also score its rollouts")
    parser.add_argument("--rollouts", type=int, default=100, help="policy episodes")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


class ObjectErrors:
    """Readout errors of the task's objects, binned by the fingertip's distance to one."""

    def __init__(self, names: list[str], task: str) -> None:
        steered, objects = TASK_OBJECTS[task]
        self.tip = [names.index("fingertip_x"), names.index("fingertip_y")]
        self.steered = [names.index(f"{steered}_x"), names.index(f"{steered}_y")]
        self.columns = {o: [names.index(f"{o}_x"), names.index(f"{o}_y")] for o in objects}

    def measure(self, states: np.ndarray, read: np.ndarray) -> tuple[np.ndarray, dict]:
        """Distances (N,) from the fingertip to the steered object, and each object's
        readout error (N,), in metres."""
        distance = np.linalg.norm(states[:, self.steered] - states[:, self.tip], axis=1)
        errors = {
            o: np.linalg.norm(read[:, c] - states[:, c], axis=1) for o, c in self.columns.items()
        }
        return distance, errors

    def print_table(
        self, title: str, distance: np.ndarray, errors: dict, steps: np.ndarray | None = None
    ) -> None:
        """Per distance bin (and with ``steps``, per episode-step bin too), the frame count
        and each object's median and 90th-percentile readout error in cm."""
        print(title)
        rows = []
        for low, high in itertools.pairwise(DISTANCE_BINS):
            upper = "inf" if high >= 10 else f"{high * 100:4.1f}"
            rows.append((f"{low * 100:4.1f}-{upper:>4s} cm", (distance >= low) & (distance < high)))
        if steps is not None:
            rows += [
                (f"steps {low:3d}-{high - 1:3d}", (steps >= low) & (steps < high))
                for low, high in itertools.pairwise(STEP_BINS)
            ]
        for label, inside in rows:
            if not inside.any():
                continue
            cells = ", ".join(
                f"{o} median {np.median(e[inside]) * 100:.2f} p90 "
                f"{np.percentile(e[inside], 90) * 100:.2f}"
                for o, e in errors.items()
            )
            print(f"  {label}: {inside.sum():5d} frames; {cells}")


def rollout_frames(
    policy_dir: Path,
    encoder: torch.nn.Module,
    readout: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """States, readouts and episode steps of every frame a policy visits on ``episodes``
    seeded episodes, and how many of them succeed."""
    policy = load_policy(policy_dir)
    look = policy.record.get("demos_visual_preset") or "train"
    env = make_env(policy.env_id, policy.image_size, "pixels", visual_preset=look)
    states, reads, steps, successes = [], [], [], 0
    try:
        for index in range(episodes):
            obs, info = env.reset(seed=seed + index)
            policy.reset()  # a head with the first frame's context starts on this one
            done, success, step = False, False, 0
            while not done:
                steps.append(step)
                step += 1
                states.append(np.asarray(info["state"], dtype=np.float64))
                reads.append(readout(encode(encoder, np.asarray(obs["pixels"])[None]))[0])
                obs, _, terminated, truncated, info = env.step(policy(obs))
                done, success = terminated or truncated, success or bool(info["is_success"])
            successes += success
    finally:
        env.close()
    return np.array(states), np.array(reads), np.array(steps), successes


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    config = json.loads((args.run / "config.json").read_text())
    print(f"check_readout_near_target: {vars(args)}")
    start = time.perf_counter()
    dataset = open_dataset(args.run / args.task / "data" / "unlabeled" / "dataset")
    names = list(dataset.manifest["state_names"])
    spec = encoder_spec(args.run, args.task, args.encoder)
    encoder = resolve_encoder(spec, config["image_size"], 0, config["encoder_arch"])
    encoder = encoder.module.eval()
    ids = np.random.default_rng(0).permutation(list(dataset.episode_ids))
    fit_ids = ids[: args.fit_episodes]
    score_ids = ids[args.fit_episodes : args.fit_episodes + args.score_episodes]
    if len(score_ids) == 0:
        raise SystemExit(f"{dataset.root} has {len(ids)} episodes: none left to score")
    x, y, groups = labelled_frames(encoder, dataset, fit_ids)
    probe = fit_ridge(x, y, select_alphas(x, y, groups=groups))
    errors = ObjectErrors(names, args.task)
    x, y, _ = labelled_frames(encoder, dataset, score_ids)
    errors.print_table(
        f"unlabeled stream, {len(score_ids)} episodes the readout never saw",
        *errors.measure(y, probe.predict(x)),
    )
    if args.policy is not None:
        seed = config["seed"] + EVAL_SEED_BASE
        states, reads, steps, successes = rollout_frames(
            args.policy, encoder, probe.predict, args.rollouts, seed
        )
        errors.print_table(
            f"the frames {args.policy} visits on evaluation seeds {seed}+ "
            f"({successes} of {args.rollouts} episodes succeed), by distance, then by step",
            *errors.measure(states, reads),
            steps,
        )
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
