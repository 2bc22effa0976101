"""Ridge probes from frozen features to state, and the probe stage's glue with fake inputs."""

import argparse
import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import sslrobot
import sslrobot.data
import sslrobot.pretraining
from sslrobot.commands import probe as probe_command
from sslrobot.evaluation.probe import (
    ProbeConfig,
    _ridge_path,
    fit_linear_probe,
    fit_ridge,
    probe_representation,
    r2_scores,
    run_probe,
    select_alphas,
    stack_frames,
)
from sslrobot.models.features import extract_features

torch.set_num_threads(1)
NAMES = ["x", "y", "z"]


def _linear_data(seed, n_train=400, n_val=200, dim=16, noise=0.0):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(dim, 3))
    features = rng.normal(size=(n_train + n_val, dim)) * rng.uniform(0.1, 10, size=dim)
    states = features @ weights + np.array([1.0, -2.0, 5.0])
    states += noise * rng.normal(size=states.shape)
    return features[:n_train], states[:n_train], features[n_train:], states[n_train:]


def test_probe_recovers_a_linear_map():
    train_x, train_y, val_x, val_y = _linear_data(0)
    groups = np.repeat(np.arange(20), 20)
    result = fit_linear_probe(train_x, train_y, val_x, val_y, NAMES, train_groups=groups)
    assert set(result.r2) == set(NAMES)
    assert all(score > 0.999 for score in result.r2.values())
    assert result.r2_mean > 0.999
    assert result.num_train_frames == 400 and result.num_val_frames == 200
    assert result.feature_dim == 16


def test_probe_on_noise_features_scores_near_zero_or_below():
    rng = np.random.default_rng(1)
    train_x, val_x = rng.normal(size=(400, 16)), rng.normal(size=(200, 16))
    train_y, val_y = rng.normal(size=(400, 3)), rng.normal(size=(200, 3))
    result = fit_linear_probe(train_x, train_y, val_x, val_y, NAMES)
    assert result.r2_mean < 0.05
    assert all(score < 0.1 for score in result.r2.values())


def test_probe_with_fixed_alpha_and_feature_scale_invariance():
    train_x, train_y, val_x, val_y = _linear_data(2, noise=0.5)
    scale = np.linspace(1e-3, 1e3, train_x.shape[1])
    plain = fit_linear_probe(train_x, train_y, val_x, val_y, NAMES, alpha=10.0)
    scaled = fit_linear_probe(train_x * scale, train_y, val_x * scale, val_y, NAMES, alpha=10.0)
    assert plain.alphas == {"x": 10.0, "y": 10.0, "z": 10.0}
    for name in NAMES:  # standardisation makes the probe blind to feature units
        assert scaled.r2[name] == pytest.approx(plain.r2[name], abs=1e-9)


def test_standardisation_uses_train_statistics_only():
    train_x, train_y, val_x, _ = _linear_data(3)
    probe = fit_ridge(train_x, train_y, 1.0)
    assert np.allclose(probe.feature_mean, train_x.mean(axis=0))
    assert np.allclose(probe.feature_scale, train_x.std(axis=0))
    shifted = fit_ridge(train_x, train_y, 1.0).predict(val_x + 100.0)
    assert not np.allclose(shifted, probe.predict(val_x))


def test_ridge_path_matches_the_normal_equations():
    rng = np.random.default_rng(4)
    for n, d in ((30, 5), (6, 20)):  # over- and under-determined
        x = rng.normal(size=(n, d))
        x -= x.mean(axis=0)
        y = rng.normal(size=(n, 2))
        y -= y.mean(axis=0)
        path = _ridge_path(x, y, np.array([0.1, 10.0]))
        for index, alpha in enumerate((0.1, 10.0)):
            expected = np.linalg.solve(x.T @ x + alpha * np.eye(d), x.T @ y)
            np.testing.assert_allclose(path[index], expected, rtol=1e-8, atol=1e-10)


