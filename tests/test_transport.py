"""Keypoint transport: the features around both frames' keypoints come from the target frame,
the rest from the source; the term trains keypoint encoders only, and pairs across episodes
only frames that share a background."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from test_look_twins import pair  # noqa: F401  (a module fixture: two looks of one stream)
from test_pretrain import SIZE

from sslrobot.models import EncoderConfig
from sslrobot.models.transport import TRANSPORT_STRIDE, Transporter
from sslrobot.pretraining.augment import shift_windows
from sslrobot.pretraining.config import PretrainConfig
from sslrobot.pretraining.trainer import pretrain
from sslrobot.pretraining.world_model import WorldModel, WorldModelConfig

torch.set_num_threads(1)

KEYPOINTS = EncoderConfig.keypoints(image_size=32, feature_dim=8)  # 4 keypoints


def _cell_keypoint(transporter: Transporter, row: int, column: int) -> torch.Tensor:
    """(x, y) in keypoint units of the centre of cell (row, column) of the transported maps."""
    centres = transporter.blobs.centres
    return torch.stack([centres[column], centres[row]])


def _squares(windows: int, steps: int) -> torch.Tensor:
    """uint8 windows (N, T, 32, 32, 3) of a grey table with a white 4-pixel square somewhere
    else in every frame: what transport can learn to draw in a few steps."""
    generator = torch.Generator().manual_seed(0)
    frames = torch.full((windows, steps, 32, 32, 3), 96, dtype=torch.uint8)
    corners = torch.randint(2, 26, (windows, steps, 2), generator=generator)
    for w in range(windows):
        for t in range(steps):
            y, x = corners[w, t].tolist()
            frames[w, t, y : y + 4, x : x + 4] = 255
    return frames


def test_transport_takes_the_target_features_at_its_keypoints_and_the_source_elsewhere() -> None:
    torch.manual_seed(0)
    transporter = Transporter(32, KEYPOINTS.keypoint_pixel_range(), channels=4, sigma=0.05)
    side = 32 // TRANSPORT_STRIDE
    source, target = torch.randn(1, 4, side, side), torch.randn(1, 4, side, side)
    far = _cell_keypoint(transporter, 0, 0)  # every keypoint in one corner cell
    source_points = far.repeat(4)[None]
    target_points = source_points.clone()
    target_points[0, :2] = _cell_keypoint(transporter, 5, 2)  # one target keypoint moves
    source_points[0, 2:4] = _cell_keypoint(transporter, 3, 6)  # one source keypoint moves
    maps = transporter.transport(source, source_points, target, target_points)
    # Where only the source has a keypoint, its stale features are erased.
    torch.testing.assert_close(maps[0, :, 3, 6], torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(maps[0, :, 5, 2], target[0, :, 5, 2], atol=1e-5, rtol=0)
    torch.testing.assert_close(maps[0, :, 0, 0], target[0, :, 0, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(maps[0, :, 7, 7], source[0, :, 7, 7], atol=1e-5, rtol=0)
    frames = transporter.draw(maps)
    assert frames.shape == (1, 3, 32, 32)


def test_the_transport_loss_trains_the_keypoints_and_appearance() -> None:
    torch.manual_seed(0)
    model = WorldModel(
        WorldModelConfig(
            encoder=KEYPOINTS, action_dim=2, objective={"transport": 1.0}, transport_pairs="batch"
        )
    )
    pixels = torch.randint(0, 256, (6, 3, 32, 32, 3), dtype=torch.uint8)
    losses, _ = model(pixels, torch.randn(6, 2, 2))
    assert set(losses) == {"transport"} and losses["transport"].item() > 0
    losses["transport"].backward()
    for part in (model.encoder, model.transporter.appearance, model.transporter.refine):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), type(part).__name__
    episode = WorldModel(
        dataclasses.replace(model.config, transport_pairs="episode")
    )  # o_{t+K} from o_t
    losses, _ = episode(pixels, torch.randn(6, 2, 2))
    assert losses["transport"].item() > 0
    optimizer = torch.optim.Adam(episode.parameters(), lr=3e-3)
    scenes = _squares(6, 3)
    values = []
    for _ in range(40):
        loss = episode(scenes, torch.randn(6, 2, 2))[0]["transport"]
        values.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert values[-1] < 0.7 * values[0]


def test_transport_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="'transport' acts on keypoints"):
        WorldModelConfig(
            encoder=EncoderConfig(image_size=32), action_dim=2, objective={"transport": 1.0}
        )
    normed = dataclasses.replace(KEYPOINTS, layer_norm=True)
    with pytest.raises(ValueError, match=r"'transport' measures .* without layer_norm"):
        WorldModelConfig(encoder=normed, action_dim=2, objective={"transport": 1.0})
    with pytest.raises(ValueError, match="transport_pairs must be one of"):
        WorldModelConfig(
            encoder=KEYPOINTS, action_dim=2, objective={"transport": 1.0}, transport_pairs="all"
        )
    with pytest.raises(ValueError, match="multiple of 4 px"):
        Transporter(30, (0.0, 29.0))
    with pytest.raises(ValueError, match="transport_pairs must be one of"):
        PretrainConfig(out="unused", objective="transport", transport_pairs="all")
    with pytest.raises(ValueError, match="transport_keypoints must be an int"):
        PretrainConfig(out="unused", objective="transport", transport_keypoints=True)
    config = PretrainConfig(out="unused", objective="fdm", transport_pairs="batch")
    with pytest.raises(ValueError, match=r"transport_pairs='batch'.*shapes the 'transport' term"):
        config.refuse_settings_the_objective_ignores()


#: A tiny keypoint encoder's pretraining on transport with batch pairs, two steps.
_BATCH_PAIRS = {
    "objective": "transport",
    "transport_pairs": "batch",
    "steps": 2,
    "batch_size": 4,
    "encoder": EncoderConfig.keypoints(image_size=SIZE, feature_dim=8),
    "image_every": 0,
    "checkpoint_every": 0,
    "tensorboard": False,
    "device": "cpu",
    "prefetch": 0,
}


def test_batch_pairs_need_one_background_across_episodes(pair, tmp_path: Path) -> None:  # noqa: F811
    varied, authored = pair
    settings = _BATCH_PAIRS
    with pytest.raises(ValueError, match=r"visual_preset='train'.*--look-target-data"):
        pretrain(PretrainConfig(out=str(tmp_path / "varied"), data=str(varied), **settings))
    with pytest.raises(ValueError, match=r"collect the twin with --visual-preset none"):
        pretrain(
            PretrainConfig(
                out=str(tmp_path / "twin_varied"),
                data=str(authored),
                look_target_data=str(varied),
                **settings,
            )
        )
    with pytest.raises(ValueError, match=r"color_jitter=0.3 recolours apart"):
        pretrain(
            PretrainConfig(
                out=str(tmp_path / "jitter"), data=str(authored), color_jitter=0.3, **settings
            )
        )
    for out, extra in (
        ("twin", {"data": str(varied), "look_target_data": str(authored)}),
        ("authored", {"data": str(authored)}),
    ):
        encoder = pretrain(PretrainConfig(out=str(tmp_path / out), **extra, **settings))
        assert (encoder / "encoder.safetensors").is_file()


def test_batch_pairs_refuse_a_camera_that_moves_with_the_robot(tmp_path: Path) -> None:
    """Navigate's ego camera shows every episode from elsewhere, in any look."""
    from sslrobot.data import CollectConfig, collect
    from sslrobot.envs import registered_camera_moves

    assert registered_camera_moves("sslrobot/Navigate-v1") is True
    assert registered_camera_moves("sslrobot/Reach-v0") is False
    assert registered_camera_moves("Pendulum-v1") is None
    data = collect(
        CollectConfig(
            env_id="sslrobot/Navigate-v1",
            out=tmp_path / "navigate",
            num_episodes=2,
            max_episode_steps=6,
            image_size=SIZE,
            policy="random",
            seed=0,
            visual_preset="none",
        ),
        progress=False,
    )
    config = PretrainConfig(out=str(tmp_path / "encoder"), data=str(data), **_BATCH_PAIRS)
    with pytest.raises(ValueError, match=r"Navigate-v1's camera moves with the robot"):
        pretrain(config)


