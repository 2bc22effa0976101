"""Pretraining end to end on a tiny synthetic dataset: every objective, output layout, loading,
determinism, bit-exact resume, the NaN guard and bad-input errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import shutil
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import safetensors.torch
import torch

from sslrobot.load import load_encoder
from sslrobot.models import DecoderConfig, Encoder, EncoderConfig
from sslrobot.pretraining import artifacts, checkpoint
from sslrobot.pretraining.config import PretrainConfig
from sslrobot.pretraining.metrics_log import MetricsLog
from sslrobot.pretraining.synthetic import MovingSquareDataset
from sslrobot.pretraining.trainer import (
    NonFiniteLossError,
    PretrainRun,
    close_batches,
    collate_windows,
    pretrain,
)
from sslrobot.pretraining.world_model import (
    APPEARANCE_DIM,
    WorldModel,
    appearance_code,
    load_world_model,
)

torch.set_num_threads(1)

K = 2
SIZE = 32
TINY_ENCODER = EncoderConfig(
    image_size=SIZE,
    channels=(8, 16),
    kernel_sizes=(4, 3),
    strides=(4, 2),
    paddings=(0, 1),
    feature_dim=16,
)


@pytest.fixture(scope="module")
def dataset() -> MovingSquareDataset:
    return MovingSquareDataset(num_episodes=4, episode_length=12, num_steps=K, image_size=SIZE)


def tiny_config(out: Path, **changes: object) -> PretrainConfig:
    values = {
        "out": str(out),
        "objective": "fdm+future",
        "steps": 4,
        "batch_size": 8,
        "num_steps_ahead": K,
        "log_every": 2,
        "checkpoint_every": 2,
        "image_every": 2,
        "num_images": 2,
        "tensorboard": False,
        "encoder": TINY_ENCODER,
        "decoder": DecoderConfig(channels=(16, 8), shuffle=4),
        "transition_hidden_dim": 32,
        "head_hidden_dim": 32,
        "projection_dim": 16,
        "device": "cpu",  # bit-exact comparisons are CPU promises, on a CUDA machine too
    }
    values.update(changes)
    return PretrainConfig(**values)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(path))


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize(
    "objective", ["fdm", "future", "fdm+future", "recon", "inverse", "contrastive"]
)
def test_each_objective_trains_and_writes_the_layout(
    objective: str, dataset: MovingSquareDataset, tmp_path: Path
) -> None:
    out = pretrain(tiny_config(tmp_path / "run", objective=objective), dataset, progress=False)
    for name in (
        artifacts.ENCODER_WEIGHTS,
        artifacts.ENCODER_CONFIG,
        artifacts.PRETRAIN_CONFIG,
        artifacts.MODEL_WEIGHTS,
        artifacts.METRICS,
        artifacts.LOSS_CURVE,
    ):
        assert (out / name).is_file(), name
    assert (out / artifacts.CHECKPOINTS / "step_0000004" / checkpoint.WEIGHTS).is_file()
    rows = read_csv(out / artifacts.METRICS)
    assert [int(r["step"]) for r in rows] == [2, 4]
    for part in objective.split("+"):
        assert all(math.isfinite(float(r[f"pretrain/loss_{part}"])) for r in rows)
    assert float(rows[-1]["pretrain/latent_std"]) > 0.0
    assert float(rows[-1]["pretrain/samples_per_s"]) > 0.0
    strips = sorted(p.name for p in (out / artifacts.PREDICTIONS).glob("*.png"))
    has_decoder = objective in ("future", "fdm+future", "recon")
    assert strips == (["step_00002.png", "step_00004.png"] if has_decoder else [])
    if has_decoder:  # rows per window: real, predicted (future: and predicted without context)
        rows_per_window = 3 if "future" in objective else 2
        strip = iio.imread(out / artifacts.PREDICTIONS / "step_00004.png")
        windows = tiny_config(tmp_path).num_images
        assert strip.shape[0] == rows_per_window * windows * (2 * SIZE + 2) + 2
    encoder, config = load_encoder(out)
    assert config == dataclasses.replace(TINY_ENCODER, image_size=SIZE)
    features = encoder(torch.from_numpy(dataset[0]["pixels"]))
    assert features.shape == (K + 1, 16) and torch.isfinite(features).all()
    saved = json.loads((out / artifacts.PRETRAIN_CONFIG).read_text())
    assert PretrainConfig.from_dict(saved["pretrain"]) == tiny_config(
        tmp_path / "run", objective=objective
    )


def test_tensorboard_events_when_installed(dataset, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    out = pretrain(tiny_config(tmp_path / "tb", tensorboard=True, steps=2), dataset, progress=False)
    assert list((out / artifacts.TENSORBOARD).glob("events.out.tfevents.*"))


@pytest.mark.parametrize(("salience_weight", "steps"), [(0.0, 40), (10.0, 60)])
def test_future_prediction_learns(tmp_path: Path, salience_weight: float, steps: int) -> None:
    """A few dozen steps on the moving square: the pixel loss falls well below its start (the
    salience-weighted loss, mostly on the square's pixels, in a few more steps)."""
    data = MovingSquareDataset(num_episodes=8, episode_length=16, num_steps=K, image_size=SIZE)
    config = tiny_config(
        tmp_path / "run",
        objective="future",
        salience_weight=salience_weight,
        steps=steps,
        batch_size=16,
        log_every=10,
        image_every=0,
        checkpoint_every=0,
        lr=3e-3,
    )
    rows = read_csv(pretrain(config, data, progress=False) / artifacts.METRICS)
    first, last = float(rows[0]["pretrain/loss_future"]), float(rows[-1]["pretrain/loss_future"])
    assert last < 0.5 * first


def test_heatmap_decoder_learns_through_keypoints(tmp_path: Path) -> None:
    """A keypoint encoder with the heatmap decoder predicts the moving square: the pixel loss
    falls well below its start; the decoder choice is saved and a non-keypoint encoder is
    refused by name."""
    data = MovingSquareDataset(num_episodes=8, episode_length=16, num_steps=K, image_size=SIZE)
    config = tiny_config(
        tmp_path / "run",
        objective="future",
        encoder=EncoderConfig.keypoints(image_size=SIZE, feature_dim=8),
        decoder=DecoderConfig.keypoint_heatmaps(),
        steps=150,
        batch_size=16,
        log_every=10,
        image_every=0,
        checkpoint_every=0,
        lr=3e-3,
    )
    with pytest.warns(UserWarning, match="--transition-without-norm keeps them coordinates"):
        out = pretrain(config, data, progress=False)  # 'future' decodes LayerNorm'd latents
    rows = read_csv(out / artifacts.METRICS)
    first, last = float(rows[0]["pretrain/loss_future"]), float(rows[-1]["pretrain/loss_future"])
    assert last < 0.5 * first
    saved = json.loads((out / artifacts.PRETRAIN_CONFIG).read_text())
    assert saved["pretrain"]["decoder"]["heatmaps"] is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # without the norm, nothing to warn about
        pretrain(dataclasses.replace(config, out=str(tmp_path / "unnormed"), steps=1,
                                     transition_norm=False), data, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="readout='keypoints'"):
        pretrain(
            tiny_config(tmp_path / "bad", decoder=DecoderConfig.keypoint_heatmaps()),
            data,
            progress=False,
        )


def test_none_writes_the_random_encoder_in_the_same_layout(dataset, tmp_path: Path) -> None:
    out = pretrain(
        tiny_config(tmp_path / "none", objective="none", steps=0), dataset, progress=False
    )
    encoder, config = load_encoder(out)
    torch.manual_seed(0)  # the run's seed: the encoder is the first module built
    fresh = Encoder(config)
    assert_same_tensors(encoder.state_dict(), fresh.state_dict())
    assert load_world_model(out).objective == "none"
    with pytest.raises(ValueError, match="trains nothing"):
        pretrain(
            tiny_config(tmp_path / "none2", objective="none", steps=5), dataset, progress=False
        )


def test_load_encoder_round_trip_is_exact_and_frozen(dataset, tmp_path: Path) -> None:
    run = PretrainRun(tiny_config(tmp_path / "run", image_every=0), dataset, progress=False)
    out = run.train()
    run.close()
    encoder, _ = load_encoder(out)
    assert not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert_same_tensors(encoder.state_dict(), run.model.encoder.state_dict())
    frames = torch.from_numpy(dataset.__getitems__([0, 5, 9])["pixels"][:, 0])
    run.model.encoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder(frames), run.model.encoder(frames), rtol=0, atol=0)
    # Weights with a NaN loaded silently and surfaced far away, in the policy's normaliser.
    state = safetensors.torch.load_file(str(out / artifacts.ENCODER_WEIGHTS))
    name = sorted(state)[0]
    state[name].view(-1)[0] = float("nan")
    safetensors.torch.save_file(state, str(out / artifacts.ENCODER_WEIGHTS))
    with pytest.raises(ValueError, match=rf"hold NaN or inf values in \['{re.escape(name)}'\]"):
        load_encoder(out)


