"""Prediction quality of a world model: PSNR/SSIM of predicted frames and k-step latent error.

The world model is ``sslrobot.pretraining.load_world_model``'s (any object with the same
methods works); one batch of windows o_t..o_{t+K}, a_t..a_{t+K-1} goes in, all K steps come out:

- ``predict_frames(pixels, action)``: pixels uint8 (B, K+1, H, W, C), action float32 (B, K, A)
  -> o_{t+1..t+K}, (B, K, H, W, 3) or (B, K, 3, H, W), uint8 or float in [0, 1]; only the
  context frame ``pixels[:, 0]`` may inform it. Scored when ``has_decoder``.
- ``rollout_latents(pixels, action)`` -> predicted latents for k = 1..K, (B, K, D).
- ``target_latents(pixels)`` -> latents of every window frame, (B, K+1, D) (or (B, K, D) for
  o_{t+1..t+K} only). Scored when ``has_dynamics``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# SSIM constants of Wang et al. (2004), "Image quality assessment: from error visibility to
# structural similarity", IEEE TIP 13(4): 11x11 Gaussian window, sigma 1.5, K1, K2, L = 255.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
DATA_RANGE = 255.0


def _as_image_batch(images: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(images)
    if array.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {array.dtype}")
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"{name} must be (N, H, W, 3) or (H, W, 3), got {array.shape}")
    return array


def _check_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = _as_image_batch(pred, "prediction")
    target = _as_image_batch(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    return pred, target


def mse_per_image(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean squared error per image in uint8 units, shape (N,), from (N, H, W, 3) pairs."""
    pred, target = _check_pair(pred, target)
    diff = pred.astype(np.float64) - target.astype(np.float64)
    return np.mean(diff**2, axis=(1, 2, 3))


def psnr_from_mse(mse: np.ndarray | float) -> np.ndarray:
    """PSNR in dB for 8-bit images, ``10 log10(255^2 / MSE)``; ``inf`` where MSE is 0."""
    mse = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(DATA_RANGE**2 / mse)