def test_fit_ridge_accepts_one_alpha_per_target():
    train_x, train_y, _, _ = _linear_data(5)
    mixed = fit_ridge(train_x, train_y, [0.1, 1e4, 0.1])
    np.testing.assert_allclose(mixed.coef[:, 0], fit_ridge(train_x, train_y, 0.1).coef[:, 0])
    np.testing.assert_allclose(mixed.coef[:, 1], fit_ridge(train_x, train_y, 1e4).coef[:, 1])


def test_select_alphas_prefers_small_penalty_for_clean_and_large_for_noise():
    train_x, train_y, _, _ = _linear_data(6)
    rng = np.random.default_rng(6)
    targets = np.column_stack([train_y[:, 0], rng.normal(size=train_x.shape[0])])
    groups = np.repeat(np.arange(20), 20)
    alphas = select_alphas(train_x, targets, groups=groups, alphas=(1e-2, 1e5))
    assert alphas.tolist() == [1e-2, 1e5]
    with pytest.raises(ValueError, match="at least 2 training episodes"):
        select_alphas(train_x, targets, groups=np.zeros(train_x.shape[0]))


def test_select_alphas_keeps_variables_constant_within_the_held_out_episode():
    """With few training episodes the alpha holdout is one episode, where a goal never moves:
    R² is undefined there, and such variables were given the largest penalty (a probe of 6
    episodes read a linearly decodable goal with R² -0.07 instead of 0.99)."""
    rng = np.random.default_rng(0)
    steps, episodes = 30, 6
    # Constant within each episode, and no episode's goal near the others' mean (which a
    # maximal penalty predicts), whichever episode is held out.
    goal = np.repeat(rng.permutation([0.0, 1.0, 2.0, 3.0, 4.0, 10.0]), steps)
    moving = rng.normal(size=steps * episodes)
    features = np.column_stack([moving, goal, rng.normal(size=(steps * episodes, 30))])
    features += 0.05 * rng.normal(size=features.shape)
    targets = np.column_stack([moving, goal])
    groups = np.repeat(np.arange(episodes), steps)
    alphas = select_alphas(features, targets, groups=groups, alphas=(1.0, 1e5))
    assert alphas.tolist() == [1.0, 1.0]


def test_r2_known_answers():
    targets = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    constant = np.tile(targets.mean(axis=0), (3, 1))
    scores = r2_scores(targets, constant)
    assert scores[0] == 0.0
    assert np.isnan(scores[1])  # constant target: R^2 undefined
    assert r2_scores(targets, targets)[0] == 1.0
    assert r2_scores(targets[:, :1], -targets[:, :1])[0] < 0  # worse than constant: negative


def test_constant_state_variable_is_reported_but_left_out_of_the_mean():
    train_x, train_y, val_x, val_y = _linear_data(7)
    train_y[:, 2] = 3.0
    val_y[:, 2] = 3.0
    result = fit_linear_probe(train_x, train_y, val_x, val_y, NAMES, alpha=1e-3)
    assert np.isnan(result.r2["z"])
    assert result.r2_mean == pytest.approx(np.mean([result.r2["x"], result.r2["y"]]))
    assert result.to_metrics()["probe/r2"]["z"] is None


def test_mean_over_narrows_the_headline_mean_and_keeps_the_full_one():
    train_x, train_y, val_x, val_y = _linear_data(8)
    rng = np.random.default_rng(9)
    train_y[:, 2], val_y[:, 2] = rng.normal(size=len(train_y)), rng.normal(size=len(val_y))
    result = fit_linear_probe(
        train_x, train_y, val_x, val_y, NAMES, alpha=1e-3, mean_over=["x", "y"]
    )
    assert result.r2_mean == pytest.approx(np.mean([result.r2["x"], result.r2["y"]]))
    assert result.r2_mean_all == pytest.approx(np.mean(list(result.r2.values())))
    assert result.r2_mean > 0.99 > 0.7 > result.r2_mean_all
    metrics = result.to_metrics()
    assert metrics["probe/mean_over"] == ["x", "y"]
    with pytest.raises(ValueError, match="mean_over names \\['w'\\]"):
        fit_linear_probe(train_x, train_y, val_x, val_y, NAMES, mean_over=["x", "w"])


