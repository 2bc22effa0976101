"""Typed, validated configuration of one policy-training run (saved with the policy)."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslrobot.pretrained import canonical_spec, is_pretrained_spec
from sslrobot.utils.architectures import (
    DEFAULT_ENCODER_ARCH,
    ENCODER_ARCHS,
    POLICY_CONTEXTS,
    RL_CRITIC_INPUTS,
)
from sslrobot.utils.config import check_bool_fields
from sslrobot.utils.device import check_device_name

#: ``--encoder`` values that name a baseline rather than a ``pretrain --out`` directory.
BASELINE_ENCODERS = ("none", "scratch", "state")
ALGOS = ("bc", "rl")
RL_ALGORITHMS = ("sac", "ppo")

#: Settings only one algorithm reads: a non-default value with the other one is refused
#: rather than silently ignored (``epochs``, BC's, has its own message).
ALGO_ONLY_FIELDS = {
    "bc": ("weight_decay", "num_val_demos"),
    "rl": ("rl_algorithm", "num_envs", "rl_norm_steps", "rl_demo_share", "rl_critic_input"),
}

#: BC budget when neither ``steps`` nor ``epochs`` is given (gradient steps).
DEFAULT_BC_STEPS = 2000
#: RL budget when ``steps`` is not given (environment steps, summed over the vector envs).
DEFAULT_RL_STEPS = 50_000
#: Validation episodes use seeds from here on, so they never coincide with evaluation seeds
#: (which are documented to stay below it) or with demonstration seeds.
VALIDATION_SEED_BASE = 1_000_000
#: Episodes that choose between trained policies (``sslrobot run --set bc_context=auto``,
#: ``scripts/select_by_validation.py``) start here: past the online validation's seeds,
#: apart from demonstrations and evaluation, so the evaluation episodes choose nothing.
SELECTION_SEED_BASE = VALIDATION_SEED_BASE + 100_000
#: PPO's shortest rollout per sub-env (a multiple of 64 keeps SB3's minibatches whole): a
#: budget below one rollout of every sub-env would train nothing.
PPO_MIN_ROLLOUT = 64
#: Largest seed NumPy's legacy seeding (SB3's, and the policies' generators) takes.
MAX_SEED = 2**32 - 1
#: Largest learning rate the optimisers can hold (float32's maximum; torch.finfo, without
#: importing torch here).
MAX_LR = 3.4028234663852886e38


@dataclass(frozen=True)
class PolicyConfig:
    """Everything ``train_policy`` needs; saved as ``train_config`` in ``policy_config.json``.

    Attributes:
        env_id: Gymnasium id of the task, e.g. ``"sslrobot/Push-v0"``.
        encoder: A ``pretrain --out`` directory, ``"pretrained:<env id>"`` (an encoder shipped
            in the wheel, ``sslrobot.pretrained``; stored with its namespace), or ``"none"``
            (frozen random-init encoder of
            the ``encoder_arch`` architecture), ``"scratch"`` (the same architecture trained end
            to end with the policy loss and random-shift augmentation, BC only) or ``"state"``
            (the privileged-state oracle).
        encoder_arch: Architecture of the ``none`` and ``scratch`` encoders (a name of
            ``utils.architectures.ENCODER_ARCHS``); set it to the pretrained encoders' so every
            baseline has the same network. A ``pretrain --out`` directory brings its own.
        algo: ``"bc"`` (behaviour cloning on demonstrations) or ``"rl"`` (Stable-Baselines3).
        out: Output directory of the policy.
        seed: Training seed (head init, minibatch order, RL exploration; also the random-init
            encoder's seed for ``none``/``scratch``).
        demos: Dataset directory of expert demonstrations (``collect --policy expert``); required
            for BC, optional for RL (then only used for observation normalisation).
        num_demos: Number of training demonstrations: the first N episode ids, in order. None
            means every episode that is not a validation demo.
        demo_offset: Episodes skipped before the training demonstrations, which are then ids
            ``demo_offset`` to ``demo_offset + num_demos - 1`` in order: another draw of the
            same count from one larger set (``sslrobot run --set demos_per_policy_seed=true``
            gives each training seed its own).
        num_val_demos: Demonstrations held out for the validation loss: the *last* episode ids of
            the dataset, so the validation set is the same whatever ``num_demos``. They must not
            overlap the training demos.
        steps: Budget: BC gradient steps, or RL environment steps. Exclusive with ``epochs``.
        epochs: BC budget in passes over the training demonstrations. Exclusive with ``steps``.
        batch_size: Minibatch size (BC samples; SAC/PPO minibatch).
        lr: Learning rate; None picks the algorithm's default (BC 1e-3, SAC/PPO 3e-4).
        weight_decay: AdamW weight decay of the BC head.
        hidden_dims: Widths of the MLP head's hidden layers.
        image_size: Side of the square pixel observations; None takes it from the pretrained
            encoder, else from the demonstrations, else 64.
        val_episodes: Online validation episodes per check (seeds from ``VALIDATION_SEED_BASE``),
            BC and RL; the best checkpoint is the one with the highest validation success (ties:
            BC's lower validation loss, then the later check). 0 disables them; then BC's best
            checkpoint follows the validation loss, and without validation demos (or in RL)
            no best checkpoint is written.
        num_val_checks: At most this many validation checks, every ceil(steps / N) steps
            and on the final weights (evenly spread when N divides the steps, as the default
            2,000 / 5 does; 7 steps with 5 checks check at steps 2, 4, 6 and 7).
        augment_pad: Random-shift padding in pixels: of every BC step's frames for
            ``scratch`` (DrQ uses 4 at 84x84), of the copies ``augment_copies`` makes.
        augment_copies: Frozen encoders, BC: fit the head on this many augmented copies of
            every demonstration frame besides the frame itself (each shifted by up to
            ``augment_pad`` pixels and recoloured by ``augment_color``, drawn from ``seed``,
            encoded once). 0: off. The train look moves the camera and changes the light
            between episodes; a head fitted on 25 demonstrations ties the actions to such
            changes, and the copies show it the same action under other ones.
        augment_color: Strength of the copies' colour jitter (brightness and per-channel
            gains, as ``pretrain --color-jitter``), in [0, 1).
        context: BC on a frozen encoder or the state: ``"first"`` gives the head, beside each
            frame's features, those of its episode's first frame (each augmented copy's from
            its own first frame); the policy keeps them through an episode (``Policy.reset``
            starts one). Where the goal stays put and the arm later comes between it and the
            camera, the first frame still shows it whole (Reach; session 40's finding).
            ``"none"`` (default): the current frame alone.
        feature_batch_size: Frames per encoder forward when computing features.
        cache_dir: Directory of an on-disk feature cache shared between runs (keyed by encoder
            weights, the encoder's device type, the dataset's identity, the code that computes
            features, torch's version and ``feature_batch_size``; one file per episode); None
            computes the features once for this run and keeps nothing on disk.
        rl_algorithm: ``"sac"`` (default; off-policy, sample-efficient for continuous control) or
            ``"ppo"``.
        num_envs: Parallel environments for RL (encoded in one batch per step).
        rl_norm_steps: Random-action steps used to estimate observation statistics for RL when
            no demonstrations are given.
        rl_demo_share: SAC with ``demos``: the share of every batch drawn from the
            demonstrations' transitions, the rest from the online buffer (RLPD's symmetric
            sampling at 0.5; ``rl_demos``). 0 (default): the demonstrations only set the
            feature statistics.
        rl_critic_input: What SAC's critics read: ``"policy"`` (default), the actor's inputs;
            ``"state"``, the privileged state, standardised with statistics fitted where the
            features' are (the asymmetric actor-critic, ``rl_critic``). The actor, the only
            part that acts, reads the frozen features and proprio either way.
        device: ``"auto"`` (CUDA, then MPS, then CPU), or a torch device string.
        progress: Show a progress bar.
        overwrite: Replace a policy already trained in ``out``. Off, such an ``out`` is
            refused before any work: training clears the directory first, so a mistyped
            ``--out`` would otherwise lose a finished policy. ``sslrobot run`` owns its stage
            directories and turns it on.
        resume: Continue an interrupted run in ``out`` from its last checkpoint
            (``checkpoints/``; its settings must be this config's). RL writes one at every
            tenth of the steps before the end (nine at most: the SB3 model, SAC's replay buffer,
            the feature and proprio statistics, the validation so far); BC
            at every validation check but the last (weights, optimiser, random generator and
            data order, the checks so far), and a resumed BC run ends with the weights of an
            uninterrupted one.
    """

    env_id: str
    encoder: str
    algo: str
    out: Path
    seed: int = 0
    demos: Path | None = None
    num_demos: int | None = None
    demo_offset: int = 0
    num_val_demos: int = 0
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 256
    lr: float | None = None
    weight_decay: float = 0.0
    hidden_dims: tuple[int, ...] = (256, 256)
    image_size: int | None = None
    val_episodes: int = 0
    num_val_checks: int = 5
    augment_pad: int = 4
    augment_copies: int = 0
    augment_color: float = 0.15
    context: str = "none"
    feature_batch_size: int = 256
    cache_dir: Path | None = None
    rl_algorithm: str = "sac"
    num_envs: int = 1
    rl_norm_steps: int = 500
    rl_demo_share: float = 0.0
    rl_critic_input: str = "policy"
    device: str = "auto"
    progress: bool = True
    overwrite: bool = False
    resume: bool = False
    encoder_arch: str = DEFAULT_ENCODER_ARCH

    def __post_init__(self) -> None:
        check_bool_fields(self)
        if not isinstance(self.out, str | os.PathLike) or not os.fspath(self.out):
            raise ValueError(f"out must be a directory path, got {self.out!r}")
        # Paths arrive as strings from the CLI or JSON; store them as Path (frozen dataclass).
        for name in ("out", "demos", "cache_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "hidden_dims", _widths(self.hidden_dims))
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ValueError(f"env_id must be a non-empty gymnasium id, got {self.env_id!r}")
        if not isinstance(self.encoder, str) or not self.encoder:
            raise ValueError(
                "encoder must be a pretrain --out directory, pretrained:ENV_ID or one of "
                f"{BASELINE_ENCODERS}, got {self.encoder!r}"
            )
        if is_pretrained_spec(self.encoder):  # one spelling per encoder, for --resume
            object.__setattr__(self, "encoder", canonical_spec(self.encoder))
        if self.encoder_arch not in ENCODER_ARCHS:
            raise ValueError(
                f"encoder_arch must be one of {ENCODER_ARCHS}, got {self.encoder_arch!r}"
            )
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}, got {self.algo!r}")
        check_device_name(self.device)
        if self.rl_algorithm not in RL_ALGORITHMS:
            raise ValueError(
                f"rl_algorithm must be one of {RL_ALGORITHMS}, got {self.rl_algorithm!r}"
            )
        if self.algo == "bc" and self.demos is None:
            raise ValueError(
                "demos (--demos) is required for algo='bc' (a `collect --policy expert` dir)"
            )
        if self.algo == "rl" and self.encoder == "scratch":
            raise ValueError(
                "encoder='scratch' is supported with algo='bc' only; for RL use a frozen encoder "
                "(a pretrain directory, 'none') or 'state'"
            )
        if self.steps is not None and self.epochs is not None:
            raise ValueError(
                f"give steps or epochs, not both (steps={self.steps}, epochs={self.epochs})"
            )
        if self.algo == "rl" and self.epochs is not None:
            raise ValueError(f"epochs is a BC budget; for algo='rl' give steps (got {self.epochs})")
        _check_min("seed", self.seed, 0)
        if self.seed > MAX_SEED:  # NumPy's and torch's generators failed later, unnamed
            raise ValueError(f"seed must be <= {MAX_SEED} (2**32 - 1), got {self.seed}")
        _check_min("num_val_demos", self.num_val_demos, 0)
        _check_min("demo_offset", self.demo_offset, 0)
        _check_min("batch_size", self.batch_size, 1)
        _check_min("val_episodes", self.val_episodes, 0)
        _check_min("num_val_checks", self.num_val_checks, 1)
        _check_min("augment_pad", self.augment_pad, 0)
        _check_min("feature_batch_size", self.feature_batch_size, 1)
        _check_min("num_envs", self.num_envs, 1)
        _check_min("rl_norm_steps", self.rl_norm_steps, 1)
        for name in ("num_demos", "steps", "epochs", "image_size"):
            if getattr(self, name) is not None:
                _check_min(name, getattr(self, name), 1)
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError(f"hidden_dims must be positive widths, got {self.hidden_dims}")
        # inf passes "> 0" but turns the first update into NaN weights: finite, too.
        if self.lr is not None and not (_is_finite_positive(self.lr) and self.lr <= MAX_LR):
            raise ValueError(f"lr must be finite, > 0 and <= {MAX_LR:.3g}, got {self.lr!r}")
        decay = self.weight_decay
        if not (
            isinstance(decay, numbers.Real)
            and not isinstance(decay, bool)
            and math.isfinite(decay)
            and decay >= 0
        ):
            raise ValueError(f"weight_decay must be finite and >= 0, got {self.weight_decay!r}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in ("num_demos", "demo_offset"):
            value = getattr(self, name)
            if self.algo == "rl" and self.demos is None and value not in (None, 0):
                raise ValueError(
                    f"{name}={value}: RL without demos fits its statistics on random rollouts "
                    "and would ignore it"
                )
        if self.algo == "rl" and self.rl_algorithm == "ppo" and self.batch_size < 2:
            raise ValueError(  # SB3 asserts it, after the envs and statistics were made
                f"batch_size={self.batch_size}: PPO normalises advantages over a minibatch, "
                "which needs at least 2 samples"
            )
        ppo_budget = self.steps if self.steps is not None else DEFAULT_RL_STEPS
        rollout = PPO_MIN_ROLLOUT * self.num_envs
        if self.algo == "rl" and self.rl_algorithm == "ppo" and ppo_budget < rollout:
            raise ValueError(
                f"steps={ppo_budget}: PPO trains on whole rollouts of at least "
                f"{PPO_MIN_ROLLOUT} steps per env, {rollout} with num_envs={self.num_envs}; "
                "give at least that many steps"
            )
        # BC's checks also log the loss and save resume checkpoints; RL's only validate.
        unvalidated_rl = self.algo == "rl" and self.val_episodes == 0
        if unvalidated_rl and self.num_val_checks != defaults["num_val_checks"]:
            raise ValueError(
                f"num_val_checks={self.num_val_checks}: RL checks only its online validation, "
                "which is off (val_episodes=0), and would ignore it"
            )
        rl_with_demos = self.algo == "rl" and self.demos is not None
        if rl_with_demos and self.rl_norm_steps != defaults["rl_norm_steps"]:
            raise ValueError(
                f"rl_norm_steps={self.rl_norm_steps}: RL with demos fits its statistics on them "
                "and would ignore it"
            )
        if not (isinstance(self.rl_demo_share, (int, float)) and 0.0 <= self.rl_demo_share < 1.0):
            raise ValueError(f"rl_demo_share must be in [0, 1), got {self.rl_demo_share!r}")
        if self.rl_demo_share and (self.rl_algorithm != "sac" or self.demos is None):
            raise ValueError(
                f"rl_demo_share={self.rl_demo_share}: demonstrations are sampled into SAC's "
                f"replay buffer; give --demos and rl_algorithm 'sac' (got "
                f"{self.rl_algorithm!r}, demos {self.demos})"
            )
        self._check_critic_input()
        if self.cache_dir is not None and self.encoder_kind in ("scratch", "state"):
            raise ValueError(
                f"cache_dir={str(self.cache_dir)!r}: only a frozen pixel encoder's features are "
                f"cached (a pretrain directory, pretrained:ENV_ID or 'none'); encoder "
                f"{self.encoder!r} would ignore it"
            )
        if self.encoder_kind == "state" and self.encoder_arch != defaults["encoder_arch"]:
            raise ValueError(
                f"encoder_arch={self.encoder_arch!r}: the state oracle reads no pixels and "
                "would ignore it"
            )
        _check_min("augment_copies", self.augment_copies, 0)
        if not 0.0 <= self.augment_color < 1.0:
            raise ValueError(f"augment_color must be in [0, 1), got {self.augment_color}")
        copies = self.augment_copies > 0
        if copies and (self.encoder_kind in ("scratch", "state") or self.algo != "bc"):
            raise ValueError(
                f"augment_copies={self.augment_copies}: augmented copies of the demonstrations "
                "are for BC on a frozen pixel encoder (a pretrain directory, pretrained:ENV_ID "
                "or 'none'); "
                f"encoder {self.encoder!r} with algo {self.algo!r} would ignore them"
                + (
                    " (scratch shifts every step's frames itself)"
                    if self.encoder == "scratch"
                    else ""
                )
            )
        if copies and self.augment_pad == 0 and self.augment_color == 0.0:
            raise ValueError(
                f"augment_copies={self.augment_copies} with augment_pad=0 and augment_color=0: "
                "the copies would repeat the frames unchanged"
            )
        shifts = self.encoder_kind == "scratch" or copies
        if not shifts and self.augment_pad != defaults["augment_pad"]:
            raise ValueError(
                f"augment_pad={self.augment_pad}: only the scratch encoder and augment_copies "
                f"shift frames; encoder {self.encoder!r} would ignore it"
            )
        if not copies and self.augment_color != defaults["augment_color"]:
            raise ValueError(
                f"augment_color={self.augment_color}: only augment_copies recolours frames; "
                "set augment_copies too"
            )
        if self.image_size is not None and self.augment_pad >= self.image_size:
            raise ValueError(
                f"augment_pad={self.augment_pad} must be below image_size={self.image_size}"
            )
        if self.context not in POLICY_CONTEXTS:
            raise ValueError(f"context must be one of {POLICY_CONTEXTS}, got {self.context!r}")
        if self.context != "none" and (self.algo != "bc" or self.encoder_kind == "scratch"):
            raise ValueError(
                f"context={self.context!r}: the first frame's features are cached once per "
                "demonstration, so the context is for BC on a frozen encoder or the state; "
                f"encoder {self.encoder!r} with algo {self.algo!r} cannot take it"
            )
        for algo, names in ALGO_ONLY_FIELDS.items():
            unused = [f"{n}={getattr(self, n)!r}" for n in names if getattr(self, n) != defaults[n]]
            if algo != self.algo and unused:
                raise ValueError(
                    f"{', '.join(unused)}: only algo={algo!r} uses these; algo={self.algo!r} "
                    "would ignore them"
                )

    def _check_critic_input(self) -> None:
        """Refuse a critic input no learner here reads (BC's refusal is ALGO_ONLY_FIELDS')."""
        if self.rl_critic_input not in RL_CRITIC_INPUTS:
            raise ValueError(
                f"rl_critic_input must be one of {RL_CRITIC_INPUTS}, got {self.rl_critic_input!r}"
            )
        if self.rl_critic_input != "state" or self.algo != "rl":
            return
        if self.rl_algorithm != "sac":
            raise ValueError(
                f"rl_critic_input='state': the critics on the state are SAC's; rl_algorithm "
                f"{self.rl_algorithm!r} has none"
            )
        if self.encoder_kind == "state":
            raise ValueError(
                "rl_critic_input='state': the state oracle's actor and critics read the state "
                "already; give a frozen pixel encoder (a pretrain directory, pretrained:ENV_ID "
                "or 'none')"
            )

    @property
    def encoder_kind(self) -> str:
        """``"pretrained"`` for a directory or a shipped encoder, else the baseline name."""
        return self.encoder if self.encoder in BASELINE_ENCODERS else "pretrained"

    @property
    def learning_rate(self) -> float:
        """``lr``, or the algorithm's default."""
        if self.lr is not None:
            return self.lr
        return 1e-3 if self.algo == "bc" else 3e-4

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (paths as strings)."""
        values = dataclasses.asdict(self)
        for name in ("out", "demos", "cache_dir"):
            values[name] = None if values[name] is None else str(values[name])
        values["hidden_dims"] = list(self.hidden_dims)
        return values


def _check_min(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _widths(value: Any) -> tuple[int, ...]:
    """``hidden_dims`` as a tuple of ints: from a sequence of integers, or the command's
    ``"256,256"`` (a string is not taken as a sequence of digits)."""
    items = value.split(",") if isinstance(value, str) else value
    try:  # through str, so that 2.5 (and True) are refused rather than truncated
        widths = tuple(int(str(item).strip()) for item in items)
    except (TypeError, ValueError):
        widths = ()
    if not widths:
        raise ValueError(
            f"hidden_dims must be integer widths, e.g. (256, 256) or '256,256', got {value!r}"
        )
    return widths


def _is_finite_positive(value: Any) -> bool:
    """Whether ``value`` is a real number (not a bool, not NaN/inf) above zero."""
    return (
        isinstance(value, numbers.Real)  # NumPy's numbers too
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