def psnr(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """PSNR per image in dB, shape (N,); identical images give ``inf``.

    Args:
        pred: uint8 images, shape (N, H, W, 3) or (H, W, 3).
        target: uint8 images of the same shape.
    """
    return psnr_from_mse(mse_per_image(pred, target))


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    weights = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return weights / weights.sum()  # (size,); the 2-D window is its outer product


def _band_matrix(size: int) -> torch.Tensor:
    """(size, size - 10) matrix whose column j holds the Gaussian taps at rows j..j+10."""
    import torch

    window = _gaussian_window()
    band = np.zeros((size, size - SSIM_WINDOW + 1))
    for j in range(band.shape[1]):
        band[j : j + SSIM_WINDOW, j] = window
    return torch.from_numpy(band)


def ssim(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean SSIM per image (Wang et al. 2004), shape (N,).

    Follows the reference implementation: 11x11 Gaussian window with sigma 1.5, weighted
    (population) moments, ``K1 = 0.01``, ``K2 = 0.03``, ``L = 255``, the SSIM map over the
    valid region only (no padding), computed per RGB channel and averaged over map and channels.

    Args:
        pred: uint8 images, shape (N, H, W, 3) or (H, W, 3), H and W at least 11.
        target: uint8 images of the same shape.
    """
    import torch

    pred, target = _check_pair(pred, target)
    n, h, w, c = pred.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    # Valid-region separable Gaussian blur as two banded matrix products: on CPU this is ~25x
    # faster than conv2d with one input channel, and exact (same taps, float64).
    rows_band, cols_band = _band_matrix(h), _band_matrix(w)  # (H, H-10), (W, W-10)

    def blur(x: torch.Tensor) -> torch.Tensor:  # (M, H, W) -> (M, H-10, W-10)
        return rows_band.T @ x @ cols_band

    def planes(images: np.ndarray) -> torch.Tensor:  # (N, H, W, C) -> (N*C, H, W)
        tensor = torch.from_numpy(images.astype(np.float64))
        return tensor.permute(0, 3, 1, 2).reshape(n * c, h, w)

    x, y = planes(pred), planes(target)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.reshape(n, -1).mean(dim=1).numpy()


class _FrameAccumulator:
    """Running sums of per-frame MSE and SSIM at each horizon k."""

    def __init__(self, horizon: int) -> None:
        self.sse = np.zeros(horizon)
        self.ssim = np.zeros(horizon)
        self.count = np.zeros(horizon, dtype=np.int64)

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add frames (B, K, H, W, 3) uint8."""
        for k in range(pred.shape[1]):
            self.sse[k] += mse_per_image(pred[:, k], target[:, k]).sum()
            self.ssim[k] += ssim(pred[:, k], target[:, k]).sum()
            self.count[k] += pred.shape[0]

    def metrics(self, prefix: str) -> dict[str, float]:
        mean_mse = self.sse / self.count
        psnr_k = psnr_from_mse(mean_mse)
        out: dict[str, float] = {}
        for k in range(self.count.size):
            out[f"pred/psnr{prefix}_k{k + 1}"] = float(psnr_k[k])
            out[f"pred/ssim{prefix}_k{k + 1}"] = float(self.ssim[k] / self.count[k])
            out[f"pred/mse{prefix}_k{k + 1}"] = float(mean_mse[k])
        return out


class _LatentAccumulator:
    """Running sums for cosine similarity and variance-normalised MSE at each horizon k."""

    def __init__(self, horizon: int) -> None:
        self.cos = np.zeros(horizon)
        self.cos_copy_last = np.zeros(horizon)
        self.sse = np.zeros(horizon)
        self.target_sum: list[np.ndarray | float] = [0.0] * horizon
        self.target_sq = np.zeros(horizon)
        self.count = np.zeros(horizon, dtype=np.int64)
        self.has_copy_last = True
        # The collapse check's per-dimension sums over every scored window (not a mean of
        # per-batch spreads, which moved with batch_size and gave a short tail batch a full
        # batch's weight).
        self.unit_sum: np.ndarray | float = 0.0
        self.unit_sq: np.ndarray | float = 0.0
        self.unit_count = 0

    def add(self, predicted: np.ndarray, targets: np.ndarray) -> None:
        """Add predicted (B, K, D) and targets (B, K+1, D) or (B, K, D)."""
        horizon = self.count.size
        if predicted.ndim != 3 or predicted.shape[1] != horizon:
            raise ValueError(
                f"rollout_latents returned {tuple(predicted.shape)} for windows of K={horizon} "
                f"actions; expected (B, {horizon}, D)"
            )
        if targets.shape[1] == horizon + 1:
            current, future = targets[:, 0], targets[:, 1:]
        elif targets.shape[1] == horizon:
            current, future = None, targets
            self.has_copy_last = False
        else:
            raise ValueError(
                f"target_latents returned {targets.shape[1]} steps for a horizon of {horizon}; "
                f"expected {horizon} or {horizon + 1}"
            )
        if predicted.shape[0] != future.shape[0] or predicted.shape[2] != future.shape[2]:
            raise ValueError(
                f"rollout_latents {predicted.shape} and target_latents {targets.shape} disagree"
            )
        unit_future = _unit(future)
        for k in range(horizon):
            self.cos[k] += np.sum(_unit(predicted[:, k]) * unit_future[:, k])
            if current is not None:
                self.cos_copy_last[k] += np.sum(_unit(current) * unit_future[:, k])
            self.sse[k] += np.sum((predicted[:, k] - future[:, k]) ** 2)
            self.target_sum[k] = self.target_sum[k] + future[:, k].sum(axis=0)
            self.target_sq[k] += np.sum(future[:, k] ** 2)
            self.count[k] += future.shape[0]
        # Collapse check: the spread of normalised latents per dimension (SPR/BYOL).
        self.unit_sum = self.unit_sum + unit_future[:, 0].sum(axis=0)
        self.unit_sq = self.unit_sq + np.sum(unit_future[:, 0] ** 2, axis=0)
        self.unit_count += future.shape[0]

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k in range(self.count.size):
            n = self.count[k]
            sst = self.target_sq[k] - np.sum(np.asarray(self.target_sum[k]) ** 2) / n
            out[f"fdm/latent_cos_k{k + 1}"] = float(self.cos[k] / n)
            out[f"fdm/latent_nmse_k{k + 1}"] = float(self.sse[k] / sst) if sst > 0 else np.nan
            if self.has_copy_last:
                out[f"fdm/latent_cos_copy_last_k{k + 1}"] = float(self.cos_copy_last[k] / n)
        if self.unit_count > 1:
            mean = np.asarray(self.unit_sum) / self.unit_count
            variance = np.asarray(self.unit_sq) / self.unit_count - mean**2
            out["fdm/latent_std_mean"] = float(np.sqrt(np.maximum(variance, 0.0)).mean())
        return out


def _unit(latents: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(latents, axis=-1, keepdims=True)
    return latents / np.maximum(norms, 1e-12)


#: How far outside [0, 1] float frames may stray before they are refused rather than clipped.
_FRAME_OVERSHOOT = 0.1
#: Values the range check reads at most (evenly strided): quantiles of all would sort them.
_RANGE_SAMPLE = 1_000_000


def _frames_to_uint8(frames: torch.Tensor | np.ndarray, like: np.ndarray) -> np.ndarray:
    """Bring predicted frames to uint8 (B, K, H, W, 3), the layout of ``like``."""
    import torch

    if hasattr(frames, "detach"):  # a tensor; bfloat16/half have no numpy dtype
        tensor = frames.detach().cpu()
        array = (tensor if tensor.dtype == torch.uint8 else tensor.float()).numpy()
    else:
        array = np.asarray(frames)
    if array.shape != like.shape and array.ndim == 5 and array.shape[2] == 3:
        array = np.moveaxis(array, 2, -1)  # (B, K, 3, H, W) -> (B, K, H, W, 3)
    if array.shape != like.shape:
        raise ValueError(f"predict_frames returned {array.shape}, expected {like.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.isfinite(array).all():
        raise ValueError("predict_frames returned NaN or infinite values")
    # A decoder without a final sigmoid overshoots [0, 1] a little, which clipping absorbs;
    # frames normalised to [-0.5, 0.5] (this package's decoder's own range) must not be
    # clipped into half-black images scored as predictions. Judged on the 0.1% tails, not the
    # extremes: a few pixels of an undertrained decoder past 1.1 refused a whole evaluation.
    flat = array.reshape(-1)
    stride = max(1, flat.size // _RANGE_SAMPLE)
    sample = flat[:: stride + (stride % 3 == 0)]  # not a multiple of 3: every colour channel
    low, high = (float(q) for q in np.quantile(sample, [0.001, 0.999]))
    if low < -_FRAME_OVERSHOOT or high > 1.0 + _FRAME_OVERSHOOT:
        raise ValueError(
            f"predict_frames returned floats mostly in [{low:.3g}, {high:.3g}] (0.1% and "
            f"99.9% quantiles); expected uint8 or floats in [0, 1] (within "
            f"{_FRAME_OVERSHOOT} of it, clipped); frames normalised to [-0.5, 0.5] need 0.5 "
            "added first"
        )
    return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def _latents_to_numpy(latents: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    # float64 on the CPU only: MPS has no float64 tensors.
    array = latents.detach().cpu().double().numpy() if hasattr(latents, "detach") else latents
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 3:
        raise ValueError(f"{name} must return (B, K, D) latents, got shape {array.shape}")
    return array


def _window_indices(num_windows: int, max_windows: int | None) -> np.ndarray:
    """Evenly spaced windows, deterministic, so that runs compare the same frames."""
    if max_windows is None or num_windows <= max_windows:
        return np.arange(num_windows)
    return np.unique(np.linspace(0, num_windows - 1, max_windows).round().astype(np.int64))


def prediction_quality(
    world_model: Any,
    windows: Sequence[dict[str, np.ndarray]],
    batch_size: int = 64,
    frames: bool = True,
    latents: bool = True,
    max_windows: int | None = 1024,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Score predicted frames against the copy-last-frame baseline and latent rollouts.

    For each window (o_t..o_{t+K}, a_t..a_{t+K-1}) the model predicts o_{t+k} for k = 1..K;
    the copy-last-frame baseline predicts o_t for every k. PSNR per k is computed from the
    mean MSE over all frames at that k (finite even when some frames are predicted exactly),
    SSIM per k is the mean over frames.

    Args:
        world_model: Object with ``predict_frames``, ``rollout_latents``, ``target_latents``
            (see the module docstring); an ``nn.Module`` is put in eval mode and restored.
        windows: Sequence of dicts with ``pixels`` uint8 (K+1, H, W, 3 * frame_stack) and
            ``action`` float32 (K, A), e.g. a ``sslrobot.data.WindowDataset``; frames are scored
            on the newest RGB frame of each stack. Windows that also hold a look twin's frames
            (``TWIN_PIXELS``, for a model pretrained with ``look_target_data``) are scored
            against those: the model predicts them, copying the twin's o_t, and its latent
            targets are theirs; the copy-last baseline copies the twin's o_t.
        batch_size: Windows per model call.
        frames: Score ``predict_frames`` (models with a decoder).
        latents: Score ``rollout_latents`` against ``target_latents`` (models with dynamics).
        max_windows: Cap on windows, taken evenly spaced; ``None`` uses all.
        device: Where to put the inputs; default: the device of ``world_model.encoder``.

    Returns:
        ``pred/psnr_k{k}``, ``pred/psnr_copy_last_k{k}``, ``pred/ssim_k{k}``,
        ``pred/ssim_copy_last_k{k}``, ``pred/mse_k{k}`` ... when ``frames``;
        ``fdm/latent_cos_k{k}``, ``fdm/latent_nmse_k{k}`` (sum of squared errors over that of
        predicting the mean target), ``fdm/latent_cos_copy_last_k{k}`` (when the targets include
        o_t) and ``fdm/latent_std_mean`` when ``latents``; plus ``pred/num_windows``. The
        latent scores compare the transition model's outputs with the encoder's latents of
        the real frames (the package's world model LayerNorms the former unless it trained
        with ``--transition-without-norm``), the copy-last ones encoder latents with each
        other: the two sit in different spaces when the outputs are normalised, so their
        difference is not a gain the way PSNR's over copy-last is.
    """
    import torch

    from sslrobot.data.look_twins import TWIN_PIXELS
    from sslrobot.models.features import module_device

    if not (frames or latents):
        raise ValueError("nothing to score: frames and latents are both False")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows must be >= 1 or None, got {max_windows}")
    indices = _window_indices(len(windows), max_windows)
    if indices.size == 0:
        raise ValueError("windows is empty; nothing to score")
    if device is None:
        encoder = getattr(world_model, "encoder", None)
        is_module = isinstance(encoder, torch.nn.Module)
        device = module_device(encoder) if is_module else torch.device("cpu")
    was_training = isinstance(world_model, torch.nn.Module) and world_model.training
    if isinstance(world_model, torch.nn.Module):
        world_model.eval()

    horizon = None
    frame_model = frame_copy = latent_acc = None
    try:
        with torch.no_grad():
            for start in range(0, indices.size, batch_size):
                batch = [windows[int(i)] for i in indices[start : start + batch_size]]
                pixels = np.stack([np.asarray(item["pixels"]) for item in batch])  # (B,K+1,H,W,3)
                action = np.stack([np.asarray(item["action"]) for item in batch])  # (B, K, A)
                if pixels.dtype != np.uint8 or pixels.ndim != 5 or pixels.shape[-1] % 3:
                    raise ValueError(
                        f"window pixels must be uint8 (K+1, H, W, 3 * frame_stack), got "
                        f"{pixels.dtype} {pixels.shape[1:]}"
                    )
                if horizon is None:
                    horizon = pixels.shape[1] - 1
                    if horizon < 1:
                        raise ValueError("windows need at least 2 frames (K >= 1)")
                    frame_model, frame_copy = _FrameAccumulator(horizon), _FrameAccumulator(horizon)
                    latent_acc = _LatentAccumulator(horizon)
                pixels_t = torch.from_numpy(pixels).to(device)
                action_t = torch.from_numpy(action.astype(np.float32)).to(device)
                shown, shown_t, twin = pixels, pixels_t, {}
                if TWIN_PIXELS in batch[0]:  # the targets are the look twin's frames
                    shown = np.stack([np.asarray(item[TWIN_PIXELS]) for item in batch])
                    shown_t = torch.from_numpy(shown).to(device)
                    twin = {"copy_from": shown_t[:, 0]}
                newest = shown[..., -3:]  # with frame stacking, channels are oldest first
                future = newest[:, 1:]  # (B, K, H, W, 3)
                if frames:
                    predicted = _frames_to_uint8(
                        world_model.predict_frames(pixels_t, action_t, **twin), future
                    )
                    frame_model.add(predicted, future)
                    copy_last = np.repeat(newest[:, :1], horizon, axis=1)  # o_t for every k
                    frame_copy.add(copy_last, future)
                if latents:
                    rolled = _latents_to_numpy(
                        world_model.rollout_latents(pixels_t, action_t), "rollout_latents"
                    )
                    targets = _latents_to_numpy(
                        world_model.target_latents(shown_t), "target_latents"
                    )
                    latent_acc.add(rolled, targets)
    finally:
        if isinstance(world_model, torch.nn.Module):
            world_model.train(was_training)

    metrics: dict[str, float] = {"pred/num_windows": int(indices.size), "pred/horizon": horizon}
    if frames:
        metrics.update(frame_model.metrics(""))
        metrics.update(frame_copy.metrics("_copy_last"))
    if latents:
        metrics.update(latent_acc.metrics())
    return metrics


def _capability(model: Any, flag: str, part: str) -> bool:
    """Whether the world model can be scored on ``part``: its ``flag`` bool, else ``part``."""
    value = getattr(model, flag, None)
    if value is not None:
        return bool(value)
    return getattr(model, part, None) is not None


class StackedWindows:
    """Windows of frame-stacked observations, stacked as the pretraining trainer stacks them.

    Wraps windows of ``K + frame_stack - 1`` steps (``pixels`` (K+S, H, W, 3), ``action``
    (K+S-1, A)) into windows of K steps of stacked observations: ``pixels`` (K+1, H, W, 3S),
    oldest frame first in the channels, and the K actions that follow the first stack.
    """

    def __init__(self, windows: Any, frame_stack: int) -> None:
        if frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
        self.windows = windows
        self.frame_stack = frame_stack

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        from sslrobot.data.look_twins import TWIN_PIXELS

        item = self.windows[index]
        action = np.asarray(item["action"])
        out = {"action": action[self.frame_stack - 1 :]}
        for name in ("pixels", TWIN_PIXELS):  # a look twin's frames are stacked alike
            if name in item:
                pixels = np.asarray(item[name])
                steps = pixels.shape[0] - self.frame_stack + 1
                out[name] = np.concatenate(
                    [pixels[i : i + steps] for i in range(self.frame_stack)], -1
                )
        return out


def trained_episodes(encoder_dir: Path, data_dir: Path) -> list[int]:
    """Ids of the episodes of ``data_dir`` that the model in ``encoder_dir`` pretrained on.

    Pretraining records, per data directory, its resolved path, its dataset's identity (the
    manifest fields that fix its episodes) and the episodes of its training split. The split
    of a dataset that grew since can move some of them into ``val`` (the held-out count grows
    with the dataset), and a probe's own split differs from the pretraining's, so prediction
    scoring and probes leave them out. ``data_dir`` is recognised by its path or, when it was
    moved, copied or collected again with the same settings, by its identity.

    An encoder trained otherwise records them in ``trained_episodes.json``
    (``artifacts.save_trained_episodes``), read the same way. Empty for a random initialisation
    (0 steps), an encoder saved with neither record, data that is none of the model's, and
    models from before the record (their split is then trusted as it is now). Warns when the
    model recorded its data's paths but not their identities (pretrained before session 26)
    and ``data_dir`` is not among the paths: whether it is a copy of the training data cannot
    be told.
    """
    from sslrobot.data.manifest import dataset_identity, read_manifest
    from sslrobot.pretraining.artifacts import PRETRAIN_CONFIG, TRAINED_EPISODES, read_json

    if (encoder_dir / PRETRAIN_CONFIG).is_file():
        saved = read_json(encoder_dir / PRETRAIN_CONFIG, "pretraining config")
        if (saved.get("pretrain") or {}).get("steps") == 0:
            return []  # a random initialisation trained on nothing
    elif (encoder_dir / TRAINED_EPISODES).is_file():
        saved = read_json(encoder_dir / TRAINED_EPISODES, "record of the episodes trained on")
    else:
        return []  # an encoder saved on its own: nothing says what it trained on
    recorded = saved.get("train_episode_ids") or {}
    if str(data_dir.resolve()) in recorded:
        return [int(i) for i in recorded[str(data_dir.resolve())]]
    lists = saved.get("train_episode_id_lists") or []
    identities = saved.get("train_dataset_identities")
    if identities is not None and len(identities) == len(lists):
        mine = json.loads(json.dumps(dataset_identity(read_manifest(data_dir))))  # as stored
        matching = zip(lists, identities, strict=True)
        return sorted(
            {int(i) for ids, other in matching if dataset_identity(other) == mine for i in ids}
        )
    if recorded:
        warnings.warn(
            f"{encoder_dir} records the episodes it pretrained on by path only ("
            + ", ".join(sorted(recorded))
            + f"), and {data_dir} is none of them: if it is a copy of that data, some of the "
            "episodes scored here trained the model (probe the data where it pretrained, or "
            "data collected with another seed)",
            stacklevel=2,
        )
    return []


def prediction_from_dirs(
    encoder_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    horizon: int = 5,
    batch_size: int = 64,
    max_windows: int | None = 1024,
    device: str = "auto",
) -> dict[str, float]:
    """Prediction quality of the world model in a ``pretrain --out`` dir on held-out windows.

    Frames are scored when the model has a decoder (``has_decoder``, else a ``decoder``
    attribute that is not None), latent rollouts when it has dynamics (``has_dynamics``, else
    ``dynamics``). Windows come from the validation episodes of the model's own pretraining
    split (its ``val_fraction`` and split seed), less any episode it trained on
    (``trained_episodes``: a dataset that grew since splits differently): on its pretraining
    data they are the held-out episodes, and on other data every episode is unseen anyway.
    (Until session 15 the probe's split was used, 0.2 of the episodes by the run's seed, of
    which half or more had been pretrained on: the PSNR was partly a training score.)

    Returns:
        ``prediction_quality`` metrics, or ``{}`` when the model has neither part.
    """
    from sslrobot.data import WindowDataset
    from sslrobot.data.look_twins import LookTwinWindows
    from sslrobot.evaluation.probe import encoder_frame_stack
    from sslrobot.pretraining import load_world_model
    from sslrobot.pretraining.artifacts import read_config_section
    from sslrobot.pretraining.config import PretrainConfig
    from sslrobot.utils.device import resolve_device

    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    torch_device = resolve_device(device)
    model = load_world_model(Path(encoder_dir), device=torch_device)
    frames = _capability(model, "has_decoder", "decoder")
    latents = _capability(model, "has_dynamics", "dynamics")
    if not (frames or latents):
        return {}
    stack = encoder_frame_stack(model.encoder)
    trained = read_config_section(Path(encoder_dir), "pretrain", PretrainConfig.from_dict)
    twin_root = trained.look_target_data
    if twin_root is not None and not Path(twin_root).is_dir():
        # Scored against the frames it never predicted, PSNR would fall for no fault.
        warnings.warn(
            f"{encoder_dir} predicts the frames of the look twin {twin_root}, which is not "
            "there: its predictions are not scored (probe it where the twin is)",
            stacklevel=2,
        )
        return {}
    windows = WindowDataset(
        Path(data_dir),
        num_steps=horizon + stack - 1,  # the stacked windows then hold K + 1 observations
        split="val",
        val_fraction=trained.val_fraction,
        seed=trained.episode_split_seed,
        exclude_episodes=trained_episodes(Path(encoder_dir), Path(data_dir)),
        strict=True,  # a damaged held-out episode is refused by name, as the probe does,
        verify_checksums=True,  # not skipped with a warning or scored with flipped bytes
    )
    if twin_root is not None:
        try:
            windows = LookTwinWindows(windows, twin_root, verify_checksums=True)
        except ValueError as error:  # other data (another seed or task), or a grown stream
            warnings.warn(
                f"{encoder_dir} predicts the frames of the look twin {twin_root}, which does "
                f"not pair with {data_dir} ({error}): its predictions are not scored",
                stacklevel=2,
            )
            return {}
    return prediction_quality(
        model,
        StackedWindows(windows, stack),
        batch_size=batch_size,
        frames=frames,
        latents=latents,
        max_windows=max_windows,
        device=torch_device,
    )