def _partly_in_view_data(seed, n_train=600, n_val=300, dim=8):
    """State (in_view, x, noise): x is a feature's value where in_view >= 0.5, else noise the
    features know nothing of (an object out of the camera's view)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    features = rng.normal(size=(n, dim))
    in_view = rng.uniform(0, 1, size=n)
    target = np.where(in_view >= 0.5, features[:, 0], 3 * rng.normal(size=n))
    states = np.stack([in_view, target, rng.normal(size=n)], axis=1)
    return features[:n_train], states[:n_train], features[n_train:], states[n_train:]


def test_view_conditions_score_a_variable_where_it_is_in_view():
    names = ["in_view", "x", "noise"]
    train_x, train_y, val_x, val_y = _partly_in_view_data(11)
    groups = np.arange(len(train_y)) // 10  # 60 "episodes", for choosing alpha
    plain = fit_linear_probe(
        train_x, train_y, val_x, val_y, names, train_groups=groups, mean_over=["x"]
    )
    conditioned = fit_linear_probe(
        train_x, train_y, val_x, val_y, names, train_groups=groups, mean_over=["x"],
        view_conditions=[("x", "in_view", 0.5)],
    )  # fmt: skip
    assert plain.r2_in_view == {} and plain.r2_mean == plain.r2_mean_all_frames
    # Out of view the features cannot know x: over every frame R^2 is low, in view near 1.
    assert conditioned.r2["x"] == pytest.approx(plain.r2["x"]) and plain.r2["x"] < 0.3
    assert conditioned.r2_in_view["x"] > 0.99
    assert conditioned.r2_mean == pytest.approx(conditioned.r2_in_view["x"])
    assert conditioned.r2_mean_all_frames == pytest.approx(plain.r2_mean)
    metrics = conditioned.to_metrics()
    assert metrics["probe/view_conditions"] == [["x", "in_view", 0.5]]
    assert metrics["probe/r2_in_view"]["x"] == pytest.approx(conditioned.r2_in_view["x"])
    # A condition no held-out frame meets gives no score rather than a number from nothing.
    never = fit_linear_probe(
        train_x, train_y, val_x, val_y, names, alpha=1.0, view_conditions=[("x", "in_view", 2.0)]
    )
    assert np.isnan(never.r2_in_view["x"]) and never.to_metrics()["probe/r2_in_view"]["x"] is None
    # ... and the headline scores it on every frame rather than dropping it from the mean.
    assert never.r2_mean == pytest.approx(np.mean([never.r2[name] for name in names]))
    with pytest.raises(ValueError, match=r"view condition .* names \['seen'\]"):
        fit_linear_probe(
            train_x, train_y, val_x, val_y, names, view_conditions=[("x", "seen", 0.5)]
        )
    with pytest.raises(ValueError, match="is \\(name, condition variable, least value\\)"):
        fit_linear_probe(train_x, train_y, val_x, val_y, names, view_conditions=[("x", 0.5)])


def test_view_conditions_come_from_the_manifest_or_the_registered_task():
    from sslrobot.evaluation.probe import dataset_view_conditions

    recorded = {"env_id": "sslrobot/Navigate-v0", "view_conditions": [["a", "b", 0.5]]}
    assert dataset_view_conditions(recorded) == (("a", "b", 0.5),)
    assert dataset_view_conditions({**recorded, "view_conditions": None}) == ()
    older = dataset_view_conditions({"env_id": "sslrobot/Navigate-v0"})  # before the field
    assert {name for name, _, _ in older} == {
        "goal_distance",
        "goal_cos_bearing",
        "goal_sin_bearing",
    }
    assert dataset_view_conditions({"env_id": "sslrobot/Reach-v0"}) == ()
    assert dataset_view_conditions({"env_id": "Reacher-v5"}) == ()


def test_probe_rejects_mismatched_inputs():
    train_x, train_y, val_x, val_y = _linear_data(8)
    with pytest.raises(ValueError, match="state_names"):
        fit_linear_probe(train_x, train_y, val_x, val_y, ["x"])
    with pytest.raises(ValueError, match="disagree on frames"):
        fit_linear_probe(train_x[:10], train_y, val_x, val_y, NAMES)
    with pytest.raises(ValueError, match="widths differ"):
        fit_linear_probe(train_x, train_y, val_x[:, :4], val_y, NAMES)


class MeanColourEncoder(torch.nn.Module):
    """Features are each channel's mean intensity; records how it was called."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(3))
        self.calls = []

    def forward(self, frames):
        self.calls.append((frames.shape[0], self.training, torch.is_grad_enabled()))
        return frames.float().mean(dim=(1, 2)) * self.scale  # (B, H, W, 3) -> (B, 3)


