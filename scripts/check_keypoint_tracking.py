"""Does one keypoint follow an object, or do many share it?

A keypoint encoder's features are the (x, y) of its keypoints. A policy head fitted on 25
demonstrations finds an object most easily when one keypoint follows it wherever it is; when
the object is near one keypoint in one part of the workspace and near another elsewhere, the
head has to learn that hand-over from few examples, although a probe fitted on hundreds of
labelled episodes reads the object out of all keypoints together just as well. This prints,
for each encoder and each of the task's objects (``bench_readout.OBJECT_VARIABLES``), over
the last ``--episodes`` episodes of a dataset (the first half fits, the second half scores):

- the median error (cm) of a ridge probe on all the features;
- the median error of an affine map of the best single keypoint's (x, y), then of the best
  2 and 4 keypoints' (chosen greedily, fitted by least squares), with their indices.

An encoder whose best keypoint reads an object nearly as well as all features have one
keypoint on it; one that needs many keypoints spreads it over several.

Session 38, on the default run's Reach stream:

    python scripts/check_keypoint_tracking.py \\
        --data runs/default36/Reach-v0/data/unlabeled/dataset \\
        --encoder fdm+future=runs/default36/Reach-v0/pretrain/fdm+future/encoder \\
        --encoder transport=DIR

Prints its settings and one row per encoder and object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from check_look_invariance import (
    ALPHA,
    add_encoder_and_frame_arguments,
    named_encoders,
    object_columns,
    object_state_columns,
)

from sslrobot.data import open_dataset
from sslrobot.evaluation.probe import fit_ridge
from sslrobot.load import load_encoder
from sslrobot.models.features import extract_features


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a collect --out dataset")
    add_encoder_and_frame_arguments(parser, episodes=300)
    return parser.parse_args()


def load_frames(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Frames, the objects' states, each frame's episode, and the object names."""
    dataset = open_dataset(args.data)
    objects, columns = object_state_columns(dataset.manifest)
    frames, states, groups = [], [], []
    for episode_id in dataset.episode_ids[-args.episodes :]:
        episode = dataset.load_episode(episode_id, include_state=True)
        frames.append(np.asarray(episode["pixels"][:: args.every]))
        states.append(np.asarray(episode["state"][:: args.every][:, columns], dtype=np.float64))
        groups.append(np.full(len(states[-1]), episode_id))
    return np.concatenate(frames), np.concatenate(states), np.concatenate(groups), objects


#: Sizes of the keypoint sets read out (chosen greedily, each set holding the one before).
GREEDY_SIZES = (1, 2, 4)


def _median_errors(
    points: np.ndarray, keypoints: list[int], truth: np.ndarray, fit: np.ndarray
) -> tuple[float, float]:
    """Median distances between ``truth`` and an affine map of the chosen keypoints' (x, y),
    fitted by least squares on the ``fit`` frames: on those frames, and on the others."""
    inputs = np.hstack([points[:, keypoints].reshape(len(points), -1), np.ones((len(points), 1))])
    weights = np.linalg.lstsq(inputs[fit], truth[fit], rcond=None)[0]
    errors = np.linalg.norm(inputs @ weights - truth, axis=1)
    return float(np.median(errors[fit])), float(np.median(errors[~fit]))


def best_keypoint_sets(
    points: np.ndarray, truth: np.ndarray, fit: np.ndarray, sizes: tuple[int, ...]
) -> list[tuple[float, list[int]]]:
    """For each size, the held-out median error of the best set of that many keypoints and
    the set, by greedy forward selection of whole keypoints on the fitted frames' error (each
    set holds the one before), so the held-out frames score a choice they did not make.

    Args:
        points: Keypoints (N, K, 2).
        truth: The object's (x, y), (N, 2).
        fit: Boolean (N,): the frames the maps are fitted on; the others score them.
        sizes: Increasing set sizes, each at most K.
    """
    chosen: list[int] = []
    results = []
    for size in sizes:
        while len(chosen) < size:
            scores = {
                k: _median_errors(points, [*chosen, k], truth, fit)[0]
                for k in range(points.shape[1])
                if k not in chosen
            }
            chosen.append(min(scores, key=scores.get))
        results.append((_median_errors(points, chosen, truth, fit)[1], list(chosen)))
    return results


def main() -> None:
    args = parse_args()
    print("check_keypoint_tracking:", json.dumps({k: str(v) for k, v in vars(args).items()}))
    torch.manual_seed(0)
    frames, states, groups, objects = load_frames(args)
    episodes = np.unique(groups)
    fit = np.isin(groups, episodes[: len(episodes) // 2])
    print(f"{len(frames)} frames of {len(episodes)} episodes; objects {objects}")
    print(
        "encoder | object | median error (cm) of: all features (ridge) | "
        + " | ".join(f"the best {n} keypoint(s), affine (their indices)" for n in GREEDY_SIZES)
    )
    for name, directory in named_encoders(args.encoder):
        encoder, config = load_encoder(directory)
        if config.readout != "keypoints" or config.layer_norm or config.frame_stack != 1:
            raise SystemExit(
                f"{directory}: not a keypoint encoder of single frames whose features are (x, y)"
            )
        features = extract_features(encoder, frames, 256).astype(np.float64)
        points = features.reshape(len(features), -1, 2)  # (N, K, 2)
        probe = fit_ridge(features[fit], states[fit], ALPHA)
        read = probe.predict(features[~fit])
        for columns in object_columns(objects):
            truth = states[:, columns]
            if truth.shape[1] != 2:
                continue  # a keypoint is a place: only (x, y) objects
            label = objects[columns.start][:-2]
            all_error = np.median(np.linalg.norm(read[:, columns] - truth[~fit], axis=1))
            cells = [f"{100 * all_error:.2f}"]
            for error, chosen in best_keypoint_sets(points, truth, fit, GREEDY_SIZES):
                cells.append(f"{100 * error:.2f} ({','.join(map(str, chosen))})")
            print(f"{name} | {label} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
