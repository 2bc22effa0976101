"""Pure pieces of pretraining: losses, objective parsing, augmentation, EMA, batch order."""

import dataclasses

import pytest
import torch

from sslrobot.models import DecoderConfig, EncoderConfig
from sslrobot.pretraining.augment import (
    color_jitter,
    crop_by_index,
    random_shift,
    replicate_pad,
    shift_by_copies,
    stack_frames,
)
from sslrobot.pretraining.objectives import (
    KEYPOINT_REGULARIZERS,
    LOSS_SCALES,
    REGULARIZERS,
    centered_cosine_loss,
    format_objective,
    info_nce_loss,
    inverse_dynamics_loss,
    latent_std,
    normalized_cosine_loss,
    parse_objective,
    pixel_mse_loss,
    salient_pixel_weights,
    slowness_loss,
    total_loss,
)
from sslrobot.pretraining.prefetch import Prefetcher
from sslrobot.pretraining.sampler import ResumableBatchSampler
from sslrobot.pretraining.world_model import (
    WorldModel,
    WorldModelConfig,
    keypoint_units_per_pixel,
)

torch.set_num_threads(1)


#: A one-layer linear-readout encoder of 16x16 frames, for model-level tests.
TINY_ENCODER = EncoderConfig(
    image_size=16, channels=(4,), kernel_sizes=(4,), strides=(4,), paddings=(0,), feature_dim=8
)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- losses: ~0 on a perfect prediction, > 0 otherwise ------------------------------------


def test_normalized_cosine_loss() -> None:
    target = _randn(4, 3, 8)
    assert normalized_cosine_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    # Scale does not matter (normalised), direction does.
    assert normalized_cosine_loss(3.0 * target, target).item() == pytest.approx(0.0, abs=1e-6)
    assert normalized_cosine_loss(_randn(4, 3, 8, seed=1), target).item() > 0.1
    assert normalized_cosine_loss(-target, target).item() == pytest.approx(4.0, abs=1e-5)


def test_centered_cosine_loss_ignores_what_all_windows_share() -> None:
    shared = 50.0 * _randn(1, 1, 8, seed=2)  # a large common part, as of frames of one scene
    target = shared + _randn(6, 3, 8)
    assert centered_cosine_loss(target, target).item() == pytest.approx(0.0, abs=1e-5)
    # Plain cosines call a constant prediction (the shared part) nearly perfect...
    constant = shared.expand_as(target)
    assert normalized_cosine_loss(constant, target).item() < 0.05
    # ...centred, it tells no window apart and scores as unrelated (cos 0 -> 2).
    assert centered_cosine_loss(constant + 1e-3 * _randn(6, 3, 8, seed=3), target).item() > 1.5
    given = target.mean(dim=0, keepdim=True)
    assert centered_cosine_loss(target, target, given).item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="batch of at least 2"):
        centered_cosine_loss(target[:1], target[:1])


def test_total_loss_scales_pixel_losses_before_weighting() -> None:
    losses = {"fdm": torch.tensor(0.5), "future": torch.tensor(0.004)}
    total = total_loss(losses, {"fdm": 1.0, "future": 2.0})
    assert total.item() == pytest.approx(0.5 + 2.0 * LOSS_SCALES["future"] * 0.004)
    with pytest.raises(ValueError, match="no weight"):
        total_loss(losses, {"fdm": 1.0})


def test_pixel_mse_loss() -> None:
    frames = torch.rand(2, 3, 8, 8) - 0.5
    assert pixel_mse_loss(frames, frames).item() == 0.0
    assert pixel_mse_loss(frames + 0.1, frames).item() == pytest.approx(0.01, rel=1e-4)
    with pytest.raises(ValueError, match="!="):
        pixel_mse_loss(frames, frames[:1])


