"""How much of the state do frozen features hold at all, and how much of it linearly? A diagnostic.

The package's probe (``sslrobot probe``) is linear, as issue 4 asks and as the field reports
it. This script puts that number beside two others on the same frames of a finished run's task
(the probe's own split: held-out episodes, 20,000 frames per split):

- ``linear``: the ridge probe of ``sslrobot probe`` (reproduces the run's probe R^2);
- ``mlp``: a two-layer MLP probe (256-256, ReLU, Adam, fixed steps) on the same frozen
  features: how much the features hold when the readout may be nonlinear;
- ``supervised``: the same encoder architecture trained end to end on the training episodes'
  labels (the view variables, standardised; DrQ random shift), scored by its own linear head
  and by the ridge probe on its features: roughly the most this architecture gives a linear
  probe from one frame (labels it is never given in pretraining).

for the run's frozen random encoder (``none``) and its pretrained one (``--objective``). Usage:

    python scripts/bench_probe_ceiling.py --run runs/default5 --task Navigate-v0
    python scripts/bench_probe_ceiling.py --run runs/default5 --task Reach-v0

Prints its settings, then per encoder and readout the mean R^2 over the view variables on
every frame and each variable's R^2; where the env gives view conditions (Navigate's goal),
also the linear probes' means with those variables scored in view, the run's headline. The
privileged state is used as labels only, as in any probe.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import sslrobot
from sslrobot.data import open_dataset
from sslrobot.evaluation.probe import (
    dataset_state_names,
    dataset_view_conditions,
    dataset_view_state_names,
    encode_episodes,
    fit_linear_probe,
    heldout_split,
    iter_probe_frames,
    r2_scores,
)
from sslrobot.models.encoder import Encoder, EncoderConfig
from sslrobot.models.features import extract_features
from sslrobot.pretraining import artifacts
from sslrobot.pretraining.augment import random_shift


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `sslrobot run` dir")
    parser.add_argument("--task", default="Navigate-v1", help="task directory in the run")
    parser.add_argument("--objective", default="fdm+future", help="the pretrained encoder")
    parser.add_argument("--max-frames", type=int, default=20_000, help="per split, as the probe")
    parser.add_argument("--mlp-steps", type=int, default=3000)
    parser.add_argument("--supervised-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=128, help="supervised training batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="the MLP's and supervised seed")
    parser.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of the held-out split (default: the run's, as its probes split)",
    )
    parser.add_argument(
        "--supervised-config",
        type=Path,
        default=None,
        help="an encoder_config.json whose architecture to train on the labels instead of the "
        "pretrained encoder's (e.g. the linear-readout cnn of a `bench_variants.py --arch cnn` "
        "run): is the ceiling the architecture's or the labels'?",
    )
    parser.add_argument(
        "--save", type=Path, default=None,
        help="write the supervised encoder here (loadable by sslrobot.load_encoder, e.g. for "
        "`bench_variants.py --encoder DIR`: what BC gets from a label-trained encoder)",
    )  # fmt: skip
    return parser.parse_args()


def standardiser(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per column (1 where constant)."""
    scale = values.std(axis=0)
    return values.mean(axis=0), np.where(scale > 1e-8, scale, 1.0)