def test_the_contrastive_positive_is_augmented_on_its_own(dataset, tmp_path: Path) -> None:
    """ATC shifts anchor and positive independently: with the window's shared shift and
    colour, the crop offset alone picks the positive out of the batch. The window's own draws
    stay as they were (objectives without contrastive train as before)."""
    config = tiny_config(tmp_path / "run", objective="fdm+contrastive", color_jitter=0.2)
    run = PretrainRun(config, dataset, progress=False)
    try:
        batch = run.to_device(collate_windows([dataset[i] for i in range(8)]))
        pixels, _, _, _, positive, _, _ = run.augment(*batch, step=3)
        alone = PretrainRun(tiny_config(tmp_path / "fdm", objective="fdm", color_jitter=0.2),
                            dataset, progress=False)  # fmt: skip
        try:
            window_only = alone.augment(*batch, step=3)
        finally:
            alone.close()
        assert window_only[4] is None and torch.equal(window_only[0], pixels)
        assert positive.shape == pixels[:, -1].shape
        assert not torch.equal(positive, pixels[:, -1])  # other shifts and colours
        # The loss takes it: a positive of other frames changes the contrastive loss.
        model = run.model
        actions = batch[1]
        with torch.no_grad():
            own, _ = model(pixels, actions, positive=positive)
            shared, _ = model(pixels, actions)
            other, _ = model(pixels, actions, positive=positive.flip(0))
        assert own["contrastive"] != other["contrastive"]
        assert torch.equal(own["fdm"], shared["fdm"])
    finally:
        run.close()


def test_fdm_targets_recoloured_on_their_own(dataset, tmp_path: Path) -> None:
    """``target_color_jitter``: fdm's target frames get a colour draw of their own (SPR's
    target views), in the window's positions; the window, and so ``future``'s frames and
    every other draw, stay as they were, and the fdm loss reads the recoloured targets."""
    config = tiny_config(tmp_path / "run", target_color_jitter=0.4)
    run = PretrainRun(config, dataset, progress=False)
    try:
        batch = run.to_device(collate_windows([dataset[i] for i in range(8)]))
        pixels, _, _, decode_index, _, targets, _ = run.augment(*batch, step=3)
        plain = PretrainRun(tiny_config(tmp_path / "plain"), dataset, progress=False)
        try:
            window_only = plain.augment(*batch, step=3)
        finally:
            plain.close()
        assert window_only[5] is None and torch.equal(window_only[0], pixels)
        assert torch.equal(window_only[3], decode_index)
        assert targets.shape == pixels[:, 1:].shape and not torch.equal(targets, pixels[:, 1:])
        # A colour draw: where a pixel is black in the window it stays black (no shift).
        dark = pixels[:, 1:] == 0
        assert torch.all(targets[dark] == 0)
        again = run.augment(*batch, step=3)[5]
        assert torch.equal(again, targets)  # seeded by the step, like every draw
        with torch.no_grad():
            own, _ = run.model(pixels, batch[1], decode_index, fdm_targets=targets)
            shared, _ = run.model(pixels, batch[1], decode_index)
        assert own["fdm"] != shared["fdm"] and torch.equal(own["future"], shared["future"])
        with pytest.raises(ValueError, match="must be the window's future frames"):
            run.model(pixels, batch[1], fdm_targets=targets[:, :1])
    finally:
        run.close()
    with pytest.raises(ValueError, match="recolours fdm's targets, but objective 'future'"):
        tiny_config(tmp_path / "f", objective="future", target_color_jitter=0.4)


def test_each_pretraining_seed_draws_its_own_augmentation(dataset, tmp_path: Path) -> None:
    """torch's CPU generator keeps a seed's low 32 bits only, where the run's seed used to
    have none: every pretraining seed drew the same shifts and decoded frames. Seed 0's
    draws are as they were (the shipped encoders were made with them)."""
    from sslrobot.pretraining.trainer import _step_seed

    windows = collate_windows([dataset[i] for i in range(8)])
    drawn = []
    for seed in (0, 1):
        run = PretrainRun(tiny_config(tmp_path / f"s{seed}", seed=seed), dataset, progress=False)
        try:
            pixels, _, _, decode_index, _, _, _ = run.augment(*run.to_device(windows), step=2)
            drawn.append((pixels, decode_index))
        finally:
            run.close()
    assert not torch.equal(drawn[0][0], drawn[1][0])
    assert _step_seed(0, 5, 1) == 5 * 2**12 + 1  # the default seed's, unchanged
    assert _step_seed(1, 5, 1) % 2**32 != _step_seed(0, 5, 1) % 2**32


def test_load_encoder_errors_name_the_file(dataset, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        load_encoder(tmp_path / "missing_dir")
    out = pretrain(
        tiny_config(tmp_path / "run", steps=0, objective="none"), dataset, progress=False
    )
    (out / artifacts.ENCODER_WEIGHTS).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"encoder\.safetensors"):
        load_encoder(out)
    (out / artifacts.ENCODER_WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match=r"encoder\.safetensors"):
        load_encoder(out)
    (out / artifacts.ENCODER_CONFIG).write_text("{broken")
    with pytest.raises(ValueError, match=r"encoder_config\.json"):
        load_encoder(out)


