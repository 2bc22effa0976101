"""Pictures of a pretraining run: real-vs-predicted frame strips, keypoints drawn on frames and
the loss curve (PNG)."""

from __future__ import annotations

import io
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from sslrobot.pretraining.metrics_log import STEP
from sslrobot.utils.io import atomic_write

_GAP = 2  # pixels of white between frames and between samples


def prediction_strip(real: np.ndarray, *predicted: np.ndarray, scale: int = 2) -> np.ndarray:
    """Tile windows as groups of rows: real frames, then each model's frames below them.

    Args:
        real: uint8 (N, T, H, W, 3), e.g. o_t..o_{t+K}.
        predicted: One or more uint8 (N, T, H, W, 3), e.g. o_t, then predictions for k = 1..K
            (with the copy path, then without it).
        scale: Nearest-neighbour upscaling, so 64x64 frames are readable.

    Returns:
        uint8 image (rows, cols, 3).
    """
    sources = (real, *predicted)
    if len(sources) < 2 or any(
        s.shape != real.shape or s.ndim != 5 or s.dtype != np.uint8 for s in sources
    ):
        raise ValueError(
            f"real and predicted must be uint8 (N, T, H, W, 3) of one shape, got "
            f"{[(s.shape, str(s.dtype)) for s in sources]}"
        )
    n, t, h, w, _ = real.shape
    h, w = h * scale, w * scale
    rows, cols = len(sources) * n, t
    image = np.full((rows * (h + _GAP) + _GAP, cols * (w + _GAP) + _GAP, 3), 255, np.uint8)
    for i in range(n):
        for j, source in enumerate(sources):
            for k in range(t):
                frame = source[i, k].repeat(scale, axis=0).repeat(scale, axis=1)
                top = _GAP + (len(sources) * i + j) * (h + _GAP)
                left = _GAP + k * (w + _GAP)
                image[top : top + h, left : left + w] = frame
    return image


def keypoint_strip(
    frames: np.ndarray,
    keypoints: np.ndarray,
    scale: int = 4,
    pixel_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Frames side by side with each keypoint drawn as a coloured dot (one colour per keypoint,
    the same in every frame), so one can see what each keypoint follows.

    Args:
        frames: uint8 (N, H, W, 3).
        keypoints: (N, P, 2), (x, y) in [-1, 1] from the top-left (``Encoder.keypoints``).
        scale: Nearest-neighbour upscaling, so that dots and 64x64 frames are readable.
        pixel_range: The pixels (centre of pixel k = k) where -1 and +1 lie, the same on both
            axes: ``EncoderConfig.keypoint_pixel_range()`` for an encoder's keypoints (its
            first and last cells' centres); ``None``: the first and last pixels.

    Returns:
        uint8 image (H*scale + 2*gap, N*(W*scale + gap) + gap, 3).
    """
    frames, keypoints = np.asarray(frames), np.asarray(keypoints, dtype=np.float64)
    if frames.dtype != np.uint8 or frames.ndim != 4 or keypoints.shape[::2] != (len(frames), 2):
        raise ValueError(
            f"frames must be uint8 (N, H, W, 3) and keypoints (N, P, 2), got {frames.dtype} "
            f"{frames.shape} and {keypoints.shape}"
        )
    n, h, w, _ = frames.shape
    num_points = keypoints.shape[1]
    hues = np.arange(num_points) / max(num_points, 1)
    colours = (255 * np.clip(np.abs((hues[:, None] * 6 + [0, 4, 2]) % 6 - 3) - 1, 0, 1)).astype(
        np.uint8
    )  # (P, 3): a hue wheel at full saturation
    low, high = pixel_range if pixel_range is not None else (0.0, w - 1.0)
    # unit -> pixel of the frame -> pixel of the upscaled frame (centres stay centres)
    where = ((low + (keypoints + 1) / 2 * (high - low)) + 0.5) * scale - 0.5  # (N, P, 2)
    h, w, dot = h * scale, w * scale, max(1, scale // 2)
    image = np.full((h + 2 * _GAP, n * (w + _GAP) + _GAP, 3), 255, np.uint8)
    for i in range(n):
        frame = frames[i].repeat(scale, axis=0).repeat(scale, axis=1)
        cols = np.clip(np.round(where[i, :, 0]), 0, w - 1).astype(int)
        rows = np.clip(np.round(where[i, :, 1]), 0, h - 1).astype(int)
        for colour, row, col in zip(colours, rows, cols, strict=True):
            frame[max(row - dot, 0) : row + dot + 1, max(col - dot, 0) : col + dot + 1] = colour
        left = _GAP + i * (w + _GAP)
        image[_GAP : _GAP + h, left : left + w] = frame
    return image


def save_png(path: Path, image: np.ndarray) -> Path:
    """Atomically write an (H, W, 3) uint8 image as PNG."""
    data = iio.imwrite("<bytes>", image, extension=".png")
    return atomic_write(path, lambda file: file.write(data))


def save_loss_curve(path: Path, rows: list[dict[str, float]], title: str = "") -> Path | None:
    """Plot every ``*/loss*`` column against step (log scale), and ``latent_std`` beside it.

    Uses matplotlib's object API with the Agg canvas, so no global backend is switched.

    Returns:
        ``path``, or None when there are no rows to plot.
    """
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = np.array([row[STEP] for row in rows])
    keys = sorted({k for row in rows for k in row if k != STEP})
    losses = [k for k in keys if k.split("/")[-1].startswith("loss")]
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    ax_loss, ax_std = figure.subplots(1, 2)
    for key in losses:
        values = np.array([row.get(key, np.nan) for row in rows])
        ax_loss.plot(steps, values, label=key)
    if losses:
        ax_loss.set_yscale("log")
        ax_loss.legend(fontsize=8)
    ax_loss.set_xlabel("step")
    ax_loss.set_title(f"losses {title}".strip())
    for key in keys:
        if key.endswith("latent_std"):
            ax_std.plot(steps, [row.get(key, np.nan) for row in rows], label=key)
    ax_std.set_xlabel("step")
    ax_std.set_title("per-dimension latent std (near 0 = collapse)")
    ax_std.set_ylim(bottom=0)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write(path, lambda file: file.write(buffer.getvalue()))
