"""Draw a keypoint encoder's keypoints on frames of a dataset (one PNG), to see what they follow.

Takes the second frame of the last ``--episodes`` episodes (the highest ids; not the
pretraining's held-out episodes, which its hash-ranked split scatters over the dataset), encodes
them with a ``readout="keypoints"`` encoder and writes ``pretraining.plots.keypoint_strip``.

    python scripts/draw_keypoints.py --encoder runs/default4/Reach-v0/pretrain/fdm+future/encoder \\
        --data runs/default4/Reach-v0/data/unlabeled/dataset --out reach_keypoints.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import sslrobot
from sslrobot.data import open_dataset
from sslrobot.pretraining.plots import keypoint_strip, save_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", type=Path, required=True, help="a pretrain --out dir")
    parser.add_argument("--data", type=Path, required=True, help="a collect --out dir")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--frame", type=int, default=1, help="index of the frame per episode")
    args = parser.parse_args()

    encoder, config = sslrobot.load_encoder(args.encoder)
    dataset = open_dataset(args.data)
    frames = []
    for episode_id in dataset.episode_ids[-args.episodes :]:
        pixels = dataset.load_episode(episode_id)["pixels"]
        frames.append(pixels[min(args.frame, len(pixels) - 1)])
    frames = np.stack(frames)
    with torch.no_grad():
        points = encoder.keypoints(torch.from_numpy(frames)).numpy()
    image = keypoint_strip(frames, points, pixel_range=config.keypoint_pixel_range())
    print(f"wrote {save_png(args.out, image)}")


if __name__ == "__main__":
    main()
