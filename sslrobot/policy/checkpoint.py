"""Policy directories: config and weights written atomically, and ``load_policy`` to act with them.

Layout of a policy directory::

    policy_config.json     what was trained, on what, how (``train_config``), checkpoints, metrics
    final.safetensors      every tensor of the network: encoder, normalisers, head (BC)
    best.safetensors       the checkpoint with the best validation score (BC, when validated)
    final_sb3.zip          the Stable-Baselines3 model (RL; its observation encoder is in
                           final.safetensors)
    best_sb3.zip           the SB3 model of the best validation check (RL, when validated;
                           the encoder is frozen, so it shares final.safetensors)
    checkpoints/           while training: what ``--resume`` continues from (removed at the end)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import warnings
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from sslrobot.policy.encoders import build_encoder
from sslrobot.policy.network import (
    BCNetwork,
    ObservationEncoder,
    freeze,
    policy_inputs,
    raw_features,
)
from sslrobot.utils.artifacts import POLICY, refuse_other_artifact
from sslrobot.utils.device import as_device
from sslrobot.utils.io import atomic_write, atomic_write_json

CONFIG_FILE = "policy_config.json"
FORMAT_VERSION = 1
CHECKPOINTS = ("final", "best")


def save_weights(path: Path, module: nn.Module) -> Path:
    """Write ``module``'s state dict as safetensors, atomically."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in module.state_dict().items()}
    data = save_safetensors(tensors)
    return atomic_write(path, lambda file: file.write(data))


def load_weights(path: Path, module: nn.Module) -> None:
    """Load safetensors weights into ``module`` (strict: every tensor present and used)."""
    if not path.is_file():
        raise ValueError(f"policy checkpoint {path} does not exist")
    try:
        tensors = load_safetensors(path.read_bytes())
    except SafetensorError as error:  # neither a ValueError nor an OSError: a traceback
        raise ValueError(f"policy checkpoint {path} is damaged: {error}") from error
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise ValueError(f"policy checkpoint {path} does not match its config: {error}") from error


#: Fields every policy config holds, checked on reading (a hand-edited or truncated file):
#: everything loading and evaluating a policy reads, so a missing one is named, not a
#: ``KeyError`` traceback; and those of each algorithm and of the encoder record.
REQUIRED_FIELDS = (
    "algo", "env_id", "obs_mode", "image_size", "action_dim", "encoder", "feature_dim",
    "proprio_dim", "seed", "checkpoints",
)  # fmt: skip
REQUIRED_BY_ALGO = {"bc": ("head",), "rl": ("rl_algorithm",)}
REQUIRED_ENCODER_FIELDS = ("kind", "name", "source")


#: Files a policy directory holds besides its config (BC weights, SB3 models), by checkpoint.
POLICY_FILES = tuple(name for c in CHECKPOINTS for name in (f"{c}.safetensors", f"{c}_sb3.zip"))


def check_policy_out(out: Path, overwrite: bool, resume: bool = False) -> None:
    """Refuse, before any work, an ``out`` that ``start_policy_dir`` must not clear: an
    encoder's directory, or (unless ``overwrite``) one holding a finished policy, which
    ``resume`` cannot continue either.

    Leftovers of an interrupted run (resume checkpoints without a config) are not a finished
    policy, but they hold its progress: training anew (which clears them) needs ``overwrite``,
    as ``collect`` and ``pretrain`` refuse to start over an interrupted run unasked.

    Raises:
        ValueError: naming ``out`` and what it holds.
    """
    refuse_other_artifact(out, POLICY)  # a file, under a file, a dataset's or an encoder's
    if resume and (out / CONFIG_FILE).is_file():
        raise ValueError(f"{out} holds a finished policy ({CONFIG_FILE}): nothing to resume")
    if not overwrite and (out / CONFIG_FILE).is_file():
        raise ValueError(
            f"{out} holds a trained policy ({CONFIG_FILE}); choose another --out, or pass "
            "--overwrite to replace it"
        )
    interrupted = out / CHECKPOINT_DIR / RESUME_STATE
    if not (overwrite or resume) and interrupted.is_file():
        raise ValueError(
            f"{out} holds an interrupted run's checkpoint ({interrupted}); pass --resume to "
            "continue it, or --overwrite to train anew and drop it"
        )


