"""Keypoint transport (Kulkarni et al. 2019, "Unsupervised learning of object keypoints for
perception and control"): draw a target frame from a source frame's feature map, with the
features around the source's and the target's keypoints swapped for the target's own.

Where the two frames differ (the arm's pose, the target's place), the source's features are
wrong, and only a keypoint of the target frame sitting on that spot pastes the right ones in;
a keypoint of the source frame sitting on the same thing erases the stale copy. So the
reconstruction loss pulls keypoints onto exactly the things that differ between the two
frames, and holds them there to the precision of a Gaussian a few pixels wide. The keypoint
encoder's other objectives (``future``'s decoder) let a keypoint code the scene in small
entangled moves near the centre, and the things a policy needs least precisely there are the
static ones (Reach's target, Push's goal): a pixel decoder with a copy path need not place
them at all. Paired across episodes (frames with the same background and another target
place, ``WorldModelConfig.transport_pairs="batch"``), the target is one of the things that
differ.

The module holds the appearance network (Phi) and the refining decoder; the keypoints come
from the encoder being pretrained. The feature maps are 16 x 16 over a 64 px frame and the
decoder ends in a sub-pixel convolution, like ``sslrobot.models.decoder``, so nothing runs at
full resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from sslrobot.models.decoder import KeypointHeatmaps
from sslrobot.models.encoder import RGB_CHANNELS

#: Downsampling from the frame to the transported feature maps.
TRANSPORT_STRIDE = 4
#: Width of the transported feature maps and of the refining decoder.
TRANSPORT_CHANNELS = 32
#: Gaussian width of a keypoint's blob, in the encoder's [-1, 1] keypoint units (0.1: about
#: 3 pixels at 64 px, the paper's 0.1 of the frame's half width).
TRANSPORT_SIGMA = 0.1


class Transporter(nn.Module):
    """Phi, the keypoint blobs and the refining decoder of keypoint transport: ``features``
    of each frame, then ``transport`` of the maps, then ``draw`` of the frame."""

    def __init__(
        self,
        image_size: int,
        keypoint_range: tuple[float, float],
        channels: int = TRANSPORT_CHANNELS,
        sigma: float = TRANSPORT_SIGMA,
    ) -> None:
        """Args:
        image_size: Side of the frames, a multiple of ``TRANSPORT_STRIDE``.
        keypoint_range: Where the encoder's keypoint coordinates -1 and +1 lie, in pixels
            (``EncoderConfig.keypoint_pixel_range()``), so blobs sit on the keypoints.
        channels: Width of the feature maps.
        sigma: Blob width in keypoint units.
        """
        super().__init__()
        if image_size % TRANSPORT_STRIDE:
            raise ValueError(
                f"keypoint transport needs frames a multiple of {TRANSPORT_STRIDE} px wide, "
                f"got {image_size}"
            )
        side = image_size // TRANSPORT_STRIDE
        self.appearance = nn.Sequential(  # Phi: (N, 3, H, W) -> (N, C, H/4, W/4)
            nn.Conv2d(RGB_CHANNELS, channels, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.blobs = KeypointHeatmaps(side, sigma, image_size, keypoint_range)
        r = TRANSPORT_STRIDE
        self.refine = nn.Sequential(  # transported maps -> frame, r x r pixels per cell
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * channels, RGB_CHANNELS * r * r, 3, padding=1),
            nn.PixelShuffle(r),
        )

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Phi of normalised channels-first frames (N, 3, H, W): (N, C, H/4, W/4)."""
        return self.appearance(frames)

    def transport(
        self,
        source_features: torch.Tensor,
        source_keypoints: torch.Tensor,
        target_features: torch.Tensor,
        target_keypoints: torch.Tensor,
    ) -> torch.Tensor:
        """The source's feature maps with the features around both frames' keypoints taken
        from the target's: ``(1 - S)(1 - T) Phi_s + T Phi_t``, where S and T are the largest
        blob of each frame's keypoints at each cell (the paper's per-keypoint loop, folded into
        one mask per frame).

        Args:
            source_features, target_features: Phi of the two frames, (N, C, h, w).
            source_keypoints, target_keypoints: The encoder's (x, y) keypoints, (N, 2K).

        Returns:
            The transported maps (N, C, h, w).
        """
        source_mask = self.blobs(source_keypoints).amax(dim=1, keepdim=True)  # (N, 1, h, w)
        target_mask = self.blobs(target_keypoints).amax(dim=1, keepdim=True)
        transported = (1.0 - source_mask) * (1.0 - target_mask) * source_features
        return transported + target_mask * target_features

    def draw(self, maps: torch.Tensor) -> torch.Tensor:
        """The frame drawn from transported maps (N, C, h, w) (``transport``): normalised,
        channels-first (N, 3, H, W)."""
        return self.refine(maps)
