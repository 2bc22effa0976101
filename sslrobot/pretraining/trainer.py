"""The pretraining loop: ``pretrain(config) -> output directory``.

One process or many (``torchrun``, DistributedDataParallel); deterministic on CPU for a seed:
initialisation comes from ``torch.manual_seed(seed)``, the batch order from ``(seed, step)``
(``ResumableBatchSampler``) and each step's augmentation from a generator seeded with
``(seed, step, rank)``. Nothing else draws random numbers, so a run resumed from a checkpoint
(weights, momentum targets, optimizer state) repeats the unbroken run bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import sslrobot
from sslrobot.data.look_twins import TWIN_PIXELS, LookTwinWindows
from sslrobot.pretraining import artifacts, checkpoint, distributed, plots
from sslrobot.pretraining.augment import (
    check_shift_pad,
    color_jitter,
    random_shift,
    stack_frames,
)
from sslrobot.pretraining.config import PretrainConfig
from sslrobot.pretraining.metrics_log import MetricsLog, read_metrics
from sslrobot.pretraining.objectives import USES_DECODER, total_loss
from sslrobot.pretraining.prefetch import Prefetcher
from sslrobot.pretraining.sampler import ResumableBatchSampler
from sslrobot.pretraining.world_model import WorldModel
from sslrobot.utils.artifacts import ENCODER, refuse_other_artifact
from sslrobot.utils.device import bfloat16_autocast, has_native_bfloat16, resolve_device
from sslrobot.utils.io import OUTPUT_LOCK, output_lock

_KEYS = ("pixels", "action")
#: Read as well when the decoder is conditioned on proprioception, or from a look twin.
_OPTIONAL_KEYS = ("proprio", TWIN_PIXELS)
#: Batch keys kept as uint8 frames (the others become float32).
_FRAME_KEYS = ("pixels", TWIN_PIXELS)
#: Checkpoint state key of the metrics accumulated since the last row of metrics.csv.
_LOG_INTERVAL = "log_interval"


class NonFiniteLossError(RuntimeError):
    """A loss or gradient became NaN/inf; the run stopped before updating the weights."""


def check_batch_fits(
    batch_size: int, world_size: int, num_windows: int, data: str | tuple[str, ...] | None = None
) -> None:
    """Refuse a step that would draw more windows than the training split holds.

    Such a batch repeats windows within a step (duplicates are false negatives for InfoNCE
    and add nothing else), and a huge ``--batch-size`` on a small dataset was only stopped by
    the out-of-memory killer. The sampler could serve it, so the check is here, where both
    numbers are first known.

    Raises:
        ValueError: naming both numbers and the largest batch that fits.
    """
    per_step = batch_size * world_size
    if per_step <= num_windows:
        return
    processes = f" ({batch_size} in each of {world_size} processes)" if world_size > 1 else ""
    names = data if isinstance(data, tuple) else (data,) if data else ()
    source = f" of {', '.join(map(str, names))}" if names else ""
    raise ValueError(
        f"batch_size {batch_size}: a step takes {per_step} windows{processes}, but the training "
        f"split{source} holds only {num_windows}; pass a smaller --batch-size "
        f"(at most {num_windows // world_size}; `sslrobot run`: --set pretrain_batch_size, "
        f"the total over processes, at most {num_windows}) or collect more episodes"
    )


def collate_windows(items: list[Mapping[str, Any]] | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Stack window dicts (or take a dataset's ready-made batch) into ``pixels``/``action``
    (and ``proprio`` and a look twin's frames where the windows hold them).

    A dataset that defines ``__getitems__`` returns a whole batch as one dict of arrays, which
    avoids per-window Python overhead; plain datasets return a list of window dicts.
    """
    first = items if isinstance(items, Mapping) else items[0]
    keys = _KEYS + tuple(key for key in _OPTIONAL_KEYS if key in first)
    if isinstance(items, Mapping):
        batch = {key: np.asarray(items[key]) for key in keys}
    else:
        batch = {key: np.stack([np.asarray(item[key]) for item in items]) for key in keys}
    out = {
        key: torch.from_numpy(
            batch[key] if key in _FRAME_KEYS else batch[key].astype(np.float32, copy=False)
        )
        for key in keys
    }
    return out


#: Settings of the process, not the config, that a run records and a resume may change
#: (``earlier_settings`` keeps those the steps before the resume ran with).
_RUN_SETTINGS = ("cpu_threads", "sslrobot_version", "torch_version")


class _BatchReader(Dataset):
    """Item ``indices`` is a whole batch: ``dataset.read_batch(indices)`` where the dataset has
    it (``WindowDataset`` reads windows straight into the batch arrays), else its windows."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, indices: list[int]) -> Any:
        read_batch = getattr(self.dataset, "read_batch", None)
        if read_batch is not None:
            return read_batch(indices)
        return [self.dataset[int(index)] for index in indices]


def close_batches(batches: Iterator[Any]) -> None:
    """Stop the prefetch thread or the DataLoader workers of an iterator from
    ``PretrainRun.batches``: the workers lived on until the iterator was collected, which a
    traceback holding the training loop's frame put off."""
    if isinstance(batches, Prefetcher):
        batches.close()
    shutdown = getattr(batches, "_shutdown_workers", None)  # torch's multi-process iterator
    if callable(shutdown):
        shutdown()


#: An odd 32-bit multiplier that spreads the run's seed over the low 32 bits of a step's seed.
_SEED_MIX = 0x9E3779B1


