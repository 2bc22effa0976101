"""Frame decoder: latent vector -> one RGB frame, cheap enough to train at CPU speed.

Transposed convolutions double the resolution per level; the last step to full resolution is a
sub-pixel convolution (Shi et al. 2016): each cell of the last feature map predicts its
``shuffle x shuffle`` block of pixels. No layer runs at full resolution, and in training the
frame is never assembled either: ``predict_blocks`` returns the blocks ("space-to-depth"
layout) and the targets are brought into the same layout while still uint8, because the pixel
(un)shuffle copies cost more than the rest of the decoder on a CPU. The pixel loss is a mean
over elements, so it is the same in either layout. Measured on one core, 64x64, batch 256
(CPU time): a decoder with a 32x32 level 120 ms, 16x16 levels with a pixel shuffle 75 ms,
without the shuffle ~45 ms.

With ``composite=True`` and a context frame, the decoder also predicts a per-pixel mask that
blends its own colours with the context frame (the "copy from the previous frame" path of
Finn et al. 2016, "Unsupervised learning for physical interaction through video prediction").
The static background then need not pass through the latent, and the latent spends its capacity
on what moves: the robot and the objects it acts on.

With ``heatmaps=True`` (keypoint encoders only) the latent is read as (x, y) keypoints and
rendered as one Gaussian blob per keypoint on the first level's grid, which convolutions then
paint (Jakab et al. 2018, "Unsupervised learning of object landmarks through conditional image
generation"; Minderer et al. 2019). A fully connected first layer lets the latent code the
scene in any entangled way (the soft keypoints of a plain decoder drift together near the
centre and shift a little with the objects); through blobs, a keypoint is only useful where
something is drawn, which is meant to make keypoints settle on the things that vary. Measured
on the default run's Reach and Navigate streams it did not (the keypoints still gather near the
centre; README, "A heatmap decoder did not help either"), so it is an option, not the default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sslrobot.models.encoder import RGB_CHANNELS
from sslrobot.utils.architectures import DECODER_NAMES
from sslrobot.utils.config import check_bool_fields, check_known_fields, config_to_dict


@dataclass(frozen=True)
class DecoderConfig:
    """Architecture of a ``Decoder``.

    Attributes:
        channels: Channels per resolution level, coarsest first; each level after the first
            doubles the resolution (a 4x4 stride-2 transposed convolution).
        shuffle: Upscaling of the final pixel shuffle; the first level is therefore at
            ``image_size / (2**(len(channels) - 1) * shuffle)``.
        out_kernel: Kernel side of the convolution that feeds the pixel shuffle.
        composite: Predict a blending mask with the context frame (see module docstring).
        heatmaps: Render the latent's (x, y) pairs as Gaussian blobs on the first level's grid
            instead of a fully connected first layer (see module docstring); for keypoint
            encoders, whose features are such pairs in [-1, 1].
        heatmap_sigma: Blob standard deviation, in the [-1, 1] units of the coordinates.
        keypoint_skip: Keypoint encoders only: also hand the latent's (x, y) pairs to the last
            level as local offsets (``KeypointOffsets``), read by a per-cell hidden layer that
            paints each cell's block of pixels, so a small object can be drawn to a fraction
            of a cell where a keypoint is (see ``Decoder``).
        skip_sigma: Reach of a keypoint in ``KeypointOffsets``, in cells of the last level.
        skip_hidden: Width of the per-cell hidden layer that reads the skip.
    """

    channels: tuple[int, ...] = (64, 32, 16)
    shuffle: int = 4
    out_kernel: int = 1
    composite: bool = True
    heatmaps: bool = False
    heatmap_sigma: float = 0.1
    keypoint_skip: bool = False
    skip_sigma: float = 1.0
    skip_hidden: int = 64

    def __post_init__(self) -> None:
        check_bool_fields(self)
        if isinstance(self.channels, list):  # from JSON
            object.__setattr__(self, "channels", tuple(self.channels))
        if not self.channels or any(not isinstance(c, int) or c < 1 for c in self.channels):
            raise ValueError(
                f"channels must be a non-empty tuple of ints >= 1, got {self.channels!r}"
            )
        if not isinstance(self.shuffle, int) or self.shuffle < 1:
            raise ValueError(f"shuffle must be an int >= 1, got {self.shuffle!r}")
        if not isinstance(self.out_kernel, int) or self.out_kernel < 1 or self.out_kernel % 2 == 0:
            raise ValueError(f"out_kernel must be an odd int >= 1, got {self.out_kernel!r}")
        for name in ("heatmap_sigma", "skip_sigma"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 < value < math.inf
            ):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not isinstance(self.skip_hidden, int) or self.skip_hidden < 1:
            raise ValueError(f"skip_hidden must be an int >= 1, got {self.skip_hidden!r}")

    @classmethod
    def keypoint_heatmaps(cls) -> DecoderConfig:
        """The heatmap decoder for keypoint encoders: blobs on an 8x8 grid (at 64 px), a 3x3
        convolution, one transposed convolution to 16x16 and the sub-pixel output. Measured on
        one core (batch 256, forward and backward): a 3x3 convolution of 32 channels costs
        270 ms at 16x16, so the blobs are drawn at 8x8 (sigma 0.15, about half a cell), which
        still moves smoothly with the coordinates."""
        return cls(channels=(32, 16), shuffle=4, out_kernel=1, heatmaps=True, heatmap_sigma=0.15)

    @classmethod
    def keypoint_skip_dense(cls) -> DecoderConfig:
        """The default dense decoder plus the keypoint skip at its last level."""
        return cls(keypoint_skip=True)

    @classmethod
    def named(cls, name: str) -> DecoderConfig:
        """The decoder ``pretrain --decoder NAME`` builds (``architectures.DECODER_NAMES``)."""
        makers = dict(
            zip(DECODER_NAMES, (cls, cls.keypoint_heatmaps, cls.keypoint_skip_dense), strict=True)
        )
        if name not in makers:
            raise ValueError(f"unknown decoder {name!r}; choose from {list(makers)}")
        return makers[name]()

    def start_size(self, image_size: int) -> int:
        """Side of the first feature map for ``image_size`` frames; raises if not integral."""
        factor = 2 ** (len(self.channels) - 1) * self.shuffle
        if image_size % factor:
            near = sorted(
                {max(factor, image_size // factor * factor), -(-image_size // factor) * factor}
            )
            raise ValueError(
                f"decoder channels={self.channels} and shuffle={self.shuffle} upscale by "
                f"{factor}, so image_size must be a multiple of {factor}, got {image_size}: "
                f"collect frames of {' or '.join(map(str, near))} px, or pretrain an objective "
                "that decodes no frames (fdm, inverse, contrastive)"
            )
        return image_size // factor

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DecoderConfig:
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        check_known_fields(cls, values)
        return cls(**values)


def frames_to_blocks(frames: torch.Tensor, block: int) -> torch.Tensor:
    """Frames (N, H, W, C) -> blocks (N, C, block**2, H/block, W/block) ("space-to-depth").

    ``blocks[n, c, i * block + j, y, x] == frames[n, y * block + i, x * block + j, c]``, the
    layout of ``pixel_shuffle``'s input. One copy; do it on uint8 (4x fewer bytes than float).
    """
    n, h, w, c = frames.shape
    cells = frames.unflatten(1, (h // block, block)).unflatten(3, (w // block, block))
    return cells.permute(0, 5, 2, 4, 1, 3).reshape(n, c, block * block, h // block, w // block)


def blocks_to_frames(blocks: torch.Tensor, block: int) -> torch.Tensor:
    """Inverse of ``frames_to_blocks``: (N, C, block**2, h, w) -> (N, h*block, w*block, C)."""
    n, c, _, h, w = blocks.shape
    cells = blocks.unflatten(2, (block, block))  # (N, C, i, j, h, w)
    return cells.permute(0, 4, 2, 5, 3, 1).reshape(n, h * block, w * block, c)


def keypoint_cell_centres(
    side: int, image_size: int | None, keypoint_range: tuple[float, float] | None
) -> torch.Tensor:
    """The centres of a ``side`` x ``side`` grid's cells over an ``image_size`` frame, in the
    encoder's keypoint units (``keypoint_range``: the pixels, pixel k's centre being k, where
    -1 and +1 lie, ``EncoderConfig.keypoint_pixel_range()``); without a range, the image's
    edges are taken as -1 and +1."""
    cell = torch.arange(side, dtype=torch.float32) + 0.5
    if keypoint_range is None or image_size is None:
        return cell * (2.0 / side) - 1.0
    low, high = keypoint_range
    pixels = cell * (image_size / side) - 0.5  # cell centres, in pixel indices
    return 2.0 * (pixels - low) / (high - low) - 1.0


class _KeypointGrid(nn.Module):
    """A ``side`` x ``side`` grid of cell centres in keypoint units (a persistent buffer, so a
    saved model loads its own) and a Gaussian width, for the modules that draw keypoints."""

    def __init__(
        self,
        side: int,
        sigma: float,
        image_size: int | None = None,
        keypoint_range: tuple[float, float] | None = None,
    ) -> None:
        """``keypoint_range``: the pixels (pixel k's centre is k) where the encoder's -1 and
        +1 lie, ``EncoderConfig.keypoint_pixel_range()``, with ``image_size``; None: the
        grid older models were made with (``legacy_centres``)."""
        super().__init__()
        if keypoint_range is None or image_size is None:
            centres = self.legacy_centres(side)
        else:
            centres = keypoint_cell_centres(side, image_size, keypoint_range)
        self.register_buffer("centres", centres)
        self.inv_two_var = 1.0 / (2.0 * sigma * sigma)

    @staticmethod
    def legacy_centres(side: int) -> torch.Tensor:
        raise NotImplementedError


class KeypointHeatmaps(_KeypointGrid):
    """Keypoints (B, 2K) as x, y pairs in [-1, 1] -> Gaussian blobs (B, K, side, side).

    Each blob is centred where the keypoint is in the frame: the grid's cells sit where the
    encoder's coordinates put their pixels (``keypoint_cell_centres``). Models made before
    session 27 took the grid as ``linspace(-1, 1, side)``, the encoder's own cells, which a
    decoder whose first level is 8x8 over 64 px paints 2 px right of and below the keypoint
    (found by a review); the centres are a persistent buffer, so those models load their own
    and keep drawing as they were trained to.
    """

    @staticmethod
    def legacy_centres(side: int) -> torch.Tensor:
        """The encoder's own cells, ``linspace(-1, 1, side)`` (models before session 27)."""
        return torch.linspace(-1.0, 1.0, side) if side > 1 else torch.zeros(1)

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        xy = keypoints.unflatten(1, (-1, 2))  # (B, K, 2)
        gx = torch.exp(-((self.centres - xy[..., :1]) ** 2) * self.inv_two_var)  # (B, K, side)
        gy = torch.exp(-((self.centres - xy[..., 1:]) ** 2) * self.inv_two_var)
        return gy[..., :, None] * gx[..., None, :]  # (B, K, y, x): separable Gaussian


class KeypointOffsets(_KeypointGrid):
    """Keypoints (B, 2K), x, y pairs in [-1, 1] -> (B, 3K, side, side): for every keypoint and
    cell, ``g``, ``g * dx`` and ``g * dy``, where (dx, dy) is the keypoint's offset from the
    cell's centre in cells and ``g = exp(-(dx^2 + dy^2) / (2 sigma^2))`` its closeness.

    A deconvolution stack places what it draws to about one cell of its coarsest map (a
    fully connected layer would have to code sub-cell positions in activation values; Liu et
    al. 2018, "An intriguing failing of convolutional neural networks and the CoordConv
    solution"): Reach's 3-pixel target came out as a blurred 8-pixel square. With these maps,
    a cell near a keypoint knows where in it the keypoint is, to any precision, and the
    gradient of a misplaced object reaches the keypoint's coordinates directly. Measured on the
    default run's streams (6,000 steps): the target is drawn smaller and nearer its place, the
    arm tasks' probes rise by 0.02 and PSNR by 0.25-0.5 dB, but 25-demonstration success stays
    within the pretraining seeds' spread and training is 1.6x slower; so an option
    (``--decoder keypoint-skip``), not the default. (Those measurements placed the cells as if
    -1 and +1 were the image's edges; the encoder puts them at its first and last cells'
    centres, 1.5 and 57.5 px at 64 px, so things were drawn up to 6 px off. Since session 25
    the cells sit where the encoder's coordinates say, given ``keypoint_range``.)
    """

    @staticmethod
    def legacy_centres(side: int) -> torch.Tensor:
        """The image's edges as -1 and +1, a uniform partition (models before session 25;
        the cell size is read back from the centres, so those load and draw as trained)."""
        return keypoint_cell_centres(side, None, None)

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        xy = keypoints.unflatten(1, (-1, 2))  # (B, K, 2)
        side = self.centres.numel()
        cells_per_unit = 1.0 / (self.centres[1] - self.centres[0]) if side > 1 else 0.5
        dx = (xy[..., :1] - self.centres) * cells_per_unit  # (B, K, side): x offsets
        dy = (xy[..., 1:] - self.centres) * cells_per_unit
        gx = torch.exp(-dx.square() * self.inv_two_var)
        gy = torch.exp(-dy.square() * self.inv_two_var)
        g = gy[..., :, None] * gx[..., None, :]  # (B, K, y, x)
        maps = torch.cat([g, g * dx[..., None, :], g * dy[..., :, None]], dim=1)
        return maps  # (B, 3K, side, side)


class Decoder(nn.Module):
    """Latent (B, D) -> frame in normalised pixel space [-0.5, 0.5]."""

    def __init__(
        self,
        config: DecoderConfig,
        latent_dim: int,
        image_size: int,
        condition_dim: int = 0,
        keypoint_range: tuple[float, float] | None = None,
    ) -> None:
        """Args:
        config: The architecture.
        latent_dim: Width of the latents it decodes.
        image_size: Side of the frames it draws.
        condition_dim: Width of an optional vector added to the first level through its
            own linear layer (``predict_blocks(..., condition=...)``); 0: none.
        keypoint_range: For ``heatmaps`` and ``keypoint_skip``: where the encoder's keypoint
            coordinates -1 and +1 lie, in pixels (``EncoderConfig.keypoint_pixel_range()``).
        """
        super().__init__()
        self.config = config
        self.image_size = image_size
        self.start = config.start_size(image_size)
        first = config.channels[0]
        if config.heatmaps:
            if latent_dim % 2:
                raise ValueError(
                    f"a heatmap decoder reads the latent as (x, y) pairs, so its size must be "
                    f"even, got {latent_dim}"
                )
            self.fc = nn.Sequential(
                KeypointHeatmaps(self.start, config.heatmap_sigma, image_size, keypoint_range),
                nn.Conv2d(latent_dim // 2, first, 3, padding=1),
            )
        else:
            self.fc = nn.Linear(latent_dim, first * self.start * self.start)
        self.condition = (
            nn.Linear(condition_dim, first * self.start * self.start) if condition_dim else None
        )
        ups: list[nn.Module] = []
        for in_channels, out_channels in zip(config.channels, config.channels[1:], strict=False):
            ups += [
                nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1),
                nn.ReLU(),
            ]
        self.ups = nn.Sequential(*ups)
        last, r, k = config.channels[-1], config.shuffle, config.out_kernel
        self.skip = None
        if config.keypoint_skip:
            if latent_dim % 2:
                raise ValueError(
                    f"a keypoint skip reads the latent as (x, y) pairs, so its size must be "
                    f"even, got {latent_dim}"
                )
            side = image_size // r
            self.skip = nn.ModuleDict(
                {
                    "offsets": KeypointOffsets(side, config.skip_sigma, image_size, keypoint_range),
                    "hidden": nn.Conv2d(last + 3 * (latent_dim // 2), config.skip_hidden, 1),
                }
            )
            last = config.skip_hidden
        self.to_rgb = nn.Conv2d(last, RGB_CHANNELS * r * r, k, padding=k // 2)
        # A separate head (not a 4th channel) for the mask: slicing one output apart costs
        # two full-resolution zero-fill-and-copy passes in the backward pass.
        self.to_mask = nn.Conv2d(last, r * r, k, padding=k // 2) if config.composite else None

    def predict_blocks(
        self,
        latents: torch.Tensor,
        context_blocks: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode latents to frames in block layout (the training path).

        Args:
            latents: (B, D).
            context_blocks: Optional normalised context frames in block layout
                (B, 3, r*r, H/r, W/r) (``frames_to_blocks``); with ``composite``, the output
                blends them in through the predicted mask.
            condition: Optional (B, condition_dim) vector for a decoder built with
                ``condition_dim`` (none: no contribution).

        Returns:
            Predicted frames, normalised, (B, 3, r*r, H/r, W/r).
        """
        h = self.fc(latents)
        if condition is not None:
            if self.condition is None:
                raise ValueError("this decoder was built without condition_dim; pass no condition")
            h = h + self.condition(condition).view_as(h)
        h = F.relu(h).view(-1, self.config.channels[0], self.start, self.start)
        # (B, C0, start, start) either way: a heatmap decoder's first layer is a convolution
        h = self.ups(h)  # (B, C_last, H/r, W/r)
        if self.skip is not None:
            h = torch.cat([h, self.skip["offsets"](latents).to(h.dtype)], dim=1)
            h = F.relu(self.skip["hidden"](h))  # (B, skip_hidden, H/r, W/r)
        b, _, side, _ = h.shape
        cells = self.config.shuffle**2
        rgb = self.to_rgb(h).view(b, RGB_CHANNELS, cells, side, side)
        if self.to_mask is None or context_blocks is None:
            return rgb
        keep = torch.sigmoid(self.to_mask(h)).view(b, 1, cells, side, side)  # 1: copy context
        # float32: under bfloat16 autocast the convolutions return bfloat16, and lerp needs
        # one dtype (a no-op in float32 training).
        return torch.lerp(rgb.float(), context_blocks.float(), keep.float())

    def forward(
        self,
        latents: torch.Tensor,
        context: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode latents to frames.

        Args:
            latents: (B, D).
            context: Optional normalised context frames (B, H, W, 3) for ``composite``.
            condition: Optional (B, condition_dim), as in ``predict_blocks``.

        Returns:
            Predicted frames, normalised, channels-last (B, H, W, 3).
        """
        r = self.config.shuffle
        blocks = None if context is None else frames_to_blocks(context, r)
        return blocks_to_frames(self.predict_blocks(latents, blocks, condition), r)
