"""Convolutional encoder: uint8 frames in, one feature vector per frame out.

The CPU-sized trunk (``EncoderConfig()``, ``--encoder-arch cnn``) is sized for a 2-core CPU by
measurement (``scripts/bench_pretrain.py``): a 4x4 stride-4 "patchify" stem takes 64x64 frames
to 16x16 at once, so no layer runs at full resolution, then two stride-2 3x3 convolutions reach
4x4. The package's default, ``EncoderConfig.keypoints()`` (``utils.architectures``), keeps that
stem and reads an 8x8 map out as keypoints. The DrQ-v2 trunk (four 32-channel
3x3 convolutions at strides 2-1-1-1, Yarats et al. 2021) is kept as ``EncoderConfig.drqv2()``
for side-by-side comparison; it spends ~10x the compute at 31x31..25x25 resolution (64 px).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sslrobot.utils.architectures import ENCODER_ARCHS
from sslrobot.utils.config import check_bool_fields, check_known_fields, config_to_dict
from sslrobot.utils.device import full_precision

ARCHS = ("cnn", "resnet")
READOUTS = ("linear", "keypoints")
RGB_CHANNELS = 3


def normalize_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] -> float32 in [-0.5, 0.5] (DrQ-v2: ``obs / 255.0 - 0.5``)."""
    return pixels.float().div_(255.0).sub_(0.5)


