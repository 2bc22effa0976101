"""Encoder, decoder and transition model: shapes, layouts, validation, config round trips."""

import dataclasses

import pytest
import torch

from sslrobot.models import Decoder, DecoderConfig, Encoder, EncoderConfig, TransitionModel
from sslrobot.models.decoder import (
    KeypointHeatmaps,
    KeypointOffsets,
    blocks_to_frames,
    frames_to_blocks,
)
from sslrobot.models.encoder import ENCODER_ARCHS, SpatialSoftmax, encoder_config_for

torch.set_num_threads(1)


def _frames(batch: int, size: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(
        0, 256, (batch, size, size, channels), dtype=torch.uint8, generator=generator
    )


@pytest.mark.parametrize(
    "config",
    [
        EncoderConfig(),
        EncoderConfig(
            image_size=32, channels=(8, 16), kernel_sizes=(4, 3), strides=(4, 2), paddings=(0, 1)
        ),
        EncoderConfig.drqv2(image_size=32, feature_dim=16),
        EncoderConfig.impala(image_size=32, feature_dim=32),
        EncoderConfig(image_size=32, frame_stack=3, feature_dim=8),
        EncoderConfig.keypoints(image_size=32, feature_dim=16),
    ],
    ids=["default", "small", "drqv2", "resnet", "stack3", "keypoints"],
)
def test_encoder_shapes_and_layouts(config: EncoderConfig) -> None:
    encoder = Encoder(config)
    frames = _frames(4, config.image_size, config.in_channels)  # (B, H, W, C)
    features = encoder(frames)
    assert features.shape == (4, config.feature_dim) == (4, encoder.feature_dim)
    assert features.dtype == torch.float32
    # Channels-first input gives the same features as channels-last.
    torch.testing.assert_close(encoder(frames.permute(0, 3, 1, 2).contiguous()), features)


def test_encoder_normalises_inside() -> None:
    """Constant frames at 127.5 would be exactly zero after ``obs / 255 - 0.5``; check the
    first layer sees normalised values by comparing against a manual forward."""
    encoder = Encoder(
        EncoderConfig(image_size=16, channels=(4,), kernel_sizes=(4,), strides=(4,), paddings=(0,))
    )
    frames = _frames(2, 16)
    x = frames.permute(0, 3, 1, 2).float() / 255.0 - 0.5
    expected = encoder.norm(encoder.head(encoder.trunk(x).flatten(1)))
    torch.testing.assert_close(encoder(frames), expected)


def test_encoder_rejects_bad_input() -> None:
    encoder = Encoder(EncoderConfig(image_size=32))
    with pytest.raises(TypeError, match="uint8"):
        encoder(torch.zeros(2, 32, 32, 3))
    with pytest.raises(ValueError, match=r"\(B, 32, 32, 3\)"):
        encoder(torch.zeros(2, 64, 64, 3, dtype=torch.uint8))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"arch": "vit"}, "arch"),
        (
            {"channels": (8, 16), "kernel_sizes": (4, 3), "paddings": (0, 1), "strides": (2,)},
            "strides",
        ),
        ({"feature_dim": 0}, "feature_dim"),
        ({"readout": "attention"}, "readout"),
        ({"readout": "keypoints", "feature_dim": 7}, "feature_dim must be even"),
        ({"frame_stack": 0}, "frame_stack"),
        ({"image_size": 8, "strides": (4, 4, 4), "paddings": (0, 0, 0)}, "too small"),
        (  # the middle layer empties the map though the last would not
            {
                "image_size": 8,
                "channels": (4, 4),
                "kernel_sizes": (9, 1),
                "strides": (1, 1),
                "paddings": (0, 1),
            },
            "too small",
        ),
        ({"arch": "resnet", "kernel_sizes": (4, 3, 3)}, "odd kernel_sizes"),
        ({"image_size": 12, "frame_stack": 4}, "indistinguishable"),
        ({"layer_norm": "no"}, "layer_norm must be true or false"),
        ({"frame_stack": True}, "must be ints"),
    ],
)
def test_encoder_config_validation_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(EncoderConfig(), **changes)


