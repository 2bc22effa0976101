"""PSNR/SSIM known answers, the copy-last-frame baseline and k-step latent scores."""

import numpy as np
import pytest
import torch

from sslrobot.evaluation.prediction import prediction_quality, psnr, ssim

torch.set_num_threads(1)
C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _smooth_image(seed=0, size=32):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [
        np.sin(2 * np.pi * (rng.uniform(1, 3) * x + rng.uniform(0, 1)))
        * np.cos(2 * np.pi * rng.uniform(1, 3) * y)
        for _ in range(3)
    ]
    return np.rint(127.5 + 100 * np.stack(channels, axis=-1)).astype(np.uint8)


def _reference_ssim(a, b):
    """Direct Wang et al. (2004) SSIM: 2-D Gaussian window at every valid position."""
    offsets = np.arange(11) - 5
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    a, b = a.astype(np.float64), b.astype(np.float64)
    values = []
    for c in range(3):
        for i in range(a.shape[0] - 10):
            for j in range(a.shape[1] - 10):
                pa, pb = a[i : i + 11, j : j + 11, c], b[i : i + 11, j : j + 11, c]
                ma, mb = np.sum(window * pa), np.sum(window * pb)
                va = np.sum(window * (pa - ma) ** 2)
                vb = np.sum(window * (pb - mb) ** 2)
                cov = np.sum(window * (pa - ma) * (pb - mb))
                values.append(
                    (2 * ma * mb + C1) * (2 * cov + C2) / ((ma**2 + mb**2 + C1) * (va + vb + C2))
                )
    return np.mean(values)


def test_psnr_known_answers():
    image = _smooth_image()
    assert psnr(image, image)[0] == np.inf
    zeros = np.zeros((2, 16, 16, 3), np.uint8)
    ones = np.ones((2, 16, 16, 3), np.uint8)
    np.testing.assert_allclose(psnr(zeros, ones), 20 * np.log10(255.0))  # MSE = 1
    with pytest.raises(ValueError, match="uint8"):
        psnr(image.astype(np.float32), image.astype(np.float32))


def test_ssim_identical_and_constant_images():
    image = _smooth_image()
    assert ssim(image, image)[0] == pytest.approx(1.0, abs=1e-12)
    a = np.full((16, 16, 3), 100, np.uint8)
    b = np.full((16, 16, 3), 150, np.uint8)
    expected = (2 * 100 * 150 + C1) / (100**2 + 150**2 + C1)  # contrast/structure terms = 1
    assert ssim(a, b)[0] == pytest.approx(expected, rel=1e-12)


def test_ssim_matches_a_direct_implementation():
    rng = np.random.default_rng(1)
    a = _smooth_image(seed=2, size=18)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, b)[0] == pytest.approx(_reference_ssim(a, b), rel=1e-10)


def test_metrics_order_by_degradation():
    image = _smooth_image(size=40)
    rng = np.random.default_rng(3)
    noisy = [
        np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
        for sigma in (2, 10, 40)
    ]
    assert np.all(np.diff([ssim(image, n)[0] for n in noisy]) < 0)
    assert np.all(np.diff([psnr(image, n)[0] for n in noisy]) < 0)
    shifted = [np.roll(image, shift, axis=1) for shift in (1, 4)]
    scores = [ssim(image, s)[0] for s in shifted]
    assert 1.0 > scores[0] > scores[1]


def _windows(num=7, horizon=3, size=16, seed=4):
    rng = np.random.default_rng(seed)
    return [
        {
            "pixels": rng.integers(0, 256, size=(horizon + 1, size, size, 3), dtype=np.uint8),
            "action": rng.uniform(-1, 1, size=(horizon, 2)).astype(np.float32),
        }
        for _ in range(num)
    ]


class OracleModel:
    """Returns the true future (it sees the whole window; fine for scoring tests)."""

    def predict_frames(self, pixels, action):
        return pixels[:, 1:]

    def rollout_latents(self, pixels, action):
        return pixels[:, 1:].double().mean(dim=(2, 3))  # (B, K, 3)

    def target_latents(self, pixels):
        return pixels.double().mean(dim=(2, 3))  # (B, K+1, 3)


