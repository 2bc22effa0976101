"""Behaviour cloning on expert demonstrations, with frozen-encoder features computed once."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from sslrobot.models.features import extract_features
from sslrobot.policy.cache import FeatureCache
from sslrobot.policy.checkpoint import (
    CHECKPOINT_DIR,
    RESUME_STATE,
    ResumeError,
    clear_run_files,
    prune_checkpoints,
    read_checkpoint_file,
    read_resume_state,
    resume_settings,
    save_weights,
    start_policy_dir,
    write_policy_config,
)
from sslrobot.policy.config import DEFAULT_BC_STEPS, PolicyConfig
from sslrobot.policy.demos import (
    DemoTransitions,
    check_demo_shapes,
    demos_visual_preset,
    episode_seeds,
    load_transitions,
    select_demo_ids,
)
from sslrobot.policy.environment import env_shapes, make_env
from sslrobot.policy.network import BCNetwork, ObservationEncoder
from sslrobot.policy.setup import (
    base_record,
    check_fits,
    demos_settings,
    open_demos,
    resolve_policy_encoder,
    warn_unless_expert,
)
from sslrobot.policy.validation import (
    OnlineValidator,
    refuse_validation_on_demo_seeds,
    validation_seeds,
)
from sslrobot.pretraining.augment import check_shift_pad, color_jitter, random_shift
from sslrobot.utils.device import resolve_device
from sslrobot.utils.io import atomic_write, atomic_write_json, atomic_write_text

#: The best validation check's weights, beside ``final.safetensors``.
BEST_FILE = "best.safetensors"


class NonFiniteBCLossError(FloatingPointError, ValueError):
    """The BC loss became NaN/inf, almost always from a learning rate too high for the data.

    A ``ValueError`` too, since the fix is the user's (a lower ``--lr``): the CLI then prints
    one line instead of a traceback. Still a ``FloatingPointError``, as it was before.
    """


@dataclass
class BCData:
    """Tensors one BC split trains or validates on, all with N rows.

    Attributes:
        actions: Expert actions, (N, A).
        features: Cached raw features (N, F) (or the state (N, S)); None for ``scratch``.
        pixels: uint8 frames (N, H, W, 3) for ``scratch``; else None.
        proprio: (N, P), or None for the state oracle.
    """

    actions: torch.Tensor
    features: torch.Tensor | None = None
    pixels: torch.Tensor | None = None
    proprio: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def rows(self, index: torch.Tensor) -> BCData:
        def pick(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor[index]

        return BCData(
            self.actions[index], pick(self.features), pick(self.pixels), pick(self.proprio)
        )


@dataclass
class BCHistory:
    """What happened during training, for ``policy_config.json`` and the CSV log."""

    rows: list[dict[str, float]] = field(default_factory=list)  # "step" an int among them
    best: dict[str, Any] | None = None
    resumed_at: list[int] = field(default_factory=list)  # steps a resumed run continued from


def predict(
    network: BCNetwork, batch: BCData, pad: int = 0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Actions (B, A) for a batch: from cached features, or from (augmented) frames."""
    if batch.features is not None:
        return network.act_from_features(batch.features, batch.proprio)
    assert batch.pixels is not None
    pixels = batch.pixels
    if pad:
        # (B, H, W, C) as windows of one frame, the shape the pretraining augmentation takes.
        pixels = random_shift(pixels[:, None], pad, generator)[:, 0]
    return network(pixels, batch.proprio)