def test_extract_features_batches_in_eval_mode_without_grad_and_restores_mode():
    encoder = MeanColourEncoder().train()
    frames = np.random.default_rng(9).integers(0, 256, size=(10, 8, 8, 3), dtype=np.uint8)
    features = extract_features(encoder, frames, batch_size=4)
    assert features.shape == (10, 3) and features.dtype == np.float32
    np.testing.assert_allclose(features, frames.astype(np.float32).mean(axis=(1, 2)), rtol=1e-6)
    assert [c[0] for c in encoder.calls] == [4, 4, 2]
    assert all(not training and not grad for _, training, grad in encoder.calls)
    assert encoder.training  # the caller's mode is restored
    with pytest.raises(ValueError, match="uint8"):
        extract_features(encoder, frames.astype(np.float32))


class FakeDataset:
    """In-memory episodes whose pixels' channel means are a linear function of the state."""

    def __init__(self, num_episodes=10, length=30, seed=0):
        rng = np.random.default_rng(seed)
        self.manifest = {"env_id": "fake", "state_names": ["a", "b"]}
        self.episode_ids = list(range(num_episodes))
        self.episodes = {}
        for i in self.episode_ids:
            state = rng.uniform(0, 1, size=(length + 1, 2)).astype(np.float32)
            levels = np.stack([state[:, 0], state[:, 1], 0.5 * (state[:, 0] + state[:, 1])], 1)
            pixels = np.broadcast_to(
                np.rint(40 + 160 * levels)[:, None, None, :], (length + 1, 12, 12, 3)
            ).astype(np.uint8)
            self.episodes[i] = {"pixels": pixels, "state": state}

    def load_episode(self, i, include_state=False, verify=False):
        assert include_state
        return self.episodes[i]

    def split(self, val_fraction=0.1, seed=0):
        num_val = max(1, round(val_fraction * len(self.episode_ids)))
        order = np.random.default_rng(seed).permutation(self.episode_ids).tolist()
        return sorted(order[num_val:]), sorted(order[:num_val])