def test_transport_keypoints_draws_with_the_first_keypoints_only() -> None:
    torch.manual_seed(0)
    model = WorldModel(
        WorldModelConfig(
            encoder=KEYPOINTS,
            action_dim=2,
            objective={"transport": 1.0},
            transport_pairs="batch",
            transport_keypoints=1,
        )
    )
    points = (torch.rand(6, 8) * 2 - 1).requires_grad_()
    model.encoder.forward = lambda frames: points  # the keypoints of o_t, as a leaf
    losses, _ = model(_squares(6, 2), torch.randn(6, 1, 2))
    (grad,) = torch.autograd.grad(losses["transport"], points)
    assert grad[:, :2].abs().sum() > 0 and torch.equal(grad[:, 2:], torch.zeros(6, 6))
    with pytest.raises(ValueError, match=r"transport_keypoints must be an int in \[0, 4\]"):
        dataclasses.replace(model.config, transport_keypoints=5)


def test_batch_pairs_shift_every_window_of_a_batch_alike() -> None:
    from sslrobot.pretraining.augment import random_shift

    frames = _squares(8, 2)
    shifted = random_shift(frames, 4, torch.Generator().manual_seed(1), per_batch=True)
    found = [
        (dy, dx)
        for dy in range(-4, 5)
        for dx in range(-4, 5)
        if torch.equal(shift_windows(frames, torch.tensor([[dy, dx]] * 8)), shifted)
    ]
    assert len(found) == 1 and found[0] != (0, 0)
    apart = random_shift(frames, 4, torch.Generator().manual_seed(1))
    assert not any(
        torch.equal(shift_windows(frames, torch.tensor([[dy, dx]] * 8)), apart)
        for dy in range(-4, 5)
        for dx in range(-4, 5)
    )
