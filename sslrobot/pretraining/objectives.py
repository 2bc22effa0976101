"""Pretext objectives: their names, how to combine them, and the losses as pure functions.

Every prediction loss is zero (or, for InfoNCE, near zero) on a perfect prediction and
positive otherwise; ``tests/test_pretrain_objectives.py`` pins that. The regularisers are not
prediction losses: ``slow``'s variance hinge and ``spread`` score a spread of features, and
``centered_cosine_loss`` scores 2 for a row whose target is the batch's centre, predicted
exactly or not (a batch of identical targets has no direction to predict).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from sslrobot.utils.device import full_precision

#: Objective names, in the order their losses are logged.
OBJECTIVES = (
    "fdm",
    "future",
    "recon",
    "inverse",
    "contrastive",
    "transport",
    "spread",
    "equivariant",
    "slow",
    "look",
)
#: The "no training" baseline: random initialisation, written in the same layout.
NO_OBJECTIVE = "none"
#: Objectives that need a frame decoder.
USES_DECODER = frozenset({"future", "recon"})
#: Objectives whose loss is a pixel error of frames they draw (``salience_weight`` weighs it).
DRAWS_PIXELS = USES_DECODER | {"transport"}
#: Pretext objectives that read the encoder's features as keypoints (``readout="keypoints"``):
#: ``transport`` draws a frame from another through blobs at the keypoints
#: (``sslrobot.models.transport``).
KEYPOINT_OBJECTIVES = frozenset({"transport"})
#: Objectives that need a momentum (EMA) target encoder.
USES_TARGET_ENCODER = frozenset({"fdm", "contrastive"})
#: Terms that only make sense beside a pretext objective. ``spread`` (keypoint encoders) adds
#: each keypoint softmax's variance around its point, which pins keypoints to one place.
#: Measured on Reach (``fdm+future+spread:1``, 6,000 steps): the keypoints became sharp but
#: gathered on the arm, and 25-demo BC success did not rise (26.3% against 27.3%;
#: docs/results/findings.md), so no preset uses it.
#: ``equivariant`` (keypoint encoders) asks each keypoint to move with the image: the frame
#: shifted by (dy, dx) pixels must give the same keypoints shifted by the same amount (the
#: equivariance constraint of unsupervised landmark learning, Thewlis et al. 2017), so a
#: keypoint cannot code the scene in small entangled moves of a point near the centre but must
#: sit on something that moves when the picture does; its loss is in squared pixels.
#: Measured on Reach (``fdm+future+equivariant:0.01``, 6,000 steps): the keypoints spread along
#: the arm, none on the target, and success did not rise (23.0%; 17.3% at 0.1), so no preset
#: uses it either.
#: ``slow`` (keypoint encoders) asks the first quarter of the keypoints to stay put within a
#: window while varying across windows (``slowness_loss``): they cannot follow the arm, so the
#: decoder's need to draw the scene should put them on the static objects (Reach's target,
#: Push's goal), the thing sessions 11-15 found the other keypoints leave imprecise.
#: ``look`` (any encoder, with a look twin: ``PretrainConfig.look_target_data``) asks the
#: features of a frame to stay where they are when the same moment is shown in the twin's
#: look (``look_share_loss``). The look twin's targets alone left the target read out of the
#: features 2.6 cm apart between the two looks of one frame on Reach
#: (``scripts/check_look_invariance.py``, session 37). In squared pixels of keypoint moves
#: instead of a share, weight 1 shrank the keypoints' spread over the batch 7x by 3,750 steps:
#: features that barely move cannot move with the look either.
REGULARIZERS = frozenset({"spread", "equivariant", "slow", "look"})
#: The regularisers that act on keypoints (encoders with ``readout="keypoints"``).
KEYPOINT_REGULARIZERS = frozenset({"spread", "equivariant", "slow"})
#: Factors that bring each loss to a common scale before the objective weights apply, so that
#: ``"fdm+future"`` gives both a comparable say over the shared encoder. Pixel losses are
#: per-element MSEs in normalised units, ~0.005 on 64x64 robot scenes where most pixels are
#: copied; the cosine losses are O(0.01-1). Unscaled, fdm drowned out future in ``fdm+future``
#: and the probe R^2 dropped from 0.52 (future alone) to 0.34 on Reach (``sslrobot probe``,
#: 1500 steps at batch 128); at 100 the pair matched future alone.
LOSS_SCALES: dict[str, float] = {"future": 100.0, "recon": 100.0, "transport": 100.0}


def parse_objective(spec: str) -> dict[str, float]:
    """Parse ``"fdm+future"`` or ``"fdm:1+future:0.5"`` into ``{name: weight}``.

    ``"none"`` (alone) gives ``{}``. Weights default to 1 and must be positive.

    Raises:
        ValueError: naming the unknown objective, the bad weight or the repeated name.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"objective must be a non-empty string like 'fdm+future', got {spec!r}")
    spec = spec.strip()
    if spec == NO_OBJECTIVE:
        return {}
    weights: dict[str, float] = {}
    for part in spec.split("+"):
        name, _, weight_text = part.strip().partition(":")
        if name not in OBJECTIVES:
            hint = " ('none' cannot be combined)" if name == NO_OBJECTIVE else ""
            raise ValueError(
                f"unknown objective {name!r} in {spec!r}{hint}; choose from "
                f"{(*OBJECTIVES, NO_OBJECTIVE)}, joined with '+', each optionally ':weight'"
            )
        if name in weights:
            raise ValueError(f"objective {name!r} is repeated in {spec!r}")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise ValueError(
                f"weight of {name!r} in {spec!r} is not a number: {weight_text!r}"
            ) from None
        if not weight > 0 or weight == float("inf"):
            raise ValueError(
                f"weight of {name!r} in {spec!r} must be a positive number, got {weight}"
            )
        weights[name] = weight
    return {name: weights[name] for name in OBJECTIVES if name in weights}