def _step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one step's augmentation draws on one rank.

    torch's CPU generator (mt19937) keeps only the low 32 bits of a seed, where ``seed *
    2**40`` has none: until session 25 every pretraining seed drew the same shifts, colours
    and decoded frames on CPU (CUDA's Philox keeps all 64). ``seed * _SEED_MIX`` puts the
    seed there too and is 0 for seed 0, so the default seed's draws, and the shipped encoders
    made with it, are unchanged.
    """
    return (seed * 2**40 + seed * _SEED_MIX + step * 2**12 + rank) % 2**63


#: Added to a step's seed for the contrastive positive's own augmentation (odd, so its low
#: 32 bits, all mt19937 keeps, differ), so that the window's draws stay as they were.
_POSITIVE_SEED_OFFSET = 0x5BD1E995
#: The same for ``fdm``'s target frames' own colour draw (``target_color_jitter``).
_TARGET_SEED_OFFSET = 0x27D4EB2F


def train_episode_ids(windows: Dataset) -> dict[str, list[int]]:
    """``{resolved directory: training episode ids}`` of a ``WindowDataset`` or of each part of
    a ``MixedWindowDataset`` (the episodes actually indexed, corrupt ones skipped)."""
    parts = getattr(windows, "parts", [windows])
    return {str(Path(part.root).resolve()): [int(i) for i in part.episode_ids] for part in parts}


def train_dataset_identities(windows: Dataset) -> list[dict[str, Any]]:
    """The identity of each data directory's dataset, in ``--data`` order: what lets a probe
    recognise the training episodes in a moved copy or a recollection of the data, whose path
    is not the recorded one."""
    from sslrobot.data.manifest import dataset_identity

    return [dataset_identity(part.manifest) for part in getattr(windows, "parts", [windows])]


def _check_window(
    item: Mapping[str, Any], steps: int, source: str, proprio: bool = False
) -> tuple[int, int, int]:
    """Validate one window against the contract; return (image_size, action_dim,
    proprio_dim), the last 0 unless ``proprio`` (the windows must hold it)."""
    pixels, action = np.asarray(item["pixels"]), np.asarray(item["action"])
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(
            f"{source}: window pixels must be uint8 (T, H, W, 3), got {pixels.dtype} {pixels.shape}"
        )
    if pixels.shape[0] != steps + 1 or action.ndim != 2 or action.shape[0] != steps:
        raise ValueError(
            f"{source}: windows must hold {steps + 1} frames and {steps} actions "
            f"(num_steps_ahead + frame_stack - 1 = {steps}), got pixels {pixels.shape} and "
            f"action {action.shape}"
        )
    if pixels.shape[1] != pixels.shape[2]:
        raise ValueError(f"{source}: frames must be square, got {pixels.shape[1:3]}")
    if not proprio:
        return pixels.shape[1], action.shape[1], 0
    if "proprio" not in item:
        raise ValueError(
            f"{source}: decoder_proprio needs windows with 'proprio', got {sorted(item)}"
        )
    values = np.asarray(item["proprio"])
    if values.ndim != 2 or values.shape[0] != steps + 1 or values.shape[1] < 1:
        raise ValueError(
            f"{source}: window proprio must be ({steps + 1}, P >= 1), got {values.shape}"
        )
    return pixels.shape[1], action.shape[1], values.shape[1]


class PretrainRun:
    """Builds everything a run needs and trains; ``pretrain`` is the one-call front end.

    Exposed as a class so tests (and the distributed test) can reach the model after training.
    """

    def __init__(
        self,
        config: PretrainConfig,
        dataset: Dataset | None = None,
        val_dataset: Dataset | None = None,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.progress = progress
        self.out = Path(config.out)
        self._writer_lock = contextlib.ExitStack()
        self.context = distributed.init_distributed(config.device)
        self._made_out: Path | None = None  # the first folder of out's path that it made
        self._made_lock = False
        try:
            self._setup(dataset, val_dataset)
        except BaseException:
            # A refused run leaves no trace: not its lock file in a directory it refused as
            # someone else's (removed while still held), nor an empty directory of its own.
            if self._made_lock:
                (self.out / OUTPUT_LOCK).unlink(missing_ok=True)
            self.close()
            if self._made_out is not None:  # the folders it made, up to the first of them
                for folder in (self.out, *self.out.parents):
                    with contextlib.suppress(OSError):
                        folder.rmdir()
                    if folder == self._made_out:
                        break
            raise

    # -- setup -----------------------------------------------------------------------------

    def _setup(self, dataset: Dataset | None, val_dataset: Dataset | None) -> None:
        config = self.config
        self.device = resolve_device(config.device, self.context.local_rank)
        if self.device.type == "cuda":  # the DataLoader's pin-memory thread takes the current
            torch.cuda.set_device(self.device)  # device: GPU 0 for --device cuda:1 otherwise
        self.amp = config.amp if config.amp is not None else has_native_bfloat16(self.device)
        if self.amp and self.device.type != "cuda":
            raise ValueError(
                f"amp (bfloat16 autocast) is supported on CUDA only, not {self.device}"
            )
        weights = config.objective_weights
        if not weights and config.steps > 0:
            raise ValueError(
                f"objective 'none' trains nothing; pass --steps 0 (got steps={config.steps}) to "
                "write the randomly initialised encoder"
            )
        if weights and config.steps == 0 and self.context.rank == 0:
            warnings.warn(
                f"objective {config.objective!r} with steps 0 writes a randomly initialised "
                f"encoder labelled {config.objective!r}, and whatever uses it will carry that "
                "label; --objective none --steps 0 is the random encoder",
                stacklevel=2,
            )
        self._check_out_dir()
        if not self.resuming:
            config.refuse_repeated_data()
            config.refuse_settings_the_objective_ignores()
        distributed.barrier(self.context)

        self.dataset, self.val_dataset = self._datasets(dataset, val_dataset)
        if weights and config.steps > 0:  # a random init (steps 0) never draws a batch
            check_batch_fits(
                config.batch_size, self.context.world_size, len(self.dataset), config.data
            )
        #: Per data directory (resolved path), the training split's episode ids; None when
        #: the windows came as an object.
        self.train_episode_ids = train_episode_ids(self.dataset) if dataset is None else None
        self.train_dataset_identities = (
            train_dataset_identities(self.dataset) if dataset is None else None
        )
        self._refuse_ranks_of_other_windows()
        source = str(config.data or type(self.dataset).__name__)
        first = self.dataset[0]
        image_size, action_dim, proprio_dim = _check_window(
            first, config.window_steps, source, config.decoder_proprio
        )
        self._check_look_twin(first, source)
        self._check_transport_pairs()
        self.model_config = config.world_model_config(action_dim, image_size, proprio_dim)
        # Windows per batch without context, as WorldModel._blind_windows counts them (0.29 x
        # 100 is 28.999999999999996 in floating point: 29, not 28).
        blind = round(config.batch_size * config.context_dropout, 9)
        conditioned = [n for n in ("decoder_proprio", "decoder_appearance") if getattr(config, n)]
        if conditioned and "recon" not in weights and int(blind) == 0:
            # Only frames decoded without context read the condition: with none the option
            # does nothing (and under DDP its unused weights stop the first step).
            raise ValueError(
                f"{conditioned[0]} conditions the frames decoded without context, and "
                f"context_dropout={config.context_dropout} of {config.batch_size} windows per "
                "process leaves none: raise context_dropout or the batch, or drop the option"
            )
        if config.augment == "shift":
            check_shift_pad("shift_pad", config.shift_pad, image_size)
        if "future" in config.objective_weights and blind != int(blind):
            warnings.warn(
                f"context_dropout={config.context_dropout} of a batch of {config.batch_size} "
                f"windows is {blind:g}: {int(blind)} of each batch "
                f"({int(blind) / config.batch_size:.0%}) are decoded without context",
                stacklevel=3,
            )
        reads_keypoints = config.decoder.heatmaps or config.decoder.keypoint_skip
        if reads_keypoints and "future" in weights and config.transition_norm:
            warnings.warn(
                "this decoder reads latents as keypoint coordinates, but 'future' decodes "
                "rolled latents, which the transition's LayerNorm re-centres and re-scales "
                "into another space; --transition-without-norm keeps them coordinates",
                stacklevel=3,
            )
        torch.manual_seed(config.seed)
        self.model = WorldModel(self.model_config).to(self.device)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        # The fused kernel updates all weights in one call (on CPU ~4x less time than the
        # per-tensor loop); it exists for CPU and CUDA.
        fused = True if self.device.type in ("cpu", "cuda") else None
        self.optimizer = (
            torch.optim.AdamW(
                self.trainable, lr=config.lr, weight_decay=config.weight_decay, fused=fused
            )
            if weights
            else None
        )
        self.step = 0
        self.last_checkpoint: Path | None = None
        # Per-metric sums and step count since the last metrics row: checkpointed, so a
        # resumed run's first row averages the same steps as the uninterrupted run's.
        self._interval_sums: dict[str, torch.Tensor] = {}
        self._interval_steps = 0
        #: Devices the run computed on before a resume moved it (``pretrain_config.json``).
        self._earlier_devices: list[dict[str, Any]] = []
        #: Thread counts and versions it ran with before a resume changed them, each with the
        #: step it resumed from: the record's own are this process's only.
        self._earlier_settings: list[dict[str, Any]] = []
        if self.resuming:
            self._resume()
        # Each rank looks for the checkpoint in its own --out: on machines that do not share
        # it, one rank would start over with fresh Adam moments while another continues, and
        # their weights drift apart under the same averaged gradients.
        first, last = distributed.step_range(self.step, self.context, self.device)
        if first != last:
            raise ValueError(
                f"--resume: the ranks found checkpoints at different steps ({first} to {last}) "
                f"in {self.out}; every rank must see the same --out (a filesystem shared by "
                "all machines)"
            )
        self.ddp: DistributedDataParallel | None = None
        if self.context.enabled and weights:
            # A 1x1 convolution's gradient comes back with other strides on its size-1 dims,
            # which DDP's literal comparison reports on every step; the layouts are the same.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
            self.ddp = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                gradient_as_bucket_view=True,
            )

    def _refuse_ranks_of_other_windows(self) -> None:
        """Every rank indexes its data itself: one that skipped a damaged episode, saw one
        more a concurrent ``collect --resume`` committed, or read another node's copy drew
        other windows under the same indices, and the ranks' batches overlapped or missed
        windows without a word."""
        # The episode ids of each data directory, in order, not its path: a node's copy of
        # the data may lie elsewhere.
        ids = json.dumps(list((self.train_episode_ids or {}).values()), default=str)
        digest = int.from_bytes(hashlib.sha256(ids.encode()).digest()[:6], "big")  # < 2**53
        if distributed.differs_across_ranks([len(self.dataset), digest], self.context, self.device):
            raise ValueError(
                f"the ranks indexed other training windows of "
                f"{self.config.data or type(self.dataset).__name__} (rank "
                f"{self.context.rank}: {len(self.dataset)} windows): give every rank the same "
                "data, unchanged while the run starts"
            )

    def _check_out_dir(self) -> None:
        # A file, a path under one, or a dataset's or policy's directory: named, before the
        # advice below (--resume) would write an encoder among their files.
        refuse_other_artifact(self.out, ENCODER)
        if self.context.is_main:
            made_out = next(
                (p for p in (*reversed(self.out.parents), self.out) if not p.exists()), None
            )
            made_lock = not (self.out / OUTPUT_LOCK).exists()
            # Held until close(), from before the directory is judged: taken only in train(),
            # a job requeued while the first still ran passed these checks and loaded a
            # checkpoint, then (the first one finished) took the lock, deleted the finished
            # weights and trained them again from that checkpoint.
            self._writer_lock.enter_context(output_lock(self.out, "sslrobot pretrain"))
            self._made_out, self._made_lock = made_out, made_lock  # (once it is ours)
        self.resuming = False
        if self.config.resume:
            if checkpoint.latest_checkpoint_path(self.out / artifacts.CHECKPOINTS) is not None:
                self.resuming = True
                return
            if (self.out / artifacts.ENCODER_WEIGHTS).exists():
                raise FileExistsError(
                    f"--resume: {self.out} holds a finished run without checkpoints; choose "
                    "another --out"
                )
            # Interrupted before its first checkpoint: nothing to continue from, and only this
            # command's own files to start over among (a directory of anything else was
            # refused without --resume, and --resume wrote an encoder among its files).
            own = {
                artifacts.PRETRAIN_CONFIG, artifacts.CHECKPOINTS, artifacts.METRICS,
                artifacts.TENSORBOARD, artifacts.PREDICTIONS, artifacts.KEYPOINTS,
                artifacts.LOSS_CURVE, artifacts.ENCODER_CONFIG,
                artifacts.MODEL_WEIGHTS,  # a run killed between writing its two weight files
            }  # fmt: skip
            others = sorted(
                item.name
                for item in (self.out.iterdir() if self.out.is_dir() else ())
                if item.name not in own and not item.name.startswith(".")  # temp leftovers
            )
            if others:
                raise FileExistsError(
                    f"--resume: {self.out} holds no pretraining to continue but other files "
                    f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}); choose "
                    "another --out"
                )
            warnings.warn(
                f"--resume: no checkpoint in {self.out / artifacts.CHECKPOINTS}; starting at "
                "step 0",
                stacklevel=4,
            )
        elif self.out.exists() and (
            not self.out.is_dir() or any(p.name != OUTPUT_LOCK for p in self.out.iterdir())
        ):
            raise FileExistsError(
                f"output directory {self.out} is not empty; pass --resume to continue the run "
                "in it, or choose another --out"
            )

    def _datasets(
        self, dataset: Dataset | None, val_dataset: Dataset | None
    ) -> tuple[Dataset, Dataset | None]:
        config = self.config
        if dataset is not None:
            return dataset, val_dataset
        if config.data is None:
            raise ValueError(
                "pass a dataset directory (--data DIR) or a dataset object (to resume a run "
                "with its saved settings from Python: PretrainConfig.resumed(out))"
            )
        from sslrobot.data.windows import open_windows

        arrays = _KEYS + (("proprio",) if config.decoder_proprio else ())  # all a step reads

        def windows(split: str) -> Dataset:
            # Every byte's CRC once at the start (0.3 s more for the default Reach stream's
            # 235 MB from the page cache, ad hoc): the memory-mapped reads of training skip
            # it, and a bit flip would otherwise train unseen.
            return open_windows(
                config.data,
                arrays=arrays,
                num_steps=config.window_steps,
                split=split,
                val_fraction=config.val_fraction,
                seed=config.episode_split_seed,
                verify_checksums=True,
            )

        train = windows("train")
        if config.look_target_data is not None:
            train = LookTwinWindows(train, config.look_target_data, verify_checksums=True)
        if (
            val_dataset is None
            and config.image_every
            and (config.objective_weights.keys() & USES_DECODER or self._draws_keypoints)
        ):
            try:
                val_dataset = windows("val")
            except ValueError as error:  # e.g. too few episodes for a validation split
                warnings.warn(
                    f"no validation windows ({error}); the strips show training windows",
                    stacklevel=3,
                )
            else:  # outside the try: a val episode missing from the twin is an error
                if config.look_target_data is not None:
                    val_dataset = LookTwinWindows(
                        val_dataset, config.look_target_data, verify_checksums=True
                    )
        return train, val_dataset

    @property
    def _pairs_windows(self) -> bool:
        """Whether ``transport`` draws each window's frame from another window's (batch
        pairs), which asks the windows of a batch to be aligned and alike in colour."""
        config = self.config
        return "transport" in config.objective_weights and config.transport_pairs == "batch"

    def _check_transport_pairs(self) -> None:
        """``transport_pairs="batch"`` draws one episode's frame from another's, which works
        only where the episodes share one scene and background: the frames ``transport``
        draws (the look twin's, or the data's own) must come from one env made with
        ``visual_preset="none"``, and, the data's own, without a colour draw per window.
        Windows given as an object without a manifest are trusted."""
        config = self.config
        if not self._pairs_windows:
            return
        from sslrobot.data.look_twins import LOOK_ARGUMENT

        twin = getattr(self.dataset, "twin", None)
        if twin is None and config.color_jitter:
            raise ValueError(
                f"transport_pairs='batch' draws each window's frame from another window's, "
                f"which color_jitter={config.color_jitter} recolours apart; set it to 0, or "
                "draw the look twin's frames (--look-target-data), which get no colour draw"
            )
        shown = [twin] if twin is not None else getattr(self.dataset, "parts", [self.dataset])
        described = [(p, p.manifest) for p in shown if getattr(p, "manifest", None) is not None]
        envs = sorted({str(manifest.get("env_id")) for _, manifest in described})
        if len(envs) > 1:
            raise ValueError(
                f"transport_pairs='batch' draws each window's frame from another window's, "
                f"so the windows must show one scene; the data mixes {envs}"
            )
        from sslrobot.envs import registered_camera_moves

        if envs and registered_camera_moves(envs[0]):
            raise ValueError(
                f"transport_pairs='batch' draws each window's frame from another episode's, so "
                f"the frames need one background across episodes; {envs[0]}'s camera moves "
                "with the robot, so no two episodes share one: use --transport-pairs episode"
            )
        for part, manifest in described:
            look = (manifest.get("env_kwargs") or {}).get(LOOK_ARGUMENT, "the env's default")
            if look == "none":
                continue
            where = getattr(part, "root", "the data")
            fix = (
                "collect the twin with --visual-preset none"
                if twin is not None
                else "pass --look-target-data with the same collection in --visual-preset none"
            )
            raise ValueError(
                f"transport_pairs='batch' draws each window's frame from another episode's, so "
                f"the frames it draws need one background across episodes; {where} was "
                f"collected with {LOOK_ARGUMENT}={look!r} (colours, light, camera and "
                f"distractors may vary per episode): {fix}, or use --transport-pairs episode"
            )

    def _check_look_twin(self, window: Mapping[str, Any], source: str) -> None:
        """The windows hold a look twin's frames exactly when the config names one, and the
        twin of windows given as an object is the one it names (the probe trusts the name)."""
        twin = self.config.look_target_data
        if twin is not None and TWIN_PIXELS not in window:
            raise ValueError(
                f"look_target_data={twin!r}: the windows given ({source}) hold no look twin's "
                "frames; pass the data directory instead (PretrainConfig.data), or "
                "LookTwinWindows"
            )
        if twin is None and TWIN_PIXELS in window:
            raise ValueError(
                f"the windows given ({source}) hold a look twin's frames, which this run would "
                "not read: set look_target_data to the twin's directory"
            )
        given = getattr(self.dataset, "twin_root", None)
        if twin is not None and given is not None and Path(given).resolve() != Path(twin).resolve():
            raise ValueError(f"look_target_data={twin!r}, but the windows given pair with {given}")

    @property
    def look_twin_identity(self) -> dict[str, Any] | None:
        """The look twin's dataset identity (its episodes and look), or None without one."""
        twin = getattr(self.dataset, "twin", None)
        if twin is None:
            return None
        from sslrobot.data.manifest import dataset_identity

        return dataset_identity(twin.manifest)

    def _resume(self) -> None:
        saved_config = artifacts.read_config_section(self.out, "pretrain", PretrainConfig.from_dict)
        mismatches = self.config.resume_mismatches(saved_config)
        if mismatches:
            raise ValueError(
                "--resume needs the settings of the run being resumed; these differ: "
                + "; ".join(mismatches)
            )
        # ``data`` may name a moved copy, not other windows: their count is the cheap check
        # (a changed data path alone used to resume silently on another task's stream).
        saved = artifacts.read_json(self.out / artifacts.PRETRAIN_CONFIG, "pretraining config")
        ranks = saved.get("world_size", self.context.world_size)
        if ranks != self.context.world_size:  # the data order continues per global sample
            raise ValueError(
                f"--resume: the run in {self.out} trained in {ranks} process(es), this one has "
                f"{self.context.world_size}; resume with the same number of processes"
            )
        now = self.train_episode_ids
        # In --data order, not by path: the data may have moved, not changed. The dict is
        # saved with sorted keys, so the order is kept in a list of its own (since session
        # 17; before, the lists are compared whatever their order).
        ordered = saved.get("train_episode_id_lists")
        recorded = saved.get("train_episode_ids")
        if now is None or (ordered is None and recorded is None):
            same = True
        elif ordered is not None:
            same = ordered == list(now.values())
        else:
            same = sorted(recorded.values()) == sorted(now.values())
        if not same:
            raise ValueError(
                f"--resume: the run in {self.out} trained on other episodes than the data "
                f"given ({self.config.data}) now splits into training (the dataset grew or "
                "changed since); resume with the data it started on"
            )
        # Which episodes, not only how many: a recollection with another seed, task or look
        # has the same ids and windows (a move or a copy keeps the identity).
        identities = saved.get("train_dataset_identities")
        current = self.train_dataset_identities
        if identities is not None and current is not None and identities != current:
            changed = sorted(
                {k for old, new in zip(identities, current, strict=False) for k in old
                 if old.get(k) != new.get(k)}
                | ({"number of datasets"} if len(identities) != len(current) else set())
            )  # fmt: skip
            raise ValueError(
                f"--resume: the run in {self.out} trained on other data than "
                f"{self.config.data} (its {', '.join(changed)} differ); resume with the data "
                "it started on"
            )
        recorded_twin, twin = saved.get("look_twin_identity"), self.look_twin_identity
        if recorded_twin is not None and twin is not None and recorded_twin != twin:
            changed = sorted(k for k in recorded_twin if recorded_twin[k] != twin.get(k))
            raise ValueError(
                f"--resume: the run in {self.out} took its targets from another look twin than "
                f"{self.config.look_target_data} (its {', '.join(changed)} differ); resume "
                "with the twin it started on"
            )
        windows = saved.get("num_train_windows")
        if windows is not None and windows != len(self.dataset):
            raise ValueError(
                f"--resume: the run in {self.out} trained on {windows} windows, the data given "
                f"({self.config.data or type(self.dataset).__name__}) hold {len(self.dataset)}; "
                "resume with the same dataset (it may have moved, not changed)"
            )
        threads = saved.get("cpu_threads")
        if (
            threads is not None
            and self.device.type == "cpu"
            and threads != torch.get_num_threads()
            and self.context.rank == 0
        ):
            warnings.warn(
                f"--resume: the run in {self.out} trained with {threads} CPU thread(s) per "
                f"process, this one has {torch.get_num_threads()}: sums split over threads "
                "round otherwise, so it continues, but not bit for bit as the uninterrupted "
                f"run would (--threads {threads} would)",
                stacklevel=4,
            )
        trained_on = (saved.get("device_type"), saved.get("amp"))
        self._earlier_devices = list(saved.get("earlier_devices") or [])
        moved = trained_on[0] is not None and trained_on != (self.device.type, bool(self.amp))
        if moved:  # the record keeps where the steps before this resume were computed
            self._earlier_devices.append({"device_type": trained_on[0], "amp": trained_on[1]})
        if moved and self.context.rank == 0:
            warnings.warn(
                f"--resume: the run in {self.out} trained on {trained_on[0]} (bfloat16 "
                f"autocast {'on' if trained_on[1] else 'off'}), this one runs on "
                f"{self.device.type} ({'on' if self.amp else 'off'}): its augmentation draws "
                "and rounding differ, so it continues, but not as the uninterrupted run would",
                stacklevel=4,
            )
        path = checkpoint.latest_checkpoint_path(self.out / artifacts.CHECKPOINTS)
        loaded = checkpoint.load_checkpoint(path)
        if loaded.step > self.config.steps:
            raise ValueError(
                f"checkpoint {path} is at step {loaded.step}, past steps={self.config.steps}"
            )
        artifacts.load_state(self.model, loaded.model_state, path / checkpoint.WEIGHTS)
        if self.optimizer is not None:
            if loaded.optimizer_state is None:  # fresh Adam moments would break bit-for-bit
                raise ValueError(
                    f"checkpoint {path} has no optimizer state; it cannot continue this run "
                    "exactly (start anew without --resume)"
                )
            self.optimizer.load_state_dict(loaded.optimizer_state)
        self.step = loaded.step
        self.last_checkpoint = path
        if self.context.is_main:
            checkpoint.tidy_after_resume(path.parent, path, self.config.keep_checkpoints)
        self._earlier_settings = list(saved.get("earlier_settings") or [])
        before = {name: saved.get(name) for name in _RUN_SETTINGS}
        now = self._run_settings()
        if any(before[name] is not None and before[name] != now[name] for name in before):
            self._earlier_settings.append({**before, "until_step": loaded.step})
        interval = loaded.state.get(_LOG_INTERVAL) or {"sums": {}, "steps": 0}
        self._interval_sums = {  # float32 values, exact through JSON's doubles
            name: torch.tensor(value, dtype=torch.float32, device=self.device)
            for name, value in interval["sums"].items()
        }
        self._interval_steps = int(interval["steps"])

    # -- one step --------------------------------------------------------------------------

    def to_device(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Move a collated batch to the device: pixels (B, L+1, H, W, 3), actions (B, L, A),
        proprio (B, L+1, P) when the decoder is conditioned on it, and the look twin's frames
        (B, L+1, H, W, 3) when the run takes its targets from one (else None)."""
        non_blocking = self.device.type == "cuda"
        pixels = batch["pixels"].to(self.device, non_blocking=non_blocking)
        actions = batch["action"].to(self.device, non_blocking=non_blocking)
        proprio = twin = None
        if self.config.decoder_proprio:
            proprio = batch["proprio"].to(self.device, non_blocking=non_blocking)
        if self.config.look_target_data is not None and TWIN_PIXELS in batch:  # _setup checks
            twin = batch[TWIN_PIXELS].to(self.device, non_blocking=non_blocking)  # training's
        return pixels, actions, proprio, twin

    def augment(
        self,
        pixels: torch.Tensor,
        actions: torch.Tensor,
        proprio: torch.Tensor | None,
        twin: torch.Tensor | None,
        step: int,
    ) -> tuple[
        torch.Tensor,
        torch.Tensor,
        torch.Tensor | None,
        torch.Tensor | None,
        torch.Tensor | None,
        torch.Tensor | None,
        torch.Tensor | None,
    ]:
        """Stack frames, random-shift, and pick the frames to decode, for global ``step``.

        The window's frames share one shift and colour draw (future frames stay predictable
        from the context frame); with ``transport``'s batch pairs every window shares the
        shift, so that a window's frame can be drawn from another's. ``contrastive`` gets its
        positive, o_{t+K}, augmented with draws of its own, as ATC does: sharing the anchor's,
        the crop offset and the colour gains alone would pick the positive out of the batch.
        With ``target_color_jitter``, ``fdm``'s target frames get a colour draw of their own on
        top of the window's. A look twin's frames (``look_target_data``) take the window's
        shift and no colour draw: they are the targets, in their one look.

        Returns:
            pixels (B, K+1, H, W, 3S), actions (B, K, A), proprio (B, K+1, P) or None,
            decode_index (B, n) or None, the contrastive positive (B, H, W, 3S) or None,
            fdm's recoloured targets o_{t+1}..o_{t+K} (B, K, H, W, 3S) or None, the twin's
            frames (B, K+1, H, W, 3S) or None.
        """
        config = self.config
        stack = config.encoder.frame_stack
        pixels = stack_frames(pixels, stack)  # (B, K+1, H, W, 3S)
        if twin is not None:
            twin = stack_frames(twin, stack)
        actions = actions[:, stack - 1 :]  # (B, K, A)
        if proprio is not None:
            proprio = proprio[:, stack - 1 :]  # (B, K+1, P): each stacked frame's newest
        seed = _step_seed(config.seed, step, self.context.rank)
        positive = None
        if "contrastive" in self.model_config.objective:
            own = torch.Generator(device=self.device).manual_seed(
                (seed + _POSITIVE_SEED_OFFSET) % 2**63
            )
            # o_{t+K} as stored, before the window's draws (a look twin's: no colour draw)
            positive = (pixels if twin is None else twin)[:, -1:]
            if config.augment == "shift":
                positive = random_shift(positive, config.shift_pad, own)
            if twin is None:
                positive = color_jitter(positive, config.color_jitter, own)
            positive = positive[:, 0]
        generator = torch.Generator(device=self.device).manual_seed(seed)
        # transport's batch pairs draw one window's frame from another's: one shift for all
        shared = self._pairs_windows
        if config.augment == "shift" and twin is not None:  # one shift (a draw per window)
            both = torch.cat([pixels, twin], dim=-1)
            both = random_shift(both, config.shift_pad, generator, per_batch=shared)
            pixels, twin = both.split(pixels.shape[-1], dim=-1)
        elif config.augment == "shift":
            pixels = random_shift(pixels, config.shift_pad, generator, per_batch=shared)
        pixels = color_jitter(pixels, config.color_jitter, generator)  # 0: no draw, no change
        decode_index = None
        if "future" in self.model_config.objective:
            b, horizon = actions.shape[:2]
            order = torch.rand(b, horizon, generator=generator, device=self.device).argsort(dim=1)
            decode_index = order[:, : config.decoded_steps]  # (B, n) distinct k - 1
        fdm_targets = None
        if config.target_color_jitter:  # a generator of its own: the window's draws unchanged
            own = torch.Generator(device=self.device).manual_seed(
                (seed + _TARGET_SEED_OFFSET) % 2**63
            )
            targets = pixels if twin is None else twin
            fdm_targets = color_jitter(targets[:, 1:], config.target_color_jitter, own)
        return pixels, actions, proprio, decode_index, positive, fdm_targets, twin

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimisation step on a collated batch (data path included); detached metrics."""
        return self.update(*self.augment(*self.to_device(batch), step=self.step))

    def update(
        self,
        pixels: torch.Tensor,
        actions: torch.Tensor,
        proprio: torch.Tensor | None,
        decode_index: torch.Tensor | None,
        positive: torch.Tensor | None = None,
        fdm_targets: torch.Tensor | None = None,
        look_targets: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Forward, backward, finiteness check, optimizer step, EMA (the model's own work).

        Args:
            pixels: Augmented uint8 windows on the device, (B, K+1, H, W, 3S).
            actions: (B, K, A) on the device.
            proprio: (B, K+1, P) on the device for a proprio-conditioned decoder, or None.
            decode_index: (B, n) frames to decode for ``future``, or None.
            positive: ``contrastive``'s o_{t+K}, augmented on its own (B, H, W, 3S), or None.
            fdm_targets: ``fdm``'s target frames recoloured on their own (B, K, H, W, 3S), or
                None (the window's own).
            look_targets: The look twin's frames of the windows (B, K+1, H, W, 3S), shifted
                alike, or None (``WorldModel.forward``).

        Returns:
            Detached scalars: ``loss``, ``loss_<objective>``, ``grad_norm``, ``latent_std``.
        """
        module = self.ddp if self.ddp is not None else self.model
        with bfloat16_autocast(self.device, self.amp):
            losses, metrics = module(
                pixels, actions, decode_index, proprio, positive, fdm_targets, look_targets
            )
        total = total_loss(losses, self.model_config.objective)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(  # MPS has no foreach kernels
            self.trainable, self.config.grad_clip or math.inf, foreach=self.device.type != "mps"
        )
        bad = ~(torch.isfinite(total) & torch.isfinite(grad_norm))
        if distributed.any_rank(bad, self.context, self.device):
            self._raise_non_finite(losses, total, grad_norm)
        self.optimizer.step()
        self.model.ema_update()
        out = {f"loss_{name}": loss.detach() for name, loss in losses.items()}
        out["loss"] = total.detach()
        out["grad_norm"] = grad_norm.detach()  # already global: clipped after the all-reduce
        out.update({name: value.detach() for name, value in metrics.items()})
        # The logged values are the global batch's (rank 0 used to log its own share's), as
        # means over the ranks: exact for the losses and gradient norm, while latent_std is
        # the mean of each rank's own standard deviation, not the whole batch's.
        names = list(out)
        means = distributed.mean_over_ranks(torch.stack([out[n].float() for n in names]))
        return dict(zip(names, means.unbind(), strict=True))

    def _raise_non_finite(
        self, losses: dict[str, torch.Tensor], total: torch.Tensor, grad_norm: torch.Tensor
    ) -> None:
        values = ", ".join(f"pretrain/loss_{n}={v.item():.4g}" for n, v in losses.items())
        kept = (
            f"the last good checkpoint is {self.last_checkpoint}; --resume continues from it "
            "(to this same step: resuming is exact)"
            if self.last_checkpoint is not None
            else "no checkpoint was written before it"
        )
        raise NonFiniteLossError(
            f"non-finite loss or gradient at step {self.step + 1} (rank {self.context.rank}: "
            f"pretrain/loss={total.item():.4g}, {values}, grad_norm={grad_norm.item():.4g}); "
            f"stopped before updating the weights, {kept}. Start again in a new --out with a "
            "lower --lr, or check the data for NaN actions."
        )

    # -- the loop --------------------------------------------------------------------------

    def train(self) -> Path:
        """Train up to ``config.steps`` and write the output directory; returns its path."""
        config, main = self.config, self.context.is_main
        start = self.step
        keys = self._metric_keys()
        log = None
        if main:  # the writer lock is held since _check_out_dir
            if start < config.steps:
                # A finished run extended to more steps: its weights would otherwise stand,
                # under a config naming the new steps, as the result of a killed extension.
                for name in (artifacts.ENCODER_WEIGHTS, artifacts.MODEL_WEIGHTS):
                    (self.out / name).unlink(missing_ok=True)
            self._write_config()
            log = MetricsLog(self.out, keys, start if self.resuming else None, config.tensorboard)
        strip_batch = self._strip_batch() if main else None
        try:
            if start < config.steps:
                self._loop(start, log, strip_batch)
            if main:
                self._write_outputs(strip_batch, log)
        finally:
            if log is not None:
                log.close()
        distributed.barrier(self.context)
        return self.out

    def _metric_keys(self) -> list[str]:
        names = [f"loss_{n}" for n in self.model_config.objective]
        names += ["loss", "latent_std", "grad_norm", "samples_per_s", "data_wait_fraction", "lr"]
        return [f"pretrain/{n}" for n in names]

    def batches(self, start: int) -> Iterator[dict[str, torch.Tensor]]:
        """Collated training batches from global step ``start`` on (this rank's share).

        Read ahead in a background thread when ``config.prefetch`` is set; pass the iterator
        to ``close_batches`` when done.
        """
        config = self.config
        sampler = ResumableBatchSampler(
            len(self.dataset),
            config.batch_size,
            seed=config.seed,
            rank=self.context.rank,
            world_size=self.context.world_size,
            start_step=start,
        )
        loader = DataLoader(
            _BatchReader(self.dataset),
            sampler=sampler,  # yields one list of window indices per step
            batch_size=None,
            num_workers=config.num_workers,
            collate_fn=collate_windows,
            pin_memory=self.device.type == "cuda",
            persistent_workers=config.num_workers > 0,
        )
        if config.prefetch and config.num_workers == 0:
            return Prefetcher(iter(loader), depth=config.prefetch)
        return iter(loader)

    def _loop(self, start: int, log: MetricsLog | None, strip_batch: Any) -> None:
        config = self.config
        batches = self.batches(start)
        bar = tqdm(
            total=config.steps,
            initial=start,
            desc=f"pretrain {self.model.objective}",
            disable=not (self.progress and self.context.is_main),
            dynamic_ncols=True,
        )
        sums = self._interval_sums
        timed_steps, wait, tick = 0, 0.0, time.perf_counter()  # speed: this process's steps
        self.model.train()
        try:
            while self.step < config.steps:
                before = time.perf_counter()
                batch = next(batches)
                wait += time.perf_counter() - before
                metrics = self.train_step(batch)
                self.step += 1
                self._interval_steps += 1
                timed_steps += 1
                for name, value in metrics.items():
                    sums[name] = sums.get(name, 0.0) + value
                bar.update(1)
                done = self.step == config.steps
                # The last step always gets a row: a finished run extended by a resume with
                # more --steps keeps that row (an extra one between the log_every rows, and
                # the next row averages the steps after it only); the weights are unaffected.
                if log is not None and (self.step % max(config.log_every, 1) == 0 or done):
                    elapsed = time.perf_counter() - tick
                    steps = self._interval_steps
                    row = {f"pretrain/{n}": float(v) / steps for n, v in sums.items()}
                    samples = timed_steps * config.batch_size * self.context.world_size
                    row["pretrain/samples_per_s"] = samples / max(elapsed, 1e-9)
                    row["pretrain/data_wait_fraction"] = wait / max(elapsed, 1e-9)
                    row["pretrain/lr"] = config.lr
                    log.log(self.step, row)
                    bar.set_postfix(
                        loss=f"{row['pretrain/loss']:.4f}",
                        sps=f"{row['pretrain/samples_per_s']:.0f}",
                    )
                    sums.clear()
                    self._interval_steps, timed_steps, wait = 0, 0, 0.0
                    tick = time.perf_counter()
                paused = time.perf_counter()
                # The strip before the checkpoint: killed between them, the resume starts
                # from the checkpoint before and draws this step's strip again (after it, it
                # started past the step and the strip was never drawn).
                if log is not None and config.image_every and self.step % config.image_every == 0:
                    self._write_strip(strip_batch, log)
                if config.checkpoint_every and self.step % config.checkpoint_every == 0:
                    self._save_checkpoint()
                tick += time.perf_counter() - paused  # file writing is not training time
        finally:
            bar.close()
            close_batches(batches)
        if self.last_checkpoint is None or self._checkpoint_step() != self.step:
            self._save_checkpoint()

    def _checkpoint_step(self) -> int:
        return int(self.last_checkpoint.name.removeprefix("step_")) if self.last_checkpoint else -1

    def _save_checkpoint(self) -> None:
        if self.context.is_main:
            self.last_checkpoint = checkpoint.save_checkpoint(
                self.out / artifacts.CHECKPOINTS,
                self.step,
                self.model.state_dict(),
                self.optimizer.state_dict() if self.optimizer is not None else None,
                {
                    "objective": self.model.objective,
                    _LOG_INTERVAL: {
                        "sums": {n: float(v) for n, v in self._interval_sums.items()},
                        "steps": self._interval_steps,
                    },
                },
                keep=self.config.keep_checkpoints,
            )
        else:
            self.last_checkpoint = (
                self.out / artifacts.CHECKPOINTS / checkpoint.checkpoint_name(self.step)
            )

    # -- outputs ---------------------------------------------------------------------------

    def _write_config(self) -> None:
        artifacts.save_json(
            self.out / artifacts.PRETRAIN_CONFIG,
            {
                "pretrain": self.config.to_dict(),
                "world_model": self.model_config.to_dict(),
                "num_train_windows": len(self.dataset),
                # The episodes each data directory gave the training split, so that a later
                # split of a grown dataset can still tell which ones this model trained on.
                "train_episode_ids": self.train_episode_ids,
                "train_episode_id_lists": None
                if self.train_episode_ids is None
                else list(self.train_episode_ids.values()),  # in --data order
                "train_dataset_identities": self.train_dataset_identities,  # in --data order
                # The targets' episodes and look: a twin moved is the same, one recollected
                # in another look is not (refused on --resume).
                "look_twin_identity": self.look_twin_identity,
                "world_size": self.context.world_size,
                # What it computed on: another device type draws other augmentations from
                # the same seeds and rounds otherwise (a resume there is not bit-exact).
                "device_type": self.device.type,
                "amp": bool(self.amp),
                # CPU float sums split over threads round otherwise with another count: a
                # resume continues bit for bit only with this one (``--resume`` takes it).
                **self._run_settings(),
                **({"earlier_devices": self._earlier_devices} if self._earlier_devices else {}),
                **({"earlier_settings": self._earlier_settings} if self._earlier_settings else {}),
            },
        )

    def _run_settings(self) -> dict[str, Any]:
        """This process's ``_RUN_SETTINGS``: how it computes, beyond the config."""
        return {
            "cpu_threads": torch.get_num_threads() if self.device.type == "cpu" else None,
            "sslrobot_version": sslrobot.__version__,
            "torch_version": torch.__version__,
        }

    def _write_outputs(self, strip_batch: Any, log: MetricsLog | None) -> None:
        model = self.model
        artifacts.save_safetensors(self.out / artifacts.MODEL_WEIGHTS, model.state_dict())
        artifacts.save_json(
            self.out / artifacts.ENCODER_CONFIG, self.model_config.encoder.to_dict()
        )
        self._write_config()
        rows = read_metrics(self.out / artifacts.METRICS)
        plots.save_loss_curve(self.out / artifacts.LOSS_CURVE, rows, title=model.objective)
        strip = self.out / artifacts.PREDICTIONS / f"step_{self.step:05d}.png"
        if self.config.image_every and not strip.exists() and log is not None:
            self._write_strip(strip_batch, log)
        if log is not None:
            log.close()  # TensorBoard's buffered events too (closing again later is a no-op)
        # Last: its presence says the run is finished and all of the above is there (--resume
        # and the launcher read it so; written first, a kill left an encoder without its
        # encoder_config.json, which nothing could load, taken for a finished run).
        artifacts.save_safetensors(self.out / artifacts.ENCODER_WEIGHTS, model.encoder.state_dict())

    def _strip_batch(self) -> dict[str, torch.Tensor] | None:
        """A fixed batch of validation windows for the prediction and keypoint strips (or
        None: nothing to draw)."""
        pictures = self.model.decoder is not None or self._draws_keypoints
        if not (self.config.image_every and pictures):
            return None
        source = self.val_dataset if self.val_dataset is not None else self.dataset
        count = min(self.config.num_images, len(source))
        indices = np.linspace(0, len(source) - 1, count).round().astype(int)  # spread out
        return collate_windows([source[int(i)] for i in indices])

    @property
    def _draws_keypoints(self) -> bool:
        return self.config.encoder.readout == "keypoints"

    @torch.no_grad()
    def _write_strip(self, batch: dict[str, torch.Tensor] | None, log: MetricsLog) -> None:
        if batch is None:
            return
        model = self.model
        was_training = model.training
        model.eval()
        try:
            pixels, actions, proprio, twin = self.to_device(batch)
            stack = self.config.encoder.frame_stack
            pixels, actions = stack_frames(pixels, stack), actions[:, stack - 1 :]
            # A model trained on a look twin predicts the twin's frames from o_t's latent,
            # copying the twin's o_t: its strips show those.
            shown = pixels if twin is None else stack_frames(twin, stack)
            future_proprio = None if proprio is None else proprio[:, stack:]  # p_{t+1..t+K}
            context = pixels[:, 0]
            if self._draws_keypoints:  # what each learned keypoint follows, on o_t
                points = model.encoder.keypoints(context).cpu().numpy()
                image = plots.keypoint_strip(
                    context[..., -3:].cpu().numpy(),
                    points,
                    pixel_range=self.model_config.encoder.keypoint_pixel_range(),  # data size
                )
                path = self.out / artifacts.KEYPOINTS / f"step_{self.step:05d}.png"
                plots.save_png(path, image)
                log.log_image("pretrain/keypoints", image, self.step)
            if model.decoder is None:
                return
            if model.has_decoder:  # future: o_t | o_{t+1..t+K}, then the predictions with
                # the copy path and without it (what the latent alone holds)
                real = shown[..., -3:]
                first = shown[:, :1, ..., -3:]
                predicted = [
                    torch.cat(
                        [
                            first,
                            model.predict_frames(
                                context, actions, copy, future_proprio, copy_from=shown[:, 0]
                            ),
                        ],
                        dim=1,
                    )
                    for copy in (True, False)
                ]
            else:  # recon: o_t vs its reconstruction
                own = None if proprio is None else proprio[:, stack - 1]
                predicted = [model.reconstruct(context, own)[:, None]]
                real = shown[:, :1, ..., -3:]
            image = plots.prediction_strip(
                real.cpu().numpy(), *(p.cpu().numpy() for p in predicted)
            )
        finally:
            model.train(was_training)
        plots.save_png(self.out / artifacts.PREDICTIONS / f"step_{self.step:05d}.png", image)
        log.log_image("pretrain/predictions", image, self.step)

    def __enter__(self) -> PretrainRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Leave the process group if this run joined it; release the output directory."""
        self._writer_lock.close()
        distributed.close_distributed(self.context)


def pretrain(
    config: PretrainConfig,
    dataset: Dataset | None = None,
    progress: bool = True,
    val_dataset: Dataset | None = None,
) -> Path:
    """Pretrain an encoder (and the world model around it); write everything to ``config.out``.

    Args:
        config: The run's settings.
        dataset: Windows to train on (dicts with ``pixels`` uint8 (K+1, H, W, 3) and
            ``action`` (K, A)); by default ``WindowDataset(config.data, split="train")``.
        progress: Show a progress bar (rank 0).
        val_dataset: Windows for the prediction strips; by default the dataset's ``val`` split.

    Returns:
        The output directory: ``encoder.safetensors``, ``encoder_config.json``,
        ``model.safetensors``, ``pretrain_config.json``, ``metrics.csv``, ``loss_curve.png``,
        ``checkpoints/``, ``predictions/`` (decoder objectives).

    Raises:
        NonFiniteLossError: a loss became NaN/inf; the last good checkpoint is kept.
        ValueError / FileNotFoundError / FileExistsError: bad settings, data or output dir.
    """
    run = PretrainRun(config, dataset, val_dataset, progress)
    try:
        return run.train()
    finally:
        run.close()