def mlp_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    steps: int,
    seed: int,
) -> np.ndarray:
    """Held-out R^2 per target of a 256-256 ReLU MLP fitted on standardised features."""
    x_mean, x_scale = standardiser(train_x)
    y_mean, y_scale = standardiser(train_y)
    x = torch.tensor((train_x - x_mean) / x_scale, dtype=torch.float32)
    y = torch.tensor((train_y - y_mean) / y_scale, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(x.shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
        nn.Linear(256, y.shape[1]),
    )  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(steps):
        batch = torch.randint(0, x.shape[0], (256,), generator=generator)
        loss = (net(x[batch]) - y[batch]).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        val = torch.tensor((val_x - x_mean) / x_scale, dtype=torch.float32)
        predictions = net(val).numpy() * y_scale + y_mean
    return r2_scores(val_y, predictions)


def load_frames(
    dataset: object, ids: list[int], max_frames: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The probe's frames of these episodes, with states and episode ids, in memory."""
    frames, states, groups = [], [], []
    for episode_id, episode_frames, state in iter_probe_frames(dataset, ids, max_frames, seed):
        frames.append(episode_frames)
        states.append(state)
        groups.append(np.full(len(state), episode_id))
    return np.concatenate(frames), np.concatenate(states), np.concatenate(groups)


def train_supervised(
    encoder: Encoder, frames: np.ndarray, labels: np.ndarray, steps: int, batch: int, seed: int
) -> nn.Linear:
    """Train ``encoder`` and a linear head end to end on standardised labels; returns the head."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(encoder.feature_dim, labels.shape[1])
    pixels = torch.from_numpy(frames)
    targets = torch.tensor(labels, dtype=torch.float32)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
    encoder.train()
    started = time.perf_counter()
    for step in range(1, steps + 1):
        index = torch.randint(0, len(pixels), (batch,), generator=generator)
        shifted = random_shift(pixels[index].unsqueeze(1), 4, generator).squeeze(1)
        loss = (head(encoder(shifted)) - targets[index]).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 500 == 0 or step == steps:
            rate = step * batch / (time.perf_counter() - started)
            print(f"  supervised step {step}/{steps}: loss {loss.item():.4f} ({rate:.0f} frames/s)")
    encoder.eval()
    return head


def load_encoder_config(path: Path, image_size: int) -> EncoderConfig:
    """An encoder config from ``path``, checked against the dataset's frame size."""
    try:
        config = EncoderConfig.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise SystemExit(f"--supervised-config {path}: not an encoder config ({error})") from error
    if config.image_size != image_size:
        raise SystemExit(
            f"--supervised-config {path}: image_size {config.image_size}, the run's frames are "
            f"{image_size} px"
        )
    return config


def print_header(view: list[str]) -> None:
    print("\n| encoder / readout | mean R² | " + " | ".join(view) + " |")
    print("| --- | ---: |" + " ---: |" * len(view))


def print_row(label: str, r2: np.ndarray) -> None:
    # nanmean as the library's probe: a variable constant on the held-out episodes has no R^2
    print(f"| {label} | {np.nanmean(r2):.3f} | " + " | ".join(f"{v:.3f}" for v in r2) + " |")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print("bench_probe_ceiling:", json.dumps({k: str(v) for k, v in vars(args).items()}))
    data_dir = args.run / args.task / "data" / "unlabeled" / "dataset"
    dataset = open_dataset(data_dir)
    pretrain = args.run / args.task / "pretrain"
    # The run's probe split (session 17 on): episodes no pretraining here trained on. Its
    # seed is the run's, not --seed (which a rerun varies for the supervised initialisation).
    if args.split_seed is None:
        args.split_seed = int(json.loads((args.run / "config.json").read_text()).get("seed", 0))
    train_ids, val_ids = heldout_split(
        dataset,
        data_dir,
        args.split_seed,
        [pretrain / name / "encoder" for name in ("none", args.objective)],
    )
    sizes = {"train": len(train_ids), "held-out": len(val_ids)}
    print(f"episodes: {sizes}; frames per split <= {args.max_frames}")

    rows: dict[str, np.ndarray] = {}  # label -> held-out R^2 per view variable
    in_view: dict[str, float] = {}  # label -> the package's headline: conditioned ones in view
    conditions = dataset_view_conditions(dataset.manifest)
    for name in ("none", args.objective):
        encoder, _ = sslrobot.load_encoder(pretrain / name / "encoder")
        stack = int(encoder.config.frame_stack)
        train_x, train_y, groups = encode_episodes(
            dataset, train_ids, encoder, args.max_frames, 256, args.seed, stack
        )
        val_x, val_y, _ = encode_episodes(
            dataset, val_ids, encoder, args.max_frames, 256, args.seed, stack
        )
        names = dataset_state_names(dataset.manifest, train_y.shape[1])
        view = dataset_view_state_names(dataset.manifest) or names
        columns = [names.index(v) for v in view]
        train_y, val_y = train_y[:, columns], val_y[:, columns]
        if not rows:
            print_header(view)
        linear = fit_linear_probe(
            train_x, train_y, val_x, val_y, view, train_groups=groups, seed=args.seed,
            view_conditions=conditions,
        )  # fmt: skip
        rows[f"{name} / linear"] = np.array([linear.r2[v] for v in view])
        in_view[f"{name} / linear"] = linear.r2_mean
        print_row(f"{name} / linear", rows[f"{name} / linear"])
        rows[f"{name} / mlp"] = mlp_probe(train_x, train_y, val_x, val_y, args.mlp_steps, args.seed)
        print_row(f"{name} / mlp", rows[f"{name} / mlp"])

    config = encoder.config  # the pretrained encoder's architecture, unless told otherwise
    if args.supervised_config is not None:
        config = load_encoder_config(args.supervised_config, config.image_size)
    if config.frame_stack != 1:
        raise SystemExit("the supervised row supports single-frame encoders only")
    train_frames, train_state, groups = load_frames(dataset, train_ids, args.max_frames, args.seed)
    val_frames, val_state, _ = load_frames(dataset, val_ids, args.max_frames, args.seed)
    train_y, val_y = train_state[:, columns], val_state[:, columns]
    y_mean, y_scale = standardiser(train_y)
    print(f"\nsupervised: {config.arch}/{config.readout} encoder, {len(train_frames)} frames")
    total = sum(int(dataset.meta(i)["length"]) + 1 for i in train_ids)
    if len(train_frames) < total:  # the pretrained encoder saw every frame of these episodes
        print(f"  (of {total} in the training episodes: --max-frames caps it)")
    torch.manual_seed(args.seed)
    supervised = Encoder(config)
    started = time.perf_counter()
    head = train_supervised(
        supervised,
        train_frames,
        (train_y - y_mean) / y_scale,
        args.supervised_steps,
        args.batch_size,
        args.seed,
    )
    print(f"  trained in {time.perf_counter() - started:.0f} s")
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        artifacts.save_json(args.save / artifacts.ENCODER_CONFIG, config.to_dict())
        artifacts.save_safetensors(args.save / artifacts.ENCODER_WEIGHTS, supervised.state_dict())
        # The episodes its labels came from: probes of this encoder leave them out.
        artifacts.save_trained_episodes(args.save, {data_dir: train_ids})
        print(
            f"  saved to {args.save} (with {artifacts.TRAINED_EPISODES}: the episodes it "
            "trained on, which `sslrobot probe` leaves out)"
        )
    train_features = extract_features(supervised, train_frames, 512)
    val_features = extract_features(supervised, val_frames, 512)
    with torch.no_grad():
        own = head(torch.from_numpy(val_features)).numpy() * y_scale + y_mean
    rows["supervised / its head"] = r2_scores(val_y, own)
    probe = fit_linear_probe(
        train_features, train_y, val_features, val_y, view, train_groups=groups, seed=args.seed,
        view_conditions=conditions,
    )  # fmt: skip
    rows["supervised / linear"] = np.array([probe.r2[v] for v in view])
    in_view["supervised / linear"] = probe.r2_mean
    print_header(view)
    for label, r2 in rows.items():
        print_row(label, r2)
    none = np.nanmean(rows["none / linear"])
    gap = np.nanmean(rows[f"{args.objective} / linear"]) - none
    room = np.nanmean(rows["supervised / linear"]) - none
    print(
        f"\nlinear probe: {args.objective} - none = {gap:+.3f}; supervised - none = {room:+.3f} "
        + (
            "(the most pretraining could add with this architecture, roughly)"
            if args.supervised_config is None
            else "(supervised: the --supervised-config architecture; none: the run's encoder's)"
        )
    )
    if conditions:  # the package's headline scores these variables where they are in view
        names_in_view = sorted({name for name, _, _ in conditions})
        none_in_view = in_view["none / linear"]
        print(
            f"linear probe with {names_in_view} scored in view (the package's headline): "
            + ", ".join(f"{label} {value:.3f}" for label, value in in_view.items())
            + f"; {args.objective} - none = "
            + f"{in_view[f'{args.objective} / linear'] - none_in_view:+.3f}, "
            + f"supervised - none = {in_view['supervised / linear'] - none_in_view:+.3f}"
        )


if __name__ == "__main__":
    main()