def test_spatial_softmax_finds_the_peak_of_each_map() -> None:
    softmax = SpatialSoftmax(side=5)
    maps = torch.zeros(2, 3, 5, 5)
    maps[0, 0, 0, 4] = 50.0  # top-right cell: x = +1, y = -1
    maps[0, 1, 2, 2] = 50.0  # centre
    maps[1, 2, 4, 0] = 50.0  # bottom-left: x = -1, y = +1
    points = softmax(maps).view(2, 3, 2)
    torch.testing.assert_close(points[0, 0], torch.tensor([1.0, -1.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(points[0, 1], torch.tensor([0.0, 0.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(points[1, 2], torch.tensor([-1.0, 1.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(points[1, 0], torch.zeros(2), atol=1e-6, rtol=0)  # flat map


def test_spatial_softmax_spread_is_zero_on_a_peak_and_largest_when_flat() -> None:
    softmax = SpatialSoftmax(side=5)
    maps = torch.zeros(1, 3, 5, 5)
    maps[0, 0, 1, 3] = 50.0  # one cell
    maps[0, 1, 2, 1:3] = 50.0  # two neighbouring cells: half a cell either side
    points, spread = softmax.points_and_spread(maps)
    torch.testing.assert_close(points, softmax(maps))
    cell = 0.5  # centres 0.5 apart on 5 cells spanning [-1, 1]
    flat = 2 * torch.linspace(-1, 1, 5).var(unbiased=False)  # x and y variance of uniform
    expected = torch.tensor([[0.0, (cell / 2) ** 2, flat.item()]])
    torch.testing.assert_close(spread, expected, atol=1e-4, rtol=0)


def test_spatial_softmax_keeps_float32_under_bfloat16_autocast() -> None:
    """CUDA pretraining runs under bfloat16 autocast by default; the keypoints' expectations
    (and their spread, a small difference of sums near 1) must not round to bfloat16's ~2^-8.
    CPU autocast stands in for CUDA's here: the same rule sends matmuls to bfloat16."""
    torch.manual_seed(0)
    softmax = SpatialSoftmax(side=8)
    maps = torch.randn(4, 16, 8, 8) * 4.0
    maps[:, :, 3, 5] += 30.0  # nearly peaked maps: spreads ~1e-4 that bfloat16 rounds to 0
    points, spread = softmax.points_and_spread(maps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        points_amp, spread_amp = softmax.points_and_spread(maps)
        forward_amp = softmax(maps)
    assert points_amp.dtype == spread_amp.dtype == forward_amp.dtype == torch.float32
    torch.testing.assert_close(points_amp, points, rtol=0, atol=1e-6)
    torch.testing.assert_close(forward_amp, points, rtol=0, atol=1e-6)
    torch.testing.assert_close(spread_amp, spread, rtol=1e-4, atol=1e-9)


def test_keypoint_encoder_follows_a_moving_object() -> None:
    """With one bright square on a dark frame, the features move when (only) it moves; each
    keypoint stays inside [-1, 1]."""
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig.keypoints(image_size=32, feature_dim=8))
    frames = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    frames[0, 4:10, 4:10] = 255
    frames[1, 20:26, 20:26] = 255
    features = encoder(frames)
    assert features.abs().max() <= 1.0
    assert not torch.allclose(features[0], features[1])
    # With a trunk that passes brightness through (8x8 average pooling to the readout's 4x4
    # cells) and a readout that attends to it, every keypoint lands on the square: top-left in
    # frame 0 (x and y < 0), bottom-right in frame 1 (x and y > 0).
    encoder.trunk = torch.nn.AvgPool2d(8)
    pointwise = torch.nn.Conv2d(3, 4, 1)
    torch.nn.init.constant_(pointwise.weight, 20.0)
    torch.nn.init.zeros_(pointwise.bias)
    encoder.head[0] = pointwise
    points = encoder(frames).view(2, 4, 2)
    assert (points[0] < -0.3).all() and (points[1] > 0.3).all()
    torch.testing.assert_close(points[0, 0], points[0, 3])


def test_named_architectures() -> None:
    assert encoder_config_for("cnn", 32) == EncoderConfig(image_size=32)
    assert encoder_config_for("keypoints").readout == "keypoints"
    assert encoder_config_for("drqv2") == EncoderConfig.drqv2()
    with pytest.raises(ValueError, match="unknown encoder architecture 'vit'"):
        encoder_config_for("vit")


def test_cli_architecture_choices_match_the_library() -> None:
    """The CLI offers every architecture the library builds, and the package default."""
    from sslrobot.cli import build_parser

    parser = build_parser()
    for command, option in (("pretrain", "--encoder-arch"), ("train-policy", "--encoder-arch")):
        sub = parser._subparsers._group_actions[0].choices[command]
        action = next(a for a in sub._actions if option in a.option_strings)
        assert tuple(action.choices) == ENCODER_ARCHS, command
        assert action.default == "keypoints", command
    for arch in ENCODER_ARCHS:
        assert encoder_config_for(arch).image_size == 64, arch


def test_keypoints_are_the_features_of_a_keypoint_encoder() -> None:
    encoder = Encoder(EncoderConfig.keypoints(image_size=32, feature_dim=8))
    frames = _frames(3, 32)
    points = encoder.keypoints(frames)
    assert points.shape == (3, 4, 2)
    torch.testing.assert_close(points.flatten(1), encoder(frames))
    with pytest.raises(ValueError, match="readout='keypoints'"):
        Encoder(EncoderConfig(image_size=32)).keypoints(frames)


def test_encoder_config_round_trip() -> None:
    config = EncoderConfig.drqv2(image_size=48, feature_dim=12, frame_stack=2)
    assert EncoderConfig.from_dict(config.to_dict()) == config
    keypoints = EncoderConfig.keypoints(image_size=48)
    assert EncoderConfig.from_dict(keypoints.to_dict()) == keypoints
    with pytest.raises(ValueError, match="unknown EncoderConfig fields"):
        EncoderConfig.from_dict({**config.to_dict(), "width": 3})


def test_drqv2_config_matches_the_paper() -> None:
    config = EncoderConfig.drqv2()
    assert config.channels == (32, 32, 32, 32) and config.strides == (2, 1, 1, 1)
    assert config.kernel_sizes == (3, 3, 3, 3) and config.trunk_output_size == 25  # 64 px


@pytest.mark.parametrize("composite", [True, False])
def test_decoder_shapes_and_composite(composite: bool) -> None:
    decoder = Decoder(DecoderConfig(composite=composite), latent_dim=8, image_size=32)
    latents = torch.randn(3, 8)
    context = torch.rand(3, 32, 32, 3) - 0.5
    out = decoder(latents, context)
    assert out.shape == (3, 32, 32, 3)
    blocks = decoder.predict_blocks(latents, frames_to_blocks(context, 4))
    assert blocks.shape == (3, 3, 16, 8, 8)
    torch.testing.assert_close(blocks_to_frames(blocks, 4), out, rtol=0, atol=0)
    if composite:
        # A mask saturated at "keep" reproduces the context exactly.
        with torch.no_grad():
            decoder.to_mask.bias.fill_(1e4)
        torch.testing.assert_close(decoder(latents, context), context)
    assert decoder(latents).shape == (3, 32, 32, 3)


def test_keypoint_heatmaps_peak_where_the_keypoints_are() -> None:
    """Each (x, y) pair becomes one blob whose maximum is the grid cell at (x, y), in the
    cell convention of SpatialSoftmax, so reading a drawn blob back gives its keypoint."""
    heatmaps = KeypointHeatmaps(side=5, sigma=0.2)
    keypoints = torch.tensor([[1.0, -1.0, 0.0, 0.0, -1.0, 1.0]])  # top-right, centre, bottom-left
    maps = heatmaps(keypoints)
    assert maps.shape == (1, 3, 5, 5)
    peaks = [divmod(int(m.argmax()), 5) for m in maps[0]]  # (row, column)
    assert peaks == [(0, 4), (2, 2), (4, 0)]
    assert torch.allclose(maps.amax(dim=(2, 3)), torch.ones(1, 3))
    read_back = SpatialSoftmax(side=5)(maps.log() * 1.0).view(3, 2)  # softmax of log-blobs
    torch.testing.assert_close(read_back[1], torch.zeros(2), atol=1e-5, rtol=0)


def test_keypoint_heatmaps_are_drawn_where_the_keypoint_is_in_the_frame() -> None:
    """Given the encoder's range, a blob peaks on the decoder cell whose pixels hold the
    keypoint: a keypoint at pixel 27.5 (cell 3 of 8 over 64 px) is drawn there at full height;
    the encoder's own grid (``linspace``) put it 2 px off. Saved centres load as they were."""
    low, high = 1.5, 57.5  # the keypoint encoder's first and last cells' centres at 64 px
    unit = 2 * (27.5 - low) / (high - low) - 1
    heatmaps = KeypointHeatmaps(side=8, sigma=0.15, image_size=64, keypoint_range=(low, high))
    maps = heatmaps(torch.tensor([[unit, unit]]))
    assert divmod(int(maps[0, 0].argmax()), 8) == (3, 3)
    torch.testing.assert_close(maps[0, 0, 3, 3], torch.tensor(1.0))
    old = KeypointHeatmaps(side=8, sigma=0.15)
    assert maps[0, 0, 3, 3] > old(torch.tensor([[unit, unit]]))[0, 0, 3, 3] + 0.05
    heatmaps.load_state_dict(old.state_dict())
    assert torch.equal(heatmaps.centres, torch.linspace(-1.0, 1.0, 8))


def test_heatmap_decoder_draws_only_through_the_keypoints() -> None:
    """Same shapes as the dense decoder; gradients reach every coordinate; moving a keypoint
    changes the frame near it, and an odd latent size is refused."""
    torch.manual_seed(0)
    config = DecoderConfig.keypoint_heatmaps()
    decoder = Decoder(config, latent_dim=8, image_size=64)
    latents = (torch.rand(2, 8) * 2 - 1).requires_grad_()
    context = torch.rand(2, 64, 64, 3) - 0.5
    assert decoder(latents, context).shape == (2, 64, 64, 3)
    frames = decoder(latents)
    frames.square().sum().backward()
    assert (latents.grad.abs() > 0).all()
    with torch.no_grad():
        moved = latents.detach().clone()
        moved[0, 0] = -moved[0, 0]  # keypoint 0 of frame 0 mirrored left-right
        changed = (decoder(moved)[0] - frames[0].detach()).abs().amax()
        assert changed > 1e-4
        assert torch.equal(decoder(moved)[1], frames[1].detach())  # the other frame untouched
    with pytest.raises(ValueError, match="even"):
        Decoder(config, latent_dim=7, image_size=64)
    with pytest.raises(ValueError, match="heatmap_sigma"):
        DecoderConfig(heatmaps=True, heatmap_sigma=0.0)


def test_keypoint_offsets_give_each_cell_the_keypoint_position_within_it() -> None:
    """A keypoint's closeness peaks at the cell it is in, and ``g * dx / g`` recovers its
    offset from any nearby cell's centre in cells, so sub-cell positions reach the decoder."""
    offsets = KeypointOffsets(side=4, sigma=1.0)  # cell centres at -0.75, -0.25, 0.25, 0.75
    keypoints = torch.tensor([[0.35, -0.75]])  # x: 0.2 cells right of column 2's centre
    maps = offsets(keypoints)
    assert maps.shape == (1, 3, 4, 4)
    closeness, gdx, gdy = maps[0]
    assert divmod(int(closeness.argmax()), 4) == (0, 2)  # (row, column)
    torch.testing.assert_close(gdx[0, 2] / closeness[0, 2], torch.tensor(0.2), rtol=0, atol=1e-5)
    torch.testing.assert_close(gdx[1, 1] / closeness[1, 1], torch.tensor(1.2), rtol=0, atol=1e-5)
    torch.testing.assert_close(gdy[1, 1] / closeness[1, 1], torch.tensor(-1.0), rtol=0, atol=1e-5)
    assert closeness.amax() <= 1.0 and closeness[3, 0] < 1e-2  # far cells hear nothing


def test_keypoint_offsets_sit_where_the_encoder_puts_its_coordinates() -> None:
    """The encoder's -1 and +1 are its first and last cells' centres (1.5 and 57.5 px at 64
    px), not the image's edges: a keypoint the encoder reads at pixel p must peak at the
    decoder cell holding p, 0 cells from its centre (it was drawn up to 6 px off)."""
    from sslrobot.models.encoder import encoder_config_for

    low, high = encoder_config_for("keypoints", 64).keypoint_pixel_range()
    offsets = KeypointOffsets(side=16, sigma=1.0, image_size=64, keypoint_range=(low, high))
    for pixel, cell in ((1.5, 0), (25.5, 6), (57.5, 14)):
        u = 2.0 * (pixel - low) / (high - low) - 1.0
        closeness, gdx, _ = offsets(torch.tensor([[u, u]]))[0]
        assert divmod(int(closeness.argmax()), 16) == (cell, cell)
        torch.testing.assert_close(gdx[cell, cell], torch.tensor(0.0), rtol=0, atol=1e-5)
    # Models saved before keep the centres they were trained with: the buffer is theirs.
    saved = KeypointOffsets(side=16, sigma=1.0).state_dict()
    offsets.load_state_dict(saved)
    torch.testing.assert_close(offsets.centres, saved["centres"])


def test_keypoint_skip_decoder_places_through_the_offsets() -> None:
    """Same output shapes as the dense decoder; the skip's hidden layer reads every
    keypoint's offsets, so moving one keypoint changes the frame even with the dense path's
    first layer zeroed; an odd latent size is refused."""
    torch.manual_seed(0)
    config = DecoderConfig.keypoint_skip_dense()
    decoder = Decoder(config, latent_dim=8, image_size=64)
    latents = torch.rand(2, 8) * 2 - 1
    context = torch.rand(2, 64, 64, 3) - 0.5
    assert decoder(latents, context).shape == (2, 64, 64, 3)
    with torch.no_grad():
        decoder.fc.weight.zero_()  # the dense path no longer sees the latent
        frames = decoder(latents)
        moved = latents.clone()
        moved[0, :2] = torch.tensor([-0.9, 0.9])
        assert (decoder(moved)[0] - frames[0]).abs().amax() > 1e-4
        assert torch.equal(decoder(moved)[1], frames[1])
    with pytest.raises(ValueError, match="even"):
        Decoder(config, latent_dim=7, image_size=64)
    with pytest.raises(ValueError, match="skip_sigma"):
        DecoderConfig(keypoint_skip=True, skip_sigma=0.0)


def test_block_layout_is_pixel_shuffle_layout() -> None:
    frames = torch.randint(0, 256, (2, 12, 8, 3), dtype=torch.uint8)
    blocks = frames_to_blocks(frames, 4)  # (2, 3, 16, 3, 2)
    assert blocks.shape == (2, 3, 16, 3, 2)
    unshuffled = torch.nn.functional.pixel_unshuffle(frames.permute(0, 3, 1, 2), 4)
    assert torch.equal(blocks.flatten(1, 2), unshuffled)
    assert torch.equal(blocks_to_frames(blocks, 4), frames)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"composite": "false"}, "composite must be true or false"),
        ({"heatmap_sigma": float("inf")}, "heatmap_sigma must be a finite number"),
        ({"skip_sigma": float("nan")}, "skip_sigma must be a finite number"),
        ({"heatmap_sigma": "0.1"}, "heatmap_sigma must be a finite number"),
    ],
)
def test_decoder_config_validation_names_the_field(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecoderConfig(**changes)
    with pytest.raises(ValueError, match=r"unknown DecoderConfig fields \['shufle'\]"):
        DecoderConfig.from_dict({"shufle": 2})


def test_decoder_rejects_incompatible_image_size() -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        Decoder(DecoderConfig(), latent_dim=8, image_size=40)


def test_transition_rollout_shapes_and_first_step() -> None:
    model = TransitionModel(latent_dim=6, action_dim=2, hidden_dim=16)
    latent, actions = torch.randn(5, 6), torch.randn(5, 4, 2)
    rolled = model.rollout(latent, actions)
    assert rolled.shape == (5, 4, 6)
    torch.testing.assert_close(rolled[:, 0], model(latent, actions[:, 0]))
    torch.testing.assert_close(rolled[:, 1], model(rolled[:, 0], actions[:, 1]))
    with pytest.raises(ValueError, match=r"\(B, K, 2\)"):
        model.rollout(latent, torch.randn(5, 4, 3))


@pytest.mark.parametrize("layer_norm", [True, False])
def test_transition_with_a_zero_residual_keeps_or_normalises_the_latent(layer_norm: bool) -> None:
    """With the residual MLP's output zeroed the step is LN(z) with the norm and z itself
    without: keypoint coordinates rolled forward stay coordinates only without it."""
    model = TransitionModel(latent_dim=6, action_dim=2, hidden_dim=16, layer_norm=layer_norm)
    torch.nn.init.zeros_(model.net[-1].weight)
    torch.nn.init.zeros_(model.net[-1].bias)
    latent = torch.rand(5, 6) * 2 - 1  # keypoint-like coordinates in [-1, 1]
    stepped = model(latent, torch.randn(5, 2))
    expected = torch.nn.functional.layer_norm(latent, (6,)) if layer_norm else latent
    torch.testing.assert_close(stepped, expected)


def test_a_keypoint_readout_needs_more_than_one_cell() -> None:
    """At 8-11 px the default keypoint trunk ends in a 1x1 map: every frame encoded to the same
    (zero) keypoints, and the heatmap decoder's cell spacing divided by zero."""
    with pytest.raises(ValueError, match="leaves the keypoint readout a 1x1 map"):
        EncoderConfig.keypoints(image_size=8)
    encoder = Encoder(EncoderConfig.keypoints(image_size=12)).eval()
    frames = torch.randint(0, 256, (2, 12, 12, 3), dtype=torch.uint8)
    assert encoder(frames).abs().sum() > 0  # two cells or more: positions that move
