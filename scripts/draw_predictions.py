"""Draw a world model's future frames with and without its copy path (one PNG).

Rows per episode: the real frames o_t..o_{t+K}; o_t and the predictions for k = 1..K with the
copy path (what ``sslrobot probe`` scores); o_t and the predictions from the latents alone. The
copy path draws a static object sharply whether the latent knows where it is or not, so only the
last row shows how precisely the representation holds the scene. Takes window ``--frame`` of
the last ``--episodes`` episodes (the highest ids: not the pretraining's held-out
episodes, which its hash-ranked split scatters over the dataset).

    python scripts/draw_predictions.py --model runs/default8/Reach-v0/pretrain/fdm+future/encoder \\
        --data runs/default8/Reach-v0/data/unlabeled/dataset --out reach_predictions.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from sslrobot.data import open_dataset
from sslrobot.pretraining.plots import prediction_strip, save_png
from sslrobot.pretraining.world_model import load_world_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a pretrain --out dir")
    parser.add_argument("--data", type=Path, required=True, help="a collect --out dir")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--frame", type=int, default=5, help="first frame of each window")
    parser.add_argument("--steps-ahead", type=int, default=3, help="K frames predicted")
    parser.add_argument("--scale", type=int, default=3, help="pixels per frame pixel")
    args = parser.parse_args()

    model = load_world_model(args.model)
    dataset = open_dataset(args.data)
    windows, actions = [], []
    for episode_id in dataset.episode_ids[-args.episodes :]:
        episode = dataset.load_episode(episode_id)
        start = max(0, min(args.frame, len(episode["action"]) - args.steps_ahead))
        windows.append(episode["pixels"][start : start + args.steps_ahead + 1])
        actions.append(episode["action"][start : start + args.steps_ahead])
    real = torch.from_numpy(np.stack(windows))
    action = torch.from_numpy(np.stack(actions).astype(np.float32))
    first = real[:, :1, ..., -3:]
    predicted = [
        torch.cat([first, model.predict_frames(real, action, copy)], dim=1).numpy()
        for copy in (True, False)
    ]
    image = prediction_strip(real[..., -3:].numpy(), *predicted, scale=args.scale)
    print(f"wrote {save_png(args.out, image)}")


if __name__ == "__main__":
    main()
