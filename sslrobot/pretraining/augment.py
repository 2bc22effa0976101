"""Image augmentation for pretraining, applied to uint8 windows on the training device."""

from __future__ import annotations

import torch

AUGMENTATIONS = ("shift", "none")


def random_shift(
    pixels: torch.Tensor, pad: int, generator: torch.Generator, per_batch: bool = False
) -> torch.Tensor:
    """DrQ random shift (Kostrikov et al. 2020): pad by replication, crop back at a random offset.

    One integer offset per window, shared by all its frames: the future frames then stay
    pixel-aligned with the context frame, so future-frame prediction remains well posed, while
    the encoder still sees every window at a random position. Works on uint8 (4x fewer bytes
    than float). On CPU: slice copies per window (one core, 256 windows of 4 frames of 64x64:
    ~6 ms, against 23 ms for one ``gather`` with per-byte indices); on accelerators: one
    indexing kernel.

    Args:
        pixels: uint8 windows, (B, T, H, W, C).
        pad: Maximum shift in pixels (DrQ uses 4 at 84x84).
        generator: Source of the offsets, on ``pixels.device``.
        per_batch: One offset for every window of the batch: what keeps frames of different
            windows aligned for a loss that draws one window's frame from another's
            (``transport`` with batch pairs).

    Returns:
        Shifted windows, same shape and dtype.
    """
    if pixels.ndim != 5:
        raise ValueError(f"pixels must be (B, T, H, W, C), got {tuple(pixels.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if pad == 0:
        return pixels
    draws = 1 if per_batch else pixels.shape[0]
    offsets = torch.randint(0, 2 * pad + 1, (draws, 2), generator=generator, device=pixels.device)
    return shift_windows(pixels, (offsets - pad).expand(pixels.shape[0], 2), pad)


def shift_windows(
    pixels: torch.Tensor, shifts: torch.Tensor, pad: int | None = None
) -> torch.Tensor:
    """``out[i, :, y, x] = pixels[i, :, clamp(y + sy), clamp(x + sx)]``, ``shifts[i] = (sy, sx)``
    (long, on ``pixels.device``): window i's content moves by (-sy, -sx), the border repeats.

    Slice copies on CPU (``shift_by_copies``), one indexing kernel elsewhere (``pad``: a bound
    on ``|shifts|``, to spare a device sync).
    """
    if pixels.device.type == "cpu":
        return shift_by_copies(pixels, shifts)
    if pad is None:
        pad = int(shifts.abs().max()) if len(shifts) else 0
    padded = replicate_pad(pixels, pad)  # (B, T, H + 2 pad, W + 2 pad, C)
    return crop_by_index(padded, shifts + pad, pixels.shape[2], pixels.shape[3])


def check_shift_pad(name: str, pad: int, image_size: int) -> None:
    """Refuse a random-shift pad that reaches across the whole frame (it crashed at the first
    step on CPU, after the run's directory was made)."""
    if pad >= image_size:
        raise ValueError(f"{name}={pad} must be below the image size {image_size}")


def color_jitter(pixels: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Random brightness and per-channel colour gains, one draw per window, all its frames alike.

    ``out = clamp(x * brightness * gain_c)`` with ``brightness ~ U(1 - s, 1 + s)`` and
    ``gain_c ~ U(1 - s/2, 1 + s/2)`` for strength ``s``: darker or brighter light and tinted
    surfaces, the changes the visual presets make between episodes. Shared by the frames of a
    window, so future frames stay predictable from the context frame in the same colours.

    Args:
        pixels: uint8 windows (B, T, H, W, C), C a multiple of 3 (stacked RGB frames).
        strength: s in [0, 1); 0 returns ``pixels`` unchanged and draws nothing.
        generator: Source of the draws, on ``pixels.device``.

    Returns:
        uint8 windows, same shape.
    """
    if pixels.ndim != 5 or pixels.shape[-1] % 3:
        raise ValueError(f"pixels must be (B, T, H, W, 3S), got {tuple(pixels.shape)}")
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"color jitter strength must be in [0, 1), got {strength}")
    if strength == 0.0:
        return pixels
    b, device = pixels.shape[0], pixels.device
    brightness = 1.0 + strength * (2 * torch.rand(b, 1, generator=generator, device=device) - 1)
    gains = 1.0 + strength / 2 * (2 * torch.rand(b, 3, generator=generator, device=device) - 1)
    scale = (brightness * gains).repeat(1, pixels.shape[-1] // 3)  # (B, C)
    out = pixels.float().mul_(scale[:, None, None, None, :]).round_().clamp_(0, 255)
    return out.to(torch.uint8)


def shift_by_copies(pixels: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``out[i, :, y, x] = pixels[i, :, clamp(y + sy), clamp(x + sx)]``, ``shifts[i] = (sy, sx)``.

    Slice copies per window: the overlapping block once, then the replicated border columns
    and rows. No padded copy is made (on CPU it cost as much as the crop itself).
    """
    out = torch.empty_like(pixels)
    h, w = pixels.shape[2], pixels.shape[3]
    for i, (sy, sx) in enumerate(shifts.tolist()):
        source, target = pixels[i], out[i]  # (T, H, W, C)
        y0, y1 = max(0, -sy), min(h, h - sy)  # rows of ``target`` that lie inside the source
        x0, x1 = max(0, -sx), min(w, w - sx)
        rows = source[:, y0 + sy : y1 + sy]
        target[:, y0:y1, x0:x1] = rows[:, :, x0 + sx : x1 + sx]
        if x0 > 0:
            target[:, y0:y1, :x0] = rows[:, :, :1]
        if x1 < w:
            target[:, y0:y1, x1:] = rows[:, :, w - 1 :]
        if y0 > 0:
            target[:, :y0] = target[:, y0 : y0 + 1]
        if y1 < h:
            target[:, y1:] = target[:, y1 - 1 : y1]
    return out


def crop_by_index(padded: torch.Tensor, offsets: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Crop window i of (B, T, H', W', C) at ``offsets[i] = (dy, dx)`` in one indexing op over
    a strided view of all possible crops (accelerators: one launch instead of B)."""
    b, t, hp, wp, c = padded.shape
    sb, st, sh, sw, sc = padded.stride()
    shape = (b, hp - h + 1, wp - w + 1, t, h, w, c)
    crops = padded.as_strided(shape, (sb, sh, sw, st, sh, sw, sc))  # (B, dy, dx, T, H, W, C)
    return crops[torch.arange(b, device=padded.device), offsets[:, 0], offsets[:, 1]]


def replicate_pad(pixels: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad (..., H, W, C) by repeating the border rows and columns ``pad`` times.

    Built from concatenations, which copy whole rows; ``F.pad(mode="replicate")`` needs float
    and channels-first input.
    """
    top, bottom = pixels[..., :1, :, :], pixels[..., -1:, :, :]
    rows = [top.expand(*top.shape[:-3], pad, *top.shape[-2:]), pixels]
    rows.append(bottom.expand(*bottom.shape[:-3], pad, *bottom.shape[-2:]))
    tall = torch.cat(rows, dim=-3)
    left, right = tall[..., :1, :], tall[..., -1:, :]
    columns = [left.expand(*left.shape[:-2], pad, left.shape[-1]), tall]
    columns.append(right.expand(*right.shape[:-2], pad, right.shape[-1]))
    return torch.cat(columns, dim=-2)


def stack_frames(pixels: torch.Tensor, frame_stack: int) -> torch.Tensor:
    """Stack each frame with its ``frame_stack - 1`` predecessors on the channel axis.

    Args:
        pixels: (B, T, H, W, 3) with T >= frame_stack.
        frame_stack: Frames per stacked observation.

    Returns:
        (B, T - frame_stack + 1, H, W, 3 * frame_stack), oldest frame first in the channels.
    """
    if frame_stack == 1:
        return pixels
    steps = pixels.shape[1] - frame_stack + 1
    if steps < 1:
        raise ValueError(f"{pixels.shape[1]} frames cannot make stacks of {frame_stack}")
    return torch.cat([pixels[:, i : i + steps] for i in range(frame_stack)], dim=-1)