def format_objective(weights: dict[str, float]) -> str:
    """Inverse of ``parse_objective`` (weights of 1 are left out)."""
    if not weights:
        return NO_OBJECTIVE
    return "+".join(name if w == 1.0 else f"{name}:{w:g}" for name, w in weights.items())


def normalized_cosine_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BYOL/SPR loss ``2 - 2 cos(p, t)``, averaged over all leading dimensions.

    Args:
        predictions: (..., D), e.g. (B, K, D) for k = 1..K.
        targets: (..., D), same shape; treated as constants by the caller (no_grad).

    Returns:
        Scalar in [0, 4]; 0 when every prediction points the same way as its target.
    """
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} != targets {tuple(targets.shape)}"
        )
    cos = F.cosine_similarity(predictions.float(), targets.float(), dim=-1, eps=1e-8)
    return (2.0 - 2.0 * cos).mean()


def centered_cosine_loss(
    predictions: torch.Tensor, targets: torch.Tensor, center: torch.Tensor | None = None
) -> torch.Tensor:
    """``normalized_cosine_loss`` of ``predictions - center`` and ``targets - center``.

    Frames of one scene share most of their content, so the features of all windows share a
    large common part, and plain cosines are near 1 whatever the encoder holds about each
    frame: the loss is then nearly met by a constant, carries little signal, and pulls the
    features towards that constant. Subtracting the targets' batch mean compares only what
    tells windows apart, and a constant prediction scores 2 (unrelated). It does the job of
    the batch normalisation in BYOL's heads (Grill et al. 2020), whose removal invites
    collapse. The centre is a constant (targets carry no gradient), so under
    DistributedDataParallel one all-reduced centre makes N ranks match one big batch.

    Args:
        predictions: (B, ..., D), B >= 2.
        targets: (B, ..., D), same shape; treated as constants by the caller (no_grad).
        center: (1, ..., D) to subtract from both; default: the targets' mean over dim 0.

    Returns:
        Scalar in [0, 4]; 0 when every centred prediction points along its centred target.
    """
    if predictions.shape != targets.shape or predictions.shape[0] < 2:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} must "
            "have the same shape with a batch of at least 2"
        )
    targets = targets.float()
    if center is None:
        center = targets.mean(dim=0, keepdim=True)
    center = center.float()
    return normalized_cosine_loss(predictions.float() - center, targets - center)


def total_loss(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """The optimised scalar: ``sum(weights[n] * LOSS_SCALES.get(n, 1) * losses[n])``.

    Args:
        losses: Unweighted scalar losses by objective name (as logged).
        weights: ``{name: weight}`` from ``parse_objective``; must cover every loss.
    """
    missing = sorted(set(losses) - set(weights))
    if missing:
        raise ValueError(f"losses {missing} have no weight in {weights}")
    return sum(
        weights[name] * LOSS_SCALES.get(name, 1.0) * loss.float() for name, loss in losses.items()
    )


def pixel_mse_loss(
    predicted: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error over all pixels and channels, in normalised pixel units.

    Kept as a per-pixel mean (not a sum) so that, unweighted, the value maps straight to PSNR:
    ``PSNR = 10 log10(1 / mse)`` for the [-0.5, 0.5] range. With ``weights`` (broadcastable
    to the frames, e.g. from ``salient_pixel_weights``) it is ``mean(weights * error^2)``;
    weights with mean 1 keep the scale of the plain MSE.
    """
    if predicted.shape != target.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} != target {tuple(target.shape)}")
    if weights is None:
        return F.mse_loss(predicted.float(), target.float())
    return ((predicted.float() - target.float()).square() * weights).mean()


