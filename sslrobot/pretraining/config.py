"""``PretrainConfig``: every setting of a pretraining run, validated, saved with its output."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslrobot.models.decoder import DecoderConfig
from sslrobot.models.encoder import EncoderConfig, encoder_config_for
from sslrobot.pretraining.augment import AUGMENTATIONS
from sslrobot.pretraining.objectives import DRAWS_PIXELS, parse_objective
from sslrobot.pretraining.world_model import TRANSPORT_PAIRS, WorldModelConfig
from sslrobot.utils.architectures import DECODER_NAMES, DEFAULT_ENCODER_ARCH, ENCODER_ARCHS
from sslrobot.utils.config import check_bool_fields, check_known_fields, config_to_dict
from sslrobot.utils.device import check_device_name

_AMP_NAMES = {"auto": None, "on": True, "off": False}  # the command's --amp

#: Largest pretraining seed (as the policies'): the sampler's per-epoch generator seeds
#: (``seed * 1_000_003 + epoch``) stay far inside torch's 64-bit range.
MAX_SEED = 2**32 - 1

#: Settings that may change when a run is resumed (they do not change what is computed,
#: except ``device`` and ``amp``: another device type draws other augmentations from the same
#: seeds and rounds otherwise, and a GPU run's bfloat16 autocast cannot continue on a CPU,
#: which the trainer warns of and records; ``data`` and ``look_target_data`` may point to a
#: moved copy, and the trainer refuses data with other windows and a twin of other episodes).
RESUMABLE_CHANGES = frozenset(
    {
        "steps",
        "resume",
        "device",
        "amp",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "image_every",
        "num_images",
        "num_workers",
        "prefetch",
        "tensorboard",
        "data",
        "look_target_data",
        "out",
    }
)
#: Terms whose targets a look twin gives (``look_target_data``).
LOOK_TARGET_TERMS = frozenset({"fdm", "future", "recon", "contrastive", "transport"})


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of ``sslrobot pretrain``.

    Attributes:
        out: Output directory (see ``docs/CONTRACTS.md`` for its layout).
        data: A ``sslrobot collect --out`` dataset directory, or several (a list) to pretrain
            on their mixed windows (same image size and action width); ``None`` when the
            caller passes a dataset object to ``pretrain``.
        objective: ``"fdm+future"``, ``"fdm"``, ``"future"``, ``"recon"``, ``"inverse"``,
            ``"contrastive"`` or ``"none"``; combine with ``+`` and weight with ``:w``
            (``"fdm:1+future:2"``). Weights multiply the losses after ``LOSS_SCALES`` has
            brought them to a common scale (pixel MSEs x100), so plain ``"fdm+future"`` gives
            both a comparable say. ``"+spread:w"`` adds a keypoint-concentration term,
            ``"+equivariant:w"`` a shift-equivariance term and ``"+slow:w"`` a slowness term
            on the first quarter of the keypoints (keypoint encoders only), and ``"+look:w"``
            (with ``look_target_data``) a term that keeps the features where they are when the
            frame is shown in the twin's look (``objectives.REGULARIZERS``).
        steps: Optimiser steps in total (a resumed run continues up to this count).
        batch_size: Windows per step per process (torchrun: each rank takes this many).
        lr: Adam learning rate (constant).
        weight_decay: Adam(W) decoupled weight decay.
        grad_clip: Clip the global gradient norm to this value; ``None``: no clipping (the
            norm is still computed each step, for the log).
        num_steps_ahead: K, the prediction horizon: windows hold o_t..o_{t+K}, a_t..a_{t+K-1}.
        seed: Seeds initialisation, data order, augmentation and (unless ``split_seed``)
            the validation split.
        split_seed: Seed of the train/validation split of episodes; ``None``: ``seed``.
            Pretrainings compared over several seeds share one, so that they hold out the
            same episodes, on which a probe can then score every one of them.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
            ``"mps"``. An unavailable device is an error, never a silent fallback.
        amp: bfloat16 autocast (CUDA only); ``None`` turns it on for GPUs that compute
            bfloat16 natively (emulated it is slower than float32; on CPU it measured 14x
            slower here, and MPS support is partial).
        checkpoint_every: Steps between checkpoints (0: only at the end).
        keep_checkpoints: Most recent checkpoints kept on disk.
        log_every: Steps between metric rows (averaged over the interval); 0 logs every step,
            as 1 does.
        image_every: Steps between prediction strips for decoder objectives (0: never).
        num_images: Validation windows shown in each prediction strip.
        resume: Continue from the latest checkpoint in ``out``. The settings are this
            config's, and must match the run's where they change what it computes (the
            trainer names any that do not); ``PretrainConfig.resumed(out)`` reads them from
            ``out``, as ``sslrobot pretrain --resume`` does.
        encoder: Encoder architecture (default: the package default, ``keypoints``); its
            ``image_size`` is replaced by the data's.
        decoder: Frame decoder architecture (``future``, ``recon``).
        transition_hidden_dim: Hidden width of the transition MLP.
        head_hidden_dim: Hidden width of the projection, prediction and action heads.
        projection_dim: Output width of the projection heads (``fdm``, ``contrastive``).
        ema_momentum: Momentum of the target encoder and projections.
        temperature: InfoNCE temperature (``contrastive``).
        decoded_steps: Future frames decoded per window for ``future`` (1..K).
        context_dropout: Share of those frames decoded without the context frame's copy path,
            so that the latent also holds the static scene (``WorldModelConfig``).
        salience_weight: Extra weight of pixels unlike their frame's dominant colour in
            ``recon`` and in the ``future`` frames decoded without the copy path
            (``WorldModelConfig``); 0: plain MSE.
        salience_threshold: RGB difference (normalised) that marks a pixel salient.
        decoder_proprio: Draw the frames decoded without the copy path from their latent plus
            that frame's proprioception (``WorldModelConfig.decoder_proprio_dim``), so the
            pixel loss presses the latent for what the robot's sensors do not give.
        decoder_appearance: Draw those frames also from their context frame's colour
            statistics (``WorldModelConfig.decoder_appearance``), so the latent need not
            encode the look (surface colours, light).
        future_actions: ``future`` predicts from the actions taken (True, a world model) or
            from the latent alone (False; ``WorldModelConfig.future_actions``).
        transition_norm: LayerNorm the latent transition's output
            (``WorldModelConfig.transition_norm``; False keeps keypoints as coordinates).
        transport_pairs: Which frames ``transport`` draws from which: ``"episode"`` (o_{t+K}
            from o_t) or ``"batch"`` (each window's o_t from another window's, which needs a
            background shared across episodes: a fixed camera, and a look twin in the authored
            look or data without visual variation; ``WorldModelConfig.transport_pairs``).
        transport_keypoints: How many keypoints (the first) ``transport`` draws with; 0: all
            (``WorldModelConfig.transport_keypoints``).
        augment: ``"shift"`` (DrQ random shift) or ``"none"``.
        shift_pad: Maximum shift of ``"shift"`` in pixels.
        color_jitter: Strength of random brightness and colour gains per window
            (``augment.color_jitter``), for encoders that must hold under unseen colours and
            light; 0: off.
        target_color_jitter: Strength of a colour draw of their own on the frames ``fdm``
            encodes as its targets (after the window's), as SPR augments its target views
            apart from the online one: the latent then predicts what the colours do not
            move. Positions keep the window's shift (keypoints are positions); the frames
            ``future`` decodes keep the window's colours; 0: off.
        look_target_data: A look twin of ``data`` (``sslrobot.data.look_twins``: the same
            collection in another ``--visual-preset``, usually ``none``), whose frames of each
            window become the targets: the frames ``future`` and ``recon`` decode (and the
            copy path's o_t), and those ``fdm`` and ``contrastive`` encode with the target
            encoder. The encoder still reads ``data``'s frames, so the targets show the state
            without the episode's look; None: the window's own frames.
        val_fraction: Share of episodes held out for the validation windows of the strips.
        num_workers: DataLoader worker processes (0: load in the training process; with 2
            cores, workers compete with the training threads).
        prefetch: With ``num_workers=0``, batches read ahead by a background thread, which
            overlaps reading with training (0: read in the training thread).
        tensorboard: Also write TensorBoard events when ``tensorboard`` is installed.
    """

    out: str
    data: str | tuple[str, ...] | None = None
    objective: str = "fdm+future"
    steps: int = 5000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 10.0
    num_steps_ahead: int = 3
    seed: int = 0
    split_seed: int | None = None
    device: str = "auto"
    amp: bool | None = None
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 50
    image_every: int = 1000
    num_images: int = 4
    resume: bool = False
    encoder: EncoderConfig = field(default_factory=lambda: encoder_config_for(DEFAULT_ENCODER_ARCH))
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
    decoder_proprio: bool = False
    decoder_appearance: bool = False
    future_actions: bool = True
    transition_norm: bool = True
    transport_pairs: str = "episode"
    transport_keypoints: int = 0
    augment: str = "shift"
    shift_pad: int = 4
    color_jitter: float = 0.0
    target_color_jitter: float = 0.0
    look_target_data: str | None = None
    val_fraction: float = 0.1
    num_workers: int = 0
    prefetch: int = 2
    tensorboard: bool = True

    def __post_init__(self) -> None:
        check_bool_fields(self)
        # Paths are kept as text (the JSON record's form); ``collect`` returns a Path, which
        # was refused as "must be a directory path".
        if isinstance(self.out, os.PathLike):
            object.__setattr__(self, "out", os.fspath(self.out))
        for name in ("data", "look_target_data"):
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        if isinstance(self.data, list | tuple):  # JSON gives a list
            paths = [os.fspath(d) if isinstance(d, os.PathLike) else d for d in self.data]
            if not paths or not all(isinstance(d, str) and d for d in paths):
                raise ValueError(f"data must name dataset directories, got {self.data!r}")
            object.__setattr__(self, "data", paths[0] if len(paths) == 1 else tuple(paths))
        if self.data is not None and not (isinstance(self.data, str | tuple) and self.data):
            raise ValueError(f"data must name dataset directories, got {self.data!r}")
        # The command's spellings are taken too: an architecture's name (its image size is
        # the data's), a decoder's name, and auto / on / off for amp.
        if isinstance(self.encoder, str):
            object.__setattr__(self, "encoder", encoder_config_for(self.encoder))
        if isinstance(self.encoder, dict):
            object.__setattr__(self, "encoder", EncoderConfig.from_dict(self.encoder))
        if not isinstance(self.encoder, EncoderConfig):
            raise ValueError(
                f"encoder must be an architecture name ({', '.join(ENCODER_ARCHS)}) or an "
                f"EncoderConfig, got {self.encoder!r}"
            )
        if isinstance(self.decoder, str):
            object.__setattr__(self, "decoder", DecoderConfig.named(self.decoder))
        if isinstance(self.decoder, dict):
            object.__setattr__(self, "decoder", DecoderConfig.from_dict(self.decoder))
        if not isinstance(self.decoder, DecoderConfig):
            raise ValueError(
                f"decoder must be a name ({', '.join(DECODER_NAMES)}) or a DecoderConfig, got "
                f"{self.decoder!r}"
            )
        if isinstance(self.amp, str) and self.amp in _AMP_NAMES:
            object.__setattr__(self, "amp", _AMP_NAMES[self.amp])
        if not isinstance(self.out, str) or not self.out:
            raise ValueError(f"out must be a directory path, got {self.out!r}")
        parse_objective(self.objective)  # raises with the offending name
        for name in (
            "steps",
            "checkpoint_every",
            "log_every",
            "image_every",
            "num_workers",
            "prefetch",
        ):
            _check_int(name, getattr(self, name), minimum=0)
        for name in ("batch_size", "num_steps_ahead", "keep_checkpoints", "num_images"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("transition_hidden_dim", "head_hidden_dim", "projection_dim"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("seed", self.seed, minimum=0)
        if self.split_seed is not None:
            _check_int("split_seed", self.split_seed, minimum=0)
        for name in ("seed", "split_seed"):  # the sampler's generators overflowed past it
            value = getattr(self, name)
            if value is not None and value > MAX_SEED:
                raise ValueError(f"{name} must be <= {MAX_SEED} (2**32 - 1), got {value}")
        _check_int("shift_pad", self.shift_pad, minimum=0)
        for name in ("color_jitter", "target_color_jitter"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if self.target_color_jitter and "fdm" not in parse_objective(self.objective):
            raise ValueError(
                f"target_color_jitter={self.target_color_jitter} recolours fdm's targets, but "
                f"objective {self.objective!r} has no fdm term"
            )
        if self.transport_pairs not in TRANSPORT_PAIRS:
            raise ValueError(
                f"transport_pairs must be one of {TRANSPORT_PAIRS}, got {self.transport_pairs!r}"
            )
        if isinstance(self.transport_keypoints, bool) or not isinstance(
            self.transport_keypoints, int
        ):
            raise ValueError(
                f"transport_keypoints must be an int (0: all), got {self.transport_keypoints!r}"
            )
        self._check_look_target_data()
        _check_int("decoded_steps", self.decoded_steps, minimum=1)
        if self.decoded_steps > self.num_steps_ahead:
            raise ValueError(
                f"decoded_steps={self.decoded_steps} cannot exceed num_steps_ahead="
                f"{self.num_steps_ahead}"
            )
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (batch statistics, InfoNCE), got {self.batch_size}"
            )
        if not (isinstance(self.lr, int | float) and 0 < self.lr < math.inf):
            raise ValueError(f"lr must be finite and > 0, got {self.lr!r}")
        if not (isinstance(self.weight_decay, int | float) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        check_device_name(self.device)
        if self.amp not in (None, True, False):
            raise ValueError(
                f"amp must be True, False or None (or 'on', 'off', 'auto'), got {self.amp!r}"
            )
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1), got {self.ema_momentum!r}")
        if not 0 < self.temperature < math.inf:
            raise ValueError(f"temperature must be finite and > 0, got {self.temperature!r}")
        if not 0.0 <= self.context_dropout < 1.0:
            raise ValueError(f"context_dropout must be in [0, 1), got {self.context_dropout!r}")
        weight, threshold = self.salience_weight, self.salience_threshold
        if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
            raise ValueError(f"salience_weight must be a finite number >= 0, got {weight!r}")
        if not (isinstance(threshold, int | float) and 0.0 < threshold < 1.0):
            raise ValueError(f"salience_threshold must be in (0, 1), got {threshold!r}")

    def _check_look_target_data(self) -> None:
        twin = self.look_target_data
        if twin is None:
            if "look" in parse_objective(self.objective):
                raise ValueError(
                    "objective 'look' compares a frame's features in two looks: it needs "
                    "look_target_data (--look-target-data), a look twin of the data"
                )
            return
        if not isinstance(twin, str) or not twin:
            raise ValueError(f"look_target_data must be a dataset directory, got {twin!r}")
        if isinstance(self.data, tuple):
            raise ValueError(
                f"look_target_data pairs the windows of one dataset; data names {len(self.data)} "
                "(mixed streams have no single look twin)"
            )
        if not set(parse_objective(self.objective)) & LOOK_TARGET_TERMS:
            raise ValueError(
                f"look_target_data gives the targets of {', '.join(sorted(LOOK_TARGET_TERMS))}, "
                f"but objective {self.objective!r} has none of them"
            )

    @property
    def objective_weights(self) -> dict[str, float]:
        """``{name: weight}`` of the active objectives (empty for ``none``)."""
        return parse_objective(self.objective)

    @property
    def episode_split_seed(self) -> int:
        """The seed the train/validation split of episodes is drawn with."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def window_steps(self) -> int:
        """Actions per loaded window: K, plus the history a frame stack needs."""
        return self.num_steps_ahead + self.encoder.frame_stack - 1

    def refuse_settings_the_objective_ignores(self) -> None:
        """A setting of a part the objective does not build was accepted, recorded as if it
        had been used, and changed nothing (``--transition-without-norm`` with ``recon``).
        Asked of a new run only: a config saved by an earlier version with such a setting
        still loads, resumes and is probed."""
        terms = set(parse_objective(self.objective))
        rolls = bool(terms & {"fdm", "future"})
        decodes = bool(terms & DRAWS_PIXELS)
        ignored = [
            (
                "future_actions=False (--future-without-actions) shapes the 'future' term",
                not self.future_actions and "future" not in terms,
            ),
            (
                "transition_norm=False (--transition-without-norm) shapes the latent "
                "transition of 'fdm' and 'future'",
                not self.transition_norm and not rolls,
            ),
            (
                f"salience_weight {self.salience_weight} weighs drawn pixels ('future', 'recon', "
                "'transport')",
                self.salience_weight != PretrainConfig.salience_weight and not decodes,
            ),
            (
                f"transport_pairs={self.transport_pairs!r} (--transport-pairs) shapes the "
                "'transport' term",
                self.transport_pairs != PretrainConfig.transport_pairs and "transport" not in terms,
            ),
            (
                f"transport_keypoints={self.transport_keypoints} (--transport-keypoints) shapes "
                "the 'transport' term",
                self.transport_keypoints != 0 and "transport" not in terms,
            ),
        ]
        for what, unused in ignored:
            if unused:
                raise ValueError(f"{what}, but objective {self.objective!r} has none")

    def world_model_config(
        self, action_dim: int, image_size: int, proprio_dim: int = 0
    ) -> WorldModelConfig:
        """The model these settings describe, for data with ``action_dim`` and ``image_size``
        (and ``proprio_dim``, used when ``decoder_proprio`` is set)."""
        return WorldModelConfig(
            encoder=dataclasses.replace(self.encoder, image_size=image_size),
            action_dim=action_dim,
            objective=self.objective_weights,
            decoder=self.decoder,
            transition_hidden_dim=self.transition_hidden_dim,
            head_hidden_dim=self.head_hidden_dim,
            projection_dim=self.projection_dim,
            ema_momentum=self.ema_momentum,
            temperature=self.temperature,
            decoded_steps=self.decoded_steps,
            context_dropout=self.context_dropout,
            salience_weight=self.salience_weight,
            salience_threshold=self.salience_threshold,
            decoder_proprio_dim=proprio_dim if self.decoder_proprio else 0,
            decoder_appearance=self.decoder_appearance,
            future_actions=self.future_actions,
            transition_norm=self.transition_norm,
            transport_pairs=self.transport_pairs,
            transport_keypoints=self.transport_keypoints,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists, nested configs dicts)."""
        return config_to_dict(self)

    def refuse_repeated_data(self) -> None:
        """Refuse a dataset named twice, which is drawn from twice as often: most likely a
        slip. Asked of new runs only: a saved config (runs made before this check, paths
        relative to another directory) must stay readable and resumable.

        Raises:
            ValueError: naming the repeated directories.
        """
        if not isinstance(self.data, tuple):
            return
        resolved = [Path(d).expanduser().resolve() for d in self.data]
        twice = sorted(
            {d for d, r in zip(self.data, resolved, strict=True) if resolved.count(r) > 1}
        )
        if twice:
            raise ValueError(
                f"data names the same dataset more than once ({', '.join(twice)}); give each once"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PretrainConfig:
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        check_known_fields(cls, values)
        return cls(**values)

    @classmethod
    def resumed(cls, out: str | os.PathLike[str], **changes: Any) -> PretrainConfig:
        """The settings the run in ``out`` saved, with ``changes`` and ``resume=True``: what
        ``sslrobot pretrain --resume --out OUT`` continues with (e.g. ``steps=`` extends the
        run; ``data=`` a moved copy of its data). A resume from Python had to repeat every
        setting of the run, or was refused for the defaults it fell back on.

        Raises:
            FileNotFoundError: ``out`` holds no saved run (``pretrain_config.json``).
        """
        from sslrobot.pretraining import artifacts

        saved = artifacts.read_config_section(Path(out), "pretrain", cls.from_dict)
        return dataclasses.replace(saved, out=os.fspath(out), resume=True, **changes)

    def resume_mismatches(self, saved: PretrainConfig) -> list[str]:
        """Fields that differ from ``saved`` and would change what a resumed run computes."""
        mine, theirs = self.to_dict(), saved.to_dict()
        # The split actually drawn: a run saved with split_seed None used its seed.
        mine["split_seed"], theirs["split_seed"] = self.episode_split_seed, saved.episode_split_seed
        return sorted(
            f"{name}: saved {theirs[name]!r}, now {mine[name]!r}"
            for name in mine
            if name not in RESUMABLE_CHANGES and mine[name] != theirs[name]
        )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