def test_world_model_inference_api(dataset, tmp_path: Path) -> None:
    out = pretrain(tiny_config(tmp_path / "run", image_every=0), dataset, progress=False)
    model = load_world_model(out)
    assert model.has_decoder and model.has_dynamics and model.objective == "fdm+future"
    batch = dataset.__getitems__([0, 3, 7])
    windows, actions = torch.from_numpy(batch["pixels"]), torch.from_numpy(batch["action"])
    frames = model.predict_frames(windows[:, 0], actions)
    assert frames.shape == (3, K, SIZE, SIZE, 3) and frames.dtype == torch.uint8
    # Windows may be passed whole; only their first frame is used.
    assert torch.equal(model.predict_frames(windows, actions), frames)
    # Without the copy path the frames come from the latents alone: with the mask saturated at
    # "copy", the default prediction is o_t itself, the latent-only one is not.
    with torch.no_grad():
        model.decoder.to_mask.bias.fill_(1e4)
    copied = model.predict_frames(windows, actions)
    assert torch.equal(copied, windows[:, :1].expand(-1, K, -1, -1, -1))
    blind = model.predict_frames(windows, actions, copy_context=False)
    assert blind.shape == frames.shape and not torch.equal(blind, copied)
    assert model.rollout_latents(windows, actions).shape == (3, K, 16)
    assert model.target_latents(windows).shape == (3, K + 1, 16)
    assert model.target_latents(windows[:, 1:]).shape == (3, K, 16)
    with pytest.raises(ValueError, match=rf"channels-last context frames \(B, {SIZE}, {SIZE}, 3\)"):
        model.predict_frames(windows[:, 0].permute(0, 3, 1, 2), actions)
    with pytest.raises(ValueError, match=r"actions must be \(B=3, K, A\) with K >= 1 steps"):
        model.rollout_latents(windows, actions[:, :0])

    fdm_only = pretrain(
        tiny_config(tmp_path / "fdm", objective="fdm", steps=1), dataset, progress=False
    )
    with pytest.raises(ValueError, match="no future-frame decoder"):
        load_world_model(fdm_only).predict_frames(windows, actions)
    recon = pretrain(
        tiny_config(tmp_path / "recon", objective="recon", steps=1), dataset, progress=False
    )
    with pytest.raises(ValueError, match="no action-conditioned dynamics model"):
        load_world_model(recon).rollout_latents(windows, actions)


@pytest.mark.parametrize("objective", ["fdm+future", "recon"])
def test_decoder_conditioned_on_proprio(
    objective: str, dataset: MovingSquareDataset, tmp_path: Path
) -> None:
    """``decoder_proprio``: the frames decoded without the copy path are drawn from the latent
    plus their own proprio, which therefore reaches them (and gets a gradient); the copy-path
    prediction does not read it."""
    config = tiny_config(tmp_path / "run", objective=objective, decoder_proprio=True)
    out = pretrain(config, dataset, progress=False)
    assert (out / artifacts.PREDICTIONS / "step_00004.png").is_file()
    model = load_world_model(out)
    assert model.config.decoder_proprio_dim == 2  # the synthetic proprio: the last action
    batch = dataset.__getitems__([0, 3, 7, 9])
    windows, actions = torch.from_numpy(batch["pixels"]), torch.from_numpy(batch["action"])
    proprio = torch.from_numpy(batch["proprio"])
    with pytest.raises(ValueError, match="conditioned on proprio"):
        model(windows, actions)
    with pytest.raises(ValueError, match=r"proprio must be \(4, 3, 2\)"):
        model(windows, actions, None, proprio[:, :2])
    model.train().requires_grad_(True)
    losses, _ = model(windows, actions, None, proprio)
    sum(losses.values()).backward()
    assert model.decoder.condition.weight.grad.abs().sum() > 0
    if objective == "recon":
        return
    model.eval()
    future = proprio[:, 1:]
    blind = model.predict_frames(windows, actions, copy_context=False, proprio=future)
    assert not torch.equal(
        blind, model.predict_frames(windows, actions, copy_context=False, proprio=future + 5)
    )
    with pytest.raises(ValueError, match="conditioned on proprio"):
        model.predict_frames(windows, actions, copy_context=False)
    assert torch.equal(  # the copy path's prediction does not use proprio
        model.predict_frames(windows, actions),
        model.predict_frames(windows, actions, proprio=future + 5),
    )


