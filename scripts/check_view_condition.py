"""Does Navigate's "goal in view" condition match what the camera shows? A check.

The probes score Navigate's goal variables only on frames where the goal is in view
(``view_conditions`` in the manifest: ``goal_cos_bearing >= cos 45 deg``), and that bearing is
measured from the robot's centre, 10 cm behind the ego camera: near the goal, a frame counted
in view might not show it. The goal is the scene's only red object, so this counts, over a
dataset's episodes, the frames counted in view that hold no red pixel, and the frames counted
out of view that hold one. Usage:

    python scripts/check_view_condition.py --data runs/nav33/Navigate-v1/data/unlabeled/dataset

Prints its settings and the counts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sslrobot.data import open_dataset
from sslrobot.evaluation.probe import dataset_view_conditions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a Navigate dataset directory")
    parser.add_argument("--episodes", type=int, default=200, help="episodes read (first ones)")
    parser.add_argument("--near", type=float, default=0.6, help="goal distance counted as near (m)")
    args = parser.parse_args()
    print("check_view_condition:", json.dumps({k: str(v) for k, v in vars(args).items()}))
    dataset = open_dataset(args.data)
    conditions = dataset_view_conditions(dataset.manifest)
    if not conditions:
        raise SystemExit(f"{args.data}: its env has no view_conditions")
    _, variable, threshold = conditions[0]
    names = dataset.manifest["state_names"]
    column, distance = names.index(variable), names.index("goal_distance")
    counts = {"frames": 0, "in_view": 0, "in_view_no_red": 0, "out_of_view": 0,
              "out_of_view_red": 0, "in_view_near": 0, "in_view_near_no_red": 0}  # fmt: skip
    for episode_id in list(dataset.episode_ids)[: args.episodes]:
        arrays = dataset.load_episode(episode_id, include_state=True)
        pixels = arrays["pixels"].astype(np.int16)
        red = ((pixels[..., 0] > 150) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).sum((1, 2))
        in_view = arrays["state"][:, column] >= threshold
        near = in_view & (arrays["state"][:, distance] < args.near)
        counts["frames"] += len(in_view)
        counts["in_view"] += int(in_view.sum())
        counts["in_view_no_red"] += int((in_view & (red == 0)).sum())
        counts["out_of_view"] += int((~in_view).sum())
        counts["out_of_view_red"] += int((~in_view & (red > 0)).sum())
        counts["in_view_near"] += int(near.sum())
        counts["in_view_near_no_red"] += int((near & (red == 0)).sum())
    print(f"condition: {variable} >= {threshold:.4f}")
    print(json.dumps(counts))
    share = counts["in_view_no_red"] / max(counts["in_view"], 1)
    print(f"frames counted in view without a red pixel: {share:.2%}")


if __name__ == "__main__":
    main()
