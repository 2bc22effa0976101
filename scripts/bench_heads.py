"""Is the policy head what holds 25-demonstration BC back on frozen features? A benchmark.

On a finished run's task, fits the heads below (``--heads``) on the same frozen encoder, the same 25
demonstrations and the run's BC budget (steps, batch), and evaluates each on the same seeded
episodes:

- ``mlp``: the run's head (MLP 256-256 on standardised features + proprio), as
  ``scripts/bench_readout.py`` fits it;
- ``mlp-noise``: the same with Gaussian noise (``--noise``, in standard deviations) added to
  its features (not proprio) in training, the usual regulariser for a head fitted on a few
  hundred frames;
- ``knn``: no training, VINN (Pari et al. 2021, "The surprising effectiveness of representation
  learning for visual imitation"): the action is the softmax(-distance)-weighted mean of the
  actions of the ``--k`` nearest demonstration frames in standardised features + proprio;
- ``spatial``: a head that reads the frozen trunk's last feature map itself, through its own
  1x1 convolution and spatial softmax (``--keypoints`` points, as the keypoint readout does),
  beside the frozen features and proprio (the "attentive probe" of frozen-backbone
  evaluations, for a conv map): can a head find the objects more precisely than the encoder's
  own readout placed them?
- ``chunk``: the run's MLP predicting the next ``--chunk`` actions instead of one (past an
  episode's end, its last action repeated), executed with ACT's temporal ensembling (Zhao et
  al. 2023: at each step, the weighted mean of every still-running chunk's action for this
  step, weights ``exp(-decay * i)``, i = 0 for the oldest): frame-to-frame noise in where the
  features put a static target is averaged over the chunk, where a one-step head acts on it.
- ``first`` / ``mean``: the run's MLP given, beside the current features and proprio, an
  episode context: the features of the episode's first frame (where the arm starts at least
  10 cm from Reach's target, so keypoints are less pulled between them), or the running mean of
  the episode's features so far (averaging a static object's frame-to-frame noise).
- ``whiten``: the run's MLP on features whitened (PCA, eigenvalues floored at
  ``--whiten-floor`` of the largest) with statistics of ``--whiten-episodes`` unlabeled
  episodes (``--whiten-source demos``: of the demonstrations' own frames): keypoints that move
  together leave a static object in low-variance directions, which per-dimension
  standardisation keeps small and a head fitted on a few hundred frames may never pick up.
- ``residual``: the run's MLP on what proprio does not explain of the features: the features
  minus an MLP's prediction of them from proprio alone, fitted on ``--whiten-episodes``
  unlabeled episodes (proprio is an observation, not a label). Most keypoints follow the arm,
  which proprio already gives the head exactly; what is left is what changes between episodes
  (the target, and the look), no longer buried under the arm's variance.
- ``augment``: the run's MLP on the demonstrations plus ``--aug-copies`` copies of their
  frames, each shifted (up to ``--aug-pad`` pixels, replicated edges, as DrQ) and recoloured
  (``--aug-color``: brightness and per-channel gains, as ``pretrain --color-jitter``), encoded
  by the frozen encoder: the look's camera and light changes imitated in pixels, so that a
  head fitted on 25 demonstrations cannot tie the actions to them.
- ``delta``: the run's MLP given, beside the features and proprio, the change of the features
  since the previous frame (zero on an episode's first): one frame says where the cube is, not
  where it is going. ``augment-delta``: ``augment``'s copies with that change (from the frames
  as they are) beside them. ``augment-first``: ``augment``'s copies with the episode's first
  frame's features beside each frame's (``first``'s context; each copy's from its own first
  frame): where the target was before the arm came near it.
- ``consistency``: ``augment``'s head, also asked to give the same action on two augmented
  copies of each of ``--whiten-episodes`` episodes' unlabeled frames (weight
  ``--consistency-weight``; the Pi-model of semi-supervised learning): invariance to the
  imitated look taught on every target position of the stream, not only the demonstrations'.
- ``state``: the state oracle's head (the run's MLP on the privileged state), as a reference
  on the same demonstrations (with ``--demo-noise``, the DART ones).
- ``slow``: the run's MLP given, beside the features and proprio, the ``--slow-dims`` slowest
  directions of the features (slow feature analysis, Wiskott and Sejnowski 2002: whitened
  directions of least frame-to-frame change, from the same unlabeled episodes), whitened: a
  static object's directions amplified without amplifying everything else.

Usage (session 11; the raw output is docs/results/benchmarks/bench_heads.txt):

    python scripts/bench_heads.py --run runs/default7 --task Reach-v0
    python scripts/bench_heads.py --run runs/default7 --task Reach-v0 --encoder none

Session 12 (raw output: docs/results/benchmarks/bench_heads_session12.txt):

    python scripts/bench_heads.py --run runs/default8 --task Reach-v0 --heads mlp chunk
    python scripts/bench_heads.py --run runs/default8 --task Reach-v0 --heads mlp first mean

Session 13 (raw output: docs/results/benchmarks/bench_heads_whiten_session13.txt):

    python scripts/bench_heads.py --run runs/default8 --task Reach-v0 --heads mlp whiten
    python scripts/bench_heads.py --run runs/paired8 --task Push-v0 --encoder fdm+future-seed1 \
        --heads mlp whiten
    python scripts/bench_heads.py --run runs/default8 --task Reach-v0 --heads slow

Session 20 (raw output: docs/results/benchmarks/bench_heads_ensemble_delta_session20.txt):

    python scripts/bench_heads.py --run runs/default19 --task Push-v0 --heads augment \
        --aug-pad 4 --ensemble 5
    python scripts/bench_heads.py --run runs/default19 --task Push-v0 --heads mlp delta

Session 21 (raw output: docs/results/benchmarks/bench_heads_dart_consistency_session21.txt):

    python scripts/bench_heads.py --run runs/default19 --task Reach-v0 --heads augment state \
        consistency --aug-pad 4
    python scripts/bench_heads.py --run runs/default19 --task Reach-v0 --heads augment state \
        --aug-pad 4 --demo-noise 0.6

Session 22 (raw output: docs/results/benchmarks/bench_heads_forms_session22.txt):

    python scripts/bench_heads.py --run runs/default19 --task Reach-v0 --heads augment state \
        --aug-pad 4 --head-form skip

``--head-form linear`` fits a linear map (then tanh) instead of the run's MLP, ``skip`` the two
summed before the tanh (``bench_readout.SkipHead``), ``gmm`` a Gaussian mixture over actions
fitted by likelihood and acting on its most probable component's mean, ``gmm-sample`` the same
acting on a component drawn by the weights (``bench_readout.MixtureHead``; session 43), for
``mlp``, ``augment``, ``augment-first``, ``consistency`` and ``state``; ``--mixup A`` mixes
each batch row of those heads with another, inputs and actions alike, by a Beta(A, A) weight
(raw output: docs/results/benchmarks/bench_heads_mixup_session22.txt).

``--demo-noise F`` replaces the run's demonstrations with DART ones (Laskey et al. 2017): the
same seeds rolled out by the package's noisy expert (noise F of the action half-range, AR(1)
coefficient ``--demo-noise-correlation``), each visited state labelled with the expert's clean
action. ``--proprio-columns START:STOP`` gives the heads only those proprio columns (``0:6``:
the arm's angles without its joint speeds, a test of the copycat shortcut of BC, de Haan et
al. 2019). ``--ensemble N`` fits each stateless head N times (seeds s, s + 1000, ...) and
acts on the mean action. ``--tta 4`` / ``8`` acts on the mean action over the frame and its
shifts by ``--aug-pad`` pixels in 4 or 8 directions (test-time augmentation; session 28, raw
output: docs/results/benchmarks/bench_heads_tta_session28.txt):

    python scripts/bench_heads.py --run runs/reach27c --task Reach-v0 --heads augment \
        --aug-pad 4 --aug-color 0.6 --tta 8

``--proprio-state fingertip_x fingertip_y`` appends those state variables to the proprio of
every pixel head, in training and in evaluation: a proprio that holds the arm's forward
kinematics, as the end-effector position in MetaWorld's proprio that R3M's and CortexBench's
policies read (session 33).

``--dropout P`` puts dropout after each hidden ReLU of the MLP family's heads, ``--bc-steps N``
trains every head N steps instead of the run's budget (session 28, raw output:
docs/results/benchmarks/bench_heads_dropout_session28.txt, bench_heads_steps_session28.txt).

``--also-encoders NAME ...`` concatenates other frozen encoders' features after
``--encoder``'s (an ensemble of encoders: pretraining seeds, variants, or random inits, the
k-th ``none`` seeded seed + 1,000,000 k; not with ``spatial``, which reads one trunk's map;
session 29, raw output: docs/results/benchmarks/bench_heads_encoder_ensemble_session29.txt):

    python scripts/bench_heads.py --run runs/reach27c --task Reach-v0 --encoder none \
        --also-encoders none --heads augment --aug-pad 4 --aug-color 0.6

Prints its settings and success per seed and mean for each head. BC success moves by about 5
points between training seeds of one head, so compare means over the seeds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from bench_readout import (
    HEAD_FORMS,
    add_run_arguments,
    check_demos_and_seeds,
    demos_look,
    encode,
    fit_regressor,
    open_run,
    train_head,
)
from torch import nn
from torch.nn import functional as F

from sslrobot.data import open_dataset
from sslrobot.data.policies import NoisyExpertPolicy
from sslrobot.envs import expert_action
from sslrobot.evaluation.rollouts import run_episode
from sslrobot.models.encoder import SpatialSoftmax
from sslrobot.policy.demos import DemoTransitions, load_transitions
from sslrobot.policy.encoders import resolve_encoder
from sslrobot.policy.environment import StateInObservation, make_env
from sslrobot.policy.head import MLPHead
from sslrobot.pretraining.augment import color_jitter, random_shift

HEADS = (
    "mlp", "mlp-noise", "knn", "spatial", "chunk", "first", "mean", "whiten", "slow", "residual",
    "augment", "delta", "augment-delta", "consistency", "state", "augment-first",
)  # fmt: skip
#: Heads ``--ensemble`` cannot average: they carry state through an episode, or act on the
#: true state (the oracle is one head by definition).
NOT_ENSEMBLED = ("chunk", "first", "mean", "delta", "augment-delta", "augment-first", "state")
Act = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (features, maps, proprio)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    parser.add_argument("--noise", type=float, default=1.0, help="mlp-noise: input noise std")
    parser.add_argument("--k", type=int, default=5, help="knn: neighbours")
    parser.add_argument("--keypoints", type=int, default=16, help="spatial: the head's points")
    parser.add_argument("--chunk", type=int, default=8, help="chunk: actions per prediction")
    parser.add_argument("--chunk-decay", type=float, default=0.01, help="chunk: ensembling decay")
    parser.add_argument(
        "--whiten-episodes",
        type=int,
        default=200,
        help="whiten, slow, residual, consistency: unlabeled episodes",
    )
    parser.add_argument(
        "--whiten-source",
        choices=("unlabeled", "demos"),
        default="unlabeled",
        help="whiten: features the PCA is fitted on",
    )
    parser.add_argument("--slow-dims", type=int, default=8, help="slow: directions added")
    parser.add_argument(
        "--whiten-floor", type=float, default=1e-3, help="whiten: eigenvalue floor (share of max)"
    )
    parser.add_argument(
        "--whiten-dims",
        type=int,
        default=0,
        help="whiten: keep only this many directions of largest variance (0: all)",
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        default=1,
        help="fit each stateless head this many times (seeds seed + 1000 i), act on the mean",
    )
    parser.add_argument(
        "--tta",
        type=int,
        default=0,
        help="stateless heads: act on the mean action over the frame and its shifts by "
        "--aug-pad pixels in the 4 (--tta 4) or 8 (--tta 8) directions (0: the frame alone)",
    )
    parser.add_argument("--aug-copies", type=int, default=8, help="augment: copies per frame")
    parser.add_argument("--aug-pad", type=int, default=2, help="augment: shift in pixels")
    parser.add_argument("--aug-color", type=float, default=0.15, help="augment: colour strength")
    parser.add_argument(
        "--aug-blobs", type=int, default=0, help="augment: random squares pasted per frame"
    )
    parser.add_argument(
        "--consistency-weight", type=float, default=1.0, help="consistency: weight of the term"
    )
    parser.add_argument(
        "--proprio-columns",
        default=None,
        help="START:STOP: only these proprio columns reach the heads (e.g. 0:6, the arm's "
        "angles without its joint speeds)",
    )
    parser.add_argument(
        "--pairwise",
        action="store_true",
        help="append the differences of every pair of the keypoint encoder's keypoints to its "
        "features (where one keypoint is relative to another)",
    )
    parser.add_argument(
        "--proprio-state",
        nargs="+",
        default=[],
        metavar="NAME",
        help="state variables appended to every pixel head's proprio (e.g. fingertip_x "
        "fingertip_y: a proprio holding the arm's forward kinematics, as the end-effector "
        "position MetaWorld's proprio gives R3M's and CortexBench's policies)",
    )
    parser.add_argument(
        "--demo-noise",
        type=float,
        default=0.0,
        help="DART: recollect the demonstrations' seeds with this much noise on the executed "
        "actions, labelled with the expert's clean action (0: the run's demonstrations)",
    )
    parser.add_argument(
        "--agreement",
        action="store_true",
        help="print where in the episodes each head's actions leave the expert's (cosine), "
        "and how large its actions are beside the expert's there (a stall)",
    )
    parser.add_argument(
        "--demo-noise-correlation", type=float, default=0.5, help="DART: AR(1) coefficient"
    )
    parser.add_argument(
        "--mixup",
        type=float,
        default=0.0,
        help="mlp, augment, augment-first, consistency, state: mix each batch row with another "
        "by a Beta(A, A) weight, inputs and actions alike (0: off)",
    )
    parser.add_argument(
        "--head-form",
        choices=HEAD_FORMS,
        default="mlp",
        help="mlp, augment, augment-first, consistency, state: the run's MLP, a linear map, or "
        "both summed (a linear skip beside the MLP)",
    )
    parser.add_argument(
        "--bc-steps",
        type=int,
        default=None,
        help="every head's optimiser steps instead of the run's bc_steps (the same budget for "
        "every head and encoder)",
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="mlp, augment, augment-first, consistency, state: dropout after each hidden ReLU "
        "of the head, in training (0: off)",
    )
    parser.add_argument(
        "--also-encoders",
        nargs="+",
        default=[],
        metavar="NAME",
        help="frozen encoders whose features are concatenated after --encoder's (objectives "
        "pretrained in the run, encoder directories, pretrained:ENV_ID, or none: a random "
        "init seeded seed + 1000000 k for the k-th): an ensemble of encoders",
    )
    args = parser.parse_args()
    unfit = [name for name in args.heads if name in NOT_ENSEMBLED]
    if args.ensemble > 1 and unfit:  # before any head trains, not after hours of them
        parser.error(f"--ensemble takes no {unfit} head (stateful, or acting on the state)")
    if args.tta not in (0, 4, 8) or (args.tta and unfit):
        parser.error(f"--tta takes 0, 4 or 8, and no {unfit} head")
    if args.also_encoders and "spatial" in args.heads:
        parser.error("--also-encoders takes no spatial head: it reads the first encoder's map")
    if args.also_encoders and not all(0 <= seed < ALSO_SEED_STRIDE for seed in args.seeds):
        parser.error(f"--also-encoders wants --seeds in [0, {ALSO_SEED_STRIDE})")
    if args.proprio_state and {"slow", "residual", "consistency", "whiten"} & set(args.heads):
        parser.error("--proprio-state takes no head fitted on unlabeled frames (their "
                     "streams hold no state)")  # fmt: skip
    if args.proprio_columns is not None and "state" in args.heads:
        parser.error("--proprio-columns does not reach the state head, which acts on the state")
    return args


def encode_with_maps(encoder: nn.Module, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features (N, D) and the trunk's last feature map (N, C, h, w) of uint8 frames."""
    captured: list[torch.Tensor] = []
    hook = encoder.trunk.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        features = encode(encoder, pixels)
    finally:
        hook.remove()
    return features, torch.cat(captured).numpy()