def _sample_stride(layout: Sequence[int], samples: int = 256) -> int:
    """A stride that takes about ``samples`` values spread over every axis of a flattened
    ``layout``: coprime with the size of each trailing part of it, so that the sample steps
    through every row, column and block, not along a few. A stride sharing a factor with the
    block layout's plane sampled strips of it: 16 at 64 px (shuffle 4, blocks 16 wide) took
    the left 4 columns only; the odd stride that fixed it took four 4-pixel strips at 112 px
    (49 against a 28-wide plane) and left quarters of a 128-px frame unsampled."""
    sizes = [math.prod(layout[k:]) for k in range(len(layout))]
    stride = max(1, math.prod(layout) // samples)
    while any(math.gcd(stride, size) != 1 for size in sizes):
        stride += 1
    return stride


def salient_pixel_weights(frames: torch.Tensor, weight: float, threshold: float) -> torch.Tensor:
    """Per-pixel loss weights: ``1 + weight`` where a pixel differs from its frame's dominant
    colour by more than ``threshold`` (mean over RGB, normalised units), else 1.

    Robot scenes are mostly table, floor and wall; the things a policy needs (a 5-pixel
    target, a cube, the goal, the arm) are a few percent of the pixels, so a plain MSE hardly
    notices if they are blurred away, and the latent need not hold them. The frame's per-channel
    median is its background colour (which the visual presets change per episode), so
    "unlike the background" marks objects without labels. Measured by the default preset
    (``fdm+future``, 1,500 steps at batch 128; weight 0 -> 10 on the frames decoded without
    the copy path): mean held-out probe R^2 Reach 0.51 -> 0.62 (target position 0.22 / 0.30
    -> 0.72 / 0.76), Push 0.53 -> 0.56, Navigate 0.77 -> 0.77; BC success with 25 demos Reach
    15% -> 20%, Push 7% -> 15%, Navigate 100% -> 99% (3 seeds x 50 episodes each).

    Args:
        frames: Target frames in the decoder's block layout, float (N, 3, ...): channel dim 1.
        weight: Extra weight of salient pixels (0: all ones).
        threshold: Mean absolute RGB difference from the median colour that counts as salient.

    Returns:
        float (N, 1, ...), broadcastable against ``frames``.
    """
    if frames.ndim < 3 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (N, 3, ...), got {tuple(frames.shape)}")
    frames = frames.float()
    flat = frames.flatten(2)
    # The median of a regular subsample of ~256 pixels: as good an estimate of the dominant
    # colour, at a quarter of the cost of the full sort (which took 13% of a training step).
    median = flat[:, :, :: _sample_stride(frames.shape[2:])].median(dim=2).values  # (N, 3)
    median = median.view(*median.shape, *([1] * (frames.ndim - 2)))
    difference = (frames - median).abs().mean(dim=1, keepdim=True)  # (N, 1, ...)
    return 1.0 + weight * (difference > threshold).float()


def inverse_dynamics_loss(predicted_actions: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and taken actions, (B, A) each."""
    if predicted_actions.shape != actions.shape:
        raise ValueError(
            f"predicted_actions {tuple(predicted_actions.shape)} != actions {tuple(actions.shape)}"
        )
    return F.mse_loss(predicted_actions.float(), actions.float())


def info_nce_loss(
    anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """InfoNCE over a batch: anchor i must pick positive i among all B positives.

    Cosine similarities divided by ``temperature`` are the logits (SimCLR/MoCo form; ATC,
    Stooke et al. 2021, uses a bilinear product instead, which is unbounded and so has no
    natural "perfect" value).

    Args:
        anchors: (B, D).
        positives: (B, D), row i is the positive for anchor i, the others are negatives.
        temperature: Softmax temperature > 0.

    Returns:
        Scalar >= 0; ``log(1 + (B-1) e^{-1/temperature})`` with each anchor equal to its
        positive and orthogonal to the others (e.g. 3e-4 for B=8 at 0.1; negatives spread as a
        simplex, at cosine -1/(B-1), score a little lower still), ``log B`` when
        anchors carry no information. Under DistributedDataParallel B is each rank's batch:
        the negatives are that rank's windows, not the global batch's.
    """
    if anchors.ndim != 2 or anchors.shape != positives.shape:
        raise ValueError(
            f"anchors and positives must both be (B, D), got {tuple(anchors.shape)} and "
            f"{tuple(positives.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    # float32 logits even under bfloat16 autocast: at temperature 0.1 they reach 10, where
    # bfloat16 keeps only ~0.05 of resolution.
    with full_precision(anchors.device):
        a = F.normalize(anchors.float(), dim=-1)
        p = F.normalize(positives.float(), dim=-1)
        logits = a @ p.T / temperature  # (B, B)
        labels = torch.arange(a.shape[0], device=a.device)
        return F.cross_entropy(logits, labels)


def slowness_loss(now: torch.Tensor, later: torch.Tensor, min_std: float) -> torch.Tensor:
    """Slow-feature term: features that barely change within a window but vary across windows.

    ``mean((now - later)^2) / min_std^2 + mean(relu(1 - std / min_std))``, with ``std`` each
    feature's standard deviation over the batch (of ``now``). The first part is slow feature
    analysis' slowness (Wiskott and Sejnowski 2002); the second is VICReg's variance hinge
    (Bardes et al. 2022), which a constant feature (perfectly slow, useless) fails: it costs
    nothing once every feature spreads over at least ``min_std`` across windows.

    Args:
        now: (B, D) features of the windows' first frames, B >= 2.
        later: (B, D) features of a later frame of the same windows.
        min_std: the spread across windows below which a feature counts as collapsing.

    Returns:
        Scalar >= 0; 0 when ``now == later`` and every feature's std is at least ``min_std``.
    """
    if now.ndim != 2 or now.shape != later.shape or now.shape[0] < 2:
        raise ValueError(
            f"now and later must both be (B, D) with B >= 2, got {tuple(now.shape)} and "
            f"{tuple(later.shape)}"
        )
    if not min_std > 0:
        raise ValueError(f"min_std must be > 0, got {min_std}")
    now, later = now.float(), later.float()
    change = (now - later).square().mean() / min_std**2
    std = torch.sqrt(now.var(dim=0) + 1e-8)
    return change + F.relu(1.0 - std / min_std).mean()


def latent_std(latents: torch.Tensor) -> torch.Tensor:
    """Per-dimension standard deviation across the batch, averaged: near 0 means collapse.

    Args:
        latents: (B, D) with B >= 2.
    """
    if latents.ndim != 2 or latents.shape[0] < 2:
        raise ValueError(f"latents must be (B, D) with B >= 2, got {tuple(latents.shape)}")
    return latents.float().std(dim=0).mean()


def look_share_loss(features: torch.Tensor, twin_features: torch.Tensor) -> torch.Tensor:
    """The share of the features' variance that the look makes: the mean squared difference
    between the features of the same frames in two looks, over twice their mean squared
    distance from the batch's mean (both looks' spread). Scale-free: shrinking every feature
    changes nothing, so the encoder cannot meet it by ceasing to move; 0 when the looks give
    the same features, about 1 when they are unrelated.

    Args:
        features: (B, D), of the frames in the look the encoder reads.
        twin_features: (B, D), of the same frames in the twin's look.
    """
    with full_precision(features.device):
        features, twin_features = features.float(), twin_features.float()
        moved = (features - twin_features).square().sum(dim=1).mean()
        spread = sum(
            (f - f.mean(dim=0, keepdim=True)).square().sum(dim=1).mean()
            for f in (features, twin_features)
        )
        return moved / spread.clamp_min(1e-12)