def test_ridge_without_penalty_is_the_minimum_norm_least_squares_fit():
    """At alpha 0, centring leaves a direction with a singular value of ~1e-15 whenever there
    are no more frames than features; dividing by it added junk weights (R^2 0.30 instead of
    pinv's 0.34 on such data, coefficients of 1e13 with collinear features)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 50))
    x[:, 1] = x[:, 0]  # collinear too
    y = x[:, :3] @ rng.normal(size=(3, 2)) + 0.1 * rng.normal(size=(20, 2))
    probe = fit_ridge(x, y, 0.0)
    xs = (x - probe.feature_mean) / probe.feature_scale
    expected = np.linalg.pinv(xs) @ (y - y.mean(0))
    np.testing.assert_allclose(probe.coef, expected, atol=1e-8)
    assert np.abs(probe.coef).max() < 10


def test_a_view_variable_the_state_lacks_is_refused(monkeypatch, tmp_path):
    """A typo in the manifest's view_state_names made the headline mean average every
    variable, silently."""
    dataset = FakeDataset()
    dataset.manifest = {**dataset.manifest, "view_state_names": ["a", "typo"]}
    monkeypatch.setattr(sslrobot.data, "open_dataset", lambda path: dataset, raising=False)
    encoder = MeanColourEncoder()
    calls = []
    forward = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda x: (calls.append(len(x)), forward(x))[1])
    with pytest.raises(ValueError, match=r"manifest\.json: view_state_names names \['typo'\]"):
        probe_representation(encoder, tmp_path, val_fraction=0.2, seed=0)
    assert calls == []  # refused from the manifest, before any frame was encoded
    dataset.manifest["view_state_names"] = ["a"]
    metrics = probe_representation(MeanColourEncoder(), tmp_path, val_fraction=0.2, seed=0)
    assert metrics["probe/mean_over"] == ["a"]


def test_a_manifest_from_before_view_state_names_takes_its_tasks():
    """A Navigate stream collected before manifests recorded the variables one frame
    determines took its view conditions from the task but averaged its headline over all 26
    state variables instead of those 4."""
    from sslrobot.envs.navigation.navigate import NavigateTask
    from sslrobot.evaluation.probe import dataset_view_state_names

    older = {"env_id": "sslrobot/Navigate-v1", "state_names": list(NavigateTask.state_names)}
    assert dataset_view_state_names(older) == list(NavigateTask.view_state_names)
    assert len(NavigateTask.view_state_names) < len(NavigateTask.state_names)
    reach = dataset_view_state_names({"env_id": "sslrobot/Reach-v0"})
    assert reach is not None and len(reach) > 0  # every variable: the task names none apart
    assert dataset_view_state_names({"env_id": "Reacher-v5"}) is None  # not ours: all
    recorded = {**older, "view_state_names": ["goal_distance"]}
    assert dataset_view_state_names(recorded) == ["goal_distance"]  # the record wins


def test_a_stream_of_another_image_size_is_refused_by_name(monkeypatch, tmp_path):
    """Frames of another size than the encoder's config once failed deep in the encoder, with
    a bare shape error naming neither the dataset nor the fix."""
    dataset = FakeDataset()
    dataset.manifest = {**dataset.manifest, "frame_shape": [8, 8, 3]}
    monkeypatch.setattr(sslrobot.data, "open_dataset", lambda path: dataset, raising=False)
    encoder = MeanColourEncoder()
    encoder.config = types.SimpleNamespace(image_size=32, frame_stack=1)
    with pytest.raises(
        ValueError, match=rf"{tmp_path} holds 8x8 frames, but the encoder expects 32x32"
    ):
        probe_representation(encoder, tmp_path, val_fraction=0.2, seed=0)
    encoder.config.image_size = 8
    probe_representation(encoder, tmp_path, val_fraction=0.2, seed=0)


def test_probe_representation_on_a_fake_dataset(monkeypatch, tmp_path):
    dataset = FakeDataset()
    monkeypatch.setattr(sslrobot.data, "open_dataset", lambda path: dataset, raising=False)
    metrics = probe_representation(MeanColourEncoder(), tmp_path, val_fraction=0.2, seed=0)
    assert set(metrics["probe/r2"]) == {"a", "b"}
    assert metrics["probe/r2_mean"] > 0.99  # channel means are linear in the state (+rounding)
    assert metrics["probe/num_val_frames"] == 2 * 31
    capped = probe_representation(MeanColourEncoder(), tmp_path, max_frames=80, seed=0)
    assert 60 <= capped["probe/num_train_frames"] <= 100


class FakeWorldModel:
    """Predicts the true future frames and latents, from the whole window (test-only cheat)."""

    has_decoder = True
    has_dynamics = True
    encoder = MeanColourEncoder()

    def predict_frames(self, pixels, action):
        return pixels[:, 1:]

    def rollout_latents(self, pixels, action):
        return pixels[:, 1:].float().mean(dim=(2, 3))

    def target_latents(self, pixels):
        return pixels.float().mean(dim=(2, 3))


class FakeWindows(list):
    def __init__(self, dataset, num_steps):
        super().__init__()
        for ep in dataset.episodes.values():
            for t in range(0, len(ep["pixels"]) - num_steps, 5):
                self.append(
                    {
                        "pixels": ep["pixels"][t : t + num_steps + 1],
                        "action": np.zeros((num_steps, 2), np.float32),
                    }
                )


def _patch_pipeline(monkeypatch):
    dataset = FakeDataset()
    monkeypatch.setattr(sslrobot.data, "open_dataset", lambda path: dataset, raising=False)
    monkeypatch.setattr(
        sslrobot,
        "load_encoder",
        lambda path, device="cpu": (MeanColourEncoder(), {}),
        raising=False,
    )
    monkeypatch.setattr(
        sslrobot.pretraining,
        "load_world_model",
        lambda path, device="cpu": FakeWorldModel(),
        raising=False,
    )
    monkeypatch.setattr(
        sslrobot.data,
        "WindowDataset",
        lambda path, num_steps, **kwargs: FakeWindows(dataset, num_steps),
        raising=False,
    )


def _fake_world_model_dir(path: Path) -> None:
    """What makes a directory a world model's for the probe (predictions use its pretraining
    split; the patched pipeline never reads the weights)."""
    (path / "pretrain_config.json").write_text(json.dumps({"pretrain": {"out": "unused"}}))
    (path / "model.safetensors").write_bytes(b"")


def test_run_probe_writes_json_with_probe_and_prediction_metrics(monkeypatch, tmp_path):
    _patch_pipeline(monkeypatch)
    _fake_world_model_dir(tmp_path)
    out = tmp_path / "results" / "probe.json"
    config = ProbeConfig(encoder=str(tmp_path), data=str(tmp_path), out=str(out), horizon=2)
    results = run_probe(config)
    saved = json.loads(out.read_text())
    assert saved == results
    assert saved["probe/r2_mean"] > 0.99
    assert saved["pred/psnr_k1"] is None  # exact prediction: infinite PSNR, stored as null
    assert saved["pred/ssim_k2"] == pytest.approx(1.0)
    assert saved["fdm/latent_cos_k1"] == pytest.approx(1.0)
    assert np.isfinite(saved["pred/psnr_copy_last_k1"])
    assert saved["config"]["horizon"] == 2


def test_run_probe_of_an_encoder_only_directory_skips_prediction(monkeypatch, tmp_path):
    _patch_pipeline(monkeypatch)  # no pretrain_config.json: the encoder's two files alone
    # ... which cannot say what it trained on: the user is told the score may be a training one
    with pytest.warns(UserWarning, match="nothing says which episodes it trained on"):
        results = run_probe(ProbeConfig(encoder=str(tmp_path), data=str(tmp_path), horizon=2))
    assert results["probe/r2_mean"] > 0.99
    assert not any(key.startswith(("pred/", "fdm/")) for key in results)
    # A pretraining's config without its model (a shipped encoder, or a copy of one): the
    # probe alone as well, not a missing-file error after the probe ran.
    (tmp_path / "pretrain_config.json").write_text(json.dumps({"pretrain": {"out": "unused"}}))
    results = run_probe(ProbeConfig(encoder=str(tmp_path), data=str(tmp_path), horizon=2))
    assert not any(key.startswith(("pred/", "fdm/")) for key in results)


def test_run_probe_never_overwrites_another_commands_file(monkeypatch, tmp_path):
    """``probe --out ENCODER/encoder_config.json`` replaced the encoder's config with the
    results; an earlier probe result is still replaced, as a rerun should."""
    _patch_pipeline(monkeypatch)
    _fake_world_model_dir(tmp_path)
    config_file = tmp_path / "pretrain_config.json"
    before = config_file.read_bytes()
    config = ProbeConfig(encoder=str(tmp_path), data=str(tmp_path), out=str(config_file))
    with pytest.raises(ValueError, match=r"exists and is not an sslrobot probe result \(a file "
                       r"of an encoder"):  # fmt: skip
        run_probe(config)
    assert config_file.read_bytes() == before
    out = tmp_path / "probe.json"
    for horizon in (1, 2):  # a rerun replaces its own result
        run_probe(ProbeConfig(encoder=str(tmp_path), data=str(tmp_path), out=str(out),
                              horizon=horizon))  # fmt: skip
    assert json.loads(out.read_text())["config"]["horizon"] == 2
    blocked = ProbeConfig(encoder=str(tmp_path), data=str(tmp_path), out=str(out / "p.json"))
    with pytest.raises(ValueError, match=r"probe\.json is a file, not a directory"):
        run_probe(blocked)


def test_probing_another_tasks_encoder_is_said(monkeypatch, tmp_path):
    _patch_pipeline(monkeypatch)
    encoder, data = tmp_path / "enc", tmp_path / "data"
    encoder.mkdir()
    data.mkdir()
    identities = [{"env_id": "sslrobot/Push-v0"}]
    (encoder / "pretrain_config.json").write_text(
        json.dumps({"pretrain": {"out": "unused"}, "train_dataset_identities": identities})
    )
    manifest = {"format": "sslrobot-episodes", "format_version": 2, "env_id": "sslrobot/Reach-v0",
                "frame_shape": [8, 8, 3], "action_dim": 2, "proprio_dim": 9,
                "num_episodes_requested": 0}  # fmt: skip
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=r"pretrained on streams of sslrobot/Push-v0; probing "
                      r"it on sslrobot/Reach-v0's frames is a transfer test"):  # fmt: skip
        run_probe(ProbeConfig(encoder=str(encoder), data=str(data), horizon=0))


def test_probe_never_scores_episodes_the_encoder_pretrained_on(monkeypatch, tmp_path):
    """A probe's held-out split overlapped the pretraining's training episodes (half of a 20%
    split, under the pretraining's 90 / 10); those are left out and counted now."""
    _patch_pipeline(monkeypatch)
    _, val_ids = FakeDataset().split(val_fraction=0.5, seed=0)
    pretrained = val_ids[:2]
    record = {"pretrain": {"steps": 5}, "train_episode_ids": {str(tmp_path.resolve()): pretrained}}
    (tmp_path / "pretrain_config.json").write_text(json.dumps(record))
    metrics = probe_representation(str(tmp_path), tmp_path, val_fraction=0.5, seed=0)
    assert metrics["probe/num_val_excluded"] == 2
    assert metrics["probe/num_val_episodes"] == len(val_ids) - 2
    assert metrics["probe/num_val_frames"] == (len(val_ids) - 2) * 31
    record["pretrain"]["steps"] = 0  # a random init trained on nothing: nothing left out
    (tmp_path / "pretrain_config.json").write_text(json.dumps(record))
    metrics = probe_representation(str(tmp_path), tmp_path, val_fraction=0.5, seed=0)
    assert metrics["probe/num_val_excluded"] == 0
    assert metrics["probe/num_val_episodes"] == len(val_ids)
    with pytest.raises(ValueError, match=r"leaves 5 train and 0 validation episodes \(5 more"):
        probe_representation(MeanColourEncoder(), tmp_path, 0.5, exclude_from_validation=val_ids)


def test_probe_command_prints_a_table(monkeypatch, tmp_path, capsys):
    _patch_pipeline(monkeypatch)
    _fake_world_model_dir(tmp_path)
    parser = argparse.ArgumentParser()
    probe_command.register(parser.add_subparsers())
    out = tmp_path / "probe.json"
    argv = ["probe", "--encoder", str(tmp_path), "--data", str(tmp_path), "--out", str(out)]
    args = parser.parse_args([*argv, "--horizon", "1"])
    assert args.func(args) == 0
    printed, shown = capsys.readouterr()
    assert "held-out R^2" in printed and "mean" in printed and "k=1:" in printed
    assert str(out) in printed
    assert out.is_file()
    # The frames' encoding, most of a probe's time, shows its progress; --no-progress not.
    assert "encode train" in shown and "encode held out" in shown and "ep/s" in shown
    args = parser.parse_args([*argv, "--horizon", "0", "--no-progress"])
    assert args.func(args) == 0
    assert "encode" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "value"),
    [("val_fraction", 1.0), ("batch_size", 0), ("alpha", -1.0), ("horizon", -1)],
)
def test_probe_config_validates_fields(field, value):
    with pytest.raises(ValueError, match=field):
        ProbeConfig(encoder="e", data="d", **{field: value})