#: Where a BC or RL run keeps what ``--resume`` continues from, until it finishes.
CHECKPOINT_DIR = "checkpoints"
#: Written last at each resume checkpoint: names its files, the settings and the progress.
RESUME_STATE = "resume.json"
#: Config fields that may differ between a run and its resumption (how, not what, it trains;
#: ``out`` is where the checkpoint is found, wherever that directory now is).
RESUME_FREE_FIELDS = ("resume", "overwrite", "progress", "device", "cache_dir", "out")


class ResumeError(ValueError):
    """A resume checkpoint that cannot be continued: missing, made with other settings, or
    damaged. ``sslrobot run`` trains such a stage anew; the CLI names the reason."""


def read_checkpoint_file(path: Path) -> bytes:
    """The bytes of a file a resume checkpoint names (its best model); a missing one is a
    ``ResumeError``, so ``sslrobot run`` trains the stage anew instead of failing on it."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise ResumeError(
            f"{path}, which the resume checkpoint names, cannot be read ({error}); train anew "
            "with --overwrite"
        ) from error


#: The resume setting that holds the frozen encoder's weights' fingerprint.
ENCODER_WEIGHTS_SETTING = "encoder_weights"


def resume_settings(
    config: Any, encoder_fingerprint: str | None = None, pinned: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (a ``PolicyConfig``): every
    setting but how it runs, with the demonstrations' and encoder's paths resolved (a relative
    and an absolute spelling of one directory are the same setting), the frozen encoder's
    weights (``encoder_fingerprint``, ``ResolvedEncoder.describe``'s), which its path alone
    does not pin, and what else the run pins (``pinned``: BC's demonstration episodes, which
    a grown or recollected dataset at the same path would change)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in RESUME_FREE_FIELDS}
    for name in ("demos", "encoder"):
        value = settings.get(name)
        if isinstance(value, str) and Path(value).exists():
            settings[name] = str(Path(value).resolve())
    if encoder_fingerprint is not None:
        settings[ENCODER_WEIGHTS_SETTING] = encoder_fingerprint
    settings.update(pinned or {})
    return settings


def read_resume_state(
    out: Path,
    config: Any,
    encoder_fingerprint: str | None = None,
    pinned: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The last resume checkpoint's record in ``out``, checked against ``config``, the
    frozen encoder's weights and ``pinned`` (each only where the checkpoint recorded it: one
    written before it was is not).

    Raises:
        ResumeError: no checkpoint to resume, or one made with other settings (naming them).
    """
    path = out / CHECKPOINT_DIR / RESUME_STATE
    if not path.is_file():
        raise ResumeError(
            f"{out} holds no checkpoint to resume ({path} is missing); train without --resume"
        )
    try:
        state = json.loads(path.read_text())
        earlier = state["settings"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ResumeError(f"{path} is damaged ({error}); train anew with --overwrite") from error
    now = resume_settings(config, encoder_fingerprint, pinned)
    for name in (ENCODER_WEIGHTS_SETTING, *(pinned or {})):
        if name not in earlier:
            now.pop(name, None)
    # A setting added since the checkpoint was saved counts as its default then (demo_offset,
    # session 36): its interrupted runs were refused as "other settings (None -> 0)".
    defaults = {item.name: item.default for item in dataclasses.fields(config)}
    for name in [k for k in now if k not in earlier and now[k] == defaults.get(k, object())]:
        now.pop(name)
    changed = sorted(k for k in now if earlier.get(k) != now[k])
    if changed:
        described = ", ".join(f"{k} {earlier.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ResumeError(
            f"{out} was trained with other settings ({described}); resume with the same ones, "
            "or train anew with --overwrite"
        )
    threads = state.get("cpu_threads")
    if (
        isinstance(threads, int)
        and threads != torch.get_num_threads()
        and as_device(getattr(config, "device", "cpu")).type == "cpu"
    ):
        warnings.warn(
            f"--resume: {out} trained with {threads} CPU thread(s), this process has "
            f"{torch.get_num_threads()}: sums split over threads round otherwise, so it "
            "continues, but not bit for bit as the uninterrupted run would (set "
            f"OMP_NUM_THREADS={threads}, or torch.set_num_threads({threads}))",
            stacklevel=3,
        )
    return state


#: The files of resume checkpoints (BC's and RL's) in ``CHECKPOINT_DIR``, as glob patterns.
CHECKPOINT_FILE_PATTERNS = (
    RESUME_STATE,
    "bc_state_*.pt",
    "best_*.safetensors",
    "model_*.zip",
    "replay_buffer_*.pkl",
    "best_sb3_*.zip",
    "observation_encoder_*.safetensors",
    "continuation_*.json",
)
#: The temporaries a write of one of them killed midway leaves (``utils.io.temp_prefix``:
#: ``.NAME.`` then a random part and a suffix): a replay buffer's can be gigabytes.
CHECKPOINT_TEMP_PATTERNS = tuple(f".{pattern}.*" for pattern in CHECKPOINT_FILE_PATTERNS)
#: What else a policy run writes under ``out`` besides its weights and config: its atomic
#: writes' temporaries and logs (BC's CSV, SB3's CSV and TensorBoard events, a resumed run's
#: own folder), as glob patterns relative to ``out``.
RUN_FILE_PATTERNS = (
    *(f"{CHECKPOINT_DIR}/{pattern}" for pattern in CHECKPOINT_FILE_PATTERNS),
    *(f"{CHECKPOINT_DIR}/{pattern}" for pattern in CHECKPOINT_TEMP_PATTERNS),
    "logs/bc.csv",
    "logs/progress.csv",
    "logs/events.out.tfevents.*",
    "logs/resumed_at_*/progress.csv",
    "logs/resumed_at_*/events.out.tfevents.*",
)


def prune_checkpoints(folder: Path, keep: Collection[str | None]) -> None:
    """Remove the resume checkpoints' files in ``folder`` but ``keep`` (the checkpoint just
    written) and what killed writes of them left: the run's own files only, by name, so a
    user's file there stays."""
    for pattern in (*CHECKPOINT_FILE_PATTERNS, *CHECKPOINT_TEMP_PATTERNS):
        for path in folder.glob(pattern):
            if path.name not in keep and path.is_file():
                path.unlink()


def clear_run_files(out: Path, logs: bool = True) -> None:
    """Remove the checkpoints (and, with ``logs``, the logs) a policy run left in ``out``,
    file by file by the names runs give them, then the folders they leave empty: a folder of
    the same name holding anything else (``out`` may be a user's project directory) keeps it.
    """
    patterns = RUN_FILE_PATTERNS if logs else [p for p in RUN_FILE_PATTERNS if "logs/" not in p]
    folders = set()
    for pattern in patterns:
        for path in out.glob(pattern):
            if path.is_file():
                path.unlink()
                folders.add(path.parent)
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: something that is not the run's
            folder.rmdir()


def can_resume(out: Path) -> bool:
    """Whether ``out`` holds an interrupted run's resume checkpoint (and no finished policy)."""
    return (out / CHECKPOINT_DIR / RESUME_STATE).is_file() and not (out / CONFIG_FILE).is_file()


def start_policy_dir(out: Path) -> None:
    """Make ``out`` and clear a policy trained there before: its config first, so that a run
    interrupted before writing its own leaves no config pairing the old run's settings with
    this run's weights (checkpoints are overwritten during training, the config at the end).

    Only a policy's own files are removed (with an earlier run's checkpoints and logs,
    ``clear_run_files``); ``check_policy_out`` decided at the start of training that they may
    go.

    Raises:
        ValueError: ``out`` is a pretraining or encoder directory.
    """
    check_policy_out(out, overwrite=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).unlink(missing_ok=True)
    for name in POLICY_FILES:
        (out / name).unlink(missing_ok=True)
    clear_run_files(out)  # never mixed with this run's


def write_policy_config(out: Path, record: dict[str, Any]) -> Path:
    """Write ``policy_config.json`` atomically, with the format version."""
    return atomic_write_json(out / CONFIG_FILE, {"format_version": FORMAT_VERSION, **record})


def read_policy_config(policy_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``policy_config.json`` of a ``train-policy --out`` directory."""
    path = Path(policy_dir)
    config_path = path / CONFIG_FILE
    if path.is_file():
        raise ValueError(
            f"policy {path} is a file; give the directory `train-policy --out` made, which "
            f"holds {CONFIG_FILE}"
        )
    if not path.is_dir():
        raise ValueError(f"policy directory {path} does not exist (expected a train-policy --out)")
    if not config_path.is_file():
        raise ValueError(f"{path} is not a policy directory: {CONFIG_FILE} is missing")
    try:
        record = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path} is not valid JSON: {error}") from error
    if not isinstance(record, dict):
        raise ValueError(f"{config_path} must hold a JSON object, got {type(record).__name__}")
    version = record.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{config_path} has format_version {version!r}; this sslrobot reads {FORMAT_VERSION}"
        )
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    missing += [name for name in REQUIRED_BY_ALGO.get(record.get("algo"), ()) if name not in record]
    encoder = record.get("encoder")
    if isinstance(encoder, dict):
        missing += [f"encoder.{name}" for name in REQUIRED_ENCODER_FIELDS if name not in encoder]
    elif "encoder" in record:
        missing.append("encoder (an object)")
    if missing:
        raise ValueError(f"{config_path} lacks {missing}: not a whole policy config")
    return record


def build_obs_encoder(record: dict[str, Any]) -> ObservationEncoder:
    """The (untrained) observation encoder described by a policy config record."""
    encoder_record = record["encoder"]
    return ObservationEncoder(
        build_encoder(encoder_record),
        feature_dim=int(record["feature_dim"]),
        proprio_dim=int(record["proprio_dim"]),
        frozen=encoder_record["kind"] != "scratch",
        normalize_features=encoder_record["kind"] != "scratch",
        context=record.get("context", "none") == "first",  # absent before the option
    )


class Policy:
    """A trained policy that owns its encoder: ``policy(obs) -> action``.

    Deterministic: BC heads are deterministic, RL policies act with their mean action. A
    policy trained with ``context="first"`` keeps the features of its episode's first
    observation: call ``reset()`` before each episode (``run_episode`` does); a batch's rows
    are episodes that started together, and a batch of another size starts new ones.

    Attributes:
        record: The policy's ``policy_config.json``.
        checkpoint: ``"final"`` or ``"best"``.
        obs_mode: ``"pixels"`` (obs is a dict with ``pixels`` and ``proprio``) or ``"state"``.
    """

    def __init__(
        self,
        record: dict[str, Any],
        checkpoint: str,
        obs_encoder: ObservationEncoder,
        head: Callable[[torch.Tensor], np.ndarray],
        device: torch.device,
    ) -> None:
        self.record = record
        self.checkpoint = checkpoint
        self.obs_mode: str = record["obs_mode"]
        self.obs_encoder = obs_encoder
        self._head = head
        self.device = device
        self._first: torch.Tensor | None = None  # the episode's first features (context)

    def reset(self) -> None:
        """Start a new episode: its first observation becomes the context (if any)."""
        self._first = None

    @property
    def image_size(self) -> int:
        return int(self.record["image_size"])

    @property
    def env_id(self) -> str:
        return str(self.record["env_id"])

    def inputs(self, observations: Any) -> torch.Tensor:
        """Policy inputs (B, F + P) for a batch of observations (see ``policy_inputs``)."""
        self.check_observations(observations)
        if not self.obs_encoder.context:
            return policy_inputs(self.obs_encoder, observations, self.obs_mode, self.device)
        features, proprio = raw_features(self.obs_encoder, observations, self.obs_mode, self.device)
        if self._first is None or len(self._first) != len(features):
            self._first = features
        with torch.no_grad():
            return self.obs_encoder.from_features(torch.cat([features, self._first], -1), proprio)

    def check_observations(self, observations: Any) -> None:
        """Refuse a batch the policy was not trained on, naming what differs: float frames
        would be cast to near-black uint8 ones and acted on without a word, and a proprio or
        state of the wrong width fails deep in the normaliser.

        Raises:
            ValueError: naming the field, what it is and what the policy expects.
        """
        where = f"policy for {self.env_id} ({self.obs_mode} observations)"
        if self.obs_mode == "state":
            state = np.asarray(observations)
            width = int(self.record["feature_dim"])
            if state.ndim != 2 or state.shape[1] != width or state.dtype.kind not in "fiu":
                raise ValueError(
                    f"{where}: expected states as numbers of shape (B, {width}), got "
                    f"{state.dtype} {state.shape}"
                )
            return
        if not isinstance(observations, Mapping) or not {"pixels", "proprio"} <= set(observations):
            keys = sorted(observations) if isinstance(observations, Mapping) else None
            raise ValueError(
                f"{where}: expected a dict with 'pixels' and 'proprio', got "
                f"{type(observations).__name__}" + ("" if keys is None else f" with keys {keys}")
            )
        pixels, proprio = np.asarray(observations["pixels"]), np.asarray(observations["proprio"])
        size, width = self.image_size, int(self.record["proprio_dim"])
        if pixels.dtype != np.uint8 or pixels.shape[1:] != (size, size, 3):
            raise ValueError(
                f"{where}: expected 'pixels' uint8 (B, {size}, {size}, 3) as the env renders "
                f"them, got {pixels.dtype} {pixels.shape}"
            )
        if proprio.shape != (len(pixels), width):
            raise ValueError(
                f"{where}: expected 'proprio' of shape ({len(pixels)}, {width}), got "
                f"{proprio.shape}"
            )

    def act_batch(self, observations: Any) -> np.ndarray:
        """Actions (B, A) for a batch of observations."""
        return self._head(self.inputs(observations))

    def act(self, observation: Any) -> np.ndarray:
        """One action (A,) for one observation."""
        if self.obs_mode == "state" or not isinstance(observation, Mapping):
            batch: Any = np.asarray(observation)[None]  # a non-dict for pixels: refused next
        else:
            batch = {key: np.asarray(value)[None] for key, value in observation.items()}
        return self.act_batch(batch)[0]

    __call__ = act


def checkpoint_path(policy_dir: Path, record: dict[str, Any], checkpoint: str) -> Path:
    """Path of a named checkpoint's weights, with a clear error when it was not written."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    files = record.get("checkpoints", {})
    if checkpoint not in files:
        raise ValueError(
            f"policy {policy_dir} has no {checkpoint!r} checkpoint (it has {sorted(files)}); "
            "'best' needs validation during training: --val-episodes N (online), or for BC "
            "--num-val-demos N alone (validation loss)"
        )
    return policy_dir / files[checkpoint]


def load_policy(
    policy_dir: str | os.PathLike[str],
    checkpoint: str = "final",
    device: str | torch.device = "cpu",
) -> Policy:
    """Load a ``train-policy --out`` directory as a callable policy.

    Args:
        policy_dir: The policy directory.
        checkpoint: ``"final"`` or ``"best"``.
        device: Where to run the networks (``"auto"`` as ``--device auto``).

    Returns:
        A ``Policy``; ``policy(obs)`` gives one action, float32 (A,).

    Raises:
        ValueError: naming the path when it is not a policy, or lacks the checkpoint.
    """
    path = Path(policy_dir)
    record = read_policy_config(path)
    device = as_device(device)
    weights = checkpoint_path(path, record, checkpoint)
    obs_encoder = build_obs_encoder(record)
    if record["algo"] == "bc":
        network = BCNetwork(obs_encoder, int(record["action_dim"]), record["head"]["hidden_dims"])
        load_weights(weights, network)
        freeze(network).to(device)

        def head(inputs: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return network.head(inputs).cpu().numpy().astype(np.float32)

        return Policy(record, checkpoint, network.obs_encoder, head, device)
    from sslrobot.policy.rl import load_rl_head

    load_weights(weights, obs_encoder)
    freeze(obs_encoder).to(device)
    head_fn = load_rl_head(path, record, checkpoint, device)
    return Policy(record, checkpoint, obs_encoder, head_fn, device)
