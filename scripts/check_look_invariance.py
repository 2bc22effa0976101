"""How much does the look move an encoder's features, and the objects read out of them?

A look twin (``sslrobot.data.look_twins``) holds the same frames as a dataset in another
visual preset, so the features of the two differ by the look alone. For each encoder this
prints, over the last ``--episodes`` episodes of the datasets:

- the look's share of the feature variance: mean squared difference between the features
  of a frame in the two looks, over twice the features' total variance in the varied look
  (0: the look moves nothing; about 1: the features of the two looks are unrelated);
- for the task's objects (``bench_readout.OBJECT_VARIABLES``): a ridge probe fitted on the
  varied look's features of the first half of those episodes, read out on the second half in
  both looks: its median error in each look (cm) and the median distance between the two
  readouts of the same frame (cm), which the look alone makes.

Session 37, on the default run's Reach stream and its twin:

    python scripts/check_look_invariance.py --data runs/default36/Reach-v0/data/unlabeled/dataset \\
        --twin runs/default37lt/Reach-v0/data/unlabeled_authored/dataset \\
        --encoder fdm+future=runs/default36/Reach-v0/pretrain/fdm+future/encoder \\
        --encoder look-targets=runs/default37lt/Reach-v0/pretrain/fdm+future/encoder \\
        --encoder none=runs/default36/Reach-v0/pretrain/none/encoder

Prints its settings and one row per encoder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from bench_readout import OBJECT_VARIABLES

from sslrobot.data import open_dataset
from sslrobot.data.look_twins import look_twin_problems
from sslrobot.evaluation.probe import fit_ridge
from sslrobot.load import load_encoder
from sslrobot.models.features import extract_features

#: The probe's ridge penalty on standardised features (the package's probes choose theirs
#: per variable; one fixed penalty keeps this check simple and the same for every encoder).
ALPHA = 1.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a dataset in the varied look")
    parser.add_argument("--twin", type=Path, required=True, help="its look twin")
    add_encoder_and_frame_arguments(parser, episodes=200)
    return parser.parse_args()


def add_encoder_and_frame_arguments(parser: argparse.ArgumentParser, episodes: int) -> None:
    """``--encoder NAME=DIR`` (repeatable), ``--episodes`` and ``--every``: which encoders
    read which frames, shared by the checks of encoders on a dataset's frames."""
    parser.add_argument(
        "--encoder", action="append", required=True, metavar="NAME=DIR",
        help="an encoder to check (repeat the option for several)",
    )  # fmt: skip
    parser.add_argument("--episodes", type=int, default=episodes, help="the last N episodes")
    parser.add_argument("--every", type=int, default=2, help="every k-th frame of an episode")


def named_encoders(specs: list[str]) -> list[tuple[str, str]]:
    """``--encoder NAME=DIR`` values as (name, directory) pairs, refusing a value without
    ``=``."""
    pairs = []
    for spec in specs:
        name, _, directory = spec.partition("=")
        if not directory:
            raise SystemExit(f"--encoder takes NAME=DIR, got {spec!r}")
        pairs.append((name, directory))
    return pairs


def load_frames(
    args: argparse.Namespace,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Frames of both looks, the objects' states, each frame's episode, the object names."""
    varied, twin = open_dataset(args.data), open_dataset(args.twin)
    problems = look_twin_problems(varied.manifest, twin.manifest, args.data, args.twin)
    if problems:
        raise SystemExit(f"{args.twin} is not a look twin of {args.data}: " + "; ".join(problems))
    objects, columns = object_state_columns(varied.manifest)
    ids = varied.episode_ids[-args.episodes :]
    frames, twin_frames, states, groups = [], [], [], []
    for episode_id in ids:
        mine = varied.load_episode(episode_id, include_state=True)
        theirs = twin.load_episode(episode_id)
        if not np.array_equal(mine["action"], theirs["action"]):
            raise SystemExit(f"episode {episode_id}: the twin's actions differ")
        frames.append(np.asarray(mine["pixels"][:: args.every]))
        twin_frames.append(np.asarray(theirs["pixels"][:: args.every]))
        states.append(np.asarray(mine["state"][:: args.every][:, columns], dtype=np.float64))
        groups.append(np.full(len(states[-1]), episode_id))
    return (
        np.concatenate(frames),
        np.concatenate(twin_frames),
        np.concatenate(states),
        np.concatenate(groups),
        objects,
    )


def object_state_columns(manifest: dict) -> tuple[list[str], list[int]]:
    """The task's object variables (``bench_readout.OBJECT_VARIABLES``) that a dataset's
    state holds, and their columns in it."""
    task = manifest["env_id"].split("/")[-1]
    names = list(manifest["state_names"])
    objects = [name for name in OBJECT_VARIABLES.get(task, ()) if name in names]
    if not objects:
        raise SystemExit(f"{task}: no object variables known (bench_readout.OBJECT_VARIABLES)")
    return objects, [names.index(name) for name in objects]


def object_columns(objects: list[str]) -> list[slice]:
    """Columns of each object: (x, y) pairs in metres, whose distances are printed in cm;
    other variables (Navigate's distance and bearing) one by one, x 100 in their units."""
    xs, ys = objects[::2], objects[1::2]
    paired = len(xs) == len(ys) and all(
        x.endswith("_x") and y == x[:-2] + "_y" for x, y in zip(xs, ys, strict=True)
    )
    step = 2 if paired else 1
    return [slice(i, i + step) for i in range(0, len(objects), step)]


def main() -> None:
    args = parse_args()
    print("check_look_invariance:", json.dumps({k: str(v) for k, v in vars(args).items()}))
    torch.manual_seed(0)
    frames, twin_frames, states, groups, objects = load_frames(args)
    episodes = np.unique(groups)
    fit = np.isin(groups, episodes[: len(episodes) // 2])
    print(f"{len(frames)} frames of {len(episodes)} episodes; objects {objects}")
    print(
        "encoder | look share of feature variance | median readout error, varied / twin look "
        "(cm) | median readout shift by the look (cm)"
    )
    for name, directory in named_encoders(args.encoder):
        encoder, config = load_encoder(directory)
        if config.frame_stack != 1:
            raise SystemExit(f"{directory}: reads stacks of {config.frame_stack} frames, not one")
        varied = extract_features(encoder, frames, 256).astype(np.float64)
        twin = extract_features(encoder, twin_frames, 256).astype(np.float64)
        share = ((varied - twin) ** 2).mean(axis=0).sum() / (2 * varied.var(axis=0).sum())
        probe = fit_ridge(varied[fit], states[fit], ALPHA)
        read, read_twin = probe.predict(varied[~fit]), probe.predict(twin[~fit])

        def distance(a: np.ndarray, b: np.ndarray) -> str:
            return " ".join(
                f"{100 * np.median(np.linalg.norm(a[:, p] - b[:, p], axis=1)):.2f}"
                for p in object_columns(objects)
            )

        truth = states[~fit]
        print(
            f"{name} | {share:.3f} | {distance(read, truth)} / {distance(read_twin, truth)} | "
            f"{distance(read, read_twin)}"
        )


if __name__ == "__main__":
    main()
