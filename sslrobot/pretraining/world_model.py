"""The pretraining model: encoder plus the parts each objective needs, and its inference API.

One ``WorldModel`` holds every module the chosen objectives use (and only those), so that one
``state_dict`` saves, resumes and reloads the whole thing. Its ``forward`` computes the losses
of a batch of windows; ``predict_frames``, ``rollout_latents`` and ``target_latents`` serve the
evaluation of a trained model (``load_world_model``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sslrobot.models.decoder import Decoder, DecoderConfig, frames_to_blocks
from sslrobot.models.dynamics import TransitionModel
from sslrobot.models.encoder import (
    RGB_CHANNELS,
    Encoder,
    EncoderConfig,
    denormalize_pixels,
    normalize_pixels,
)
from sslrobot.models.heads import make_mlp
from sslrobot.models.transport import Transporter
from sslrobot.pretraining import artifacts
from sslrobot.pretraining.augment import shift_windows
from sslrobot.pretraining.distributed import group_rank, mean_over_ranks
from sslrobot.pretraining.objectives import (
    KEYPOINT_OBJECTIVES,
    KEYPOINT_REGULARIZERS,
    OBJECTIVES,
    REGULARIZERS,
    USES_DECODER,
    USES_TARGET_ENCODER,
    centered_cosine_loss,
    format_objective,
    info_nce_loss,
    inverse_dynamics_loss,
    latent_std,
    look_share_loss,
    pixel_mse_loss,
    salient_pixel_weights,
    slowness_loss,
)
from sslrobot.utils.config import check_bool_fields, config_to_dict
from sslrobot.utils.device import as_device


@dataclass(frozen=True)
class WorldModelConfig:
    """Everything needed to rebuild a ``WorldModel``; derived by the trainer from its config
    and the data, and saved in ``pretrain_config.json`` under ``"world_model"``.

    Attributes:
        encoder: Encoder architecture (its ``image_size`` is the data's).
        action_dim: Length of the action vectors.
        objective: ``{name: weight}`` of the active objectives (empty for ``none``).
        decoder: Decoder architecture, used when ``future`` or ``recon`` is active.
        transition_hidden_dim: Hidden width of the transition MLP.
        head_hidden_dim: Hidden width of projection/prediction/action heads.
        projection_dim: Output width of the SPR/ATC projection heads.
        ema_momentum: Target network update ``target <- m target + (1 - m) online``.
        temperature: InfoNCE temperature of ``contrastive``.
        decoded_steps: Future frames decoded per window for ``future`` (random k among 1..K,
            distinct): an unbiased estimate of the mean over all K at a fraction of the cost,
            since decoding full-resolution frames dominates a CPU training step.
        context_dropout: Share of the decoded future frames predicted without the context
            frame (no copy path) in training. With the copy path alone the latent need not
            hold anything static (a goal, a resting object), since the decoder copies it from
            o_t; frames decoded without it make the latent carry the whole scene, while the
            others keep the copy path sharp for ``predict_frames``. Measured with ``sslrobot
            probe`` (``future``, 1500 steps, batch 128): Push mean held-out R^2 0.30 at 0 and
            0.52 at 0.5 (goal position 0.0 -> 0.9); k=1 PSNR stays above copy-last-frame.
        salience_weight: Extra weight, in ``recon`` and in the ``future`` frames decoded
            without the copy path, of pixels unlike their frame's dominant colour
            (``salient_pixel_weights``): small objects the policy needs would otherwise be
            blurred away at little cost. 0: plain MSE everywhere.
        salience_threshold: Mean absolute RGB difference (normalised units, 0.08 ~ 20/255)
            from the dominant colour that marks a pixel salient.
        decoder_proprio_dim: Width of the proprioception that conditions the frames decoded
            without the copy path (``recon``, and the ``future`` frames of
            ``context_dropout``): each is drawn from its latent plus that frame's proprio, so
            the latent need not hold what the robot's own sensors give (its arm) and the pixel
            loss presses it for the rest of the scene (targets, objects). 0: not conditioned.
            Measured (session 15, findings): the objects were read no more precisely.
        decoder_appearance: Condition the same frames on their context frame's appearance
            (``appearance_code``: each colour channel's mean and standard deviation over the
            frame, ``APPEARANCE_DIM`` numbers): the surfaces' colours and the light, which the
            episode's look sets and which a keypoint latent (positions only) otherwise has to
            encode in where its keypoints sit, to paint the table. Global statistics cannot
            place a 3-pixel target, so the pixel loss still asks the latent for the objects
            (the appearance/geometry split of Jakab et al. 2018, who take the appearance from
            another frame of the same video). Measured (session 27, findings): on Reach,
            success within a pretraining seed's spread in both looks, alone or with colour
            jitter; the held-out look's palettes are met by the BC copies' colour instead.
        future_actions: ``future`` predicts o_{t+k} from z_t and the actions taken (a world
            model, the default), or, when False, from z_t alone through its own action-free
            transition: what the stream's policy will do next. On a noisy-expert stream the
            arm heads for the target, so predicting where it goes needs where the target is (a
            large, moving signal instead of a few static pixels), the same lever that makes
            ``inverse`` strong there; on a random-policy stream there is nothing to predict.
            Measured (session 15, findings): within the pretraining seeds' spread on Reach and
            Push.
        transition_norm: LayerNorm the transition's output (``TransitionModel``). True is
            right for LayerNorm'd features; for keypoint features (coordinates, not normalised)
            it puts rolled-out latents in another space than the encoder's.
        transport_pairs: Which frames ``transport`` draws from which (``TRANSPORT_PAIRS``):
            ``"episode"``, o_{t+K} from o_t of the same window (the paper's pairs: keypoints
            settle on what moves within an episode), or ``"batch"``, each window's o_t from
            the previous window's in the batch (windows come in random order, so nearly always
            another episode's: what differs between episodes, static targets included).
            Batch pairs need frames whose background is the same across episodes, so a fixed
            camera (not Navigate's, on the robot), a look twin in the authored look
            (``PretrainConfig.look_target_data``) or data collected with
            ``visual_preset="none"``, and one random shift for the whole batch (the trainer
            draws it so, and checks the rest).
        transport_keypoints: How many keypoints (the first ones) ``transport`` draws with; 0:
            all. With 32 keypoints transport puts several around the places the target
            takes, each serving a part of the workspace, so none follows it everywhere
            (``scripts/check_keypoint_tracking.py``, session 38); with a few, each must follow
            something wherever it goes, as the paper's 4 to 10 keypoints do. Measured on
            Reach (``fdm+future+transport:3``, batch pairs, a look twin, 8 of 32): one
            keypoint follows the target to 1.9 cm; success 50.8% over three pretraining
            seeds, against 37.7% with all 32 and 40.3% with 4 at seed 0
            (docs/results/findings.md, sessions 38-39).
    """

    encoder: EncoderConfig
    action_dim: int
    objective: dict[str, float] = field(default_factory=dict)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    transition_hidden_dim: int = 256
    head_hidden_dim: int = 256
    projection_dim: int = 128
    ema_momentum: float = 0.99
    temperature: float = 0.1
    decoded_steps: int = 1
    context_dropout: float = 0.5
    salience_weight: float = 10.0
    salience_threshold: float = 0.08
    decoder_proprio_dim: int = 0
    decoder_appearance: bool = False
    future_actions: bool = True
    transition_norm: bool = True
    transport_pairs: str = "episode"
    transport_keypoints: int = 0

    def __post_init__(self) -> None:
        check_bool_fields(self)
        if not isinstance(self.action_dim, int) or self.action_dim < 1:
            raise ValueError(f"action_dim must be an int >= 1, got {self.action_dim!r}")
        if not isinstance(self.decoder_proprio_dim, int) or self.decoder_proprio_dim < 0:
            raise ValueError(
                f"decoder_proprio_dim must be an int >= 0, got {self.decoder_proprio_dim!r}"
            )
        for name in ("decoder_proprio_dim", "decoder_appearance"):
            if getattr(self, name) and not set(self.objective) & USES_DECODER:
                raise ValueError(
                    f"{name} conditions the frame decoder, which only 'future' and 'recon' "
                    f"use; objective {sorted(self.objective)} has none"
                )
        unknown = sorted(set(self.objective) - set(OBJECTIVES))
        if unknown:
            raise ValueError(f"unknown objectives {unknown}; choose from {OBJECTIVES}")
        for name in ("transition_hidden_dim", "head_hidden_dim", "projection_dim", "decoded_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1), got {self.ema_momentum}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.transport_pairs not in TRANSPORT_PAIRS:
            raise ValueError(
                f"transport_pairs must be one of {TRANSPORT_PAIRS}, got {self.transport_pairs!r}"
            )
        keypoints = self.encoder.feature_dim // 2
        if type(self.transport_keypoints) is not int or not (
            0 <= self.transport_keypoints <= keypoints
        ):
            raise ValueError(
                f"transport_keypoints must be an int in [0, {keypoints}] (the encoder's "
                f"keypoints; 0: all), got {self.transport_keypoints!r}"
            )
        for term in sorted((KEYPOINT_REGULARIZERS | KEYPOINT_OBJECTIVES) & set(self.objective)):
            if self.encoder.readout != "keypoints":
                raise ValueError(
                    f"objective {term!r} acts on keypoints; it needs an encoder with "
                    f"readout='keypoints' (--encoder-arch keypoints), got readout="
                    f"{self.encoder.readout!r}"
                )
        for term, units in (
            ("slow", "(SLOW_MIN_STD)"),
            ("equivariant", "(squared pixels)"),
            ("transport", "(its blobs' width)"),
        ):
            if term in self.objective and self.encoder.layer_norm:
                raise ValueError(
                    f"objective {term!r} measures keypoints in the spatial softmax's [-1, 1] "
                    f"units {units}; it needs an encoder without layer_norm"
                )
        if self.objective and set(self.objective) <= REGULARIZERS:
            raise ValueError(
                f"objective {sorted(self.objective)} is a regulariser; combine it with a pretext "
                f"objective, e.g. 'fdm+future+spread:0.5'"
            )
        reads_keypoints = self.decoder.heatmaps or self.decoder.keypoint_skip
        if reads_keypoints and self.encoder.readout != "keypoints":
            kind = "heatmap decoder" if self.decoder.heatmaps else "keypoint skip"
            raise ValueError(
                f"a {kind} reads the latent as keypoints; it needs an encoder with "
                f"readout='keypoints' (--encoder-arch keypoints), got readout="
                f"{self.encoder.readout!r}"
            )
        # Below 1: some frames must use the copy path, or its mask head would get no gradient.
        if not 0.0 <= self.context_dropout < 1.0:
            raise ValueError(f"context_dropout must be in [0, 1), got {self.context_dropout}")
        if not self.salience_weight >= 0.0 or not 0.0 < self.salience_threshold < 1.0:
            raise ValueError(
                f"salience_weight must be >= 0 and salience_threshold in (0, 1), got "
                f"{self.salience_weight} and {self.salience_threshold}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists, nested configs dicts)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WorldModelConfig:
        """Inverse of ``to_dict``."""
        values = dict(values)
        values["encoder"] = EncoderConfig.from_dict(values["encoder"])
        values["decoder"] = DecoderConfig.from_dict(values["decoder"])
        return cls(**values)


#: ``WorldModelConfig.transport_pairs``' choices.
TRANSPORT_PAIRS = ("episode", "batch")
#: Largest shift, in pixels per axis, of the ``equivariant`` term.
EQUIVARIANCE_SHIFT = 4
#: The ``slow`` term's share of the keypoints (the first ones) and the spread across windows,
#: in the spatial softmax's [-1, 1] units, below which it counts them as collapsing: 0.1 is
#: 3 pixels at 64 px, under how far Reach's target and Push's goal move between episodes and
#: above the per-episode camera jitter.
SLOW_KEYPOINT_SHARE = 0.25
SLOW_MIN_STD = 0.1


def keypoint_units_per_pixel(encoder: EncoderConfig) -> float:
    """How far a keypoint moves, in the spatial softmax's [-1, 1] units, when the image moves by
    one pixel: its cells are ``prod(strides)`` pixels apart (every trunk here downsamples only
    by its strides) and ``2 / (side - 1)`` units apart."""
    side = encoder.trunk_output_size
    return 2.0 / (max(side - 1, 1) * math.prod(encoder.strides))


#: Numbers in ``appearance_code``: each RGB channel's mean and standard deviation.
APPEARANCE_DIM = 6


def appearance_code(frames: torch.Tensor) -> torch.Tensor:
    """Each colour channel's mean and standard deviation over uint8 RGB frames (N, H, W, 3),
    in the decoder's normalised units: float32 (N, 6). What a look changes everywhere (the
    table's colour, the light), with next to nothing of where small objects are."""
    pixels = normalize_pixels(frames.permute(0, 3, 1, 2)).flatten(2)  # (N, 3, H*W)
    return torch.cat([pixels.mean(dim=2), pixels.std(dim=2)], dim=1)


def _frozen_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


class WorldModel(nn.Module):
    """Encoder, transition, heads, decoder and momentum targets for the active objectives."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        #: ``_blind_rows``' answers by (batch, frames per window, device).
        self._blind_rows_cache: dict[tuple[int, int, torch.device], tuple] = {}
        active = set(config.objective)
        enc = config.encoder
        dim, hidden, proj = enc.feature_dim, config.head_hidden_dim, config.projection_dim
        self.encoder = Encoder(enc)
        acted = "fdm" in active or ("future" in active and config.future_actions)
        self.transition = (
            TransitionModel(
                dim, config.action_dim, config.transition_hidden_dim, config.transition_norm
            )
            if acted
            else None
        )
        # future_actions=False: future frames come from z_t alone (its one input held at 0).
        self.free_transition = (
            TransitionModel(dim, 1, config.transition_hidden_dim, config.transition_norm)
            if "future" in active and not config.future_actions
            else None
        )
        # The blending mask serves future frames only; without 'future' it would be an unused
        # parameter (which DistributedDataParallel rejects).
        decoder = dataclasses.replace(
            config.decoder, composite=config.decoder.composite and "future" in active
        )
        self.decoder = (
            Decoder(
                decoder,
                dim,
                enc.image_size,
                config.decoder_proprio_dim + (APPEARANCE_DIM if config.decoder_appearance else 0),
                enc.keypoint_pixel_range() if enc.readout == "keypoints" else None,
            )
            if active & USES_DECODER
            else None
        )
        self.action_head = (
            make_mlp(2 * dim, hidden, config.action_dim) if "inverse" in active else None
        )
        self.transporter = (
            Transporter(enc.image_size, enc.keypoint_pixel_range())
            if "transport" in active
            else None
        )
        self.fdm_projection = make_mlp(dim, hidden, proj) if "fdm" in active else None
        self.fdm_predictor = make_mlp(proj, hidden, proj) if "fdm" in active else None
        self.contrastive_projection = (
            make_mlp(dim, hidden, proj) if "contrastive" in active else None
        )
        self.contrastive_predictor = (
            make_mlp(proj, hidden, proj) if "contrastive" in active else None
        )
        # Momentum targets (BYOL/SPR): created after the online modules, as frozen copies.
        uses_target = bool(active & USES_TARGET_ENCODER)
        self.target_encoder = _frozen_copy(self.encoder) if uses_target else None
        self.target_fdm_projection = (
            _frozen_copy(self.fdm_projection) if self.fdm_projection is not None else None
        )
        self.target_contrastive_projection = (
            _frozen_copy(self.contrastive_projection)
            if self.contrastive_projection is not None
            else None
        )

    # -- properties used by the trainer and the evaluation --------------------------------

    @property
    def objective(self) -> str:
        """The objective spec this model was built for, e.g. ``"fdm+future"`` or ``"none"``."""
        return format_objective(self.config.objective)

    @property
    def has_decoder(self) -> bool:
        """Whether ``predict_frames`` works: a decoder trained on future frames (``future``)."""
        return (
            self.decoder is not None
            and (self.transition is not None or self.free_transition is not None)
            and ("future" in self.config.objective)
        )

    @property
    def has_dynamics(self) -> bool:
        """Whether ``rollout_latents`` works: an action-conditioned transition model."""
        return self.transition is not None

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) module pairs updated by ``ema_update``."""
        pairs = [
            (self.encoder, self.target_encoder),
            (self.fdm_projection, self.target_fdm_projection),
            (self.contrastive_projection, self.target_contrastive_projection),
        ]
        return [(o, t) for o, t in pairs if o is not None and t is not None]

    @torch.no_grad()
    def ema_update(self) -> None:
        """``target <- m target + (1 - m) online`` for every momentum target (after a step)."""
        weight = 1.0 - self.config.ema_momentum
        for online, target in self.ema_pairs():
            for p_target, p_online in zip(target.parameters(), online.parameters(), strict=True):
                p_target.lerp_(p_online, weight)
            for b_target, b_online in zip(target.buffers(), online.buffers(), strict=True):
                b_target.copy_(b_online)

    # -- training ------------------------------------------------------------------------

    def forward(
        self,
        pixels: torch.Tensor,
        actions: torch.Tensor,
        decode_index: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        positive: torch.Tensor | None = None,
        fdm_targets: torch.Tensor | None = None,
        look_targets: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Losses of the active objectives on a batch of (augmented) windows.

        Args:
            pixels: uint8 windows (B, K+1, H, W, C), C = 3 * frame_stack: o_t..o_{t+K}.
            actions: a_t..a_{t+K-1}, float32 (B, K, A).
            decode_index: For ``future``: which k - 1 to decode per window, long (B, n).
                Defaults to all K.
            proprio: p_t..p_{t+K}, float32 (B, K+1, P); required when the model's
                ``decoder_proprio_dim`` is set, ignored otherwise.
            positive: ``contrastive``'s positive, o_{t+K} augmented independently of the
                window (B, H, W, C) uint8, as the trainer gives it; None: the window's own
                o_{t+K}, which shares the anchor's augmentation.
            fdm_targets: ``fdm``'s target frames o_{t+1}..o_{t+K} recoloured on their own
                (B, K, H, W, C) uint8 (``PretrainConfig.target_color_jitter``); None: the
                window's own frames.
            look_targets: The windows' frames in a look twin (``PretrainConfig.
                look_target_data``), uint8 like ``pixels`` and shifted alike: ``future``,
                ``recon`` and ``transport`` draw them (``future`` copies their o_t), ``fdm`` and
                ``contrastive`` encode them as targets; the encoder reads ``pixels`` alone.
                None: ``pixels``.

        Returns:
            ``(losses, metrics)``: unweighted scalar losses by objective name, and detached
            diagnostics (``latent_std`` of the online features of o_t).
        """
        b, steps = pixels.shape[:2]
        horizon = steps - 1
        active = self.config.objective
        if horizon < 1:
            raise ValueError(f"windows need K >= 1 future frames, got pixels {tuple(pixels.shape)}")
        proprio = self._proprio(proprio, b, steps)
        if actions.shape[:2] != (b, horizon):
            raise ValueError(
                f"actions {tuple(actions.shape)} do not match pixels {tuple(pixels.shape)}: "
                f"expected ({b}, {horizon}, A)"
            )
        # Online features of o_t (and o_{t+1} for inverse dynamics), one encoder call.
        num_online = 2 if "inverse" in active else 1
        frames = pixels[:, :num_online].flatten(0, 1)
        losses: dict[str, torch.Tensor] = {}
        if "spread" in active:
            online, spread = self.encoder.features_and_spread(frames)
            losses["spread"] = spread.mean()
        else:
            online = self.encoder(frames)
        online = online.view(b, num_online, -1)
        latent = online[:, 0]  # (B, D)
        metrics = {"latent_std": latent_std(latent.detach())}
        if "equivariant" in active:
            losses["equivariant"] = self._equivariance_loss(pixels[:, 0], latent)
        if "slow" in active:
            slow = 2 * max(1, round(SLOW_KEYPOINT_SHARE * latent.shape[1] / 2))  # whole (x, y)
            later = self.encoder(pixels[:, -1])[:, :slow]  # o_{t+K}, same episode
            losses["slow"] = slowness_loss(latent[:, :slow], later, SLOW_MIN_STD)

        if look_targets is not None and look_targets.shape != pixels.shape:
            raise ValueError(
                f"look_targets {tuple(look_targets.shape)} must be the windows' frames in "
                f"another look, {tuple(pixels.shape)}"
            )
        shown = pixels if look_targets is None else look_targets  # what the targets show
        if "look" in active:
            if look_targets is None:
                raise ValueError(
                    "objective 'look' compares the two looks of a frame: pass look_targets"
                )
            # Gradients reach the encoder through both looks: neither is the right one.
            losses["look"] = look_share_loss(latent, self.encoder(look_targets[:, 0]))
        targets = None
        # fdm's targets are the window's own frames, under its one shift: SPR shifts each
        # frame on its own, but ``future`` needs the frames it decodes under the context's
        # shift and both read this window. A departure from SPR (stated in the README's list
        # of objectives): the shared shift is a cue a prediction can copy, as ATC's positive
        # had before it got its own augmentation; not measured against per-frame shifts.
        if fdm_targets is not None and fdm_targets.shape != pixels[:, 1:].shape:
            raise ValueError(
                f"fdm_targets {tuple(fdm_targets.shape)} must be the window's future frames "
                f"{tuple(pixels[:, 1:].shape)}"
            )
        if "fdm" in active or ("contrastive" in active and positive is None):
            with torch.no_grad():
                first = 1 if "fdm" in active else horizon  # contrastive needs o_{t+K} only
                later = shown[:, first:] if fdm_targets is None else fdm_targets[:, first - 1 :]
                targets = self.target_encoder(later.flatten(0, 1))
                targets = targets.view(b, steps - first, -1)  # (B, K or 1, D)

        rolled = self.transition.rollout(latent, actions) if self.transition is not None else None
        if "fdm" in active:
            predictions = self.fdm_predictor(self.fdm_projection(rolled))  # (B, K, P)
            with torch.no_grad():
                projected = self.target_fdm_projection(targets)  # (B, K, P)
                center = mean_over_ranks(projected.float().mean(dim=0, keepdim=True))
            losses["fdm"] = centered_cosine_loss(predictions, projected, center)
        if "future" in active:
            future = rolled if self.free_transition is None else self._free_rollout(latent, horizon)
            losses["future"] = self._future_loss(shown, future, decode_index, proprio)
        if "recon" in active:
            frame = self._target_blocks(shown[:, 0])  # (B, 3, r*r, H/r, W/r)
            condition = self._blind_condition(
                None if proprio is None else proprio[:, 0], shown[:, 0]
            )
            losses["recon"] = self._pixel_loss(
                self.decoder.predict_blocks(latent, condition=condition), frame
            )
        if "transport" in active:
            losses["transport"] = self._transport_loss(pixels, shown, latent)
        if "inverse" in active:
            predicted = self.action_head(online.flatten(1))  # [z_t, z_{t+1}] -> a_t
            losses["inverse"] = inverse_dynamics_loss(predicted, actions[:, 0])
        if "contrastive" in active:
            anchors = self.contrastive_projection(latent)
            anchors = anchors + self.contrastive_predictor(anchors)  # ATC residual predictor
            with torch.no_grad():
                later = targets[:, -1] if positive is None else self.target_encoder(positive)
                positives = self.target_contrastive_projection(later)
            losses["contrastive"] = info_nce_loss(anchors, positives, self.config.temperature)
        return losses, metrics

    def _future_loss(
        self,
        pixels: torch.Tensor,
        rolled: torch.Tensor,
        decode_index: torch.Tensor | None,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, horizon = rolled.shape[:2]
        if decode_index is None:
            decode_index = torch.arange(horizon, device=pixels.device).expand(b, horizon)
        n = decode_index.shape[1]
        rows = torch.arange(b, device=pixels.device)[:, None]
        chosen = rolled[rows, decode_index].flatten(0, 1)  # (B*n, D)
        own_proprio = None  # the decoded frames' own proprio, for the frames without context
        if proprio is not None:
            own_proprio = proprio[:, 1:][rows, decode_index].flatten(0, 1)  # (B*n, P)
        condition = self._blind_condition(own_proprio, pixels[:, 0], repeats=n)
        target = self._target_blocks(pixels[:, 1:][rows, decode_index].flatten(0, 1))
        context = self._target_blocks(pixels[:, 0])  # (B, 3, r*r, H/r, W/r)
        if n > 1:
            context = context.repeat_interleave(n, dim=0)
        count, blind, seen = self._blind_rows(b, n)  # of the B*n: decoded without context
        if not count:
            return pixel_mse_loss(self.decoder.predict_blocks(chosen, context), target)
        predicted = torch.cat(
            [
                self.decoder.predict_blocks(  # no copy path
                    chosen.index_select(0, blind),
                    condition=None if condition is None else condition.index_select(0, blind),
                ),
                self.decoder.predict_blocks(
                    chosen.index_select(0, seen), context.index_select(0, seen)
                ),
            ]
        )  # (B*n, 3, r*r, H/r, W/r), blind rows first
        salient = torch.arange(len(target), device=target.device) < count
        ordered = torch.cat([target.index_select(0, blind), target.index_select(0, seen)])
        return self._pixel_loss(predicted, ordered, salient)

    def _transport_loss(
        self, pixels: torch.Tensor, shown: torch.Tensor, latent: torch.Tensor
    ) -> torch.Tensor:
        """``transport``'s pixel loss: each window's target frame drawn from its source frame
        (``transport_pairs``), keypoints from the encoder's view (``pixels``), appearance and
        targets from the frames the targets show (``shown``: the look twin's, if any)."""
        batch = self.config.transport_pairs == "batch"
        ends = shown[:, [0] if batch else [0, -1], ..., -RGB_CHANNELS:]  # the newest of a stack
        frames = normalize_pixels(ends.permute(0, 1, 4, 2, 3))  # (B, 1 or 2, 3, H, W)
        used = 2 * self.config.transport_keypoints or latent.shape[1]  # (x, y) each
        latent = latent[:, :used]
        if batch:  # window i from window i - 1's o_t
            target, target_points = frames[:, 0], latent
            features = self.transporter.features(target)
            source_features, source_points = features.roll(1, dims=0), latent.roll(1, dims=0)
            target_features = features
        else:  # o_{t+K} from o_t
            target, target_points = frames[:, -1], self.encoder(pixels[:, -1])[:, :used]
            source_features = self.transporter.features(frames[:, 0])
            target_features, source_points = self.transporter.features(target), latent
        maps = self.transporter.transport(
            source_features, source_points, target_features, target_points
        )
        return self._pixel_loss(self.transporter.draw(maps), target)

    def _pixel_loss(
        self, predicted: torch.Tensor, target: torch.Tensor, salient: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pixel MSE of the decoder's blocks; the rows in ``salient`` (all if None) weighted
        towards salient pixels when ``salience_weight`` is set.

        ``future`` weights only the frames decoded without the copy path: those make the latent
        hold the scene, while the others keep plain-MSE quality for ``predict_frames`` (weighting
        them too cost ~0.5 dB of PSNR, below copying the last frame, on Reach and Push).
        """
        weight = self.config.salience_weight
        if weight == 0.0:
            return pixel_mse_loss(predicted, target)
        if salient is None:
            salient = torch.ones(len(target), dtype=torch.bool, device=target.device)
        weights = torch.ones_like(target[:, :1])  # (N, 1, ...)
        weights[salient] = salient_pixel_weights(
            target[salient], weight, self.config.salience_threshold
        )
        # Mean 1 over the global batch (all ranks), so the loss keeps the plain MSE's scale and
        # N ranks take the step one process with their batches together would.
        weights = weights / mean_over_ranks(weights.mean().detach())
        return pixel_mse_loss(predicted, target, weights)

    def _equivariance_loss(self, frames: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Mean squared distance, in pixels, between the keypoints of ``frames`` shifted by
        (dy, dx) and ``points`` (the keypoints of ``frames``) moved by (-dy, -dx).

        Window w of the global batch is shifted by the ``w``-th of the (2P + 1)^2 - 1 non-zero
        shifts within ``EQUIVARIANCE_SHIFT`` = P pixels, cycled: no random numbers, as for
        ``_blind_windows``; under ``torchrun`` rank r's windows are r x B onwards (contiguous
        per-rank batches of B), so N ranks shift as one process would.
        """
        p = EQUIVARIANCE_SHIFT
        offsets = torch.arange(-p, p + 1, device=frames.device)
        grid = torch.cartesian_prod(offsets, offsets)  # (n, 2): (dy, dx)
        centre = len(grid) // 2  # (0, 0), left out by slicing (a mask would sync a GPU)
        grid = torch.cat([grid[:centre], grid[centre + 1 :]])
        first = group_rank() * len(frames)
        window = torch.arange(first, first + len(frames), device=frames.device)
        shifts = grid[window % len(grid)]
        moved = self.encoder(shift_windows(frames[:, None], shifts, p)[:, 0])  # (B, 2K)
        per_pixel = keypoint_units_per_pixel(self.config.encoder)
        moves = shifts.flip(1)[:, None].to(points.dtype) * per_pixel  # (B, 1, 2): (x, y)
        expected = points.unflatten(1, (-1, 2)) - moves
        return (moved.unflatten(1, (-1, 2)) - expected).div(per_pixel).square().sum(-1).mean()

    def _free_rollout(self, latent: torch.Tensor, horizon: int) -> torch.Tensor:
        """z_{t+1..t+K} predicted from z_t alone (``future_actions=False``), (B, K, D)."""
        return self.free_transition.rollout(latent, latent.new_zeros(len(latent), horizon, 1))

    def _proprio(self, proprio: torch.Tensor | None, batch: int, steps: int) -> torch.Tensor | None:
        """The frames' proprio (B, ``steps``, P), checked, when the decoder is conditioned on
        it, else None (a window's K+1 frames in training, the K predicted ones in
        ``predict_frames``)."""
        width = self.config.decoder_proprio_dim
        if not width:
            return None
        if proprio is None:
            raise ValueError(
                f"this model's decoder is conditioned on proprio (decoder_proprio_dim={width}); "
                "pass the windows' proprio"
            )
        proprio = torch.as_tensor(proprio, device=self.device, dtype=torch.float32)
        if proprio.shape != (batch, steps, width):
            raise ValueError(
                f"proprio must be ({batch}, {steps}, {width}) for these windows, got "
                f"{tuple(proprio.shape)}"
            )
        return proprio

    def _blind_condition(
        self, proprio: torch.Tensor | None, context: torch.Tensor, repeats: int = 1
    ) -> torch.Tensor | None:
        """What conditions the frames decoded without the copy path: their own proprio (N,
        P) when the decoder takes it, and their context frame's ``appearance_code``
        (``decoder_appearance``; ``context`` uint8 (N / repeats, H, W, C), each context
        serving ``repeats`` consecutive frames). (N, width); None when neither is asked for."""
        parts = [] if proprio is None else [proprio]
        if self.config.decoder_appearance:
            code = appearance_code(context[..., -RGB_CHANNELS:])
            parts.append(code.repeat_interleave(repeats, dim=0) if repeats > 1 else code)
        return torch.cat(parts, dim=1) if parts else None

    def _blind_rows(self, batch: int, n: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """How many of a batch's ``batch * n`` decoded frames go without context, and the
        rows that do and that do not (index tensors on the model's device, blind first).

        Made once per shape on the CPU: boolean masks and their counts cost a host-device
        sync each step on a GPU, and the choice depends on the batch size alone. Indexing
        with them picks the same rows in the same order as the masks did.
        """
        key = (batch, n, self.device)
        if key not in self._blind_rows_cache:
            blind = self._blind_windows(batch).repeat_interleave(n)
            rows = torch.arange(batch * n)
            self._blind_rows_cache[key] = (
                int(blind.sum()),
                rows[blind].to(key[2]),
                rows[~blind].to(key[2]),
            )
        return self._blind_rows_cache[key]

    def _blind_windows(self, batch: int) -> torch.Tensor:
        """Which windows of a batch are decoded without context (a CPU mask): an evenly spread
        share ``context_dropout`` of positions (window w when ``floor((w + 1) p) > floor(w p)``,
        each product rounded to 9 decimals first so that 100 x 0.29 counts as 29).

        That is ``floor(B p)`` of a batch of B (the trainer warns when ``B p`` is not whole).
        Windows come in random order, so each one goes without context that share of the time;
        no random numbers are drawn (runs stay resumable bit for bit), and with contiguous
        per-rank batches of a multiple of 1/p windows, N ranks choose what one process would.
        """
        p = self.config.context_dropout
        position = torch.arange(batch, dtype=torch.float64)  # on the CPU: MPS has no float64
        # Rounded before the floor: 100 x 0.29 is 28.999999999999996 in floating point.
        below = torch.floor(torch.round(position * p, decimals=9))
        return torch.floor(torch.round((position + 1) * p, decimals=9)) > below  # (B,) bool

    def _target_blocks(self, stacked: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3S) -> the newest frame, normalised, in the decoder's block layout.

        Rearranged while still uint8 (a quarter of the bytes of float).
        """
        frames = stacked[..., -RGB_CHANNELS:]
        return normalize_pixels(frames_to_blocks(frames, self.decoder.config.shuffle))

    # -- inference -------------------------------------------------------------------------

    def _context(self, pixels: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Context frames (B, H, W, C) from frames or windows (B, T, H, W, C), on our device."""
        pixels = torch.as_tensor(pixels, device=self.device)
        if pixels.ndim == 5:
            pixels = pixels[:, 0]
        size, channels = self.encoder.config.image_size, self.encoder.config.in_channels
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (size, size, channels):
            raise ValueError(
                f"pixels must be channels-last context frames (B, {size}, {size}, {channels}) "
                f"or windows (B, T, {size}, {size}, {channels}), as datasets store them; got "
                f"{tuple(pixels.shape)}"
            )
        return pixels

    def _actions(self, actions: torch.Tensor | np.ndarray, batch: int) -> torch.Tensor:
        actions = torch.as_tensor(actions, device=self.device, dtype=torch.float32)
        if actions.ndim != 3 or actions.shape[0] != batch or actions.shape[1] < 1:
            raise ValueError(
                f"actions must be (B={batch}, K, A) with K >= 1 steps, got {tuple(actions.shape)}"
            )
        return actions

    @torch.no_grad()
    def rollout_latents(
        self, pixels: torch.Tensor | np.ndarray, actions: torch.Tensor | np.ndarray
    ) -> torch.Tensor:
        """Latents predicted for k = 1..K from o_t and a_t..a_{t+K-1}.

        Args:
            pixels: uint8 context frames (B, H, W, C), or windows (B, T, H, W, C) of which only
                the first frame is used.
            actions: (B, K, A).

        Returns:
            float32 (B, K, D), in the transition's output space: LayerNorm'd by default
            (``transition_norm``), where the encoder's keypoint latents are not, and nothing
            trains them to equal the encoder's (``fdm`` matches projections of them with the
            target encoder's). So a raw distance to ``target_latents`` of o_{t+1..t+K}, as
            ``evaluation.prediction``'s latent cosine and NMSE take, compares two spaces; read
            those as diagnostics, the PSNR as the measure.
        """
        if self.transition is None:
            raise ValueError(
                f"this model (objective {self.objective!r}) has no action-conditioned dynamics "
                "model; rollout_latents needs 'fdm', or 'future' with future_actions"
            )
        context = self._context(pixels)
        return self.transition.rollout(self.encoder(context), self._actions(actions, len(context)))

    @torch.no_grad()
    def target_latents(self, pixels: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Online-encoder latents of every frame in the windows (the exported encoder's
        features, the space in which ``rollout_latents`` predicts).

        Args:
            pixels: uint8 (B, T, H, W, C); pass o_{t+1..t+K} for (B, K, D), or the whole
                window o_t..o_{t+K} for (B, K+1, D).

        Returns:
            float32 (B, T, D).
        """
        pixels = torch.as_tensor(pixels, device=self.device)
        if pixels.ndim != 5:
            raise ValueError(f"pixels must be (B, T, H, W, C), got {tuple(pixels.shape)}")
        b, t = pixels.shape[:2]
        return self.encoder(pixels.flatten(0, 1)).view(b, t, -1)

    @torch.no_grad()
    def predict_frames(
        self,
        pixels: torch.Tensor | np.ndarray,
        actions: torch.Tensor | np.ndarray,
        copy_context: bool = True,
        proprio: torch.Tensor | np.ndarray | None = None,
        copy_from: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """Predict o_{t+1..t+K} from o_t and a_t..a_{t+K-1}.

        Args:
            pixels: uint8 context frames (B, H, W, C), or windows (B, T, H, W, C) of which only
                the first frame is used.
            actions: (B, K, A).
            copy_context: Blend in o_t through the decoder's copy path (its best prediction).
                False decodes the predicted latents alone, as the frames trained without
                context are: a picture of what the latent holds, since the copy path draws a
                static object sharply whether the latent knows where it is or not.
            proprio: p_{t+1..t+K} (B, K, P): with ``copy_context=False``, required by a model
                whose decoder is conditioned on proprio (``decoder_proprio_dim``), as in
                training; unused otherwise.
            copy_from: The frames whose o_t the copy path blends in (and the blind decoder's
                appearance is read from), like ``pixels``: a look twin's, for a model trained
                on one (it predicts the twin's frames); None: ``pixels``.

        Returns:
            uint8 (B, K, H, W, 3).
        """
        if not self.has_decoder:
            raise ValueError(
                f"this model (objective {self.objective!r}) has no future-frame decoder; "
                "predict_frames needs a model pretrained with 'future' (e.g. 'fdm+future')"
            )
        context = self._context(pixels)
        if self.free_transition is None:
            rolled = self.rollout_latents(context, actions)  # (B, K, D)
        else:  # action-free: the actions only give the horizon
            rolled = self._free_rollout(
                self.encoder(context), self._actions(actions, len(context)).shape[1]
            )
        b, horizon = rolled.shape[:2]
        copied = context if copy_from is None else self._context(copy_from)
        if len(copied) != len(context):
            raise ValueError(f"copy_from holds {len(copied)} frames for {len(context)} contexts")
        frame, condition = None, None
        if copy_context:
            frame = normalize_pixels(copied[..., -RGB_CHANNELS:]).repeat_interleave(horizon, 0)
        else:
            own_proprio = None
            if self.config.decoder_proprio_dim:
                own_proprio = self._proprio(proprio, b, horizon).flatten(0, 1)
            condition = self._blind_condition(own_proprio, copied, repeats=horizon)
        predicted = self.decoder(rolled.flatten(0, 1), frame, condition)  # (B*K, H, W, 3)
        return denormalize_pixels(predicted).unflatten(0, (b, horizon))

    @torch.no_grad()
    def reconstruct(
        self, pixels: torch.Tensor | np.ndarray, proprio: torch.Tensor | np.ndarray | None = None
    ) -> torch.Tensor:
        """``recon``'s picture of frames (B, H, W, C) from their own latents, conditioned as in
        training (``proprio`` (B, P): the frames' own, for a decoder that takes it).

        Returns:
            uint8 (B, H, W, 3).
        """
        if self.decoder is None:
            raise ValueError(f"this model (objective {self.objective!r}) has no frame decoder")
        context = self._context(pixels)
        own = None
        if self.config.decoder_proprio_dim:
            own = self._proprio(None if proprio is None else proprio[:, None], len(context), 1)
            own = own[:, 0]
        frames = self.decoder(self.encoder(context), None, self._blind_condition(own, context))
        return denormalize_pixels(frames)


def load_world_model(path: str | Path, device: str | torch.device = "cpu") -> WorldModel:
    """Load every module of a ``sslrobot pretrain --out`` directory, frozen and in eval mode.

    Args:
        path: The pretraining output directory (``pretrain_config.json``, ``model.safetensors``).
        device: Where to put the model.

    Raises:
        FileNotFoundError / ValueError: naming the missing or unreadable file.
    """
    path = Path(path)
    config = artifacts.read_config_section(path, "world_model", WorldModelConfig.from_dict)
    model = WorldModel(config)
    state = artifacts.read_safetensors(path / artifacts.MODEL_WEIGHTS, "world-model weights")
    artifacts.load_state(model, state, path / artifacts.MODEL_WEIGHTS)
    model.requires_grad_(False)
    return model.eval().to(as_device(device))