def test_salient_pixels_weigh_more_and_a_perfect_prediction_costs_nothing() -> None:
    frames = torch.full((2, 3, 16, 4, 4), 0.1)  # block layout (N, 3, r*r, h, w): a plain table
    frames[0, :, 0, 1, 1] = -0.4  # one dark object pixel in frame 0
    weights = salient_pixel_weights(frames, weight=10.0, threshold=0.08)
    assert weights.shape == (2, 1, 16, 4, 4)
    assert weights[0, 0, 0, 1, 1] == 11.0 and weights.sum() == 2 * 256 + 10
    assert salient_pixel_weights(frames, 0.0, 0.08).eq(1.0).all()
    assert pixel_mse_loss(frames, frames, weights).item() == 0.0
    # The same error costs more on the object than on the table; scale stays that of the MSE.
    on_object, on_table = frames.clone(), frames.clone()
    on_object[0, :, 0, 1, 1] += 0.3
    on_table[0, :, 0, 2, 2] += 0.3
    object_loss = pixel_mse_loss(on_object, frames, weights)
    assert object_loss > 5 * pixel_mse_loss(on_table, frames, weights)
    uniform = torch.ones(2, 1, 16, 4, 4)  # mean-1 weights: the plain MSE
    assert pixel_mse_loss(on_table, frames, uniform).item() == pytest.approx(
        pixel_mse_loss(on_table, frames).item()
    )
    with pytest.raises(ValueError, match="must be \\(N, 3"):
        salient_pixel_weights(frames[:, :2], 10.0, 0.08)