def test_decoder_proprio_needs_a_decoder_and_proprio(dataset, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only 'future' and 'recon' use"):
        pretrain(tiny_config(tmp_path / "a", objective="fdm", decoder_proprio=True), dataset)

    class NoProprio(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(dataset)

        def __getitem__(self, index: int) -> dict:
            return {k: v for k, v in dataset[index].items() if k != "proprio"}

    with pytest.raises(ValueError, match="needs windows with 'proprio'"):
        pretrain(tiny_config(tmp_path / "b", decoder_proprio=True), NoProprio(), progress=False)


def test_appearance_code_is_each_channels_mean_and_spread() -> None:
    frames = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    frames[0] = torch.tensor([255, 0, 51], dtype=torch.uint8)  # one colour everywhere
    frames[1, :2] = 255  # half white, half black
    code = appearance_code(frames)
    assert code.shape == (2, APPEARANCE_DIM)
    assert torch.allclose(code[0], torch.tensor([0.5, -0.5, -0.3, 0, 0, 0]))
    assert torch.allclose(code[1, :3], torch.zeros(3)) and torch.all(code[1, 3:] > 0.5)


@pytest.mark.parametrize("with_proprio", [False, True])
def test_decoder_conditioned_on_appearance(
    with_proprio: bool, dataset: MovingSquareDataset, tmp_path: Path
) -> None:
    """``decoder_appearance``: the frames decoded without the copy path also read their
    context frame's colour statistics (after the proprio when both are asked for), which get a
    gradient and change what is drawn; the copy-path prediction does not read them."""
    config = tiny_config(tmp_path / "run", decoder_appearance=True, decoder_proprio=with_proprio)
    model = load_world_model(pretrain(config, dataset, progress=False))
    assert model.decoder.condition.in_features == APPEARANCE_DIM + 2 * with_proprio
    batch = dataset.__getitems__([0, 3, 7, 9])
    windows, actions = torch.from_numpy(batch["pixels"]), torch.from_numpy(batch["action"])
    proprio = torch.from_numpy(batch["proprio"]) if with_proprio else None
    model.train().requires_grad_(True)
    losses, _ = model(windows, actions, None, proprio)
    sum(losses.values()).backward()
    weight = model.decoder.condition.weight.grad
    assert weight[:, -APPEARANCE_DIM:].abs().sum() > 0
    model.eval()
    future = None if proprio is None else proprio[:, 1:]
    codes = []
    model._blind_condition = lambda p, c, repeats=1: (
        codes.append((c, repeats)) or (WorldModel._blind_condition(model, p, c, repeats))
    )
    model.predict_frames(windows, actions, copy_context=False, proprio=future)
    assert torch.equal(codes[0][0], windows[:, 0]) and codes[0][1] == windows.shape[1] - 1
    codes.clear()
    model.predict_frames(windows, actions)
    assert codes == []  # the copy path reads the context frame itself


def test_recon_strip_is_drawn_as_recon_trains(dataset: MovingSquareDataset, tmp_path: Path) -> None:
    """``recon``'s picture strip goes through ``reconstruct``, which conditions the decoder as
    training does (the strip once called the decoder with the proprio alone and crashed)."""
    config = tiny_config(
        tmp_path / "run", objective="recon", decoder_appearance=True, decoder_proprio=True
    )
    out = pretrain(config, dataset, progress=False)
    assert (out / artifacts.PREDICTIONS / "step_00004.png").is_file()
    model = load_world_model(out)
    batch = dataset.__getitems__([0, 3])
    frames, proprio = torch.from_numpy(batch["pixels"][:, 0]), torch.from_numpy(batch["proprio"])
    drawn = model.reconstruct(frames, proprio[:, 0])
    assert drawn.shape == (2, *frames.shape[1:3], 3) and drawn.dtype == torch.uint8
    with pytest.raises(ValueError, match="conditioned on proprio"):
        model.reconstruct(frames)


def test_same_seed_same_weights_on_cpu(dataset, tmp_path: Path) -> None:
    a = pretrain(tiny_config(tmp_path / "a", image_every=0), dataset, progress=False)
    b = pretrain(tiny_config(tmp_path / "b", image_every=0), dataset, progress=False)
    c = pretrain(tiny_config(tmp_path / "c", image_every=0, seed=1), dataset, progress=False)
    assert_same_tensors(
        load_tensors(a / artifacts.MODEL_WEIGHTS), load_tensors(b / artifacts.MODEL_WEIGHTS)
    )
    assert not torch.equal(
        load_tensors(a / artifacts.ENCODER_WEIGHTS)["head.weight"],
        load_tensors(c / artifacts.ENCODER_WEIGHTS)["head.weight"],
    )
    # The same curve, step by step, not only the same end.
    curves = [
        [(row["step"], row["pretrain/loss"]) for row in read_csv(run / artifacts.METRICS)]
        for run in (a, b, c)
    ]
    assert curves[0] == curves[1] and len(curves[0]) > 1 and curves[0] != curves[2]


def test_the_seed_draws_the_batch_order_too(dataset, tmp_path: Path) -> None:
    """Seeds 0 and 1 differed through the weights' initialisation alone as far as the test
    above can tell: the windows each step draws must follow the seed as well."""

    def first_batch(seed: int) -> torch.Tensor:
        run = PretrainRun(tiny_config(tmp_path / f"s{seed}", seed=seed), dataset, False)
        batches = run.batches(0)
        try:
            return next(batches)["pixels"]
        finally:
            close_batches(batches)
            run.close()  # its writer lock: the same seed's run is made again below

    assert torch.equal(first_batch(0), first_batch(0))
    assert not torch.equal(first_batch(0), first_batch(1))


def test_resume_is_bit_exact(dataset, tmp_path: Path) -> None:
    straight = pretrain(tiny_config(tmp_path / "straight", steps=6), dataset, progress=False)
    pretrain(tiny_config(tmp_path / "split", steps=2), dataset, progress=False)
    # Retraining from step 0 would end alike (the same seed): the resume must start at 2,
    # with the checkpoint's weights, and train the 4 steps left.
    run = PretrainRun(tiny_config(tmp_path / "split", steps=6, resume=True), dataset, False)
    try:
        assert run.step == 2
        saved = load_tensors(tmp_path / "split" / "checkpoints/step_0000002/model.safetensors")
        assert_same_tensors(saved, {k: v.cpu() for k, v in run.model.state_dict().items()})
    finally:
        run.close()
    resumed = pretrain(
        tiny_config(tmp_path / "split", steps=6, resume=True), dataset, progress=False
    )
    assert_same_tensors(
        load_tensors(straight / artifacts.MODEL_WEIGHTS),
        load_tensors(resumed / artifacts.MODEL_WEIGHTS),
    )
    optimizer_a = torch.load(straight / "checkpoints/step_0000006/optimizer.pt", weights_only=True)
    optimizer_b = torch.load(resumed / "checkpoints/step_0000006/optimizer.pt", weights_only=True)
    for key, state in optimizer_a["state"].items():
        for name, value in state.items():
            assert torch.equal(
                torch.as_tensor(value), torch.as_tensor(optimizer_b["state"][key][name])
            )
    rows_a, rows_b = read_csv(straight / artifacts.METRICS), read_csv(resumed / artifacts.METRICS)
    assert [r["step"] for r in rows_b] == ["2", "4", "6"]
    for row_a, row_b in zip(rows_a, rows_b, strict=True):
        assert row_a["pretrain/loss"] == row_b["pretrain/loss"]
    # Resumed on another device type, it continues, but says it is not the same run.
    config_path = tmp_path / "split" / artifacts.PRETRAIN_CONFIG
    saved_config = json.loads(config_path.read_text())
    assert (saved_config["device_type"], saved_config["amp"]) == ("cpu", False)
    config_path.write_text(json.dumps({**saved_config, "device_type": "cuda", "amp": True}))
    with pytest.warns(UserWarning, match="trained on cuda .*on.*, this one runs on cpu"):
        pretrain(tiny_config(tmp_path / "split", steps=8, resume=True), dataset, progress=False)
    record = json.loads(config_path.read_text())  # where the earlier steps were computed
    assert record["earlier_devices"] == [{"device_type": "cuda", "amp": True}]
    assert (record["device_type"], record["amp"]) == ("cpu", False)


def test_a_resume_keeps_the_thread_count_and_versions_the_earlier_steps_ran_with(
    dataset, tmp_path: Path
) -> None:
    """The record held only the last process's thread count and versions: a run resumed at
    another count read as if all its steps ran there, and a rerun "at the recorded count"
    could not reproduce it."""
    out = tmp_path / "run"
    pretrain(tiny_config(out, steps=4), dataset, progress=False)
    config_path = out / artifacts.PRETRAIN_CONFIG
    saved = json.loads(config_path.read_text())
    assert "earlier_settings" not in saved
    earlier = {"cpu_threads": saved["cpu_threads"] + 5, "sslrobot_version": "0.0.1"}
    config_path.write_text(json.dumps({**saved, **earlier}))
    with pytest.warns(UserWarning, match="not bit for bit"):
        pretrain(tiny_config(out, steps=6, resume=True), dataset, progress=False)
    record = json.loads(config_path.read_text())
    assert record["earlier_settings"] == [
        {**earlier, "torch_version": saved["torch_version"], "until_step": 4}
    ]
    assert record["cpu_threads"] == saved["cpu_threads"]  # this process's own
    pretrain(tiny_config(out, steps=8, resume=True), dataset, progress=False)  # nothing new
    assert json.loads(config_path.read_text())["earlier_settings"] == record["earlier_settings"]


def test_resume_refuses_changed_settings_and_missing_checkpoints(dataset, tmp_path: Path) -> None:
    # Interrupted before the first checkpoint: --resume starts over, and says so.
    with pytest.warns(UserWarning, match="no checkpoint"):
        pretrain(tiny_config(tmp_path / "nothing", resume=True), dataset, progress=False)
    assert (tmp_path / "nothing" / artifacts.ENCODER_WEIGHTS).is_file()
    # Not among files of something else: --resume wrote an encoder beside them.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds no pretraining to continue .*\(todo.txt\)"):
        pretrain(tiny_config(tmp_path / "notes", resume=True), dataset, progress=False)
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["todo.txt"]
    pretrain(tiny_config(tmp_path / "run", steps=2), dataset, progress=False)
    with pytest.raises(ValueError, match="lr"):
        pretrain(
            tiny_config(tmp_path / "run", steps=4, resume=True, lr=0.5), dataset, progress=False
        )
    with pytest.raises(FileExistsError, match="not empty"):
        pretrain(tiny_config(tmp_path / "run", steps=4), dataset, progress=False)
    other = MovingSquareDataset(num_episodes=5, episode_length=12, num_steps=K, image_size=SIZE)
    with pytest.raises(ValueError, match=r"trained on 44 windows, .* hold 55"):
        pretrain(tiny_config(tmp_path / "run", steps=4, resume=True), other, progress=False)
    # A checkpoint without its optimizer state would continue on fresh Adam moments, silently.
    for optimizer_file in (tmp_path / "run" / artifacts.CHECKPOINTS).glob("*/optimizer.pt"):
        optimizer_file.unlink()
    with pytest.raises(ValueError, match="has no optimizer state; it cannot continue"):
        pretrain(tiny_config(tmp_path / "run", steps=4, resume=True), dataset, progress=False)


class NaNAfter(torch.utils.data.Dataset):
    """Serves ``dataset``'s windows, with NaN actions once ``clean`` windows have been served
    (or, with ``cut``, fails there instead: a power cut)."""

    def __init__(self, dataset: MovingSquareDataset, clean: int, cut: bool = False) -> None:
        self.dataset, self.clean, self.cut, self.served = dataset, clean, cut, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        item = dict(self.dataset[index])
        self.served += 1
        if self.served > self.clean:
            if self.cut:
                raise KeyboardInterrupt("cut")
            item["action"] = np.full_like(item["action"], np.nan)
        return item


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(
    dataset, tmp_path: Path
) -> None:
    config = tiny_config(tmp_path / "run", steps=6, image_every=0, objective="fdm")
    poisoned = NaNAfter(dataset, clean=2 * 8 + 1)  # window 1 of batch 3 is the first NaN
    with pytest.raises(NonFiniteLossError, match="step 3") as error:
        pretrain(config, poisoned, progress=False)
    assert "step_0000002" in str(error.value)
    root = tmp_path / "run" / artifacts.CHECKPOINTS
    assert checkpoint.latest_checkpoint_path(root).name == "step_0000002"
    assert sorted(p.name for p in root.iterdir()) == ["latest.json", "step_0000002"]
    kept = checkpoint.load_checkpoint(root / "step_0000002")
    assert all(torch.isfinite(t).all() for t in kept.model_state.values())
    assert not (tmp_path / "run" / artifacts.MODEL_WEIGHTS).exists()
    # The kept checkpoint is the state after 2 clean steps: resuming on clean data works and
    # matches a clean straight run.
    resumed = pretrain(dataclasses.replace(config, resume=True), dataset, progress=False)
    straight = pretrain(
        dataclasses.replace(config, out=str(tmp_path / "clean")), dataset, progress=False
    )
    assert_same_tensors(
        load_tensors(straight / artifacts.MODEL_WEIGHTS),
        load_tensors(resumed / artifacts.MODEL_WEIGHTS),
    )


def test_a_batch_larger_than_the_training_windows_is_refused(dataset, tmp_path: Path) -> None:
    """``--batch-size 100000`` on a small dataset ran until the OOM killer stopped it at 23 GB;
    a step can take at most every training window once. A random init (steps 0) draws no
    batch, so its batch is not checked (``sslrobot run`` passes it the run's)."""
    size = len(dataset)
    message = (
        f"batch_size {size + 1}: a step takes {size + 1} windows, but the training split holds "
        f"only {size}; pass a smaller --batch-size (at most {size}; `sslrobot run`: --set "
        f"pretrain_batch_size, the total over processes, at most {size})"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        pretrain(tiny_config(tmp_path / "big", batch_size=size + 1), dataset, progress=False)
    assert not (tmp_path / "big").exists()
    config = tiny_config(tmp_path / "none", objective="none", steps=0, batch_size=10 * size)
    assert pretrain(config, dataset, progress=False).is_dir()
    # Every window once per step is allowed (the tests' tiny datasets come close).
    pretrain(tiny_config(tmp_path / "all", batch_size=size, steps=1), dataset, progress=False)


def test_bad_settings_are_rejected(dataset, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="amp"):
        pretrain(tiny_config(tmp_path / "a", amp=True, device="cpu"), dataset, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pretrain(tiny_config(tmp_path / "b", device="cuda"), dataset, progress=False)
    with pytest.raises(ValueError, match="windows must hold 4 frames"):
        pretrain(tiny_config(tmp_path / "c", num_steps_ahead=3), dataset, progress=False)
    with pytest.raises(ValueError, match="decoded_steps"):
        tiny_config(tmp_path / "d", decoded_steps=3)
    with pytest.raises(ValueError, match="batch_size"):
        tiny_config(tmp_path / "e", batch_size=1)
    # Accepted before and failing late: NaN at step 2, a crash at the first shift.
    with pytest.raises(ValueError, match="lr must be finite and > 0, got inf"):
        tiny_config(tmp_path / "f", lr=math.inf)
    with pytest.raises(ValueError, match="temperature must be finite"):
        tiny_config(tmp_path / "g", temperature=math.inf)
    with pytest.raises(ValueError, match="data must name dataset directories, got ''"):
        tiny_config(tmp_path / "h", data="")
    # The same dataset twice (here once through "..") was drawn from twice as often, unsaid.
    twice = [str(tmp_path / "d1"), str(tmp_path / "x" / ".." / "d1")]
    with pytest.raises(ValueError, match="data names the same dataset more than once"):
        pretrain(tiny_config(tmp_path / "h", data=twice), progress=False)
    # ... by new runs: a config saved before the check stays readable.
    saved = tiny_config(tmp_path / "h", data=twice).to_dict()
    assert PretrainConfig.from_dict(saved).data == tuple(twice)
    with pytest.raises(ValueError, match="shift_pad=1000 must be below the image size"):
        pretrain(tiny_config(tmp_path / "i", shift_pad=1000), dataset, progress=False)


def test_a_fractional_share_of_blind_windows_is_warned_about(dataset, tmp_path: Path) -> None:
    """``future`` with ``batch_size * context_dropout`` not whole warns how many windows of each
    batch go without context (the floor); a whole product, or no ``future``, is silent."""
    message = (
        "context_dropout=0.3 of a batch of 8 windows is 2.4: 2 of each batch (25%) are decoded "
        "without context"
    )
    with pytest.warns(UserWarning, match=re.escape(message)):
        PretrainRun(tiny_config(tmp_path / "a", context_dropout=0.3), dataset).close()
    for name, changes in [("b", {"context_dropout": 0.25}), ("c", {"objective": "fdm"})]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            config = tiny_config(tmp_path / name, **{"context_dropout": 0.3, **changes})
            PretrainRun(config, dataset).close()
        assert not [w for w in caught if "context_dropout" in str(w.message)], name


@pytest.mark.parametrize("grad_clip", [1e-3, None])
def test_grad_clip_bounds_the_global_gradient_norm(
    grad_clip: float | None, dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step clips the global gradient norm of the trainable parameters to ``grad_clip``,
    so the gradients the optimizer steps on have that norm, and logs the norm before clipping;
    ``None`` clips at infinity (the norm is still computed, for the log) and changes nothing."""
    run = PretrainRun(tiny_config(tmp_path / "run", grad_clip=grad_clip), dataset)
    max_norms: list[float] = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording(parameters, max_norm: float, **kwargs) -> torch.Tensor:
        max_norms.append(max_norm)
        return clip(parameters, max_norm, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    try:
        metrics = run.train_step(collate_windows([dataset[i] for i in range(8)]))
        # The gradients stay in place until the next step's zero_grad: what the step used.
        after = float(torch.stack([p.grad.norm() for p in run.trainable]).norm())
    finally:
        run.close()
    before = float(metrics["grad_norm"])
    assert before > 1e-2  # far above the clip, or clipping would change nothing
    if grad_clip is None:
        assert max_norms == [math.inf]
        assert after == pytest.approx(before, rel=1e-5)
    else:
        assert max_norms == [grad_clip]
        assert after == pytest.approx(grad_clip, rel=1e-4)


@pytest.mark.parametrize("strength", [0.3, 0.0])
def test_color_jitter_reaches_the_model_as_one_gain_per_window_and_channel(
    strength: float, dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With shifts off, the frames the world model trains on are the stored windows times one
    brightness-and-colour gain per window and channel (shared by all its frames, rounded and
    clamped), within the documented range, not all 1; ``color_jitter=0`` passes them as stored."""
    config = tiny_config(
        tmp_path / "run", objective="fdm", augment="none", color_jitter=strength, batch_size=16
    )
    run = PretrainRun(config, dataset)
    seen: list[torch.Tensor] = []
    forward = run.model.forward

    def recording(pixels: torch.Tensor, *args, **kwargs):
        seen.append(pixels.clone())
        return forward(pixels, *args, **kwargs)

    monkeypatch.setattr(run.model, "forward", recording)
    stored = torch.from_numpy(np.stack([dataset[i]["pixels"] for i in range(16)]))
    try:
        run.train_step(collate_windows([dataset[i] for i in range(16)]))
    finally:
        run.close()
    assert len(seen) == 1 and seen[0].shape == stored.shape and seen[0].dtype == torch.uint8
    if strength == 0.0:
        assert torch.equal(seen[0], stored)
        return
    low, high = (1 - strength) * (1 - strength / 2), (1 + strength) * (1 + strength / 2)
    value = stored.double().flatten(1, 3)  # (B, T*H*W, 3)
    out = seen[0].double().flatten(1, 3)
    assert torch.all((value > 0) | (out == 0))
    # round(v * g) == o for o < 255, and v * g >= 254.5 for o == 255: an interval of gains g
    # per pixel; one gain per window and channel fits them all when the intervals meet.
    lowest = torch.where(value > 0, (out - 0.5) / value, -math.inf).amax(dim=1)
    unclamped = (out < 255) & (value > 0)
    highest = torch.where(unclamped, (out + 0.5) / value, math.inf).amin(dim=1)  # (B, 3)
    assert torch.all(lowest <= highest + 1e-6)
    assert torch.all(highest >= low - 1e-6) and torch.all(lowest <= high + 1e-6)
    assert torch.any((highest < 1) | (lowest > 1))  # some gains are not 1
    assert not torch.equal(seen[0], stored)


@pytest.mark.parametrize("objective", ["fdm+future", "fdm"])
def test_keypoint_encoder_trains_and_draws_its_keypoints(
    objective: str, dataset: MovingSquareDataset, tmp_path: Path
) -> None:
    keypoints = EncoderConfig.keypoints(image_size=SIZE, feature_dim=8)
    config = tiny_config(tmp_path / "run", encoder=keypoints, objective=objective)
    out = pretrain(config, dataset, progress=False)
    drawn = sorted(p.name for p in (out / artifacts.KEYPOINTS).glob("*.png"))
    assert drawn == ["step_00002.png", "step_00004.png"]  # with or without a decoder
    encoder, loaded = load_encoder(out)
    assert loaded == keypoints
    frames = torch.from_numpy(dataset[0]["pixels"])
    torch.testing.assert_close(encoder.keypoints(frames).flatten(1), encoder(frames))


def test_keypoint_strip_draws_each_point_where_it_is() -> None:
    from sslrobot.pretraining.plots import keypoint_strip

    frames = np.zeros((2, 8, 8, 3), np.uint8)
    points = np.array([[[-1.0, -1.0], [1.0, 1.0]], [[1.0, -1.0], [0.0, 0.0]]])
    image = keypoint_strip(frames, points, scale=4)  # 32x32 frames, 2 px gaps
    assert image.shape == (32 + 4, 2 * (32 + 2) + 2, 3)
    first, second = image[2:34, 2:34], image[2:34, 36:68]
    assert first[0, 0].tolist() == [255, 0, 0]  # keypoint 0 (red) at the top-left corner
    assert first[31, 31].any() and first[31, 31].tolist() != [255, 0, 0]  # keypoint 1
    assert second[0, 31].tolist() == [255, 0, 0] and not second[31, 0].any()
    with pytest.raises(ValueError, match="keypoints"):
        keypoint_strip(frames, points[:1])
    # An encoder's -1 and +1 are its first and last cells' centres, not the corners.
    inset = keypoint_strip(frames, points, scale=4, pixel_range=(2.0, 5.0))[2:34, 2:34]
    assert inset[10, 10].tolist() == [255, 0, 0] and not inset[0, 0].any()  # pixel 2 -> 9.5
    assert inset[22, 22].any() and not inset[31, 31].any()  # pixel 5 -> 21.5


def test_keypoint_coordinates_map_to_the_centres_of_the_first_and_last_cells() -> None:
    """-1 and +1 are the spatial softmax's first and last cells; their receptive fields are
    centred 1.5 and 57.5 pixels in at 64 px, the cells 8 pixels apart (as the equivariance
    term's ``keypoint_units_per_pixel`` has it)."""
    from sslrobot.models.encoder import encoder_config_for
    from sslrobot.pretraining.world_model import keypoint_units_per_pixel

    config = encoder_config_for("keypoints")
    low, high = config.keypoint_pixel_range()
    assert (low, high) == (1.5, 57.5)
    assert 2.0 / (high - low) == pytest.approx(keypoint_units_per_pixel(config))
    assert encoder_config_for("drqv2").keypoint_pixel_range() == (7.0, 55.0)


def test_frame_stack_trains_and_loads(tmp_path: Path) -> None:
    stacked = dataclasses.replace(TINY_ENCODER, frame_stack=2)
    data = MovingSquareDataset(num_episodes=3, episode_length=10, num_steps=K + 1, image_size=SIZE)
    out = pretrain(tiny_config(tmp_path / "run", encoder=stacked, steps=2), data, progress=False)
    encoder, config = load_encoder(out)
    assert config.frame_stack == 2 and config.in_channels == 6
    window = torch.from_numpy(data[0]["pixels"])  # (K+2, H, W, 3)
    frames = torch.cat([window[:-1], window[1:]], dim=-1)  # (K+1, H, W, 6)
    assert encoder(frames).shape == (K + 1, 16)
    predicted = load_world_model(out).predict_frames(frames[None, :1], torch.zeros(1, K, 2))
    assert predicted.shape == (1, K, SIZE, SIZE, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("objective", ["fdm+future", "contrastive+inverse+recon"])
def test_cuda_bf16_autocast_with_the_resnet_encoder(
    objective: str, dataset, tmp_path: Path
) -> None:
    encoder = EncoderConfig.impala(image_size=SIZE, feature_dim=16)
    config = tiny_config(tmp_path / "cuda", device="cuda", encoder=encoder, objective=objective)
    run = PretrainRun(config, dataset, progress=False)
    assert run.amp and run.device.type == "cuda"
    out = run.train()
    run.close()
    rows = read_csv(out / artifacts.METRICS)
    assert all(math.isfinite(float(r["pretrain/loss"])) for r in rows)
    loaded, _ = load_encoder(out, device="cuda")
    frames = torch.from_numpy(dataset[0]["pixels"]).cuda()
    assert loaded(frames).device.type == "cuda"
    if objective == "fdm+future":
        model = load_world_model(out, device="cuda")
        batch = dataset.__getitems__([0, 1])
        predicted = model.predict_frames(
            torch.from_numpy(batch["pixels"]).cuda(), torch.from_numpy(batch["action"]).cuda()
        )
        assert predicted.shape == (2, K, SIZE, SIZE, 3) and predicted.device.type == "cuda"


def test_a_real_objective_with_no_steps_warns_of_its_label(dataset, tmp_path: Path) -> None:
    """An encoder labelled `fdm+future` that never trained would carry that label into every
    probe and policy made with it."""
    with pytest.warns(UserWarning, match="writes a randomly initialised encoder labelled"):
        pretrain(tiny_config(tmp_path / "fdm0", steps=0), dataset, progress=False)


def test_a_resumed_run_logs_the_rows_of_the_uninterrupted_one(dataset, tmp_path: Path) -> None:
    """Cut between a checkpoint (step 3) and the next metrics row (step 4): the resumed
    run's row at step 4 averages steps 1-4, as the uninterrupted run's does, not only step 4."""
    settings = {"steps": 8, "log_every": 4, "checkpoint_every": 3, "image_every": 0}
    settings |= {"num_workers": 0, "prefetch": 0}
    straight = pretrain(tiny_config(tmp_path / "straight", **settings), dataset, progress=False)
    with pytest.raises(KeyboardInterrupt):
        cut = NaNAfter(dataset, clean=8 * 4, cut=True)  # fails reading step 5's batch
        pretrain(tiny_config(tmp_path / "cut", **settings), cut, progress=False)
    resumed = pretrain(
        tiny_config(tmp_path / "cut", resume=True, **settings), dataset, progress=False
    )
    rows_a, rows_b = read_csv(straight / artifacts.METRICS), read_csv(resumed / artifacts.METRICS)
    assert [r["step"] for r in rows_b] == [r["step"] for r in rows_a] == ["4", "8"]
    for row_a, row_b in zip(rows_a, rows_b, strict=True):
        assert row_a["pretrain/loss"] == row_b["pretrain/loss"]


def test_keypoint_pictures_use_the_datas_frame_size(dataset, tmp_path: Path, monkeypatch) -> None:
    """A config's encoder is built at 64 px unless told (the trainer takes the size from the
    data): the pictures must place keypoints by the model's encoder, not the config's."""
    from sslrobot.models.encoder import encoder_config_for
    from sslrobot.pretraining import plots

    ranges = []
    strip = plots.keypoint_strip

    def recording(*args, **kwargs):
        ranges.append(kwargs.get("pixel_range"))
        return strip(*args, **kwargs)

    monkeypatch.setattr(plots, "keypoint_strip", recording)
    config = tiny_config(tmp_path / "run", steps=1, image_every=1, encoder="keypoints")
    assert config.encoder.image_size == 64 and SIZE != 64
    pretrain(config, dataset, progress=False)
    assert ranges and set(ranges) == {encoder_config_for("keypoints", SIZE).keypoint_pixel_range()}


@pytest.mark.parametrize("fails_at", ["weights", "optimizer", "state", "rename"])
def test_a_crash_while_saving_leaves_the_previous_checkpoint_whole_and_pointed_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails_at: str
) -> None:
    """The module's promise, at each write of a save: the step-2 checkpoint stays complete and
    ``latest.json`` names it; nothing of step 4 is left under its final name or half-made."""
    root = tmp_path / "checkpoints"
    weights = {"w": torch.arange(4.0)}
    checkpoint.save_checkpoint(root, 2, weights, {"lr": 0.1}, {"note": "two"})
    real = {
        "weights": (checkpoint.artifacts, "save_safetensors"),
        "optimizer": (checkpoint, "atomic_write"),
        "state": (checkpoint.artifacts, "save_json"),
        "rename": (checkpoint.os, "replace"),
    }[fails_at]
    original = getattr(*real)

    def interrupted(*args, **kwargs):
        if fails_at == "state" and Path(args[0]).name == checkpoint.LATEST:
            return original(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(*real, interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(root, 4, {"w": torch.zeros(4)}, {"lr": 0.2}, {"note": "four"})
    monkeypatch.undo()
    assert checkpoint.latest_checkpoint_path(root) == root / "step_0000002"
    assert sorted(p.name for p in root.iterdir()) == ["latest.json", "step_0000002"]
    loaded = checkpoint.load_checkpoint(root / "step_0000002")
    assert torch.equal(loaded.model_state["w"], weights["w"])
    assert loaded.optimizer_state == {"lr": 0.1} and loaded.state["note"] == "two"


def test_a_checkpoint_renamed_into_place_is_resumed_from_without_latest_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the rename and before latest.json left a complete checkpoint that a
    resume ignored (starting at step 0) and the next save deleted."""
    root = tmp_path / "checkpoints"
    checkpoint.save_checkpoint(root, 2, {"w": torch.zeros(1)}, None)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(root, 4, {"w": torch.ones(1)}, None)
    monkeypatch.undo()
    assert checkpoint.latest_checkpoint_path(root) == root / "step_0000004"
    (root / checkpoint.LATEST).unlink()  # or a crash before the first one was written
    assert checkpoint.latest_checkpoint_path(root) == root / "step_0000004"


def test_a_resume_at_the_last_step_tidies_what_a_kill_during_its_save_left(
    dataset, tmp_path: Path
) -> None:
    """Killed between the final checkpoint's rename and its pruning, a run resumed at its last
    step saved nothing more: latest.json named the one before, an extra checkpoint stayed,
    and a half-deleted one (no state.json) was left among them."""
    out = tmp_path / "run"
    pretrain(tiny_config(out, steps=4), dataset, progress=False)  # keeps step 2 and step 4
    root = out / artifacts.CHECKPOINTS
    shutil.copytree(root / "step_0000002", root / "step_0000001")  # one past `keep`
    half = root / "step_0000000"
    shutil.copytree(root / "step_0000002", half)
    (half / checkpoint.STATE).unlink()  # its pruning cut short
    (root / checkpoint.LATEST).write_text(json.dumps({"step": 2, "name": "step_0000002"}))
    pretrain(tiny_config(out, steps=4, resume=True), dataset, progress=False)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step_0000002", "step_0000004"]
    assert json.loads((root / checkpoint.LATEST).read_text())["name"] == "step_0000004"


def test_a_second_writer_of_the_same_output_is_refused(dataset, tmp_path: Path) -> None:
    """A requeued job resuming into a directory another still writes pruned the other's
    checkpoints; the writer lock refuses it, and is released when the run ends."""
    from sslrobot.utils.io import OUTPUT_LOCK, exclusive_lock

    out = tmp_path / "run"
    out.mkdir()
    held = exclusive_lock(out / OUTPUT_LOCK, "held by the test")
    with held, pytest.raises(BlockingIOError, match=r"another sslrobot pretrain is writing"):
        pretrain(tiny_config(out, steps=2, resume=True), dataset, progress=False)
    pretrain(tiny_config(out, steps=2, resume=True), dataset, progress=False)
    with exclusive_lock(out / OUTPUT_LOCK, "free again after the run"):
        pass
    # Held from before the directory is judged: a job requeued while the first still ran
    # passed the checks, and took the lock (deleting the finished weights to train them
    # again) once the first finished.
    with (
        PretrainRun(tiny_config(out, steps=4, resume=True), dataset, progress=False),
        pytest.raises(BlockingIOError, match=r"another sslrobot pretrain is writing"),
    ):
        PretrainRun(tiny_config(out, steps=4, resume=True), dataset, progress=False)
    with pytest.raises(FileExistsError, match="not empty"):  # a refused run lets go of it
        PretrainRun(tiny_config(out, steps=4), dataset, progress=False)
    with exclusive_lock(out / OUTPUT_LOCK, "free again after a refused run"):
        pass
    # A run refused for its settings leaves neither the directory it made nor a lock file.
    with pytest.raises(ValueError, match="batch_size 100000"):
        PretrainRun(tiny_config(tmp_path / "new" / "a" / "run", batch_size=100_000), dataset, False)
    assert not (tmp_path / "new").exists()


def test_a_run_killed_between_its_weight_files_resumes(dataset, tmp_path: Path) -> None:
    """A --steps 0 run (no checkpoints) killed after model.safetensors and before
    encoder.safetensors left a directory that --resume refused as someone else's."""
    out = tmp_path / "run"
    pretrain(tiny_config(out, steps=0), dataset, progress=False)
    written = (out / "encoder.safetensors").read_bytes()
    (out / "encoder.safetensors").unlink()
    pretrain(tiny_config(out, steps=0, resume=True), dataset, progress=False)
    assert (out / "encoder.safetensors").read_bytes() == written  # the run's, not a new one


def test_a_run_pretrained_with_autocast_may_resume_without_it(tmp_path: Path) -> None:
    """A GPU run with --amp on could not continue on a CPU: its amp was carried over (CUDA
    only) and --amp off was refused as a change of settings."""
    saved = tiny_config(tmp_path / "a", amp=True)
    assert tiny_config(tmp_path / "a", amp=False, device="cpu").resume_mismatches(saved) == []
    assert tiny_config(tmp_path / "a", amp=True, lr=0.5).resume_mismatches(saved)


def test_checkpoints_are_kept_by_step_past_seven_digits(tmp_path: Path) -> None:
    """Names sorted as text put step_10010000 before step_9990000: each save then pruned the
    newest but one and kept old ones for ever. A later step's temp directory (another
    process's save in flight) is left alone."""
    root = tmp_path / "checkpoints"
    in_flight = root / ".step_99000000.abc"
    in_flight.mkdir(parents=True)
    for step in (9_990_000, 9_995_000, 10_010_000, 10_020_000):
        checkpoint.save_checkpoint(root, step, {"w": torch.zeros(1)}, None, keep=2)
    kept = sorted(p.name for p in root.iterdir() if p.name.startswith("step_"))
    assert kept == ["step_10010000", "step_10020000"]
    assert checkpoint.latest_checkpoint_path(root) == root / "step_10020000"
    assert in_flight.is_dir()


def test_metrics_log_says_once_when_tensorboard_is_missing(monkeypatch, tmp_path: Path) -> None:
    """Without the extra the TensorBoard mirror was skipped silently, while the README promised
    its logs; now the CSV is still written and the log says where the events are not."""
    import builtins

    real_import = builtins.__import__

    def without_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    from sslrobot.pretraining import metrics_log

    monkeypatch.setattr(builtins, "__import__", without_tensorboard)
    monkeypatch.setattr(metrics_log, "_TENSORBOARD_MISSING_SAID", False)
    with pytest.warns(UserWarning, match=r"tensorboard is not installed: metrics go to metrics"):
        log = MetricsLog(tmp_path, ["pretrain/loss"])
    log.log(1, {"pretrain/loss": 0.5})
    log.close()
    assert float(read_csv(tmp_path / artifacts.METRICS)[0]["pretrain/loss"]) == 0.5
    assert not (tmp_path / artifacts.TENSORBOARD).exists()
    with warnings.catch_warnings():  # once a process: a run of several pretrainings said
        warnings.simplefilter("error")  # it for each
        MetricsLog(tmp_path / "second", ["pretrain/loss"]).close()


def test_a_killed_run_keeps_its_strips_and_a_killed_extension_no_stale_weights(
    dataset, tmp_path: Path, monkeypatch
) -> None:
    """Killed right after a checkpoint, the step's strip was never drawn (the resume starts
    past it); and a finished run extended to more steps, killed, kept its old weights under a
    config naming the new steps, which loaded as if finished."""
    save = PretrainRun._save_checkpoint
    stop_at = [4]

    def save_then_stop(self) -> None:
        save(self)
        if self.step == stop_at[0]:
            raise KeyboardInterrupt

    settings = {"steps": 6, "checkpoint_every": 2, "image_every": 2}
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(PretrainRun, "_save_checkpoint", save_then_stop)
        pretrain(tiny_config(tmp_path / "cut", **settings), dataset, progress=False)
    out = pretrain(tiny_config(tmp_path / "cut", resume=True, **settings), dataset, False)
    strips = sorted(p.name for p in (out / artifacts.PREDICTIONS).glob("*.png"))
    assert strips == ["step_00002.png", "step_00004.png", "step_00006.png"]

    stop_at[0] = 8  # the extension's last checkpoint, before its outputs
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(PretrainRun, "_save_checkpoint", save_then_stop)
        pretrain(tiny_config(out, steps=8, resume=True, checkpoint_every=2), dataset, False)
    assert not (out / artifacts.ENCODER_WEIGHTS).exists()  # not the step-6 encoder as step 8
    assert not (out / artifacts.MODEL_WEIGHTS).exists()
    pretrain(tiny_config(out, steps=8, resume=True, checkpoint_every=2), dataset, False)
    assert (out / artifacts.ENCODER_WEIGHTS).is_file()


def test_failures_of_a_rank_keep_their_kind_and_bad_seeds_are_refused(tmp_path: Path) -> None:
    """A rank's full disk or non-empty output directory, or the package's ValueErrors, became
    RuntimeErrors (a traceback at the command line); a seed past 2**32 - 1 overflowed the
    sampler's generator after the output directory was made; a damaged optimizer state was
    an unpickling traceback."""
    from sslrobot.pretraining.launch import rank_failure

    cases = {
        "OSError: [Errno 28] No space left on device": OSError,
        "FileExistsError: output directory x is not empty": OSError,
        "sslrobot.data.frames.DegenerateFramesError: all frames black": ValueError,
        "ValueError: batch larger than the data": ValueError,
        "RuntimeError: CUDA error": RuntimeError,
        "othermodule.ValueError: not ours": RuntimeError,
    }
    for line, kind in cases.items():
        error = rank_failure(2, "out", 1, f"Traceback ...\n{line}\n")
        assert type(error) is kind and str(error).endswith(f"rank 1: {line}")
    with pytest.raises(ValueError, match=r"seed must be <= 4294967295 \(2\*\*32 - 1\)"):
        tiny_config(tmp_path / "s", seed=2**32)

    from sslrobot.pretraining.checkpoint import OPTIMIZER, load_checkpoint

    run = tmp_path / "run"
    pretrain(tiny_config(run, steps=2), MovingSquareDataset(4, 12, K, SIZE), progress=False)
    (step,) = (run / artifacts.CHECKPOINTS).glob("step_*")
    (step / OPTIMIZER).write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"unreadable \(not a saved optimizer state: .*no earlier"):
        load_checkpoint(step)
    # An empty file's EOFError has no text: the reason was blank. With a checkpoint kept
    # before it, the error says how to go on from there.
    run2 = tmp_path / "run2"
    pretrain(tiny_config(run2, steps=4), MovingSquareDataset(4, 12, K, SIZE), progress=False)
    older, newest = sorted((run2 / artifacts.CHECKPOINTS).glob("step_*"))
    (newest / OPTIMIZER).write_bytes(b"")
    with pytest.raises(
        ValueError,
        match=rf"unreadable \(the file ends early\); move .*{newest.name} aside and "
        rf"--resume continues from {older.name}",
    ):
        load_checkpoint(newest)


def test_closing_the_batches_stops_dataloader_workers(dataset, tmp_path: Path) -> None:
    """Only the prefetch thread was stopped: worker processes lived on until the iterator was
    collected, which a traceback holding the loop's frame put off."""
    run = PretrainRun(tiny_config(tmp_path / "w", num_workers=1), dataset, False)
    batches = run.batches(0)
    try:
        next(batches)
        workers = list(batches._workers)
        assert workers and all(worker.is_alive() for worker in workers)
    finally:
        close_batches(batches)
        run.close()
    assert not any(worker.is_alive() for worker in workers)


def test_a_resumed_runs_tensorboard_draws_each_step_once(tmp_path: Path) -> None:
    """The CSV dropped the rows logged after the checkpoint a run resumed from, TensorBoard
    kept its events: each step logged between the checkpoint and the kill came back twice."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sslrobot.pretraining.metrics_log import MetricsLog

    first = MetricsLog(tmp_path, ["pretrain/loss"])
    for step in (10, 20, 30):  # killed after step 30; its checkpoint was at 20
        first.log(step, {"pretrain/loss": 1.0 / step})
    first.close()
    resumed = MetricsLog(tmp_path, ["pretrain/loss"], resume_step=20)
    for step in (30, 40):
        resumed.log(step, {"pretrain/loss": 1.0 / step})
    resumed.close()
    events = EventAccumulator(str(tmp_path / artifacts.TENSORBOARD))
    events.Reload()
    assert [event.step for event in events.Scalars("pretrain/loss")] == [10, 20, 30, 40]
