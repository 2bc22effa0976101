"""Linear probes: how much of the privileged state a frozen encoder's features hold linearly."""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

DEFAULT_ALPHAS: tuple[float, ...] = (1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5)
"""Ridge penalties tried when none is fixed; the penalty is on the sum of squared errors."""

# Targets whose held-out variance is below this have no R^2 (SST is zero): reported as NaN.
_MIN_TARGET_VARIANCE = 1e-12


@dataclass(frozen=True)
class RidgeProbe:
    """A fitted ridge regression from standardised features to targets.

    Attributes:
        feature_mean: Train-split feature means, shape (D,).
        feature_scale: Train-split feature standard deviations (1 where constant), shape (D,).
        target_mean: Train-split target means, shape (S,).
        coef: Weights on standardised features, shape (D, S).
        alphas: Ridge penalty used for each target, shape (S,).
    """

    feature_mean: np.ndarray
    feature_scale: np.ndarray
    target_mean: np.ndarray
    coef: np.ndarray
    alphas: np.ndarray

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predict targets, shape (N, S), from features, shape (N, D)."""
        features = np.asarray(features, dtype=np.float64)
        standardised = (features - self.feature_mean) / self.feature_scale
        return standardised @ self.coef + self.target_mean


@dataclass(frozen=True)
class ProbeResult:
    """Held-out scores of a linear probe.

    Attributes:
        r2: Held-out R^2 per state variable (NaN where the variable is constant held-out).
        r2_mean: Mean of the finite R^2 values of the variables in ``mean_over``, each scored
            in view (``r2_in_view``) where it has a view condition (on every frame if too few
            held-out frames are in view): the headline score (the variables one camera frame
            determines, on the frames that determine them).
        alphas: Ridge penalty chosen per state variable.
        num_train_frames: Frames the probe was fitted on.
        num_val_frames: Held-out frames it was scored on.
        feature_dim: Width of the features.
        mean_over: Names averaged into ``r2_mean`` (all of ``r2`` unless narrowed).
        r2_mean_all: Mean of the finite R^2 values of every variable.
        r2_in_view: Held-out R^2 of each variable with a view condition, fitted and scored on
            the frames where its condition holds.
        r2_mean_all_frames: ``r2_mean`` with every variable scored on every frame (the
            headline before view conditions; equal to it where there are none).
        view_conditions: The ``(name, condition variable, least value)`` triples applied.
    """

    r2: dict[str, float]
    r2_mean: float
    alphas: dict[str, float]
    num_train_frames: int
    num_val_frames: int
    feature_dim: int
    mean_over: tuple[str, ...] = ()
    r2_mean_all: float = float("nan")
    r2_in_view: dict[str, float] = field(default_factory=dict)
    r2_mean_all_frames: float = float("nan")
    view_conditions: tuple[tuple[str, str, float], ...] = ()

    def to_metrics(self) -> dict[str, Any]:
        """Namespaced metrics, JSON-ready (NaN R^2 becomes ``None``)."""
        return {
            "probe/r2_mean": _finite_or_none(self.r2_mean),
            "probe/r2_mean_all": _finite_or_none(self.r2_mean_all),
            "probe/r2_mean_all_frames": _finite_or_none(self.r2_mean_all_frames),
            "probe/view_conditions": [list(condition) for condition in self.view_conditions],
            "probe/r2_in_view": {
                name: _finite_or_none(value) for name, value in self.r2_in_view.items()
            },
            "probe/mean_over": list(self.mean_over),
            "probe/r2": {name: _finite_or_none(value) for name, value in self.r2.items()},
            "probe/alpha": dict(self.alphas),
            "probe/num_train_frames": self.num_train_frames,
            "probe/num_val_frames": self.num_val_frames,
            "probe/feature_dim": self.feature_dim,
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _check_xy(features: np.ndarray, targets: np.ndarray, split: str) -> tuple[np.ndarray, ...]:
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(
            f"{split} features and states must be 2-D (N, D) and (N, S), "
            f"got {x.shape} and {y.shape}"
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{split} features and states disagree on frames: {x.shape[0]} vs {y.shape[0]}"
        )
    if x.shape[0] < 2:
        raise ValueError(f"{split} split needs at least 2 frames, got {x.shape[0]}")
    for name, array in (("features", x), ("states", y)):
        if not np.all(np.isfinite(array)):
            row, column = (int(i) for i in np.argwhere(~np.isfinite(array))[0])
            raise ValueError(
                f"{split} {name} contain NaN or inf (first at frame row {row}, column {column})"
            )
    return x, y


def r2_scores(targets: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column, ``1 - SSE / SST``, not clipped.

    A constant predictor at the held-out mean scores 0, and worse-than-constant is negative.

    Args:
        targets: True values, shape (N, S).
        predictions: Predicted values, shape (N, S).

    Returns:
        R^2 per column, shape (S,); NaN where the targets are constant (SST is zero).
    """
    targets = np.asarray(targets, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    if targets.shape != predictions.shape or targets.ndim != 2:
        raise ValueError(
            f"targets and predictions must both be (N, S), got {targets.shape} "
            f"and {predictions.shape}"
        )
    sse = np.sum((targets - predictions) ** 2, axis=0)
    centred = targets - targets.mean(axis=0)
    sst = np.sum(centred**2, axis=0)
    constant = sst <= _MIN_TARGET_VARIANCE * targets.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = 1.0 - sse / sst
    scores[constant] = np.nan
    return scores


def _standardise(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-12] = 1.0  # constant features: centred to zero, weight stays zero
    return mean, scale


def _ridge_path(x: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Ridge weights for every penalty from one SVD: shape (len(alphas), D, S).

    ``w(alpha) = V diag(s / (s^2 + alpha)) U^T y`` (Hoerl & Kennard 1970), valid for
    N < D and N >= D alike; ``x`` and ``y`` must be centred. Directions whose singular value
    is rounding noise (below ``eps * max(N, D) * s_max``, ``numpy.linalg.lstsq``'s and
    ``matrix_rank``'s cut-off) get no weight, so ``alpha = 0``
    is the minimum-norm least-squares fit instead of dividing by ~1e-15 (centring alone
    leaves one such direction whenever N <= D).
    """
    u, s, vt = np.linalg.svd(x, full_matrices=False)  # (N, r), (r,), (r, D)
    uty = u.T @ y  # (r, S)
    tolerance = np.finfo(np.float64).eps * max(x.shape) * (s[0] if s.size else 0.0)
    kept = s > tolerance
    shrink = np.where(kept, s, 0.0)[None, :] / (s[None, :] ** 2 + alphas[:, None] + ~kept)
    return np.einsum("rd,ar,rs->ads", vt, shrink, uty)


def fit_ridge(
    features: np.ndarray, targets: np.ndarray, alphas: float | Sequence[float] | np.ndarray
) -> RidgeProbe:
    """Fit ridge regression on standardised features, with one penalty or one per target.

    Args:
        features: Train features, shape (N, D).
        targets: Train targets, shape (N, S).
        alphas: A penalty for all targets, or one per target, shape (S,); each >= 0.

    Returns:
        The fitted probe; standardisation statistics come from these rows only.
    """
    x, y = _check_xy(features, targets, "train")
    per_target = np.broadcast_to(np.asarray(alphas, dtype=np.float64), (y.shape[1],)).copy()
    if np.any(per_target < 0) or not np.all(np.isfinite(per_target)):
        raise ValueError(f"ridge alphas must be finite and >= 0, got {per_target.tolist()}")
    feature_mean, feature_scale = _standardise(x)
    xs = (x - feature_mean) / feature_scale
    target_mean = y.mean(axis=0)
    yc = y - target_mean
    unique, inverse = np.unique(per_target, return_inverse=True)
    path = _ridge_path(xs, yc, unique)  # (A, D, S)
    coef = path[inverse, :, np.arange(y.shape[1])].T  # (D, S)
    return RidgeProbe(feature_mean, feature_scale, target_mean, coef, per_target)


def select_alphas(
    features: np.ndarray,
    targets: np.ndarray,
    groups: np.ndarray | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> np.ndarray:
    """Choose a ridge penalty per target on a held-out part of the training rows.

    Frames of one episode are strongly correlated, so when ``groups`` (episode ids) are given
    whole episodes are held out; otherwise rows are split at random.

    Args:
        features: Train features, shape (N, D).
        targets: Train targets, shape (N, S).
        groups: Episode id of each row, shape (N,), or ``None``.
        alphas: Candidate penalties, each > 0.
        holdout_fraction: Share of episodes (or rows) used to score the candidates.
        seed: Seed of the split.

    Returns:
        The best penalty per target, shape (S,), by squared error on the held-out part.
    """
    x, y = _check_xy(features, targets, "train")
    candidates = np.asarray(sorted(alphas), dtype=np.float64)
    if candidates.size == 0 or np.any(candidates <= 0):
        raise ValueError(f"alphas must be a non-empty list of positive numbers, got {alphas}")
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    rng = np.random.default_rng(seed)
    if groups is None:
        units = np.arange(x.shape[0])
        row_units = units
    else:
        row_units = np.asarray(groups)
        if row_units.shape != (x.shape[0],):
            raise ValueError(f"groups must have shape ({x.shape[0]},), got {row_units.shape}")
        units = np.unique(row_units)
    if units.size < 2:
        raise ValueError(
            f"choosing the ridge alpha needs at least 2 training episodes, got {units.size}; "
            "pass a fixed alpha instead"
        )
    num_holdout = min(units.size - 1, max(1, round(holdout_fraction * units.size)))
    holdout_units = rng.permutation(units)[:num_holdout]
    holdout = np.isin(row_units, holdout_units)
    fit_x, fit_y = x[~holdout], y[~holdout]
    feature_mean, feature_scale = _standardise(fit_x)
    xs = (fit_x - feature_mean) / feature_scale
    target_mean = fit_y.mean(axis=0)
    path = _ridge_path(xs, fit_y - target_mean, candidates)  # (A, D, S)
    held_xs = (x[holdout] - feature_mean) / feature_scale
    # Scored by squared error, which ranks the candidates as R² does wherever the held-out
    # target varies, and still ranks them where it does not: with few training episodes the
    # held-out part can be one episode, in which a goal or a target never moves, and R²
    # (undefined there) gave such variables the largest penalty, wiping them out.
    scores = np.stack(
        [-np.mean((y[holdout] - (held_xs @ coef + target_mean)) ** 2, axis=0) for coef in path]
    )  # (A, S)
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    # Ties resolve to the largest penalty: the simplest model.
    best = len(candidates) - 1 - np.argmax(scores[::-1], axis=0)
    return candidates[best]


def fit_linear_probe(
    train_features: np.ndarray,
    train_states: np.ndarray,
    val_features: np.ndarray,
    val_states: np.ndarray,
    state_names: Sequence[str],
    alpha: float | None = None,
    train_groups: np.ndarray | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    seed: int = 0,
    mean_over: Sequence[str] | None = None,
    view_conditions: Sequence[Sequence[Any]] = (),
) -> ProbeResult:
    """Fit a ridge probe on training episodes and score it on held-out episodes.

    Args:
        train_features: Frozen features of training frames, shape (N, D).
        train_states: Privileged state of the same frames, shape (N, S).
        val_features: Features of held-out frames, shape (M, D).
        val_states: State of held-out frames, shape (M, S).
        state_names: Name of each state variable, length S.
        alpha: Fixed ridge penalty; ``None`` chooses one per variable on held-out training
            episodes (see ``select_alphas``). The validation split is never used to choose it.
        train_groups: Episode id of each training row, shape (N,), for choosing alpha.
        alphas: Candidates when ``alpha`` is ``None``.
        seed: Seed of the alpha-selection split.
        mean_over: The variables ``r2_mean`` averages (``None``: all), e.g. the env's
            ``view_state_names``; ``r2_mean_all`` always averages all.
        view_conditions: ``(name, condition variable, least value)`` triples, the env's
            ``view_conditions``: ``name`` is also fitted and scored on the frames whose
            condition variable is at least the value (``r2_in_view``), and enters ``r2_mean``
            with that score.

    Returns:
        R^2 per state variable on the held-out episodes and their mean.
    """
    x, y = _check_xy(train_features, train_states, "train")
    vx, vy = _check_xy(val_features, val_states, "validation")
    if vx.shape[1] != x.shape[1] or vy.shape[1] != y.shape[1]:
        raise ValueError(
            f"train and validation widths differ: features {x.shape[1]} vs {vx.shape[1]}, "
            f"states {y.shape[1]} vs {vy.shape[1]}"
        )
    names = list(state_names)
    if len(names) != y.shape[1]:
        raise ValueError(f"state_names has {len(names)} names for {y.shape[1]} state columns")
    averaged = names if mean_over is None else list(mean_over)
    unknown = sorted(set(averaged) - set(names))
    if unknown or not averaged:
        raise ValueError(f"mean_over names {unknown or 'nothing'}; the state has {names}")
    if alpha is None:
        chosen = select_alphas(x, y, groups=train_groups, alphas=alphas, seed=seed)
    else:
        chosen = np.full(y.shape[1], float(alpha))
    probe = fit_ridge(x, y, chosen)
    scores = r2_scores(vy, probe.predict(vx))
    conditions = _check_view_conditions(view_conditions, names)
    in_view = _scores_in_view(x, y, vx, vy, names, conditions, alpha, train_groups, alphas, seed)
    all_frames = scores[[names.index(name) for name in averaged]]
    # A variable too rarely in view to score there (NaN) counts on every frame instead of
    # silently dropping out of the mean, which would then average other variables.
    headline = np.array(
        [
            in_view[name] if np.isfinite(in_view.get(name, np.nan)) else scores[names.index(name)]
            for name in averaged
        ]
    )
    return ProbeResult(
        r2={name: float(score) for name, score in zip(names, scores, strict=True)},
        r2_mean=_finite_mean(headline),
        alphas={name: float(a) for name, a in zip(names, chosen, strict=True)},
        num_train_frames=int(x.shape[0]),
        num_val_frames=int(vx.shape[0]),
        feature_dim=int(x.shape[1]),
        mean_over=tuple(averaged),
        r2_mean_all=_finite_mean(scores),
        r2_in_view=in_view,
        r2_mean_all_frames=_finite_mean(all_frames),
        view_conditions=conditions,
    )


def _check_view_conditions(
    view_conditions: Sequence[Sequence[Any]], names: Sequence[str]
) -> tuple[tuple[str, str, float], ...]:
    """The triples as ``(str, str, float)``, each naming state variables."""
    checked = []
    for condition in view_conditions:
        if len(condition) != 3:
            raise ValueError(
                f"a view condition is (name, condition variable, least value), got {condition!r}"
            )
        name, variable, least = str(condition[0]), str(condition[1]), float(condition[2])
        unknown = sorted({name, variable} - set(names))
        if unknown:
            raise ValueError(f"view condition {condition!r} names {unknown}; the state has {names}")
        checked.append((name, variable, least))
    return tuple(checked)


def _scores_in_view(
    x: np.ndarray,
    y: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    names: Sequence[str],
    conditions: tuple[tuple[str, str, float], ...],
    alpha: float | None,
    train_groups: np.ndarray | None,
    alphas: Sequence[float],
    seed: int,
) -> dict[str, float]:
    """Held-out R^2 of each conditioned variable, fitted and scored where it is in view.

    Variables sharing a condition are fitted together on the same frames. A condition that
    leaves fewer than 2 frames (or, when choosing alpha, 2 episodes) in a split gives NaN.
    """
    groups: dict[tuple[str, float], list[str]] = {}
    for name, variable, least in conditions:
        groups.setdefault((variable, least), []).append(name)
    scores: dict[str, float] = {}
    for (variable, least), members in groups.items():
        column = names.index(variable)
        train_rows, val_rows = y[:, column] >= least, vy[:, column] >= least
        columns = [names.index(name) for name in members]
        episodes = None if train_groups is None else np.asarray(train_groups)[train_rows]
        enough = train_rows.sum() >= 2 and val_rows.sum() >= 2
        if enough and alpha is None and episodes is not None:
            enough = np.unique(episodes).size >= 2
        if not enough:
            scores.update({name: float("nan") for name in members})
            continue
        result = fit_linear_probe(
            x[train_rows],
            y[train_rows][:, columns],
            vx[val_rows],
            vy[val_rows][:, columns],
            members,
            alpha=alpha,
            train_groups=episodes,
            alphas=alphas,
            seed=seed,
        )
        scores.update(result.r2)
    return scores


def _finite_mean(values: np.ndarray) -> float:
    """Mean of the finite entries; NaN when there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _frame_indices(lengths: Sequence[int], max_frames: int | None, seed: int) -> list[np.ndarray]:
    """Frames to use per episode: all, or an even random share summing to about max_frames;
    every episode keeps at least one, so more episodes than ``max_frames`` give one each."""
    if max_frames is None or sum(lengths) <= max_frames:
        return [np.arange(n) for n in lengths]
    rng = np.random.default_rng(seed)
    share = max_frames / sum(lengths)
    picked = []
    for n in lengths:
        count = max(1, round(share * n))
        picked.append(np.sort(rng.choice(n, size=count, replace=False)))
    return picked


def stack_frames(pixels: np.ndarray, frame_stack: int) -> np.ndarray:
    """Stack each frame with its predecessors on the channel axis, oldest first.

    Frames before the episode start repeat the first frame (the DrQ/Atari convention).

    Args:
        pixels: uint8 frames of one episode, shape (T, H, W, 3).
        frame_stack: Frames per stack, >= 1.

    Returns:
        uint8 (T, H, W, 3 * frame_stack); ``pixels`` itself when ``frame_stack`` is 1.
    """
    if frame_stack == 1:
        return pixels
    index = np.arange(pixels.shape[0])[:, None] + np.arange(1 - frame_stack, 1)[None, :]
    stacked = pixels[np.clip(index, 0, None)]  # (T, S, H, W, 3)
    return np.moveaxis(stacked, 1, 3).reshape(*pixels.shape[:3], -1)


def iter_probe_frames(
    dataset: Any,
    episode_ids: Sequence[int],
    max_frames: int | None,
    seed: int,
    frame_stack: int = 1,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """The frames a probe uses, one episode at a time (so a caller holds one in memory).

    Args:
        dataset: An open dataset whose episodes hold ``state``.
        episode_ids: Episodes to read.
        max_frames: Cap on frames over all these episodes, spread evenly; ``None``: all.
        seed: Seed of the frame subsampling.
        frame_stack: Frames stacked on the channel axis (as the encoder expects).

    Yields:
        ``(episode_id, frames, states)``: uint8 (n, H, W, 3 * frame_stack), float64 (n, S).

    Raises:
        ValueError: for an episode without privileged state, or a damaged one (checksums are
            checked once, before any frame is used).
    """
    lengths = []
    for i in episode_ids:  # checked, and measured, first; then read one at a time
        try:
            episode = dataset.load_episode(i, include_state=True, verify=True)
        except FileNotFoundError as error:
            raise ValueError(
                f"episode {i} has no privileged state, which probes need (collected from "
                f"an env's info['state'], or its observation when that is a flat vector; a "
                f"Dict observation's proprio is not taken for it): {error}"
            ) from error
        lengths.append(episode["state"].shape[0])
        # Mapped arrays keep their files open: holding every episode's met the open-file
        # limit (1024 on many systems) at the default preset's 200 episodes.
        del episode
    picks = _frame_indices(lengths, max_frames, seed)
    for episode_id, pick in zip(episode_ids, picks, strict=True):
        ep = dataset.load_episode(episode_id, include_state=True)
        if frame_stack == 1:
            frames = np.asarray(ep["pixels"][pick])
        else:
            frames = stack_frames(np.asarray(ep["pixels"]), frame_stack)[pick]
        yield episode_id, frames, np.asarray(ep["state"][pick], dtype=np.float64)


def encode_episodes(
    dataset: Any,
    episode_ids: Sequence[int],
    encoder: torch.nn.Module,
    max_frames: int | None,
    batch_size: int,
    seed: int,
    frame_stack: int,
    progress: bool = False,
    desc: str = "encode",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, states and episode ids of the probe's frames (``iter_probe_frames``).

    ``progress`` shows a bar over the episodes (encoding is most of a probe's time on a CPU).

    Returns:
        float32 features (N, D), float64 states (N, S), int episode id per frame (N,).
    """
    from tqdm.auto import tqdm

    from sslrobot.models.features import extract_features

    features, states, groups = [], [], []
    frames_iter = iter_probe_frames(dataset, episode_ids, max_frames, seed, frame_stack)
    bar = tqdm(total=len(episode_ids), desc=desc, unit="ep", disable=not progress)
    with bar:
        for episode_id, frames, state in frames_iter:
            features.append(extract_features(encoder, frames, batch_size))
            states.append(state)
            groups.append(np.full(len(state), episode_id))
            bar.update()
    return np.concatenate(features), np.concatenate(states), np.concatenate(groups)


def dataset_state_names(manifest: dict[str, Any], num_state: int) -> list[str]:
    """State variable names from the dataset manifest (``state_<i>`` where it has none)."""
    names = manifest.get("state_names")
    if names is None:
        return [f"state_{i}" for i in range(num_state)]
    if len(names) != num_state:
        raise ValueError(
            f"dataset state has {num_state} columns but the manifest names {len(names)}: {names}"
        )
    return [str(name) for name in names]


def _check_frames_fit(encoder: torch.nn.Module, frame_shape: Any, data_dir: Path) -> None:
    """Refuse, naming the dataset and the sizes, a stream whose frames (``frame_shape`` of
    its manifest) are not the size the encoder was built for (encoders with a ``config``)."""
    size = getattr(getattr(encoder, "config", None), "image_size", None)
    if size is None or not frame_shape or tuple(frame_shape[:2]) == (size, size):
        return
    raise ValueError(
        f"{data_dir} holds {frame_shape[0]}x{frame_shape[1]} frames, but the encoder expects "
        f"{size}x{size}: probe it on a stream collected at --image-size {size}, or use an "
        "encoder pretrained at this size"
    )


def encoder_frame_stack(encoder: torch.nn.Module) -> int:
    """Frames the encoder stacks on its channel axis (its ``config.frame_stack``, else 1)."""
    return int(getattr(getattr(encoder, "config", None), "frame_stack", 1) or 1)


def probe_representation(
    encoder: str | os.PathLike[str] | torch.nn.Module,
    data_dir: str | os.PathLike[str],
    val_fraction: float = 0.2,
    seed: int = 0,
    max_frames: int | None = 20_000,
    batch_size: int = 256,
    device: str = "auto",
    alpha: float | None = None,
    exclude_from_validation: Collection[int] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Probe a frozen encoder on a dataset directory: fit on train episodes, score held-out.

    Held-out means unseen by the encoder too: the validation episodes leave out those its
    pretraining trained on (a 20% split of a dataset that pretraining split 90 / 10 would
    otherwise score half its episodes on frames the encoder learned from).

    Args:
        encoder: A ``sslrobot pretrain --out`` directory, or a module mapping uint8 frames
            (B, H, W, 3 * frame_stack) to features (B, D), used on its own device; frames are
            stacked when its ``config.frame_stack`` is above 1.
        data_dir: A ``sslrobot collect --out`` directory whose episodes hold ``state``.
        val_fraction: Share of episodes held out for scoring (split by ``ds.split``).
        seed: Seed of the episode split, frame subsampling and alpha selection.
        max_frames: Cap on frames per split (spread evenly over episodes); ``None``: all.
        batch_size: Frames per encoder forward pass.
        device: For an encoder directory: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        alpha: Fixed ridge penalty, or ``None`` to choose one per variable.
        exclude_from_validation: Episode ids never scored; ``None``: for an encoder
            directory, the episodes of ``data_dir`` its pretraining trained on
            (``prediction.trained_episodes``), for a module none.
        progress: Show a bar (rate, ETA) while the frames are encoded.

    Returns:
        ``ProbeResult.to_metrics()``: ``probe/r2_mean``, ``probe/r2`` per variable, ...,
        and ``probe/num_val_episodes`` (scored) and ``probe/num_val_excluded`` (left out).
    """
    from sslrobot.data import open_dataset

    if isinstance(encoder, str | os.PathLike):
        import sslrobot
        from sslrobot.evaluation.prediction import trained_episodes
        from sslrobot.pretrained import encoder_directory
        from sslrobot.pretraining.artifacts import PRETRAIN_CONFIG, TRAINED_EPISODES

        path = encoder_directory(encoder)
        encoder, _ = sslrobot.load_encoder(path, device=device)  # not one: named before warning
        if exclude_from_validation is None:
            exclude_from_validation = trained_episodes(path, Path(data_dir))
            if not any((path / name).is_file() for name in (PRETRAIN_CONFIG, TRAINED_EPISODES)):
                warnings.warn(
                    f"{path} holds no {PRETRAIN_CONFIG} or {TRAINED_EPISODES}: nothing says "
                    f"which episodes it trained on, so none of {data_dir} can be left out of "
                    "the scoring; if it trained on these episodes its R^2 is partly a training "
                    "score (probe the whole `pretrain --out` directory, record them with `from "
                    "sslrobot.pretraining.artifacts import save_trained_episodes`, or probe "
                    "data it never saw)",
                    stacklevel=2,
                )
    dataset = open_dataset(Path(data_dir))
    train_ids, val_ids, num_excluded = split_unseen(
        dataset, val_fraction, seed, exclude_from_validation or ()
    )
    if not train_ids or not val_ids:
        raise ValueError(
            f"{data_dir}: val_fraction={val_fraction} leaves {len(train_ids)} train and "
            f"{len(val_ids)} validation episodes ({num_excluded} more held out but pretrained "
            "on); both need at least one"
        )
    _check_frames_fit(encoder, dataset.manifest.get("frame_shape"), Path(data_dir))
    # What the manifest alone says is checked before the frames are encoded (most of the time).
    manifest_state_dim = dataset.manifest.get("state_dim")
    if isinstance(manifest_state_dim, int):
        dataset_state_names(dataset.manifest, manifest_state_dim)
    view_names = dataset_view_state_names(dataset.manifest)
    known = dataset.manifest.get("state_names")
    if known is not None:
        _check_view_state_names(view_names, [str(name) for name in known], Path(data_dir))
    stack = encoder_frame_stack(encoder)
    train_x, train_y, train_groups = encode_episodes(
        dataset, train_ids, encoder, max_frames, batch_size, seed, stack, progress, "encode train"
    )
    val_x, val_y, _ = encode_episodes(
        dataset, val_ids, encoder, max_frames, batch_size, seed, stack, progress, "encode held out"
    )
    names = dataset_state_names(dataset.manifest, train_y.shape[1])
    _check_view_state_names(view_names, names, Path(data_dir))
    result = fit_linear_probe(
        train_x,
        train_y,
        val_x,
        val_y,
        names,
        alpha=alpha,
        train_groups=train_groups,
        seed=seed,
        mean_over=view_names or None,
        view_conditions=dataset_view_conditions(dataset.manifest),
    )
    return {
        **result.to_metrics(),
        "probe/num_val_episodes": len(val_ids),
        "probe/num_val_excluded": num_excluded,
    }


def heldout_split(
    dataset: Any,
    data_dir: str | os.PathLike[str],
    seed: int = 0,
    encoder_dirs: Sequence[str | os.PathLike[str]] = (),
) -> tuple[list[int], list[int]]:
    """The episode split ``sslrobot run`` probes with: its pretrainings' own (their
    ``val_fraction``: ``PretrainConfig``'s default, which ``sslrobot run`` pretrains with;
    split with the run's ``seed``), less any held-out episode one of
    ``encoder_dirs`` trained on. Benchmarks that compare encoders on one split use this.

    Returns:
        ``(train_ids, val_ids)``.
    """
    from sslrobot.evaluation.prediction import trained_episodes
    from sslrobot.pretraining import PretrainConfig

    trained = {i for d in encoder_dirs for i in trained_episodes(Path(d), Path(data_dir))}
    train_ids, val_ids, _ = split_unseen(dataset, PretrainConfig.val_fraction, seed, trained)
    return train_ids, val_ids


def split_unseen(
    dataset: Any, val_fraction: float, seed: int, excluded: Collection[int]
) -> tuple[list[int], list[int], int]:
    """``dataset.split`` with the ``excluded`` episodes (an encoder's pretraining ones) taken
    out of the validation side, so a score there is on episodes the encoder never saw.

    Returns:
        ``(train_ids, val_ids, num_excluded)``: how many validation episodes were left out.
    """
    train_ids, val_ids = dataset.split(val_fraction=val_fraction, seed=seed)
    excluded = set(excluded)
    unseen = [i for i in val_ids if i not in excluded]
    return train_ids, unseen, len(val_ids) - len(unseen)


def _check_view_state_names(
    view_names: Sequence[str] | None, names: list[str], data_dir: Path
) -> None:
    unknown = sorted(set(view_names or ()) - set(names))
    if unknown:  # the headline mean would silently average every variable instead
        raise ValueError(
            f"{data_dir / 'manifest.json'}: view_state_names names {unknown}, which are "
            f"not among the state variables {names}"
        )


def dataset_view_state_names(manifest: dict[str, Any]) -> list[str] | None:
    """The variables one frame determines, over which the headline R² averages, as the
    manifest records them; for a registered sslrobot id whose manifest predates the record,
    its task's (as ``dataset_view_conditions``: a Navigate stream of then averaged all 26
    variables, not the 4 in view, while its view conditions came from the task); None (every
    variable) for other envs."""
    if "view_state_names" in manifest:
        names = manifest["view_state_names"]
    else:
        from sslrobot.envs import registered_view_state_names

        names = registered_view_state_names(str(manifest.get("env_id", "")))
    return None if names is None else [str(name) for name in names]


def dataset_view_conditions(manifest: dict[str, Any]) -> tuple[tuple[str, str, float], ...]:
    """The env's ``view_conditions`` as the dataset's manifest records them.

    Manifests written before they were recorded lack the key: for a registered sslrobot id
    the task class says (the id pins its version); other envs have none.
    """
    if "view_conditions" in manifest:
        return tuple(tuple(condition) for condition in manifest["view_conditions"] or ())
    from sslrobot.envs import registered_view_conditions

    return registered_view_conditions(str(manifest.get("env_id", ""))) or ()


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of ``sslrobot probe``: which encoder, which data, how to split and score."""

    encoder: str
    """A ``sslrobot pretrain --out`` directory."""
    data: str
    """A ``sslrobot collect --out`` directory with privileged state."""
    out: str | None = None
    """JSON file for the results; ``None`` writes nothing."""
    val_fraction: float = 0.2
    """Share of episodes held out for scoring, in (0, 1)."""
    seed: int = 0
    """Seed of the episode split, frame subsampling and alpha selection."""
    device: str = "auto"
    """``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:1``, ``mps``."""
    max_frames: int | None = 20_000
    """Cap on probe frames per split; ``None`` uses all."""
    batch_size: int = 256
    """Frames per encoder forward pass."""
    alpha: float | None = None
    """Fixed ridge penalty; ``None`` chooses one per variable on held-out train episodes."""
    horizon: int = 5
    """Prediction steps K scored for world models; 0 skips prediction metrics."""
    max_windows: int | None = 1024
    """Cap on held-out windows for prediction metrics; ``None`` uses all."""

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        # numpy's own error for a negative seed named neither the option nor the value.
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))  # NumPy's too, saved as JSON
        if self.max_frames is not None and self.max_frames < 4:
            raise ValueError(
                f"max_frames must be >= 4, or None for all (0 on the command line), got "
                f"{self.max_frames}"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0 or None, got {self.alpha}")
        if self.horizon < 0:
            raise ValueError(f"horizon must be >= 0 (0 skips prediction), got {self.horizon}")
        if self.max_windows is not None and self.max_windows < 1:
            raise ValueError(f"max_windows must be >= 1 or None, got {self.max_windows}")


def _json_ready(value: Any) -> Any:
    """Replace NaN/inf (not valid JSON) with None, recursively."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _warn_of_another_tasks_encoder(config: ProbeConfig, encoder_dir: Path) -> None:
    """An encoder pretrained on other envs' streams probed on this env's frames is most often
    a slip (train-policy says so too); as a transfer test it is allowed, and said."""
    from sslrobot.data.manifest import read_manifest
    from sslrobot.pretraining.artifacts import pretraining_env_ids

    envs = pretraining_env_ids(encoder_dir)
    try:
        data_env = read_manifest(Path(config.data)).get("env_id")
    except (OSError, ValueError):
        return  # not a dataset: probe_representation names the problem
    if envs and data_env not in envs:
        warnings.warn(
            f"encoder {config.encoder} was pretrained on streams of {', '.join(envs)}; probing "
            f"it on {data_env}'s frames is a transfer test",
            stacklevel=3,
        )


def is_probe_result(record: Any) -> bool:
    """Whether a parsed JSON file is a probe's results (which a rerun may replace)."""
    return isinstance(record, dict) and "probe/r2_mean" in record


def run_probe(config: ProbeConfig, progress: bool = False) -> dict[str, Any]:
    """Probe an encoder directory and, for world models, score its predictions (``progress``:
    bars while frames are encoded).

    Returns the results (also written to ``config.out`` as JSON, atomically): the config,
    ``probe/...`` metrics and, unless ``horizon`` is 0 or the directory holds no world model,
    ``pred/...`` and ``fdm/...`` metrics (see ``prediction_quality``). A directory holding
    only the encoder's two files (what ``sslrobot.load_encoder`` reads, e.g. a user's own
    encoder) gets the probe alone.
    """
    from sslrobot.evaluation.prediction import prediction_from_dirs
    from sslrobot.pretrained import encoder_directory
    from sslrobot.pretraining.artifacts import MODEL_WEIGHTS, PRETRAIN_CONFIG
    from sslrobot.utils.artifacts import check_result_file
    from sslrobot.utils.io import atomic_write_json

    encoder_dir = encoder_directory(config.encoder)
    for name, path in (("encoder", encoder_dir), ("data", Path(config.data))):
        if path.is_file():
            raise ValueError(f"{name} {path} is a file; give the directory that holds it")
        if not path.is_dir():
            raise FileNotFoundError(f"{name} directory not found: {path}")
    if config.out is not None:  # before the frames are encoded, not after
        check_result_file(Path(config.out), is_probe_result, "an sslrobot probe result")
    _warn_of_another_tasks_encoder(config, encoder_dir)
    results: dict[str, Any] = {"config": asdict(config)}
    results.update(
        probe_representation(
            encoder_dir,
            config.data,
            val_fraction=config.val_fraction,
            seed=config.seed,
            max_frames=config.max_frames,
            batch_size=config.batch_size,
            device=config.device,
            alpha=config.alpha,
            progress=progress,
        )
    )
    # A world model to score: a pretraining's directory with its model, not an encoder alone
    # (a user's, or one shipped in the wheel, which keeps pretrain_config.json but no model).
    world_model = all((encoder_dir / name).is_file() for name in (PRETRAIN_CONFIG, MODEL_WEIGHTS))
    if config.horizon > 0 and world_model:
        results.update(
            prediction_from_dirs(
                encoder_dir,
                config.data,
                horizon=config.horizon,
                max_windows=config.max_windows,
                device=config.device,
            )
        )
    results = _json_ready(results)
    if config.out is not None:
        atomic_write_json(config.out, results)
    return results