def _block_layout(image: torch.Tensor, shuffle: int = 4) -> torch.Tensor:
    """(N, 3, H, W) -> the decoder's block layout (N, 3, r*r, H/r, W/r)."""
    n, c, h, w = image.shape
    r = shuffle
    blocks = image.reshape(n, c, h // r, r, w // r, r).permute(0, 1, 3, 5, 2, 4)
    return blocks.reshape(n, c, r * r, h // r, w // r)


def test_the_background_colour_is_sampled_over_the_whole_frame() -> None:
    """At 64 px with shuffle 4 the block layout's last axis is 16 wide: a stride of 16 would
    sample the frame's 4 left columns only, and a dark strip there became the background."""
    image = torch.full((1, 3, 64, 64), 0.1)
    image[..., :, :6] = -0.8  # a dark strip 6 pixels wide on the left edge
    salient = salient_pixel_weights(_block_layout(image), weight=10.0, threshold=0.08) > 1
    assert salient.float().mean().item() == pytest.approx(6 / 64)  # the strip, not the table


@pytest.mark.parametrize("size", [48, 64, 80, 96, 112, 128, 144, 192])
def test_the_background_sample_spans_the_frame_at_every_size(size: int) -> None:
    """The odd stride that fixed 64 px still sampled four 4-pixel strips at 48, 80, 112 and
    144 px, where four bright stripes (a seventh of the frame at 112) became the background
    and the table the salient part."""
    image = torch.full((1, 3, size, size), -0.3)
    for start in range(0, size, size // 4):
        image[..., :, start : start + 4] = 0.4  # four 4-pixel stripes, size/4 apart
    salient = salient_pixel_weights(_block_layout(image), weight=10.0, threshold=0.08) > 1
    assert salient.float().mean().item() == pytest.approx(16 / size)  # the stripes


def test_inverse_dynamics_loss() -> None:
    actions = _randn(6, 2)
    assert inverse_dynamics_loss(actions, actions).item() == 0.0
    assert inverse_dynamics_loss(actions + 0.5, actions).item() == pytest.approx(0.25)


def test_info_nce_loss() -> None:
    eye = torch.eye(8)  # orthogonal pairs: the best case
    perfect = info_nce_loss(eye, eye, temperature=0.1).item()
    assert 0.0 <= perfect < 1e-3
    shuffled = info_nce_loss(eye, eye.roll(1, dims=0), temperature=0.1).item()
    assert shuffled > 10.0
    same = info_nce_loss(torch.ones(8, 4), torch.ones(8, 4)).item()  # no information
    assert same == pytest.approx(torch.log(torch.tensor(8.0)).item(), rel=1e-5)


def test_slowness_loss_is_zero_only_for_slow_features_that_vary_across_windows() -> None:
    spread = torch.linspace(-1.0, 1.0, 8)[:, None].repeat(1, 4)  # std 0.66 per feature
    assert slowness_loss(spread, spread.clone(), 0.1).item() == pytest.approx(0.0, abs=1e-6)
    # Change within a window costs (change / min_std)^2 ...
    assert slowness_loss(spread, spread + 0.05, 0.1).item() == pytest.approx(0.25, rel=1e-4)
    # ... and a constant feature, perfectly slow, pays the variance hinge: 1 - std / min_std.
    constant = torch.zeros(8, 4)
    assert slowness_loss(constant, constant, 0.1).item() == pytest.approx(1.0, abs=1e-3)
    half = spread * (0.05 / spread.std(dim=0, keepdim=True))  # std 0.05: half the floor
    assert slowness_loss(half, half, 0.1).item() == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError, match="B >= 2"):
        slowness_loss(torch.zeros(1, 4), torch.zeros(1, 4), 0.1)
    with pytest.raises(ValueError, match="min_std must be > 0"):
        slowness_loss(spread, spread, 0.0)


def test_latent_std_detects_collapse() -> None:
    assert latent_std(torch.ones(16, 4)).item() == 0.0
    assert latent_std(_randn(256, 4)).item() == pytest.approx(1.0, abs=0.15)


def test_parse_objective() -> None:
    assert parse_objective("fdm+future") == {"fdm": 1.0, "future": 1.0}
    assert parse_objective("future:2+fdm:0.5") == {"fdm": 0.5, "future": 2.0}  # canonical order
    assert parse_objective("none") == {}
    assert format_objective(parse_objective("future:2+fdm")) == "fdm+future:2"
    for bad, message in [
        ("fmd", "unknown objective 'fmd'"),
        ("fdm+none", "cannot be combined"),
        ("fdm+fdm", "repeated"),
        ("fdm:x", "not a number"),
        ("fdm:-1", "positive"),
        ("", "non-empty"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_objective(bad)


# -- augmentation -------------------------------------------------------------------------


def test_random_shift_is_a_shared_integer_shift_with_replicated_borders() -> None:
    pixels = torch.randint(0, 256, (16, 3, 12, 12, 3), dtype=torch.uint8)
    shifted = random_shift(pixels, pad=2, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == pixels.shape and shifted.dtype == torch.uint8
    padded = pixels.permute(0, 1, 4, 2, 3).float().flatten(1, 2)
    padded = torch.nn.functional.pad(padded, (2, 2, 2, 2), mode="replicate")
    padded = padded.unflatten(1, (3, 3)).permute(0, 1, 3, 4, 2)  # (B, T, 16, 16, 3)
    moved = 0
    for b in range(16):
        # Exactly one crop of the replicate-padded window matches, the same for all frames.
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[b, :, dy : dy + 12, dx : dx + 12].to(torch.uint8), shifted[b])
        ]
        assert len(matches) == 1, (b, matches)
        moved += matches[0] != (2, 2)
    assert moved > 8  # most windows move
    again = random_shift(pixels, pad=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, shifted)  # deterministic for a seed
    assert random_shift(pixels, 0, torch.Generator()) is pixels


def test_cpu_and_accelerator_shift_paths_agree() -> None:
    """The CPU path (slice copies, no padding) equals the accelerator path (pad, then one
    indexing op), for every shift including the extremes."""
    pixels = torch.randint(0, 256, (49, 2, 10, 8, 3), dtype=torch.uint8)
    padded = replicate_pad(pixels, 3)
    assert padded.shape == (49, 2, 16, 14, 3)
    assert torch.equal(padded[:, :, 0, 3:-3], pixels[:, :, 0])  # top rows repeat row 0
    assert torch.equal(padded[:, :, -1, -1], pixels[:, :, -1, -1])  # corners repeat corners
    offsets = torch.cartesian_prod(torch.arange(7), torch.arange(7))  # all 49 (dy, dx)
    expected = crop_by_index(padded, offsets, 10, 8)
    assert torch.equal(shift_by_copies(pixels, offsets - 3), expected)
    assert torch.equal(expected[24], pixels[24])  # (3, 3): no shift


def test_color_jitter_scales_each_window_alike_within_its_range() -> None:
    pixels = torch.full((64, 3, 4, 4, 6), 100, dtype=torch.uint8)  # two stacked RGB frames
    pixels[:, 1] = 200
    jittered = color_jitter(pixels, 0.4, torch.Generator().manual_seed(0))
    assert jittered.shape == pixels.shape and jittered.dtype == torch.uint8
    ratio = jittered[:, 0].float() / 100  # (B, H, W, 6)
    # One factor per window and channel, shared by its frames, stacked copies and pixels.
    assert torch.equal(ratio, ratio[:, :1, :1].expand_as(ratio))
    assert torch.allclose(ratio[..., :3], ratio[..., 3:])
    # The frame of 200s got the same factors (ratio is quantised by rounding to 1/100).
    expected = (200 * ratio).clamp(max=255)
    torch.testing.assert_close(jittered[:, 1].float(), expected, rtol=0, atol=2.0)
    # brightness in [0.6, 1.4] times a gain in [0.8, 1.2] per channel; windows differ.
    assert ratio.min() >= 0.48 - 0.01 and ratio.max() <= 1.68 + 0.01
    assert ratio[:, 0, 0, 0].std() > 0.1
    assert color_jitter(pixels, 0.0, torch.Generator()) is pixels
    with pytest.raises(ValueError, match="strength must be in"):
        color_jitter(pixels, 1.5, torch.Generator())


def test_stack_frames() -> None:
    pixels = torch.arange(2 * 5 * 1 * 1 * 3, dtype=torch.uint8).view(2, 5, 1, 1, 3)
    stacked = stack_frames(pixels, 3)
    assert stacked.shape == (2, 3, 1, 1, 9)
    assert torch.equal(stacked[:, 0], torch.cat([pixels[:, 0], pixels[:, 1], pixels[:, 2]], -1))
    assert torch.equal(stacked[:, 2, ..., -3:], pixels[:, 4])  # newest frame last
    assert stack_frames(pixels, 1) is pixels


# -- EMA ----------------------------------------------------------------------------------


def test_ema_update_moves_targets_toward_online() -> None:
    encoder = TINY_ENCODER
    config = WorldModelConfig(
        encoder=encoder, action_dim=2, objective={"fdm": 1.0}, ema_momentum=0.9
    )
    model = WorldModel(config)
    assert not any(p.requires_grad for p in model.target_encoder.parameters())
    online = dict(model.encoder.named_parameters())
    for p in model.encoder.parameters():
        p.data.add_(1.0)
    before = {n: p.clone() for n, p in model.target_encoder.named_parameters()}
    model.ema_update()
    for name, p in model.target_encoder.named_parameters():
        expected = 0.9 * before[name] + 0.1 * online[name]
        torch.testing.assert_close(p, expected)
    # Projection targets follow their online heads too.
    for p in model.fdm_projection.parameters():
        p.data.add_(1.0)
    before = [p.clone() for p in model.target_fdm_projection.parameters()]
    model.ema_update()
    for p_t, p_b, p_o in zip(
        model.target_fdm_projection.parameters(),
        before,
        model.fdm_projection.parameters(),
        strict=True,
    ):
        torch.testing.assert_close(p_t, 0.9 * p_b + 0.1 * p_o)


# -- batch order --------------------------------------------------------------------------


def _take(sampler: ResumableBatchSampler, count: int) -> list[list[int]]:
    batches = iter(sampler)
    return [next(batches) for _ in range(count)]


def test_sampler_resumes_mid_epoch_and_covers_each_epoch() -> None:
    straight = _take(ResumableBatchSampler(10, 3, seed=1), 7)
    resumed = _take(ResumableBatchSampler(10, 3, seed=1, start_step=4), 3)
    assert straight[4:] == resumed
    stream = [i for batch in straight for i in batch]
    assert sorted(stream[:10]) == list(range(10))  # first epoch: a permutation
    assert sorted(stream[10:20]) == list(range(10))
    assert _take(ResumableBatchSampler(10, 3, seed=2), 1) != straight[:1]


def test_sampler_shards_disjointly_across_ranks() -> None:
    ranks = [_take(ResumableBatchSampler(12, 2, seed=0, rank=r, world_size=3), 2) for r in range(3)]
    single = _take(ResumableBatchSampler(12, 6, seed=0), 2)
    for step in range(2):
        assert sorted(i for r in range(3) for i in ranks[r][step]) == sorted(single[step])


# -- prefetching --------------------------------------------------------------------------


def test_prefetcher_keeps_order_and_reraises() -> None:
    prefetched = Prefetcher(iter(range(50)), depth=3)
    assert list(prefetched) == list(range(50))
    with pytest.raises(StopIteration):  # asked again after its end: not a wait for ever
        next(prefetched)

    def failing():
        yield 1
        raise OSError("disk gone")

    prefetched = Prefetcher(failing(), depth=2)
    assert next(prefetched) == 1
    for _ in range(2):  # the error again, not a wait for ever on the exited thread's queue
        with pytest.raises(OSError, match="disk gone"):
            next(prefetched)
    endless = Prefetcher(iter(int, 1), depth=2)  # never ends; close() must still return
    next(endless)
    endless.close()
    assert not endless._thread.is_alive()


@pytest.mark.parametrize(
    ("share", "blinded"),
    [
        (0.0, []),
        (0.25, [3, 7, 11, 15]),
        (0.5, list(range(1, 16, 2))),
        (0.75, [w for w in range(16) if w % 4]),
    ],
)
def test_context_dropout_blinds_an_evenly_spread_share_of_windows(
    share: float, blinded: list[int]
) -> None:
    encoder = TINY_ENCODER
    config = WorldModelConfig(
        encoder=encoder,
        action_dim=2,
        objective={"future": 1.0},
        decoder=DecoderConfig(channels=(8,), shuffle=4),
        context_dropout=share,
    )
    blind = WorldModel(config)._blind_windows(16)
    assert blind.sum().item() == round(16 * share)
    assert torch.nonzero(blind).flatten().tolist() == blinded  # evenly spread, no block
    # 100 x 0.29 is 28.999999999999996 in floating point; the count is still 29.
    odd = WorldModel(dataclasses.replace(config, context_dropout=0.29))._blind_windows(100)
    assert odd.sum().item() == 29
    with pytest.raises(ValueError, match="context_dropout"):
        WorldModelConfig(
            encoder=encoder, action_dim=2, objective={"future": 1.0}, context_dropout=1.0
        )


@pytest.mark.parametrize(
    "objective",
    [
        {"fdm": 1.0},
        {"future": 1.0},
        {"recon": 1.0},
        {"inverse": 1.0},
        {"contrastive": 1.0},
        {"fdm": 1.0, "recon": 1.0},
        {"fdm": 1.0, "future": 1.0, "spread": 1.0},
        {"fdm": 1.0, "future": 1.0, "slow": 1.0},
    ],
    ids=lambda o: "+".join(o),
)
def test_every_trainable_weight_gets_a_gradient(objective: dict[str, float]) -> None:
    """DistributedDataParallel (without find_unused_parameters) needs every trainable weight to
    take part in each step's loss."""
    encoder = EncoderConfig(
        image_size=16,
        channels=(4,),
        kernel_sizes=(4,),
        strides=(4,),
        paddings=(0,),
        feature_dim=8,
        readout="keypoints" if {"spread", "slow"} & set(objective) else "linear",
        layer_norm=not {"spread", "slow"} & set(objective),  # keypoints are coordinates
    )
    decoder = DecoderConfig(channels=(8,), shuffle=4)
    model = WorldModel(
        WorldModelConfig(encoder=encoder, action_dim=2, objective=objective, decoder=decoder)
    )
    pixels = torch.randint(0, 256, (4, 3, 16, 16, 3), dtype=torch.uint8)
    losses, _ = model(pixels, _randn(4, 2, 2))
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


@pytest.mark.parametrize("objective", [{"future": 1.0}, {"fdm": 1.0, "future": 1.0}])
def test_future_without_actions_predicts_from_the_latent_alone(objective: dict) -> None:
    """``future_actions=False``: future frames come from an action-free transition, so the
    predictions do not depend on the actions; every weight still gets a gradient (DDP)."""
    encoder = TINY_ENCODER
    config = WorldModelConfig(
        encoder=encoder,
        action_dim=2,
        objective=objective,
        decoder=DecoderConfig(channels=(8,), shuffle=4),
        future_actions=False,
    )
    model = WorldModel(config)
    assert model.free_transition is not None and model.has_decoder
    assert (model.transition is not None) == ("fdm" in objective) == model.has_dynamics
    pixels = torch.randint(0, 256, (4, 3, 16, 16, 3), dtype=torch.uint8)
    losses, _ = model(pixels, _randn(4, 2, 2))
    sum(losses.values()).backward()
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.eval()
    first = model.predict_frames(pixels, _randn(4, 2, 2, seed=1))
    assert torch.equal(first, model.predict_frames(pixels, _randn(4, 2, 2, seed=2)))


def _train_on_term(
    model: WorldModel, term: str, pixels: torch.Tensor, steps: int, lr: float
) -> list[float]:
    """Adam on the encoder with one loss term alone; the term's value before each step."""
    optimizer = torch.optim.Adam(model.encoder.parameters(), lr=lr)
    values = []
    for _ in range(steps):
        losses, _ = model(pixels, _randn(len(pixels), 1, 2))
        values.append(losses[term].item())
        optimizer.zero_grad()
        losses[term].backward()
        optimizer.step()
    return values


def test_spread_concentrates_keypoints() -> None:
    encoder = EncoderConfig.keypoints(image_size=16, feature_dim=8)
    model = WorldModel(
        WorldModelConfig(encoder=encoder, action_dim=2, objective={"future": 1.0, "spread": 1.0})
    )
    pixels = torch.randint(0, 256, (8, 2, 16, 16, 3), dtype=torch.uint8)
    spreads = _train_on_term(model, "spread", pixels, steps=20, lr=0.05)
    assert 0.0 <= spreads[-1] < 0.5 * spreads[0]
    assert parse_objective("fdm+future+spread:0.5")["spread"] == 0.5


def test_equivariance_is_zero_for_keypoints_that_move_with_the_image() -> None:
    """A stand-in encoder that returns the centroid of a bright dot (in keypoint units) is
    exactly equivariant away from the borders: loss 0. The random keypoint encoder, whose points
    barely move when the picture does, pays about the mean squared shift; training on the term
    alone lowers it."""
    encoder = EncoderConfig.keypoints(image_size=32, feature_dim=8)
    config = WorldModelConfig(encoder=encoder, action_dim=2, objective={"future": 1.0})
    model = WorldModel(dataclasses.replace(config, objective={"future": 1.0, "equivariant": 1.0}))
    per_pixel = keypoint_units_per_pixel(encoder)
    assert per_pixel == pytest.approx(2.0 / (3 * 8))  # 4x4 cells, 8 pixels apart

    def centroid(frames: torch.Tensor) -> torch.Tensor:
        weights = frames[..., 0].float()  # (B, H, W)
        ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        total = weights.sum(dim=(1, 2))
        x = (weights * xs).sum(dim=(1, 2)) / total * per_pixel
        y = (weights * ys).sum(dim=(1, 2)) / total * per_pixel
        return torch.stack([x, y, x, y], dim=1).repeat(1, 2)  # (B, 8): four points

    frames = torch.zeros(10, 32, 32, 3, dtype=torch.uint8)
    for i in range(10):
        frames[i, 10 + i, 12:14] = 255
    with torch.no_grad():
        loss = model._equivariance_loss(frames, model.encoder(frames)).item()
    model.encoder.forward = centroid  # equivariant by construction
    assert model._equivariance_loss(frames, centroid(frames)).item() == pytest.approx(0, abs=1e-6)
    del model.encoder.forward
    assert loss > 1.0  # the real random encoder is far from it
    pixels = torch.randint(0, 256, (16, 2, 32, 32, 3), dtype=torch.uint8)
    values = _train_on_term(model, "equivariant", pixels, steps=30, lr=0.01)
    assert values[-1] < 0.7 * values[0]


def test_slow_term_acts_on_the_first_quarter_of_the_keypoints() -> None:
    """The term sees o_t's and o_{t+K}'s first keypoints only: windows whose last frame equals
    their first pay exactly the variance hinge of those keypoints. Training on the term alone
    lowers it."""
    encoder = EncoderConfig.keypoints(image_size=16, feature_dim=16)  # 8 keypoints, 2 slow
    model = WorldModel(
        WorldModelConfig(encoder=encoder, action_dim=2, objective={"future": 1.0, "slow": 1.0})
    )
    pixels = torch.randint(0, 256, (8, 2, 16, 16, 3), dtype=torch.uint8)
    still = pixels.clone()
    still[:, -1] = still[:, 0]
    with torch.no_grad():
        losses, _ = model(still, _randn(8, 1, 2))
        features = model.encoder(still[:, 0])
    std = features[:, :4].std(dim=0)
    hinge = torch.relu(1 - std / 0.1).mean().item()
    assert losses["slow"].item() == pytest.approx(hinge, abs=1e-4)
    values = _train_on_term(model, "slow", pixels, steps=30, lr=0.01)
    assert values[-1] < 0.7 * values[0]


@pytest.mark.parametrize("term", sorted(REGULARIZERS))
def test_regularisers_need_a_keypoint_encoder_and_a_pretext(term: str) -> None:
    if term in KEYPOINT_REGULARIZERS:
        with pytest.raises(ValueError, match="readout='keypoints'"):
            WorldModelConfig(
                encoder=EncoderConfig(image_size=16),
                action_dim=2,
                objective={"future": 1.0, term: 1.0},
            )
    keypoints = EncoderConfig.keypoints(image_size=16, feature_dim=8)
    with pytest.raises(ValueError, match="regulariser"):
        WorldModelConfig(encoder=keypoints, action_dim=2, objective={term: 1.0})


def test_slow_needs_keypoints_in_their_own_units_and_flags_must_be_bools() -> None:
    normed = dataclasses.replace(
        EncoderConfig.keypoints(image_size=16, feature_dim=8), layer_norm=True
    )
    for term in ("slow", "equivariant"):  # both measure keypoints in their own units
        with pytest.raises(ValueError, match=f"'{term}' measures .* without layer_norm"):
            WorldModelConfig(encoder=normed, action_dim=2, objective={"future": 1.0, term: 1.0})
    for name in ("future_actions", "transition_norm"):
        with pytest.raises(ValueError, match=f"{name} must be true or false"):
            WorldModelConfig(
                encoder=TINY_ENCODER, action_dim=2, objective={"fdm": 1.0}, **{name: "false"}
            )
