"""Which pretraining streams did session 23's salience fix change? Old vs new flags per frame.

Until session 23 ``salient_pixel_weights`` took its background colour (the frame's median) from
a subsample with stride ``pixels // 256``: 16 at 64 px, the width of the decoder's block layout
(shuffle 4), so it sampled the frame's 4 left columns only. Now the stride is odd and the
sample covers the frame. For each dataset this compares the two weightings on every frame, in
the layout the objective sees (shuffle 4, weight 10, threshold 0.08: the default preset's), and
prints the frames and pixels whose flag differs: a stream with none gives the same pretraining
either way, so a run on it stands.

    python scripts/check_salience_sampling.py \\
        runs/default19/{Reach-v0,Push-v0,Navigate-v1}/data/unlabeled/dataset
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sslrobot.data import open_dataset
from sslrobot.models.encoder import normalize_pixels
from sslrobot.pretraining.objectives import salient_pixel_weights

SHUFFLE, WEIGHT, THRESHOLD = 4, 10.0, 0.08


def old_salient_pixel_weights(
    frames: torch.Tensor, weight: float, threshold: float
) -> torch.Tensor:
    """The weights as computed before session 23 (an even stride, ``pixels // 256``)."""
    frames = frames.float()
    flat = frames.flatten(2)
    median = flat[:, :, :: max(1, flat.shape[2] // 256)].median(dim=2).values
    median = median.view(*median.shape, *([1] * (frames.ndim - 2)))
    distance = (frames - median).abs().mean(dim=1, keepdim=True)
    return 1.0 + weight * (distance > threshold).float()


def block_layout(pixels: np.ndarray) -> torch.Tensor:
    """uint8 frames (N, H, W, 3) in the decoder's block layout, (N, 3, r*r, H/r, W/r)."""
    x = normalize_pixels(torch.from_numpy(np.array(pixels)).permute(0, 3, 1, 2))
    n, c, h, w = x.shape
    r = SHUFFLE
    blocks = x.reshape(n, c, h // r, r, w // r, r).permute(0, 1, 3, 5, 2, 4)
    return blocks.reshape(n, c, r * r, h // r, w // r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", help="collect --out directories")
    args = parser.parse_args()
    print(f"# shuffle {SHUFFLE}, weight {WEIGHT}, threshold {THRESHOLD}; old vs new flags")
    for path in args.datasets:
        dataset = open_dataset(path)
        frames = pixels_differ = frames_differ = flags = 0
        for episode_id in dataset.episode_ids:
            blocks = block_layout(dataset.load_episode(episode_id)["pixels"])
            old = old_salient_pixel_weights(blocks, WEIGHT, THRESHOLD)
            new = salient_pixel_weights(blocks, WEIGHT, THRESHOLD)
            differ = old != new
            frames += blocks.shape[0]
            flags += differ.numel()
            pixels_differ += int(differ.sum())
            frames_differ += int(differ.flatten(1).any(1).sum())
        print(
            f"{path}: {frames} frames, {frames_differ} with a flag that differs "
            f"({100 * frames_differ / frames:.1f}%), {pixels_differ} of {flags} flags "
            f"({100 * pixels_differ / flags:.2f}%)",
            flush=True,
        )


if __name__ == "__main__":
    main()
