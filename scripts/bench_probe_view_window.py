"""How Navigate's probe gap depends on what counts as "the goal in view". A sensitivity check.

The package scores Navigate's goal variables on the frames whose goal centre is within the ego
camera's +-45 degrees (its field of view; ``view_conditions`` of the task). This script refits
the same linear probe of a finished run's encoders with other half-angles (35 degrees keeps only
goals well inside the picture, 60 takes in goals whose edge still shows, 180 is every frame) and
prints, per half-angle, the pretrained encoder's mean over the view variables, the random
encoders' mean over their initialisations and the gap, the number issue 4 asks to be >= 0.2.

    python scripts/bench_probe_view_window.py --run runs/default8 --task Navigate-v0

Encodes each encoder's probe frames once (the probe's own split and subsample), then fits one
probe per half-angle; a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np
import torch

import sslrobot
from sslrobot.data import open_dataset
from sslrobot.evaluation.probe import (
    dataset_state_names,
    dataset_view_state_names,
    encode_episodes,
    fit_linear_probe,
    heldout_split,
)

GOAL_VARIABLES = ("goal_distance", "goal_cos_bearing", "goal_sin_bearing")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `sslrobot run` dir")
    parser.add_argument("--task", default="Navigate-v1")
    parser.add_argument("--objective", default="fdm+future", help="the pretrained encoder")
    parser.add_argument("--none-inits", type=int, default=5, help="none, none-init1, ...")
    parser.add_argument(
        "--half-angles", type=float, nargs="+", default=[35, 40, 45, 50, 60, 90, 180]
    )
    parser.add_argument("--max-frames", type=int, default=20_000, help="per split, as the probe")
    parser.add_argument("--seed", type=int, default=0, help="the probe's split seed")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print("bench_probe_view_window:", json.dumps({k: str(v) for k, v in vars(args).items()}))
    data_dir = args.run / args.task / "data" / "unlabeled" / "dataset"
    dataset = open_dataset(data_dir)
    view = dataset_view_state_names(dataset.manifest) or dataset.manifest["state_names"]
    nones = ["none", *(f"none-init{i}" for i in range(1, args.none_inits))]
    pretrain = args.run / args.task / "pretrain"
    # The run's probe split (session 17 on): episodes no pretraining here trained on.
    train_ids, val_ids = heldout_split(
        dataset,
        data_dir,
        args.seed,
        [pretrain / name / "encoder" for name in (args.objective, *nones)],
    )
    encoded = {}
    for name in (args.objective, *nones):
        encoder, _ = sslrobot.load_encoder(args.run / args.task / "pretrain" / name / "encoder")
        train = encode_episodes(dataset, train_ids, encoder, args.max_frames, 256, args.seed, 1)
        val = encode_episodes(dataset, val_ids, encoder, args.max_frames, 256, args.seed, 1)
        encoded[name] = (train, val)
    names = dataset_state_names(dataset.manifest, encoded[args.objective][0][1].shape[1])
    bearing = encoded[args.objective][1][1][:, names.index("goal_cos_bearing")]
    print(f"\n| half-angle | held-out frames in view | {args.objective} | none (mean) | gap |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for degrees in args.half_angles:
        least = math.cos(math.radians(degrees))
        conditions = [(name, "goal_cos_bearing", least) for name in GOAL_VARIABLES]
        scores = {}
        for name, ((train_x, train_y, groups), (val_x, val_y, _)) in encoded.items():
            result = fit_linear_probe(
                train_x, train_y, val_x, val_y, names, train_groups=groups, seed=args.seed,
                mean_over=view, view_conditions=conditions,
            )  # fmt: skip
            scores[name] = result.r2_mean
        none = statistics.mean(scores[name] for name in nones)
        share = float(np.mean(bearing >= least))
        print(
            f"| {degrees:g}° | {share:.0%} | {scores[args.objective]:.3f} | {none:.3f} | "
            f"{scores[args.objective] - none:+.3f} |"
        )


if __name__ == "__main__":
    main()