def test_run_probe_names_a_missing_directory(tmp_path):
    config = ProbeConfig(encoder=str(tmp_path / "nope"), data=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="encoder directory not found"):
        run_probe(config)


def test_stack_frames_repeats_the_first_frame_oldest_first():
    pixels = np.arange(3, dtype=np.uint8)[:, None, None, None] * np.ones((3, 2, 2, 3), np.uint8)
    stacked = stack_frames(pixels, 2)
    assert stacked.shape == (3, 2, 2, 6)
    assert stacked[0, 0, 0].tolist() == [0, 0, 0, 0, 0, 0]
    assert stacked[2, 0, 0].tolist() == [1, 1, 1, 2, 2, 2]
    assert stack_frames(pixels, 1) is pixels


class StackedMeanEncoder(MeanColourEncoder):
    """Expects 2 stacked frames; features are the newest frame's channel means."""

    class config:  # noqa: N801  (mimics EncoderConfig's attribute)
        frame_stack = 2

    def forward(self, frames):
        assert frames.shape[-1] == 6
        return super().forward(frames[..., 3:])


def test_probe_representation_stacks_frames_for_stacking_encoders(monkeypatch, tmp_path):
    dataset = FakeDataset()
    monkeypatch.setattr(sslrobot.data, "open_dataset", lambda path: dataset, raising=False)
    metrics = probe_representation(StackedMeanEncoder(), tmp_path, seed=0, max_frames=None)
    assert metrics["probe/r2_mean"] > 0.99