class ConcatenatedEncoders(nn.Module):
    """Several frozen encoders as one: their features side by side (N, sum of D). The trunk
    is the first encoder's, so heads that read the trunk's map (``spatial``) see its map."""

    def __init__(self, encoders: list[nn.Module]):
        super().__init__()
        self.encoders = nn.ModuleList(encoders)
        self.trunk = encoders[0].trunk

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.cat([encoder(frames) for encoder in self.encoders], dim=1)


class PairwiseKeypoints(nn.Module):
    """A keypoint encoder's features (B, D: D/2 (x, y) pairs) followed by the differences of
    every pair of its keypoints (B, D/2 (D/2 - 1)): where one keypoint is relative to another
    (the target to the fingertip, the cube to the goal) in a column of its own, which a head
    fitted on 25 demonstrations need not learn to form. The trunk is the encoder's."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.trunk = encoder.trunk
        points = encoder.config.feature_dim // 2
        self.first, self.second = torch.triu_indices(points, points, offset=1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        features = self.encoder(frames)
        points = features.reshape(len(features), -1, 2)
        differences = points[:, self.first] - points[:, self.second]
        return torch.cat([features, differences.flatten(1)], dim=1)


#: ``--also-encoders``' k-th ``none`` is seeded BC seed + k times this: apart from every
#: BC seed's own ``none`` (``parse_args`` keeps the BC seeds below it).
ALSO_SEED_STRIDE = 1_000_000


def resolve_encoders(
    args: argparse.Namespace, spec: str | None, config: dict, seed: int
) -> nn.Module:
    """``--encoder`` for this BC seed, with ``--also-encoders`` concatenated after it."""
    arch, size = config["encoder_arch"], config["image_size"]
    modules = [resolve_encoder(spec, size, seed, arch).module.eval()]
    for k, name in enumerate(args.also_encoders, start=1):
        if name != "none" and not name.startswith("pretrained:") and not Path(name).is_dir():
            name = str(args.run / args.task / "pretrain" / name / "encoder")
        # Random inits apart from every BC seed's own (seeds stay below ALSO_SEED_STRIDE).
        also_seed = seed + ALSO_SEED_STRIDE * k
        modules.append(resolve_encoder(name, size, also_seed, arch).module.eval())
    if args.pairwise:
        if len(modules) > 1 or modules[0].config.readout != "keypoints":
            raise SystemExit("--pairwise takes one keypoint encoder (no --also-encoders)")
        return PairwiseKeypoints(modules[0]).eval()
    return modules[0] if len(modules) == 1 else ConcatenatedEncoders(modules).eval()


def test_time_shifts(pixels: np.ndarray, count: int, pad: int) -> np.ndarray:
    """The frame (H, W, 3) and its ``count`` (4 or 8) shifts by ``pad`` pixels, replicated
    edges as in ``random_shift``: (1 + count, H, W, 3). Fixed shifts, so a seed's evaluation
    stays deterministic."""
    steps = [(pad, 0), (-pad, 0), (0, pad), (0, -pad)]
    if count == 8:
        steps += [(pad, pad), (pad, -pad), (-pad, pad), (-pad, -pad)]
    padded = np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    size_y, size_x = pixels.shape[:2]
    shifted = [
        padded[pad + dy : pad + dy + size_y, pad + dx : pad + dx + size_x] for dx, dy in steps
    ]
    return np.stack([pixels, *shifted])


def standardiser(rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    mean, scale = rows.mean(0), rows.std(0) + 1e-6
    return lambda x: (x - mean) / scale


@dataclass
class DemoInputs:
    """What a head is fitted on: per demonstration frame, frozen features (N, D), the trunk's
    map (N, C, h, w), proprio (N, P), the expert's action (N, A) and the privileged state (N,
    S; for the ``state`` head only); steps per episode (E,)."""

    features: np.ndarray
    maps: np.ndarray
    proprio: np.ndarray
    actions: np.ndarray
    episode_lengths: np.ndarray
    state: np.ndarray | None = None

    @property
    def flat(self) -> np.ndarray:
        return np.c_[self.features, self.proprio]


def head_options(args: argparse.Namespace) -> dict:
    """``train_head``'s options that every head of the MLP family takes from the command line
    (the oracle's too: the same head for every input)."""
    return {"form": args.head_form, "dropout": args.dropout, "mixup": args.mixup}


def fit_mlp(
    demos: DemoInputs, seed: int, args: argparse.Namespace, config: dict, noise: float = 0.0
) -> Act:
    # Noise on the features only: proprio is exact, and blurring the arm's own state hurts.
    column_noise = np.zeros(demos.flat.shape[1])
    column_noise[: demos.features.shape[1]] = noise
    steps, batch = config["bc_steps"], config["bc_batch_size"]
    head = train_head(
        demos.flat,
        demos.actions,
        seed,
        steps,
        batch,
        column_noise,
        **head_options(args),
    )
    return lambda f, _m, p: head(np.r_[f, p])


def fit_knn(demos: DemoInputs, seed: int, args: argparse.Namespace, config: dict) -> Act:
    scale = standardiser(demos.flat)
    bank, actions = scale(demos.flat), demos.actions

    def act(f: np.ndarray, _m: np.ndarray, p: np.ndarray) -> np.ndarray:
        # VINN's weights: a softmax over minus the Euclidean distances (until session 26 over
        # minus their squares, which made k = 5 nearly the nearest neighbour alone).
        distance = np.sqrt(((bank - scale(np.r_[f, p])) ** 2).sum(axis=1))
        nearest = np.argsort(distance)[: args.k]
        weights = np.exp(distance[nearest].min() - distance[nearest])
        return weights @ actions[nearest] / weights.sum()

    return act


class SpatialHead(nn.Module):
    """Its own points on the frozen map (1x1 conv + spatial softmax), then the run's MLP."""

    def __init__(self, channels: int, side: int, points: int, flat_dim: int, action_dim: int):
        super().__init__()
        self.point = nn.Conv2d(channels, points, 1)
        self.softmax = SpatialSoftmax(side)
        self.mlp = MLPHead(2 * points + flat_dim, action_dim, (256, 256))

    def forward(self, maps: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([self.softmax(self.point(maps)), flat], dim=1))


def fit_spatial(demos: DemoInputs, seed: int, args: argparse.Namespace, config: dict) -> Act:
    scale_flat = standardiser(demos.flat)
    maps = demos.maps
    map_mean = maps.mean(axis=(0, 2, 3), keepdims=True)
    map_scale = maps.std(axis=(0, 2, 3), keepdims=True) + 1e-6

    def tensors(m: np.ndarray, flat: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        m = torch.from_numpy(((m - map_mean) / map_scale).astype(np.float32))
        return m, torch.from_numpy(scale_flat(flat).astype(np.float32))

    x_maps, x_flat = tensors(maps, demos.flat)
    y = torch.from_numpy(demos.actions)
    torch.manual_seed(seed)
    head = SpatialHead(maps.shape[1], maps.shape[-1], args.keypoints, x_flat.shape[1], y.shape[1])
    fit_regressor(head, [x_maps, x_flat], y, seed, config["bc_steps"], config["bc_batch_size"])

    def act(f: np.ndarray, m: np.ndarray, p: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return head(*tensors(m[None], np.r_[f, p][None]))[0].numpy()

    return act


def per_episode(
    rows: np.ndarray, episode_lengths: np.ndarray, transform: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``transform`` applied to each episode's rows (concatenated in order), then rejoined."""
    bounds = np.cumsum(np.r_[0, episode_lengths])
    return np.concatenate([transform(rows[a:b]) for a, b in pairwise(bounds)])


def chunk_targets(actions: np.ndarray, episode_lengths: np.ndarray, chunk: int) -> np.ndarray:
    """Per step, the expert's next ``chunk`` actions (N, chunk * A), within its own episode;
    past the episode's end its last action repeats."""

    def chunks(episode: np.ndarray) -> np.ndarray:
        length = len(episode)
        index = np.minimum(np.arange(length)[:, None] + np.arange(chunk)[None], length - 1)
        return episode[index].reshape(length, -1)

    return per_episode(actions, episode_lengths, chunks)


class TemporalEnsemble:
    """ACT's temporal ensembling of a chunked head: stateful, so ``reset`` at each episode."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], chunk: int, decay: float):
        self.predict, self.chunk, self.decay = predict, chunk, decay
        self.chunks: list[np.ndarray] = []  # oldest first, each (chunk, A)

    def reset(self) -> None:
        self.chunks = []

    def __call__(self, f: np.ndarray, _m: np.ndarray, p: np.ndarray) -> np.ndarray:
        new = self.predict(np.r_[f, p])
        self.chunks = [*self.chunks, new.reshape(self.chunk, -1)][-self.chunk :]
        ages = np.arange(len(self.chunks))[::-1]  # steps since each chunk was predicted
        actions = np.stack([c[age] for c, age in zip(self.chunks, ages, strict=True)])
        weights = np.exp(-self.decay * np.arange(len(self.chunks)))
        return weights @ actions / weights.sum()


def fit_chunk(demos: DemoInputs, seed: int, args: argparse.Namespace, config: dict) -> Act:
    targets = chunk_targets(demos.actions, demos.episode_lengths, args.chunk)
    steps, batch = config["bc_steps"], config["bc_batch_size"]
    head = train_head(demos.flat, targets, seed, steps, batch)
    return TemporalEnsemble(head, args.chunk, args.chunk_decay)


def episode_context(features: np.ndarray, episode_lengths: np.ndarray, kind: str) -> np.ndarray:
    """Per step, the ``first`` frame's features of its episode, or the ``mean`` so far."""

    def context(episode: np.ndarray) -> np.ndarray:
        if kind == "first":
            return np.repeat(episode[:1], len(episode), axis=0)
        return np.cumsum(episode, axis=0) / np.arange(1, len(episode) + 1)[:, None]

    return per_episode(features, episode_lengths, context)


class ContextPolicy:
    """The MLP on [features, episode context, proprio]; stateful, so ``reset`` per episode."""

    def __init__(self, head: Callable[[np.ndarray], np.ndarray], kind: str):
        self.head, self.kind = head, kind
        self.reset()

    def reset(self) -> None:
        self.first: np.ndarray | None = None
        self.total, self.count = 0.0, 0

    def __call__(self, f: np.ndarray, _m: np.ndarray, p: np.ndarray) -> np.ndarray:
        self.first = f if self.first is None else self.first
        self.total, self.count = self.total + f, self.count + 1
        context = self.first if self.kind == "first" else self.total / self.count
        return self.head(np.r_[f, context, p])


def fit_context(
    demos: DemoInputs, seed: int, args: argparse.Namespace, config: dict, kind: str
) -> Act:
    context = episode_context(demos.features, demos.episode_lengths, kind)
    inputs = np.c_[demos.features, context, demos.proprio]
    head = train_head(inputs, demos.actions, seed, config["bc_steps"], config["bc_batch_size"])
    return ContextPolicy(head, kind)


def pca_whitener(
    features: np.ndarray, floor: float, dims: int = 0
) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> (x - mean) @ U / sqrt(max(lambda, floor * lambda_max))`` from ``features`` (N, D);
    with ``dims``, only the ``dims`` directions of largest variance (fewer inputs for a head
    fitted on a few hundred frames)."""
    mean = features.mean(0)
    values, vectors = np.linalg.eigh(np.cov(features - mean, rowvar=False))  # ascending
    scale = np.sqrt(np.maximum(values, floor * values.max()))
    if dims:
        vectors, scale = vectors[:, -dims:], scale[-dims:]
    return lambda x: ((x - mean) @ vectors) / scale


def fit_whiten(
    demos: DemoInputs, seed: int, args: argparse.Namespace, config: dict, unlabeled: np.ndarray
) -> Act:
    source = demos.features if args.whiten_source == "demos" else unlabeled
    whiten = pca_whitener(source, args.whiten_floor, args.whiten_dims)
    inputs = np.c_[whiten(demos.features), demos.proprio]
    head = train_head(inputs, demos.actions, seed, config["bc_steps"], config["bc_batch_size"])
    return lambda f, _m, p: head(np.r_[whiten(f[None])[0], p])


def slow_directions(
    features: np.ndarray, episode_lengths: np.ndarray, dims: int, floor: float
) -> Callable[[np.ndarray], np.ndarray]:
    """The ``dims`` slowest whitened directions of ``features`` (N, D), episodes concatenated
    with ``episode_lengths``: the eigenvectors of the whitened frame-to-frame differences'
    covariance with the smallest eigenvalues. Returns ``x -> (x - mean) @ projection``."""
    whiten = pca_whitener(features, floor)
    white = whiten(features)
    changes = per_episode(white, episode_lengths, lambda e: np.diff(e, axis=0))
    _, vectors = np.linalg.eigh(np.cov(changes, rowvar=False))  # ascending: slowest first
    return lambda x: whiten(x) @ vectors[:, :dims]


def fit_slow(
    demos: DemoInputs,
    seed: int,
    args: argparse.Namespace,
    config: dict,
    unlabeled: tuple[np.ndarray, np.ndarray],
) -> Act:
    slow = slow_directions(*unlabeled, args.slow_dims, args.whiten_floor)
    inputs = np.c_[demos.features, slow(demos.features), demos.proprio]
    head = train_head(inputs, demos.actions, seed, config["bc_steps"], config["bc_batch_size"])
    return lambda f, _m, p: head(np.r_[f, slow(f[None])[0], p])


def proprio_predictor(
    features: np.ndarray, proprio: np.ndarray, seed: int, steps: int = 3000
) -> Callable[[np.ndarray], np.ndarray]:
    """An MLP (256-256) from standardised proprio (N, P) to features (N, D), fitted by mean
    squared error; returns ``proprio -> predicted features``."""
    scale_in, mean, scale = standardiser(proprio), features.mean(0), features.std(0) + 1e-6
    x = torch.from_numpy(scale_in(proprio).astype(np.float32))
    y = torch.from_numpy(((features - mean) / scale).astype(np.float32))
    torch.manual_seed(seed)
    model = MLPHead(x.shape[1], y.shape[1], (256, 256))
    fit_regressor(model, [x], y, seed, steps, 256)

    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = torch.from_numpy(scale_in(rows).astype(np.float32))
            return model(z).numpy().astype(np.float64) * scale + mean

    return predict


def fit_residual(
    demos: DemoInputs,
    seed: int,
    args: argparse.Namespace,
    config: dict,
    unlabeled: tuple[np.ndarray, np.ndarray],
) -> Act:
    predict = proprio_predictor(*unlabeled, seed)
    inputs = np.c_[demos.features - predict(demos.proprio), demos.proprio]
    head = train_head(inputs, demos.actions, seed, config["bc_steps"], config["bc_batch_size"])
    return lambda f, _m, p: head(np.r_[f - predict(p[None])[0], p])


def augmented_copies(
    pixels: np.ndarray, copies: int, pad: int, color: float, seed: int, blobs: int = 0
) -> list[np.ndarray]:
    """``copies`` versions of uint8 frames (N, H, W, 3), each shifted and recoloured per frame
    with the pretraining augmentations (generator seeded with ``seed``); with ``blobs``, that
    many squares of 3-6 pixels in random colours pasted at random places on each frame, an
    imitation of the train look's distractors."""
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    frames = torch.from_numpy(np.ascontiguousarray(pixels))[:, None]  # (N, 1, H, W, 3)
    out = []
    for _ in range(copies):
        shifted = random_shift(frames, pad, generator)
        copy = color_jitter(shifted, color, generator)[:, 0].numpy().copy()
        size = copy.shape[1]
        for frame in copy:
            for _ in range(blobs):
                side = int(rng.integers(3, 7))
                row, col = rng.integers(0, size - side, 2)
                frame[row : row + side, col : col + side] = rng.integers(0, 256, 3)
        out.append(copy)
    return out


def augmented_features(
    demos: DemoInputs, seed: int, args: argparse.Namespace, pixels: np.ndarray, module: nn.Module
) -> tuple[np.ndarray, int]:
    """The demonstrations' features followed by those of their ``--aug-copies`` copies, and how
    many times each frame appears (copies + 1)."""
    copies = augmented_copies(
        pixels, args.aug_copies, args.aug_pad, args.aug_color, seed, args.aug_blobs
    )
    features = np.concatenate([demos.features, *(encode(module, c) for c in copies)])
    return features, len(copies) + 1


def fit_augment(
    demos: DemoInputs,
    seed: int,
    args: argparse.Namespace,
    config: dict,
    pixels: np.ndarray,
    module: nn.Module,
    with_change: bool = False,
    unlabeled: tuple[np.ndarray, np.ndarray] | None = None,
    context: str | None = None,
) -> Act:
    """The MLP on the demonstrations and their copies; ``with_change`` (``augment-delta``)
    puts ``delta``'s change since the previous frame beside them, taken from the frames as
    they are (a copy's shift is its own per frame, so a change between two copies would be
    mostly the shift); ``unlabeled`` frames and proprio (``consistency``) add
    ``consistency_term`` to the loss; ``context="first"`` (``augment-first``) puts the
    episode's first frame's features beside each frame's, each copy's from its own first
    frame: where the target was before the arm came near it."""
    features, repeat = augmented_features(demos, seed, args, pixels, module)
    columns = [features]
    if with_change:
        change = demos.features - previous_features(demos.features, demos.episode_lengths)
        columns.append(np.tile(change, (repeat, 1)))
    if context is not None:
        blocks = np.split(features, repeat)  # the frames as they are, then each copy's
        columns.append(
            np.concatenate([episode_context(b, demos.episode_lengths, context) for b in blocks])
        )
    inputs = np.concatenate([*columns, np.tile(demos.proprio, (repeat, 1))], axis=1)
    actions = np.tile(demos.actions, (repeat, 1))
    batch = config["bc_batch_size"]
    extra = None if unlabeled is None else consistency_term(unlabeled, module, args, seed, batch)
    head = train_head(
        inputs,
        actions,
        seed,
        config["bc_steps"],
        batch,
        extra_loss=extra,
        **head_options(args),
    )
    if with_change:
        return DeltaPolicy(head)
    if context is not None:
        return ContextPolicy(head, context)
    return lambda f, _m, p: head(np.r_[f, p])


def previous_features(features: np.ndarray, episode_lengths: np.ndarray) -> np.ndarray:
    """Per step, the features of the step before in its episode (the first step's own)."""
    return per_episode(features, episode_lengths, lambda e: np.r_[e[:1], e[:-1]])


class DeltaPolicy:
    """The MLP on [features, features - previous features, proprio]; ``reset`` per episode."""

    def __init__(self, head: Callable[[np.ndarray], np.ndarray]):
        self.head = head
        self.reset()

    def reset(self) -> None:
        self.previous: np.ndarray | None = None

    def __call__(self, f: np.ndarray, _m: np.ndarray, p: np.ndarray) -> np.ndarray:
        previous = f if self.previous is None else self.previous
        self.previous = f
        return self.head(np.r_[f, f - previous, p])


def fit_delta(demos: DemoInputs, seed: int, args: argparse.Namespace, config: dict) -> Act:
    """What moved since the last frame (the cube's push, the arm's swing) beside the frame:
    one frame holds where things are, not where they are going."""
    change = demos.features - previous_features(demos.features, demos.episode_lengths)
    inputs = np.c_[demos.features, change, demos.proprio]
    head = train_head(inputs, demos.actions, seed, config["bc_steps"], config["bc_batch_size"])
    return DeltaPolicy(head)


def consistency_term(
    unlabeled: tuple[np.ndarray, np.ndarray],
    module: nn.Module,
    args: argparse.Namespace,
    seed: int,
    batch: int,
) -> Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Generator], torch.Tensor]:
    """``consistency``'s extra loss: ``--consistency-weight`` times the squared difference of
    the head's actions on two augmented copies of each unlabeled frame (the Pi-model of
    semi-supervised learning, Laine and Aila 2017): invariance to the imitated look asked on
    thousands of frames of every target position, where the copies ask it on 25
    demonstrations' few hundred. Proprio is an observation, not a label: nothing here uses the
    stream's actions. Unlike the Pi-model the two copies are drawn once per frame, not every
    step, and without ``--aug-blobs``."""
    unlabeled_pixels, unlabeled_proprio = unlabeled
    views = torch.stack(
        [
            torch.from_numpy(np.c_[encode(module, c), unlabeled_proprio].astype(np.float32))
            for c in augmented_copies(unlabeled_pixels, 2, args.aug_pad, args.aug_color, seed + 1)
        ]
    )  # (2, N, D + P)

    def consistency(act: Callable[[torch.Tensor], torch.Tensor], generator: torch.Generator):
        index = torch.randint(0, views.shape[1], (batch,), generator=generator)
        gap = F.mse_loss(act(views[0, index]), act(views[1, index]))
        return args.consistency_weight * gap

    return consistency


def fit_state(demos: DemoInputs, seed: int, args: argparse.Namespace, config: dict):
    """The state oracle's head (the run's MLP on the privileged state), for reference on the
    same demonstrations; it acts on ``obs["state"]`` (see ``main``)."""
    if demos.state is None:
        raise ValueError("the state head needs the demonstrations' state")
    steps, batch = config["bc_steps"], config["bc_batch_size"]
    return train_head(
        demos.state,
        demos.actions,
        seed,
        steps,
        batch,
        **head_options(args),
    )


def dart_transitions(
    env: gym.Env, episode_ids: list[int], base_seed: int, noise: float, correlation: float
) -> DemoTransitions:
    """DART (Laskey et al. 2017): the demonstrations' seeds rolled out again by the package's
    noisy expert (``NoisyExpertPolicy``, the noise on the executed actions), every visited
    state labelled with the expert's clean action there. The head sees the states around the
    expert's path that its own errors lead to, each with the way back, for the same 25
    targets. ``env`` must put the state in its observations (``StateInObservation``)."""
    pixels, proprio, states, labels, lengths = [], [], [], [], []
    for episode_id in episode_ids:
        clean: list[np.ndarray] = []

        def labelled_expert(env: gym.Env, clean: list[np.ndarray] = clean) -> np.ndarray:
            clean.append(np.asarray(expert_action(env), dtype=np.float32))
            return clean[-1]

        policy = NoisyExpertPolicy(noise, correlation, labelled_expert)
        seed = base_seed + episode_id
        policy.reset(env, seed)
        obs, _ = env.reset(seed=seed)
        done, length = False, 0
        while not done:
            pixels.append(np.asarray(obs["pixels"]))
            proprio.append(np.asarray(obs["proprio"], dtype=np.float32))
            states.append(np.asarray(obs["state"], dtype=np.float32))
            obs, _, terminated, truncated, _ = env.step(policy.act(env))
            labels.append(clean[-1])
            done, length = terminated or truncated, length + 1
        lengths.append(length)
    return DemoTransitions(
        episode_ids=tuple(episode_ids),
        episode_lengths=np.array(lengths),
        actions=np.stack(labels),
        pixels=np.stack(pixels),
        proprio=np.stack(proprio),
        state=np.stack(states),
    )


def ensemble(fit: Callable[..., Act], count: int) -> Callable[..., Act]:
    """``fit`` run ``count`` times (seeds seed, seed + 1000, ...), acting on the mean action:
    the variance of a head fitted on a few hundred frames averaged out (stateless heads)."""

    def fit_all(demos: DemoInputs, seed: int, args: argparse.Namespace, config: dict) -> Act:
        acts = [fit(demos, seed + 1000 * i, args, config) for i in range(count)]
        return lambda f, m, p: np.mean([act(f, m, p) for act in acts], axis=0)

    return fit_all


def unlabeled_frames(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames and proprio of the first ``--whiten-episodes`` episodes of the task's unlabeled
    stream, and each episode's length."""
    dataset = open_dataset(args.run / args.task / "data" / "unlabeled" / "dataset")
    ids = list(dataset.episode_ids)[: args.whiten_episodes]
    episodes = [dataset.load_episode(i, in_memory=True) for i in ids]
    pixels = np.concatenate([np.asarray(e["pixels"]) for e in episodes])
    proprio = np.concatenate([np.asarray(e["proprio"], dtype=np.float64) for e in episodes])
    return pixels, proprio, np.array([len(e["pixels"]) for e in episodes])


#: Per task, the state's fingertip-to-object offset that ``--agreement`` bins distances by.
OFFSET_COLUMNS = {
    "Reach-v0": ("fingertip_to_target_x", "fingertip_to_target_y"),
    "Push-v0": ("fingertip_to_cube_x", "fingertip_to_cube_y"),
}
#: Distance bins of ``distance_summary``, in metres (Reach succeeds within 0.045).
DISTANCE_BINS = (0.15, 0.07)
#: A step whose cosine to the expert's action is below this goes the wrong way; where the
#: first one falls says where a head loses the object.
WRONG_COSINE = 0.5


def agreeing(
    policy: Callable[[dict], np.ndarray],
    env: gym.Env,
    cosines: list[float],
    distances: list[float],
    offset: list[int],
    speeds: list[tuple[float, float]],
) -> Callable[[dict], np.ndarray]:
    """``policy``, appending at each step the cosine between its action and the expert's at
    the same state, the fingertip's distance to the task's object (the state's ``offset``
    columns; none recorded without them) and the two actions' norms: ``--agreement``, where a
    head goes wrong, and whether it stalls there."""

    def act(obs: dict) -> np.ndarray:
        action = np.asarray(policy(obs), dtype=np.float64)
        expert = np.asarray(expert_action(env), dtype=np.float64)
        norms = np.linalg.norm(action) * np.linalg.norm(expert)
        cosines.append(float(action @ expert / norms) if norms > 0 else 0.0)
        speeds.append((float(np.linalg.norm(action)), float(np.linalg.norm(expert))))
        if offset:
            distances.append(float(np.linalg.norm(np.asarray(obs["state"])[offset])))
        return action

    return act


def agreement_summary(records: list[tuple[bool, list[float]]]) -> str:
    """Median over episodes of the mean cosine in steps 0-2, 3-9 and 10 on, for successes and
    failures apart: a head that starts wrong misreads the scene, one that goes wrong late
    loses it near the goal or off the demonstrations' path."""
    parts = []
    for label, success in (("successes", True), ("failures", False)):
        runs = [c for ok, c in records if ok == success]
        spans = [
            np.median([np.mean(c[a:b]) for c in runs if len(c) > a] or [np.nan])
            for a, b in ((0, 3), (3, 10), (10, None))
        ]
        parts.append(f"{label} {len(runs)}: " + " / ".join(f"{v:.2f}" for v in spans))
    return "cosine to the expert's action, steps 0-2 / 3-9 / 10+: " + "; ".join(parts)


def speed_summary(records: list[tuple[bool, list[tuple[float, float]]]]) -> str:
    """Median over episodes of the mean norm of the head's action and of the expert's at the
    same states, in steps 0-9, 10-49 and 50 on, for successes and failures apart: a failure
    whose head acts far more softly than the expert late in its episode has stalled, one that
    acts as strongly has gone elsewhere (session 43: Push's failures stall, the oracle's too,
    and a mixture head, which does not average, keeps them moving but not succeeding)."""
    parts = []
    for label, success in (("successes", True), ("failures", False)):
        runs = [np.asarray(v) for ok, v in records if ok == success and v]
        cells = []
        for a, b in ((0, 10), (10, 50), (50, None)):
            spans = [v[a:b].mean(0) for v in runs if len(v) > a]
            head, expert = np.median(spans, axis=0) if spans else (np.nan, np.nan)
            cells.append(f"{head:.2f}/{expert:.2f} ({len(spans)})")
        parts.append(f"{label}: " + " ; ".join(cells))
    return "action norm, head/expert, steps 0-9 ; 10-49 ; 50+ (episodes): " + "; ".join(parts)


def distance_summary(records: list[tuple[bool, list[float], list[float]]]) -> str:
    """As ``agreement_summary``, by the fingertip's distance to the object instead of the step
    (bins of ``DISTANCE_BINS``): where, not when, the actions leave the expert's. Each cell is
    the median over the episodes that had steps in its bin, with their count; then the median
    distance at each episode's first step below ``WRONG_COSINE``."""
    far, near = DISTANCE_BINS
    bins = ((far, np.inf), (near, far), (0.0, near))
    parts = []
    for label, success in (("successes", True), ("failures", False)):
        cells = []
        for low, high in bins:
            means = [
                np.mean([c for c, d in zip(cos, dist, strict=True) if low <= d < high])
                for ok, cos, dist in records
                if ok == success and any(low <= d < high for d in dist)
            ]
            cells.append(f"{np.median(means):.2f} ({len(means)})" if means else "- (0)")
        first_wrong = [
            dist[next(i for i, c in enumerate(cos) if c < WRONG_COSINE)]
            for ok, cos, dist in records
            if ok == success and min(cos, default=1.0) < WRONG_COSINE
        ]
        where = f"{np.median(first_wrong) * 100:.1f} cm" if first_wrong else "-"
        parts.append(
            f"{label}: " + " / ".join(cells) + f", first below {WRONG_COSINE} at {where} "
            f"(median of {len(first_wrong)})"
        )
    return (
        f"cosine by distance to the object, >= {far * 100:.0f} / {near * 100:.0f}-{far * 100:.0f}"
        f" / < {near * 100:.0f} cm (episodes): " + "; ".join(parts)
    )


def acting_on_state(act: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], np.ndarray]:
    """``obs -> act(obs["state"])``: the state head's policy."""
    return lambda obs: act(np.asarray(obs["state"], dtype=np.float64))


def proprio_columns(text: str | None) -> slice:
    """``--proprio-columns START:STOP`` as a slice (all columns when not given)."""
    if text is None:
        return slice(None)
    first, sep, stop = text.partition(":")
    if not sep or not first.isdigit() or not stop.isdigit():
        raise SystemExit(f"--proprio-columns wants START:STOP, e.g. 0:6, got {text!r}")
    return slice(int(first), int(stop))


#: Heads built on the run's MLP, which ``--head-form``, ``--mixup`` and ``--dropout`` change.
MLP_HEADS = {
    "mlp",
    "mlp-noise",
    "augment",
    "augment-delta",
    "augment-first",
    "consistency",
    "state",
}


def check_options(args: argparse.Namespace, demos: object) -> None:
    """Refuse what would run silently otherwise: options a head ignores (it printed them in
    its settings and ran its plain self), more demonstrations than the run collected, and
    evaluation seeds among the demonstrations' (an evaluation on episodes it imitated)."""
    if args.head_form != "mlp" or args.mixup or args.dropout:
        ignoring = sorted(set(args.heads) - MLP_HEADS)
        if ignoring:
            raise SystemExit(f"--head-form, --mixup and --dropout change only "
                             f"{sorted(MLP_HEADS)}: {ignoring} would ignore them")  # fmt: skip
    if args.head_form.startswith("gmm") and args.mixup:
        raise SystemExit("--mixup with --head-form gmm would fit mixtures to averaged actions")
    if len(set(args.heads)) != len(args.heads):
        raise SystemExit(f"--heads {args.heads}: a head given twice would be listed twice")
    check_demos_and_seeds(args, demos)


def main() -> None:
    args = parse_args()
    config, demos, spec = open_run(args, "bench_heads")
    check_options(args, demos)
    whose = "the run's"
    if args.bc_steps is not None:
        if args.bc_steps < 1:
            raise SystemExit(f"--bc-steps must be >= 1, got {args.bc_steps}")
        config["bc_steps"], whose = args.bc_steps, f"--bc-steps; the run's {config['bc_steps']}"
    print(f"BC budget ({whose}): {config['bc_steps']} steps at batch {config['bc_batch_size']}")
    if any(name.startswith("augment") or name == "consistency" for name in args.heads):
        # The copies' defaults are not read from the run: say where they differ from its heads.
        from sslrobot.policy.config import PolicyConfig

        run_copies = (config.get("bc_augment_copies", 0), PolicyConfig.augment_pad,
                      config.get("bc_augment_color", PolicyConfig.augment_color))  # fmt: skip
        if (args.aug_copies, args.aug_pad, args.aug_color) != run_copies:
            print(
                f"WARNING: augment copies {args.aug_copies}, pad {args.aug_pad}, colour "
                f"{args.aug_color}; the run's heads: {run_copies[0]}, {run_copies[1]}, "
                f"{run_copies[2]} (--aug-copies, --aug-pad, --aug-color)"
            )
    start = time.perf_counter()
    columns = proprio_columns(args.proprio_columns)
    visual_preset = demos_look(demos)
    env = StateInObservation(
        make_env(f"sslrobot/{args.task}", config["image_size"], "pixels", visual_preset)
    )
    demo_ids = list(demos.episode_ids)[: args.num_demos]
    if args.demo_noise > 0:
        transitions = dart_transitions(
            env, demo_ids, int(demos.manifest["base_seed"]), args.demo_noise,
            args.demo_noise_correlation,
        )  # fmt: skip
        print(
            f"DART demonstrations: noise {args.demo_noise}, correlation "
            f"{args.demo_noise_correlation}, {len(transitions)} frames"
        )
    else:
        transitions = load_transitions(
            demos, demo_ids, pixels=True, state="state" in args.heads or bool(args.proprio_state)
        )
    fitters = {
        "mlp": fit_mlp,
        "mlp-noise": partial(fit_mlp, noise=args.noise),
        "knn": fit_knn,
        "spatial": fit_spatial,
        "chunk": fit_chunk,
        "first": partial(fit_context, kind="first"),
        "mean": partial(fit_context, kind="mean"),
        "delta": fit_delta,
    }
    results: dict[str, list[float]] = {head: [] for head in args.heads}
    agreement: dict[str, list[tuple[bool, list[float], list[float], list]]] = {
        head: [] for head in args.heads
    }
    names = demos.manifest.get("state_names") or []
    unknown = [n for n in args.proprio_state if n not in names]
    if unknown:
        raise SystemExit(f"--proprio-state: {unknown} are not among {args.task}'s state "
                         f"variables {names}")  # fmt: skip
    extra = [names.index(n) for n in args.proprio_state]
    offset = [names.index(n) for n in OFFSET_COLUMNS.get(args.task, ()) if n in names]
    from_unlabeled = {"slow", "residual", "consistency"} & set(args.heads) or (
        "whiten" in args.heads and args.whiten_source == "unlabeled"
    )
    unlabeled_pixels, unlabeled_proprio, unlabeled_lengths = (
        unlabeled_frames(args) if from_unlabeled else (None, None, None)
    )
    if unlabeled_proprio is not None:
        unlabeled_proprio = unlabeled_proprio[:, columns]
    seeds = [args.eval_seed + i for i in range(args.episodes)]
    try:
        for seed in args.seeds:
            module = resolve_encoders(args, spec, config, seed)
            demo_inputs = DemoInputs(
                *encode_with_maps(module, transitions.pixels),
                np.c_[transitions.proprio[:, columns], transitions.state[:, extra]].astype(
                    np.float64
                )
                if extra
                else transitions.proprio[:, columns].astype(np.float64),
                transitions.actions,
                transitions.episode_lengths,
                None if transitions.state is None else transitions.state.astype(np.float64),
            )
            if unlabeled_pixels is not None:
                unlabeled = encode(module, unlabeled_pixels)
                fitters["whiten"] = partial(fit_whiten, unlabeled=unlabeled)
                fitters["slow"] = partial(fit_slow, unlabeled=(unlabeled, unlabeled_lengths))
                fitters["residual"] = partial(
                    fit_residual, unlabeled=(unlabeled, unlabeled_proprio)
                )
                fitters["consistency"] = partial(
                    fit_augment,
                    pixels=transitions.pixels,
                    module=module,
                    unlabeled=(unlabeled_pixels, unlabeled_proprio),
                )
            elif "whiten" in args.heads:
                fitters["whiten"] = partial(fit_whiten, unlabeled=None)
            fitters["augment"] = partial(fit_augment, pixels=transitions.pixels, module=module)
            fitters["augment-delta"] = partial(
                fit_augment, pixels=transitions.pixels, module=module, with_change=True
            )
            fitters["augment-first"] = partial(
                fit_augment, pixels=transitions.pixels, module=module, context="first"
            )
            fitters["state"] = fit_state
            for name in args.heads:
                fit = fitters[name]
                if args.ensemble > 1:
                    fit = ensemble(fit, args.ensemble)
                act = fit(demo_inputs, seed, args, config)

                def policy(obs: dict, act: Act = act, module: nn.Module = module) -> np.ndarray:
                    pixels = np.asarray(obs["pixels"])
                    if args.tta:
                        pixels = test_time_shifts(pixels, args.tta, args.aug_pad)
                    f, m = encode_with_maps(module, pixels.reshape(-1, *pixels.shape[-3:]))
                    proprio = np.r_[
                        np.asarray(obs["proprio"], dtype=np.float64)[columns],
                        np.asarray(obs["state"], dtype=np.float64)[extra],
                    ]
                    return np.mean([act(f[i], m[i], proprio) for i in range(len(f))], axis=0)

                if name == "state":  # the oracle acts on the state alone
                    policy = acting_on_state(act)

                episodes = []
                for episode_seed in seeds:
                    getattr(act, "reset", lambda: None)()  # stateful heads: chunk, context
                    cosines: list[float] = []
                    distances: list[float] = []
                    speeds: list[tuple[float, float]] = []
                    acting = (
                        agreeing(policy, env, cosines, distances, offset, speeds)
                        if args.agreement
                        else policy
                    )
                    episodes.append(run_episode(env, acting, episode_seed)[0])
                    agreement[name].append((episodes[-1].success, cosines, distances, speeds))
                results[name].append(float(np.mean([e.success for e in episodes])))
                print(f"seed {seed} {name:9s} success {results[name][-1]:.3f}", flush=True)
    finally:
        env.close()
    encoders = " + ".join([args.encoder, *args.also_encoders])
    print(f"{len(transitions.actions)} demonstration frames; encoder {encoders}")
    for name, values in results.items():
        print(f"success with {name:9s}: {[round(v, 3) for v in values]} -> {np.mean(values):.3f}")
    if args.agreement:
        for name, records in agreement.items():
            print(f"{name}: {agreement_summary([(ok, c) for ok, c, _, _ in records])}")
            print(f"{name}: {speed_summary([(ok, v) for ok, _, _, v in records])}")
            if offset:
                print(f"{name}: {distance_summary([r[:3] for r in records])}")
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