def bc_loss(
    network: BCNetwork, batch: BCData, pad: int = 0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mean squared error between predicted and expert actions."""
    return F.mse_loss(predict(network, batch, pad, generator), batch.actions)


@torch.no_grad()
def evaluate_loss(network: BCNetwork, data: BCData, batch_size: int) -> float:
    """Mean per-sample BC loss over ``data``, without augmentation, network in eval mode."""
    was_training = network.training
    network.eval()
    total = 0.0
    try:
        for start in range(0, len(data), batch_size):
            stop = min(start + batch_size, len(data))
            batch = data.rows(torch.arange(start, stop, device=data.actions.device))
            total += float(F.mse_loss(predict(network, batch), batch.actions, reduction="sum"))
    finally:
        network.train(was_training)
    return total / (len(data) * data.actions.shape[1])


def make_bc_data(
    transitions: DemoTransitions,
    kind: str,
    cache: FeatureCache | None,
    device: torch.device,
) -> BCData:
    """Tensors for one split: features from the cache for frozen encoders, else frames/state."""
    actions = torch.from_numpy(transitions.actions).to(device)
    if kind == "state":
        assert transitions.state is not None
        return BCData(actions, features=torch.from_numpy(transitions.state).to(device))
    assert transitions.pixels is not None and transitions.proprio is not None
    proprio = torch.from_numpy(transitions.proprio).to(device)
    if kind == "scratch":
        return BCData(
            actions, pixels=torch.from_numpy(transitions.pixels).to(device), proprio=proprio
        )
    assert cache is not None
    features = cache.features(
        transitions.episode_ids, transitions.episode_lengths, transitions.pixels
    )
    return BCData(actions, features=torch.from_numpy(features).to(device), proprio=proprio)


def with_augmented_copies(
    data: BCData,
    pixels: np.ndarray,
    encoder: torch.nn.Module,
    config: PolicyConfig,
) -> BCData:
    """``data`` (frozen features of ``pixels``) plus ``config.augment_copies`` copies of its
    frames, each shifted by up to ``augment_pad`` pixels and recoloured by ``augment_color``
    (drawn from ``config.seed``, a ``feature_batch_size`` chunk at a time: the same copies for
    the same seed and chunk size) and encoded by the frozen ``encoder``; actions and proprio
    repeat. Encoded here, not cached: a few thousand frames."""
    assert data.features is not None and data.proprio is not None
    generator = torch.Generator().manual_seed(config.seed)
    step = config.feature_batch_size  # one chunk of frames augmented at a time: bounded memory
    features = [data.features]
    for _ in range(config.augment_copies):
        for start in range(0, len(pixels), step):
            chunk = torch.from_numpy(np.array(pixels[start : start + step]))[:, None]
            shifted = random_shift(chunk, config.augment_pad, generator)  # windows of one frame
            copy = color_jitter(shifted, config.augment_color, generator)[:, 0].numpy()
            encoded = extract_features(encoder, copy, step)
            features.append(torch.from_numpy(encoded).to(data.features.device))
    repeat = config.augment_copies + 1
    return BCData(
        data.actions.repeat(repeat, 1),
        features=torch.cat(features),
        proprio=data.proprio.repeat(repeat, 1),
    )


def with_first_frame_context(data: BCData, lengths: np.ndarray) -> BCData:
    """``data`` with each row's features followed by its episode's first row's, (N, 2F).

    Args:
        data: Rows of consecutive episodes, in order (copies after the frames, each copy in
            the frames' order: each copy's context is then its own first frame's).
        lengths: Rows per episode, repeated for every copy, summing to N.
    """
    assert data.features is not None
    counts = torch.as_tensor(np.asarray(lengths, dtype=np.int64))
    if int(counts.sum()) != len(data):
        raise ValueError(f"episode lengths sum to {int(counts.sum())}, not {len(data)} rows")
    starts = torch.cumsum(counts, 0) - counts
    first = torch.repeat_interleave(starts, counts).to(data.features.device)
    features = torch.cat([data.features, data.features[first]], dim=-1)
    return BCData(data.actions, features=features, pixels=data.pixels, proprio=data.proprio)


def total_bc_steps(config: PolicyConfig, num_samples: int) -> int:
    """Gradient steps: ``steps``, else ``epochs`` passes, else the default.

    A pass is ``num_samples // batch_size`` full minibatches, as the loop draws them (it
    reshuffles rather than take a short last batch); rounding up used to make one "epoch" up to
    two passes.
    """
    if config.steps is not None:
        return config.steps
    if config.epochs is not None:
        return config.epochs * (num_samples // min(config.batch_size, num_samples))
    return DEFAULT_BC_STEPS


def train_bc(config: PolicyConfig) -> Path:
    """Train a BC policy as ``config`` says and write it to ``config.out``.

    Returns:
        The policy directory.

    Raises:
        NonFiniteBCLossError: the loss became NaN/inf (a ``ValueError``; lower the lr).
    """
    start_time = time.perf_counter()
    device = resolve_device(config.device)
    dataset, dataset_key = open_demos(config)
    resolved, image_size = resolve_policy_encoder(config, dataset.manifest)
    obs_mode = "state" if resolved.kind == "state" else "pixels"
    env = make_env(config.env_id, image_size, obs_mode)
    try:
        shapes = env_shapes(env, config.env_id)
    finally:
        env.close()
    warn_unless_expert(dataset, config.demos)
    check_fits(resolved, shapes, config.env_id)

    train_ids, val_ids = select_demo_ids(
        list(dataset.episode_ids),
        config.num_demos,
        config.num_val_demos,
        config.demos,
        config.demo_offset,
    )
    use_pixels = resolved.kind != "state"
    train_tr = load_transitions(dataset, train_ids, pixels=use_pixels, state=not use_pixels)
    val_tr = (
        load_transitions(dataset, val_ids, pixels=use_pixels, state=not use_pixels)
        if val_ids
        else None
    )
    check_demo_shapes(train_tr, shapes, config)

    torch.manual_seed(config.seed)
    feature_dim = shapes.state_dim if resolved.kind == "state" else resolved.module.feature_dim
    obs_encoder = ObservationEncoder(
        resolved.module,
        feature_dim=feature_dim,
        proprio_dim=shapes.proprio_dim,
        frozen=resolved.frozen,
        normalize_features=resolved.kind != "scratch",
        context=config.context == "first",
    ).to(device)
    network = BCNetwork(obs_encoder, shapes.action_dim, config.hidden_dims).to(device)
    cache = None
    if resolved.frozen:
        cache = FeatureCache(
            config.cache_dir, resolved.module, dataset_key, config.feature_batch_size
        )
    if resolved.kind == "scratch" or config.augment_copies:  # before any frame is encoded
        check_shift_pad("augment_pad", config.augment_pad, image_size)
    train_data = make_bc_data(train_tr, resolved.kind, cache, device)
    if config.augment_copies:
        assert train_tr.pixels is not None
        train_data = with_augmented_copies(train_data, train_tr.pixels, resolved.module, config)
    val_data = make_bc_data(val_tr, resolved.kind, cache, device) if val_tr else None
    if config.context == "first":
        copies = np.tile(train_tr.episode_lengths, config.augment_copies + 1)
        train_data = with_first_frame_context(train_data, copies)
        if val_tr is not None and val_data is not None:
            val_data = with_first_frame_context(val_data, val_tr.episode_lengths)
    if resolved.kind != "scratch":
        obs_encoder.feature_norm.fit(train_data.features.cpu())
    if train_data.proprio is not None:
        obs_encoder.proprio_norm.fit(train_data.proprio.cpu())

    record = base_record(config, resolved, shapes, image_size, device)
    record.update(
        {
            "num_demos": len(train_ids),
            "demos": str(Path(config.demos).resolve()),
            # The look the demonstrations were recorded under: online validation uses it too.
            "demos_visual_preset": demos_visual_preset(dataset.manifest),
            "demos_settings": demos_settings(dataset.manifest),
            "demo_episode_ids": train_ids,
            "demo_seeds": episode_seeds(dataset, train_ids + val_ids),
            "val_seeds": validation_seeds(config.val_episodes),
            "val_episode_ids": val_ids,
            "num_train_samples": len(train_data),
        }
    )
    refuse_validation_on_demo_seeds(record["demo_seeds"], record["val_seeds"], config.demos)
    out = config.out
    fingerprint = record["encoder"].get("weights_fingerprint")
    # The episodes themselves, not just the path and counts: a dataset grown or collected
    # again at that path would resume on other demonstrations (its validation one among them).
    pinned = {
        "demo_episode_ids": train_ids,
        "val_episode_ids": val_ids,
        "demos_dataset": hashlib.sha256(
            json.dumps(dataset_key, sort_keys=True).encode()
        ).hexdigest(),
    }
    resumed = read_resume_state(out, config, fingerprint, pinned) if config.resume else None
    if resumed is None:
        start_policy_dir(out)
    history = _fit(config, network, train_data, val_data, record, device, resumed, pinned)
    save_weights(out / "final.safetensors", network)
    checkpoints = {"final": "final.safetensors"}
    if history.best is not None:
        checkpoints["best"] = BEST_FILE
    _write_csv(out / "logs" / "bc.csv", history.rows)
    record.update(
        {
            "checkpoints": checkpoints,
            "best": history.best,
            "metrics": history.rows[-1] if history.rows else {},
            "feature_cache": {
                "dir": None if config.cache_dir is None else str(config.cache_dir),
                "frames_encoded": 0 if cache is None else cache.num_computed_frames,
            },
            "resumed_at_steps": history.resumed_at,  # steps the training continued from
            "wall_time_s": time.perf_counter() - start_time,
        }
    )
    write_policy_config(out, record)
    clear_run_files(out, logs=False)  # finished: nothing to resume
    return out


def _fit(
    config: PolicyConfig,
    network: BCNetwork,
    train_data: BCData,
    val_data: BCData | None,
    record: dict[str, Any],
    device: torch.device,
    resumed: dict[str, Any] | None = None,
    pinned: dict[str, Any] | None = None,
) -> BCHistory:
    """The training loop: minibatch epochs, validation checks, best checkpoint on disk.

    At every check before the last, everything the loop carries (weights, optimiser, the
    generator that shuffles and shifts, the shuffled order and its cursor, the checks so far)
    is saved under ``out/checkpoints/``, so that ``resumed`` (``read_resume_state``'s record)
    continues bit for bit where the interrupted run had saved: on CPU the resumed run's final
    weights are the uninterrupted run's.
    """
    num_samples = len(train_data)
    batch_size = min(config.batch_size, num_samples)
    # An epoch is as many steps as a pass over the demonstrations' own frames: augmented
    # copies add variety, not budget, so runs with and without them compare at one budget.
    num_steps = total_bc_steps(config, num_samples // (config.augment_copies + 1))
    check_every = max(1, math.ceil(num_steps / config.num_val_checks))
    # What the loop runs, where the config's own fields hold None (defaults) or more than the
    # data gives (a batch larger than the frames trains on them all: the state oracle and
    # scratch, without copies, then take smaller steps than frozen encoders with copies).
    record["trained_with"] = {
        "steps": num_steps,
        "batch_size": batch_size,
        "learning_rate": config.learning_rate,
    }
    # weight_decay is the head's (a scratch encoder trains undecayed, as documented).
    encoder = {id(p) for p in network.obs_encoder.parameters()}
    trainable = [p for p in network.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) not in encoder]},
        {"params": [p for p in trainable if id(p) in encoder], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    generator = torch.Generator(device=device).manual_seed(config.seed)
    pad = config.augment_pad if record["encoder"]["kind"] == "scratch" else 0
    history = BCHistory()
    best_score: tuple[float, ...] | None = None
    order = torch.randperm(num_samples, generator=generator, device=device)
    cursor, running, count, first = 0, 0.0, 0, 1
    saver = _BCResumeCheckpoints(config, record["encoder"].get("weights_fingerprint"), pinned)
    if resumed is not None:
        loop = saver.load(resumed, network, optimizer, generator, device)
        order, cursor, first = loop["order"], loop["cursor"], loop["step"] + 1
        history.rows, history.best = list(loop["rows"]), resumed["best"]
        best_score = None if resumed["best_score"] is None else tuple(resumed["best_score"])
        history.resumed_at = [*resumed["resumed_at_steps"], loop["step"]]
    # Made once the resume has loaded: a refused resume left its env and renderer open in
    # the process that goes on to train anew (``sslrobot run``).
    validator = _bc_validator(record, network, device) if config.val_episodes else None
    network.train()
    progress = tqdm(
        range(first, num_steps + 1),
        initial=first - 1,
        total=num_steps,
        desc="bc",
        disable=not config.progress,
    )
    try:
        for step in progress:
            if cursor + batch_size > num_samples:
                order, cursor = torch.randperm(num_samples, generator=generator, device=device), 0
            index = order[cursor : cursor + batch_size]
            cursor += batch_size
            loss = bc_loss(network, train_data.rows(index), pad, generator)
            value = loss.item()  # the step's one wait for a GPU: checked and logged both
            if not math.isfinite(value):
                decay = f" and weight decay {config.weight_decay:g}" if config.weight_decay else ""
                raise NonFiniteBCLossError(
                    f"BC loss is {value} at step {step} with lr {config.learning_rate:g}"
                    f"{decay}; lower --lr" + (" or --weight-decay" if decay else "")
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running, count = running + value, count + 1
            if step % check_every and step != num_steps:
                continue
            row: dict[str, float] = {"step": step, "bc/train_loss": running / count}
            running, count = 0.0, 0
            score: tuple[float, ...] = ()
            if validator is not None:
                network.eval()
                try:
                    row["eval/val_success"] = validator.success_rate()
                finally:
                    network.train()
                score += (row["eval/val_success"],)
            if val_data is not None:
                row["bc/val_loss"] = evaluate_loss(network, val_data, config.feature_batch_size)
                score += (-row["bc/val_loss"],)
            history.rows.append(row)
            # Three significant digits: a head fitted on few demonstrations reaches losses of
            # 1e-5, which a fixed number of decimals would show as 0.
            progress.set_postfix(
                {k.split("/")[-1]: f"{v:.3g}" for k, v in row.items() if k != "step"}
            )
            # Ties go to the later checkpoint: as good on validation, and trained longer.
            if score and (best_score is None or score >= best_score):
                best_score = score
                save_weights(config.out / BEST_FILE, network)
                history.best = dict(row)
            if step != num_steps:
                loop = {"step": step, "order": order, "cursor": cursor}
                saver.save(loop, network, optimizer, generator, history, best_score)
    finally:
        progress.close()
        if validator is not None:
            validator.close()
    return history


class _BCResumeCheckpoints:
    """What ``train-policy --resume`` continues a BC run from: ``bc_state_N.pt`` (weights,
    optimiser, generator, order, the checks' rows) and ``best_N.safetensors`` (the best
    checkpoint as it was at step N), each written whole before ``resume.json`` (settings, step,
    best check) names them; the files of earlier checkpoints go only then, so an interruption
    between the writes leaves the last complete checkpoint as it was."""

    def __init__(
        self,
        config: PolicyConfig,
        encoder_fingerprint: str | None,
        pinned: dict[str, Any] | None = None,
    ) -> None:
        self.out = Path(config.out)
        self.folder = self.out / CHECKPOINT_DIR
        self.settings = resume_settings(config, encoder_fingerprint, pinned)

    def save(
        self,
        loop: dict[str, Any],
        network: BCNetwork,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        history: BCHistory,
        best_score: tuple[float, ...] | None,
    ) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        step = loop["step"]
        tensors = {
            **loop,
            "network": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "rows": history.rows,  # here, not in the JSON: it keeps the columns' order
        }
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        data = buffer.getvalue()
        name = f"bc_state_{step}.pt"
        atomic_write(self.folder / name, lambda file: file.write(data))
        best = None
        if history.best is not None and (self.out / BEST_FILE).is_file():
            best = f"best_{step}.safetensors"  # as it is now: a later check may replace it
            weights = (self.out / BEST_FILE).read_bytes()
            atomic_write(self.folder / best, lambda file: file.write(weights))
        state = {
            "step": step,
            "state": name,
            "best_weights": best,
            "settings": self.settings,
            "best": history.best,
            "best_score": None if best_score is None else list(best_score),
            "resumed_at_steps": history.resumed_at,
            "cpu_threads": torch.get_num_threads(),  # a resume with others is not bit-exact
        }
        atomic_write_json(self.folder / RESUME_STATE, state, sync_dir=True)  # before the prune
        prune_checkpoints(self.folder, keep=(name, best, RESUME_STATE))  # the ones before

    def load(
        self,
        resumed: dict[str, Any],
        network: BCNetwork,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        device: torch.device,
    ) -> dict[str, Any]:
        """Restore the saved state into the arguments and the best checkpoint as the saved
        state knew it; return the loop's step, order, cursor and the checks' rows.

        Raises:
            ResumeError: a missing or damaged state file, or one from another device type
                (its random generator's state does not carry over).
        """
        path = self.folder / str(resumed.get("state"))
        try:
            # On the CPU first: load_state_dict moves the weights and moments to the
            # parameters' device but keeps AdamW's step counters where they are, and
            # counters on a GPU cost a synchronisation per parameter every step.
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise ResumeError(f"cannot resume from {path}: {error}") from error
        if saved.get("step") != resumed.get("step"):
            raise ResumeError(f"{path} and {RESUME_STATE} disagree on the step count")
        state = saved["generator"].cpu()
        if state.numel() != generator.get_state().numel():
            raise ResumeError(
                f"{path} was saved by a run on another device type than {device.type}; resume "
                "on the device it started on, or train anew with --overwrite"
            )
        network.load_state_dict(saved["network"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(state)
        best = self.out / BEST_FILE
        if resumed.get("best_weights"):
            weights = read_checkpoint_file(self.folder / resumed["best_weights"])
            atomic_write(best, lambda file: file.write(weights))
        else:
            best.unlink(missing_ok=True)  # a check after the checkpoint wrote it
        loop = {key: saved[key] for key in ("step", "order", "cursor", "rows")}
        return loop | {"order": loop["order"].to(device)}


def _bc_validator(
    record: dict[str, Any], network: BCNetwork, device: torch.device
) -> OnlineValidator:
    """Validation of the network as it trains, in the look of its demonstrations."""

    def head(inputs: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return network.head(inputs).cpu().numpy()

    return OnlineValidator(
        record, network.obs_encoder, head, device, visual_preset=record["demos_visual_preset"]
    )


def _write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    """Write the validation-check rows as CSV (atomic), columns in first-seen order."""
    keys: list[str] = []
    for row in rows:
        keys += [key for key in row if key not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
