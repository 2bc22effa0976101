"""The evaluation against the real model classes (tiny, untrained): shapes and keys agree."""

import numpy as np
import pytest
import torch

from sslrobot.evaluation.prediction import prediction_quality
from sslrobot.models.decoder import DecoderConfig
from sslrobot.models.encoder import EncoderConfig
from sslrobot.models.features import extract_features
from sslrobot.pretraining.world_model import WorldModel, WorldModelConfig

torch.set_num_threads(1)


def _tiny_model(objective):
    encoder = EncoderConfig(
        image_size=16, channels=(8,), kernel_sizes=(4,), strides=(4,), paddings=(0,), feature_dim=8
    )
    config = WorldModelConfig(
        encoder=encoder,
        action_dim=2,
        objective=objective,
        decoder=DecoderConfig(channels=(8, 8)),
        transition_hidden_dim=16,
        head_hidden_dim=16,
        projection_dim=8,
    )
    return WorldModel(config).eval()


def _windows(num=5, horizon=3):
    rng = np.random.default_rng(0)
    return [
        {
            "pixels": rng.integers(0, 256, size=(horizon + 1, 16, 16, 3), dtype=np.uint8),
            "action": rng.uniform(-1, 1, size=(horizon, 2)).astype(np.float32),
        }
        for _ in range(num)
    ]


def test_prediction_quality_on_a_real_world_model():
    model = _tiny_model({"fdm": 1.0, "future": 1.0})
    assert model.has_decoder and model.has_dynamics
    metrics = prediction_quality(model, _windows(), batch_size=2)
    for k in (1, 2, 3):
        for key in ("pred/psnr", "pred/psnr_copy_last", "pred/ssim", "fdm/latent_cos"):
            assert np.isfinite(metrics[f"{key}_k{k}"]), key
        assert f"fdm/latent_cos_copy_last_k{k}" in metrics


def test_fdm_only_model_is_scored_on_latents_only():
    model = _tiny_model({"fdm": 1.0})
    assert not model.has_decoder
    metrics = prediction_quality(model, _windows(), frames=False)
    assert "fdm/latent_nmse_k3" in metrics and "pred/psnr_k1" not in metrics
    with pytest.raises(ValueError, match="no future-frame decoder"):
        prediction_quality(model, _windows(), latents=False)


def test_extract_features_with_the_real_encoder():
    encoder = _tiny_model({}).encoder
    frames = np.random.default_rng(1).integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
    features = extract_features(encoder, frames, batch_size=2)
    assert features.shape == (5, 8)
    with torch.no_grad():
        expected = encoder(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