def test_probe_representation_without_state_or_names(monkeypatch, tmp_path):
    dataset = FakeDataset()
    dataset.manifest["state_names"] = None
    monkeypatch.setattr(sslrobot.data, "open_dataset", lambda path: dataset, raising=False)
    metrics = probe_representation(MeanColourEncoder(), tmp_path)
    assert set(metrics["probe/r2"]) == {"state_0", "state_1"}

    def no_state(i, include_state=False, verify=False):
        raise FileNotFoundError(f"episode {i}: no state.npy")

    dataset.load_episode = no_state
    with pytest.raises(ValueError, match="no privileged state"):
        probe_representation(MeanColourEncoder(), tmp_path)


def test_a_rollout_of_the_wrong_length_is_named():
    """A world model rolling out one step too many hit a bare IndexError; too few blamed
    target_latents."""
    from sslrobot.evaluation.prediction import prediction_quality

    class LongRollouts(FakeWorldModel):
        def rollout_latents(self, pixels, action):
            latents = pixels[:, 1:].float().mean(dim=(2, 3))
            return torch.cat([latents, latents[:, -1:]], dim=1)  # K + 1 steps

    windows = FakeWindows(FakeDataset(num_episodes=2), num_steps=3)
    with pytest.raises(ValueError, match=r"rollout_latents returned \(\d+, 4, 3\) .* K=3"):
        prediction_quality(LongRollouts(), windows, frames=False)