class CopyLastModel(torch.nn.Module):
    """Repeats o_t as floats in [0, 1], channel-first; latents are o_t's, negated."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(1, 1)
        self.modes = []

    def predict_frames(self, pixels, action):
        self.modes.append(self.training)
        horizon = action.shape[1]
        frames = pixels[:, :1].float().div(255).expand(-1, horizon, -1, -1, -1)
        return frames.permute(0, 1, 4, 2, 3)  # (B, K, 3, H, W)

    def rollout_latents(self, pixels, action):
        return -pixels[:, 1:].float().mean(dim=(2, 3))

    def target_latents(self, pixels):
        return pixels[:, 1:].float().mean(dim=(2, 3))  # (B, K, D): no o_t


def test_copy_last_baseline_is_computed_from_the_first_frame():
    windows = _windows()
    metrics = prediction_quality(OracleModel(), windows, batch_size=3)
    pixels = np.stack([w["pixels"] for w in windows]).astype(np.float64)
    for k in (1, 2, 3):
        mse = np.mean((pixels[:, 0] - pixels[:, k]) ** 2)
        assert metrics[f"pred/mse_copy_last_k{k}"] == pytest.approx(mse)
        assert metrics[f"pred/psnr_copy_last_k{k}"] == pytest.approx(10 * np.log10(255**2 / mse))
        expected_ssim = np.mean(ssim(pixels[:, 0].astype(np.uint8), pixels[:, k].astype(np.uint8)))
        assert metrics[f"pred/ssim_copy_last_k{k}"] == pytest.approx(expected_ssim)
        assert metrics[f"pred/psnr_k{k}"] == np.inf
        assert metrics[f"pred/ssim_k{k}"] == pytest.approx(1.0)
        assert metrics[f"fdm/latent_cos_k{k}"] == pytest.approx(1.0)
        assert metrics[f"fdm/latent_nmse_k{k}"] == pytest.approx(0.0)
        assert f"fdm/latent_cos_copy_last_k{k}" in metrics
    assert metrics["pred/num_windows"] == 7 and metrics["pred/horizon"] == 3


def test_a_copy_last_model_scores_exactly_the_baseline():
    model = CopyLastModel().train()
    metrics = prediction_quality(model, _windows(), batch_size=4)
    for k in (1, 2, 3):
        assert metrics[f"pred/psnr_k{k}"] == pytest.approx(metrics[f"pred/psnr_copy_last_k{k}"])
        assert metrics[f"pred/ssim_k{k}"] == pytest.approx(metrics[f"pred/ssim_copy_last_k{k}"])
        assert metrics[f"fdm/latent_cos_k{k}"] == pytest.approx(-1.0)
        assert metrics[f"fdm/latent_nmse_k{k}"] > 1.0  # worse than predicting the mean
        assert f"fdm/latent_cos_copy_last_k{k}" not in metrics  # targets lack o_t
    assert model.modes == [False, False] and model.training


def test_prediction_quality_caps_windows_and_can_skip_parts():
    metrics = prediction_quality(OracleModel(), _windows(num=9), max_windows=4, latents=False)
    assert metrics["pred/num_windows"] == 4
    assert not any(key.startswith("fdm/") for key in metrics)
    metrics = prediction_quality(OracleModel(), _windows(num=5), frames=False)
    assert not any(key.startswith("pred/psnr") for key in metrics)


class _RecordingWindows(list):
    """Windows that note which indices are read."""

    def __init__(self, windows: list[dict[str, np.ndarray]]) -> None:
        super().__init__(windows)
        self.read: list[int] = []

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        self.read.append(index)
        return super().__getitem__(index)


@pytest.mark.parametrize(
    ("num", "max_windows", "expected"),
    [
        (9, 4, [0, 3, 5, 8]),  # linspace(0, 8, 4) = 0, 2.67, 5.33, 8, rounded
        (10, 4, [0, 3, 6, 9]),
        (7, 1, [0]),
        (5, 8, [0, 1, 2, 3, 4]),  # fewer than the cap: all of them
        (5, 5, [0, 1, 2, 3, 4]),
        (5, None, [0, 1, 2, 3, 4]),
    ],
)
def test_capped_windows_are_evenly_spaced_over_the_dataset(
    num: int, max_windows: int | None, expected: list[int]
) -> None:
    """``max_windows`` keeps that many windows, evenly spaced from the first to the last, in
    order; with no more windows than the cap (or no cap) every window is scored once."""
    windows = _RecordingWindows(_windows(num=num, horizon=1, size=8))
    metrics = prediction_quality(
        OracleModel(), windows, batch_size=2, frames=False, max_windows=max_windows
    )
    assert windows.read == expected
    assert metrics["pred/num_windows"] == len(expected)
    with pytest.raises(ValueError, match="max_windows must be >= 1 or None, got 0"):
        prediction_quality(OracleModel(), windows, frames=False, max_windows=0)


def test_prediction_quality_rejects_out_of_range_float_frames():
    class Unnormalised(OracleModel):
        def predict_frames(self, pixels, action):
            return pixels[:, 1:].float()  # 0..255 floats: ambiguous, must not pass silently

    with pytest.raises(ValueError, match=r"expected uint8 or floats in \[0, 1\]"):
        prediction_quality(Unnormalised(), _windows(), latents=False)

    class Centred(OracleModel):
        def predict_frames(self, pixels, action):
            return pixels[:, 1:].float() / 255 - 0.5  # the decoder's own [-0.5, 0.5]

    # It was clipped into half-black frames: a perfect prediction scored below copy-last.
    with pytest.raises(ValueError, match=r"\[-0.5, 0.5\] need 0.5 added"):
        prediction_quality(Centred(), _windows(), latents=False)

    class Overshooting(OracleModel):
        def predict_frames(self, pixels, action):
            frames = pixels[:, 1:].float() / 255
            return frames + 0.05 * (2 * (frames > 0.5).float() - 1)  # a little past 0 and 1

    metrics = prediction_quality(Overshooting(), _windows(), latents=False)
    assert metrics["pred/psnr_k1"] > metrics["pred/psnr_copy_last_k1"]

    class StrayPixel(OracleModel):  # one value far past 1 refused a whole evaluation
        def predict_frames(self, pixels, action):
            frames = pixels[:, 1:].float() / 255
            frames.view(-1)[0] = 1.5
            return frames

    assert prediction_quality(StrayPixel(), _windows(), latents=False)["pred/psnr_k1"] > 0

    class NotANumber(OracleModel):
        def predict_frames(self, pixels, action):
            return torch.full(pixels[:, 1:].shape, float("nan"))

    with pytest.raises(ValueError, match="NaN or infinite"):
        prediction_quality(NotANumber(), _windows(), latents=False)


def test_the_collapse_check_does_not_depend_on_the_batch_size():
    """The latents' spread is over every scored window, not a mean of per-batch spreads."""
    windows = _windows(num=11)
    spreads = [
        prediction_quality(OracleModel(), windows, batch_size=b, frames=False)[
            "fdm/latent_std_mean"
        ]
        for b in (2, 5, 11)
    ]
    targets = np.stack([w["pixels"][1] for w in windows]).astype(np.float64).mean(axis=(1, 2))
    unit = targets / np.linalg.norm(targets, axis=-1, keepdims=True)
    assert spreads == pytest.approx([unit.std(axis=0).mean()] * 3)


def test_stacked_windows_are_scored_on_the_newest_frame():
    windows = _windows(num=4, horizon=2)
    stacked = [
        {"pixels": np.concatenate([255 - w["pixels"], w["pixels"]], axis=-1), "action": w["action"]}
        for w in windows
    ]

    class NewestOracle(OracleModel):
        def predict_frames(self, pixels, action):
            return pixels[:, 1:, ..., 3:]

    plain = prediction_quality(OracleModel(), windows, latents=False)
    metrics = prediction_quality(NewestOracle(), stacked, latents=False)
    assert metrics["pred/psnr_copy_last_k2"] == plain["pred/psnr_copy_last_k2"]
    assert metrics["pred/psnr_k1"] == np.inf