def denormalize_pixels(values: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalize_pixels``: float in [-0.5, 0.5] -> uint8, clamped and rounded."""
    return (values.float() + 0.5).mul_(255.0).clamp_(0.0, 255.0).round_().to(torch.uint8)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of an ``Encoder``; saved as ``encoder_config.json`` beside the weights.

    Attributes:
        image_size: Side of the square input frames in pixels.
        frame_stack: Consecutive RGB frames stacked on the channel axis (input has
            ``3 * frame_stack`` channels, oldest first).
        arch: ``"cnn"`` (plain strided convolutions, fast on CPU) or ``"resnet"`` (IMPALA-style
            stages of conv + max-pool + two residual blocks, Espeholt et al. 2018; for GPUs).
        channels: Output channels per layer ("cnn") or per stage ("resnet"); its length is the
            depth.
        kernel_sizes: Kernel side per layer/stage, same length as ``channels``.
        strides: Stride per layer ("cnn") or max-pool stride per stage ("resnet").
        paddings: Zero padding per layer ("cnn" only; "resnet" pads to keep size before pooling).
        feature_dim: Length of the output feature vector.
        readout: How the trunk's last feature map becomes the feature vector. ``"linear"``: a
            linear layer on the flattened map. ``"keypoints"``: a 1x1 convolution to
            ``feature_dim / 2`` maps, each reduced by a spatial softmax to the expected (x, y)
            of its activation (Levine et al. 2016; Finn et al. 2016, "Deep spatial
            autoencoders"), so where things are is explicit in the features and linear in them,
            which a policy head fitted on few demonstrations can use.
        layer_norm: Apply LayerNorm to the output features, which keeps their scale fixed for
            the dynamics model, probes and policies.
    """

    image_size: int = 64
    frame_stack: int = 1
    arch: str = "cnn"
    channels: tuple[int, ...] = (16, 32, 64)
    kernel_sizes: tuple[int, ...] = (4, 3, 3)
    strides: tuple[int, ...] = (4, 2, 2)
    paddings: tuple[int, ...] = (0, 1, 1)
    feature_dim: int = 64
    readout: str = "linear"
    layer_norm: bool = True

    def __post_init__(self) -> None:
        check_bool_fields(self)
        for name in ("channels", "kernel_sizes", "strides", "paddings"):
            value = getattr(self, name)
            if isinstance(value, list):  # from JSON
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.image_size, bool) or isinstance(self.frame_stack, bool):
            raise ValueError(
                f"image_size and frame_stack must be ints, got {self.image_size!r} and "
                f"{self.frame_stack!r}"
            )
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {self.image_size!r}")
        if not isinstance(self.frame_stack, int) or self.frame_stack < 1:
            raise ValueError(f"frame_stack must be an int >= 1, got {self.frame_stack!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if not self.channels:
            raise ValueError("channels must name at least one layer, got ()")
        for name in ("channels", "kernel_sizes", "strides"):
            value = getattr(self, name)
            if len(value) != len(self.channels):
                raise ValueError(
                    f"{name} must have one entry per layer ({len(self.channels)}), got {value!r}"
                )
            if any(not isinstance(v, int) or v < 1 for v in value):
                raise ValueError(f"{name} entries must be ints >= 1, got {value!r}")
        if self.arch == "cnn":
            if len(self.paddings) != len(self.channels):
                raise ValueError(
                    f"paddings must have one entry per layer ({len(self.channels)}), "
                    f"got {self.paddings!r}"
                )
            if any(not isinstance(v, int) or v < 0 for v in self.paddings):
                raise ValueError(f"paddings entries must be ints >= 0, got {self.paddings!r}")
        elif any(kernel % 2 == 0 for kernel in self.kernel_sizes):
            # A residual block pads kernel // 2 to keep its map's size: only odd kernels do.
            raise ValueError(
                f"arch='resnet' needs odd kernel_sizes (its blocks keep the map's size), got "
                f"{self.kernel_sizes!r}"
            )
        if not isinstance(self.feature_dim, int) or self.feature_dim < 1:
            raise ValueError(f"feature_dim must be an int >= 1, got {self.feature_dim!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.readout == "keypoints" and self.feature_dim % 2:
            raise ValueError(
                f"readout='keypoints' gives an (x, y) pair per keypoint, so feature_dim must be "
                f"even, got {self.feature_dim}"
            )
        if self.trunk_output_size < 1:
            raise ValueError(
                f"image_size={self.image_size} is too small for strides={self.strides} and "
                f"kernel_sizes={self.kernel_sizes}: the trunk output would be empty"
            )
        if self.readout == "keypoints" and self.trunk_output_size < 2:
            # One cell has one position: every frame's keypoints sat at it, all zeros.
            raise ValueError(
                f"image_size={self.image_size} leaves the keypoint readout a 1x1 map with "
                f"strides={self.strides} and kernel_sizes={self.kernel_sizes}, so every frame "
                "would encode to the same point; use larger frames or smaller strides"
            )
        if self.image_size == self.in_channels:
            # (B, S, S, C) and (B, C, S, S) would then look alike and frames could be misread.
            raise ValueError(
                f"image_size={self.image_size} equals the input channels (3 x frame_stack="
                f"{self.frame_stack}); channels-first and channels-last frames would be "
                "indistinguishable"
            )

    @property
    def in_channels(self) -> int:
        """Input channels: 3 per stacked frame."""
        return RGB_CHANNELS * self.frame_stack

    @property
    def trunk_output_size(self) -> int:
        """Side of the trunk's last feature map, in cells."""
        size = self.image_size
        if self.arch == "cnn":
            for kernel, stride, padding in zip(
                self.kernel_sizes, self.strides, self.paddings, strict=True
            ):
                size = _conv_out(size, kernel, stride, padding)
                if size < 1:  # a layer in the middle already empties the map
                    return size
        else:
            for stride in self.strides:
                size = _conv_out(size, 3, stride, 1)  # max-pool 3x3, padding 1
        return size

    def keypoint_pixel_range(self) -> tuple[float, float]:
        """Where the keypoint coordinates -1 and +1 lie in the image, in pixels (pixel k's
        centre is k): the centres of the receptive fields of the trunk's first and last
        cells, which the spatial softmax places at -1 and +1 (not the image's corners).

        For the default keypoint encoder at 64 px: (1.5, 57.5), cells 8 pixels apart.
        """
        if self.arch == "cnn":
            layers = list(zip(self.kernel_sizes, self.strides, self.paddings, strict=True))
        else:  # each stage: a same-padded conv (centres stay) then a 3x3 max-pool, padding 1
            layers = [(3, stride, 1) for stride in self.strides]
        first = 0.0
        for kernel, stride, padding in reversed(layers):  # output cell 0 back to the input
            first = first * stride - padding + (kernel - 1) / 2
        span = (max(self.trunk_output_size, 1) - 1) * math.prod(self.strides)
        return first, first + span

    @classmethod
    def drqv2(
        cls, image_size: int = 64, feature_dim: int = 64, frame_stack: int = 1
    ) -> EncoderConfig:
        """The DrQ-v2 trunk (Yarats et al. 2021): 4 convs, 32 channels, 3x3, strides 2-1-1-1."""
        return cls(
            image_size=image_size,
            frame_stack=frame_stack,
            arch="cnn",
            channels=(32, 32, 32, 32),
            kernel_sizes=(3, 3, 3, 3),
            strides=(2, 1, 1, 1),
            paddings=(0, 0, 0, 0),
            feature_dim=feature_dim,
        )

    @classmethod
    def keypoints(
        cls, image_size: int = 64, feature_dim: int = 64, frame_stack: int = 1
    ) -> EncoderConfig:
        """The CPU-sized stem with a keypoint readout (the package's default architecture):
        the last layer keeps stride 1 so the spatial softmax runs on an 8x8 map (at 64 px),
        ``feature_dim / 2`` keypoints, no LayerNorm (it would mix the coordinates)."""
        return cls(
            image_size=image_size,
            frame_stack=frame_stack,
            channels=(16, 32, 32),
            kernel_sizes=(4, 3, 3),
            strides=(4, 2, 1),
            paddings=(0, 1, 1),
            feature_dim=feature_dim,
            readout="keypoints",
            layer_norm=False,
        )

    @classmethod
    def impala(
        cls, image_size: int = 64, feature_dim: int = 256, frame_stack: int = 1
    ) -> EncoderConfig:
        """IMPALA ResNet trunk (Espeholt et al. 2018), stages of 16-32-32 channels: for GPUs."""
        return cls(
            image_size=image_size,
            frame_stack=frame_stack,
            arch="resnet",
            channels=(16, 32, 32),
            kernel_sizes=(3, 3, 3),
            strides=(2, 2, 2),
            paddings=(1, 1, 1),
            feature_dim=feature_dim,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncoderConfig:
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        check_known_fields(cls, values)
        return cls(**values)


class _ResidualBlock(nn.Module):
    """relu -> conv -> relu -> conv, plus the input (IMPALA)."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.conv1 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(F.relu(self.conv0(F.relu(x))))


class _ImpalaStage(nn.Sequential):
    """conv -> max-pool (the stage's stride) -> two residual blocks."""

    def __init__(self, in_channels: int, channels: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, channels, kernel, padding=kernel // 2),
            nn.MaxPool2d(3, stride=stride, padding=1),
            _ResidualBlock(channels, kernel),
            _ResidualBlock(channels, kernel),
        )


def _make_trunk(config: EncoderConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = config.in_channels
    if config.arch == "cnn":
        for out_channels, kernel, stride, padding in zip(
            config.channels, config.kernel_sizes, config.strides, config.paddings, strict=True
        ):
            layers += [nn.Conv2d(in_channels, out_channels, kernel, stride, padding), nn.ReLU()]
            in_channels = out_channels
    else:
        for out_channels, kernel, stride in zip(
            config.channels, config.kernel_sizes, config.strides, strict=True
        ):
            layers.append(_ImpalaStage(in_channels, out_channels, kernel, stride))
            in_channels = out_channels
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SpatialSoftmax(nn.Module):
    """Feature maps (B, K, h, w) -> expected (x, y) in [-1, 1] of each map, (B, 2K).

    Each map is a softmax over its cells (with a learned temperature); the output is the
    softmax-weighted mean of the cell centres, x then y per map (Levine et al. 2016).
    """

    def __init__(self, side: int) -> None:
        super().__init__()
        centres = torch.linspace(-1.0, 1.0, side) if side > 1 else torch.zeros(1)
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("positions", torch.stack([xs.flatten(), ys.flatten()], dim=1))
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        with full_precision(maps.device):  # bfloat16 would round points to ~0.2 px
            return (self._attention(maps) @ self.positions).flatten(1)  # (B, K, 2) -> (B, 2K)

    def points_and_spread(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` plus each map's spread, (B, K): the softmax's variance around its point,
        E|p - E[p]|^2 (0 for a map peaked on one cell, ~0.86 for a uniform one on a grid
        spanning [-1, 1]^2). Only the spread term asks for it, so ``forward`` skips it."""
        with full_precision(maps.device):  # the spread is a small difference of sums near 1
            attention = self._attention(maps)
            points = attention @ self.positions  # (B, K, 2)
            second = attention @ self.positions.square().sum(dim=1, keepdim=True)  # (B, K, 1)
            spread = second[..., 0] - points.square().sum(dim=-1)
        return points.flatten(1), spread

    def _attention(self, maps: torch.Tensor) -> torch.Tensor:
        """Softmax over the cells of each map, (B, K, h * w)."""
        return torch.softmax(maps.float().flatten(2) / self.log_temperature.exp(), dim=-1)


class _FlattenLinear(nn.Linear):
    """A linear layer on the flattened feature map (parameters keep the names ``head.weight``
    and ``head.bias`` of encoders saved before readouts were configurable)."""

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return super().forward(maps.flatten(1))


def _make_readout(config: EncoderConfig) -> nn.Module:
    side = config.trunk_output_size
    if config.readout == "keypoints":
        return nn.Sequential(
            nn.Conv2d(config.channels[-1], config.feature_dim // 2, 1), SpatialSoftmax(side)
        )
    return _FlattenLinear(config.channels[-1] * side * side, config.feature_dim)


class Encoder(nn.Module):
    """Frames (uint8) -> features (float32); normalisation happens here, never in storage.

    Accepts channels-last ``(B, H, W, C)`` or channels-first ``(B, C, H, W)`` uint8 frames with
    ``C = 3 * frame_stack``. Channels-last input is only permuted (a view), which is also the
    fastest layout for oneDNN convolutions on CPU.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = _make_trunk(config)
        self.head = _make_readout(config)
        self.norm = nn.LayerNorm(config.feature_dim) if config.layer_norm else nn.Identity()

    @property
    def feature_dim(self) -> int:
        """Length of the feature vector returned per frame."""
        return self.config.feature_dim

    def channels_first(self, frames: torch.Tensor) -> torch.Tensor:
        """Validate uint8 frames and return a (B, C, H, W) view of them."""
        if not isinstance(frames, torch.Tensor):  # a NumPy uint8 array read "got uint8"
            raise TypeError(
                f"Encoder expects a torch uint8 tensor, got {type(frames).__name__}; wrap a "
                "NumPy array with torch.from_numpy (on the encoder's device)"
            )
        if frames.dtype != torch.uint8:
            raise TypeError(
                f"Encoder expects uint8 frames in [0, 255] (it normalises inside), got "
                f"{frames.dtype}"
            )
        c, s = self.config.in_channels, self.config.image_size
        if frames.ndim == 4 and tuple(frames.shape[1:]) == (s, s, c):
            return frames.permute(0, 3, 1, 2)
        if frames.ndim == 4 and tuple(frames.shape[1:]) == (c, s, s):
            return frames
        raise ValueError(
            f"Encoder expects frames of shape (B, {s}, {s}, {c}) or (B, {c}, {s}, {s}) "
            f"(image_size={s}, frame_stack={self.config.frame_stack}), got {tuple(frames.shape)}"
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Encode a batch of frames.

        Args:
            frames: uint8 (B, H, W, C) or (B, C, H, W), C = 3 * frame_stack.

        Returns:
            float32 features, (B, feature_dim).
        """
        return self.norm(self._readout(frames))  # (B, D)

    def _readout(self, frames: torch.Tensor) -> torch.Tensor:
        """Features before the optional LayerNorm, (B, D)."""
        return self.head(self._trunk_maps(frames))

    def _trunk_maps(self, frames: torch.Tensor) -> torch.Tensor:
        """The trunk's last feature map, (B, C', h, w), of validated uint8 frames."""
        return self.trunk(normalize_pixels(self.channels_first(frames)))  # (B, C, H, W) in

    def features_and_spread(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` plus each keypoint's spread (B, D/2) (``SpatialSoftmax``), for the
        pretraining term that keeps keypoints concentrated on one place.

        Raises:
            ValueError: for an encoder with another readout.
        """
        self._require_keypoints("keypoint spread")
        pointwise, softmax = self.head
        points, spread = softmax.points_and_spread(pointwise(self._trunk_maps(frames)))
        return self.norm(points), spread

    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        """Where each keypoint of a ``readout="keypoints"`` encoder is: (B, D/2, 2), (x, y) in
        [-1, 1] from the top-left, before any LayerNorm; for pictures. -1 and +1 are the
        trunk's first and last cells, ``config.keypoint_pixel_range()`` pixels in.

        Raises:
            ValueError: for an encoder with another readout.
        """
        self._require_keypoints("keypoints()")
        return self._readout(frames).unflatten(1, (-1, 2))

    def _require_keypoints(self, what: str) -> None:
        if self.config.readout != "keypoints":
            raise ValueError(
                f"{what} needs an encoder with readout='keypoints', this one has "
                f"readout={self.config.readout!r}"
            )


#: The config of each named architecture (``utils.architectures.ENCODER_ARCHS``: ``--encoder-arch``,
#: ``encoder_arch`` in presets and policy configs).
_ARCH_CONFIGS = {
    "cnn": EncoderConfig,
    "resnet": EncoderConfig.impala,
    "drqv2": EncoderConfig.drqv2,
    "keypoints": EncoderConfig.keypoints,
}


def encoder_config_for(arch: str, image_size: int = 64) -> EncoderConfig:
    """The ``EncoderConfig`` of a named architecture (``ENCODER_ARCHS``) at ``image_size``.

    Raises:
        ValueError: naming an unknown architecture and the known ones.
    """
    if arch not in _ARCH_CONFIGS:
        raise ValueError(f"unknown encoder architecture {arch!r}; choose from {ENCODER_ARCHS}")
    return _ARCH_CONFIGS[arch](image_size=image_size)