def test_a_non_finite_value_is_named_by_row_and_column():
    x = np.ones((4, 3))
    y = np.zeros((4, 2))
    y[2, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"train states contain NaN or inf \(first at frame row 2, column 1\)"
    ):
        fit_ridge(x, y, 1.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"seed": -5}, "seed must be an integer >= 0, got -5"),  # numpy's error named nothing
        ({"val_fraction": 1.0}, r"val_fraction must be in \(0, 1\), got 1.0"),
        ({"max_frames": 2}, "max_frames must be >= 4"),
        ({"alpha": -1.0}, "alpha must be a finite number >= 0"),
        ({"horizon": -1}, "horizon must be >= 0"),
    ],
)
def test_probe_settings_are_checked_by_name(settings, message) -> None:
    from sslrobot.evaluation.probe import ProbeConfig

    with pytest.raises(ValueError, match=message):
        ProbeConfig(encoder="none", data="d", **settings)


def test_probe_seeds_may_be_numpy_integers() -> None:
    """A seed taken from a NumPy array was refused as not an integer (and would not have
    been written to the probe's JSON): it is accepted and kept as a Python int."""
    from sslrobot.evaluation.probe import ProbeConfig

    config = ProbeConfig(encoder="none", data="d", seed=np.int64(3))
    assert config.seed == 3 and type(config.seed) is int
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0, got 3\.0"):
        ProbeConfig(encoder="none", data="d", seed=3.0)
