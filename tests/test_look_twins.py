"""Look twins: the same episodes in another look, paired window by window, refused when they
are not the same trajectories, and read by pretraining as its targets."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_pretrain import SIZE, TINY_ENCODER

from sslrobot.data import CollectConfig, collect
from sslrobot.data.look_twins import TWIN_PIXELS, LookTwinWindows
from sslrobot.data.windows import WindowDataset
from sslrobot.models import DecoderConfig
from sslrobot.pretraining.config import PretrainConfig
from sslrobot.pretraining.trainer import PretrainRun, collate_windows, pretrain

torch.set_num_threads(1)

ENV = "sslrobot/Reach-v0"


def _collect(out: Path, preset: str, seed: int = 7, episodes: int = 4) -> Path:
    config = CollectConfig(
        env_id=ENV,
        out=out,
        num_episodes=episodes,
        image_size=SIZE,
        policy="noisy-expert",
        seed=seed,
        visual_preset=preset,
    )
    return collect(config, progress=False)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """A stream in the varied look and its twin in the authored look."""
    root = tmp_path_factory.mktemp("twins")
    return _collect(root / "train", "train"), _collect(root / "none", "none")


def test_windows_pair_with_the_same_moments_in_the_other_look(pair) -> None:
    varied, authored = pair
    windows = WindowDataset(varied, 2, split="all", arrays=("pixels", "action"))
    paired = LookTwinWindows(windows, authored)
    alone = WindowDataset(authored, 2, split="all", arrays=("pixels", "action"))
    assert len(paired) == len(windows) and paired.episode_ids == windows.episode_ids
    indices = [0, len(paired) // 2, len(paired) - 1]
    batch = paired.read_batch(indices)
    for slot, index in enumerate(indices):
        episode_id, t = windows.locate(index)
        first, count = alone.episode_windows(episode_id)
        assert 0 <= t < count
        twin = alone[first + t]["pixels"].numpy()
        np.testing.assert_array_equal(batch[TWIN_PIXELS][slot], twin)
        np.testing.assert_array_equal(paired[index][TWIN_PIXELS].numpy(), twin)
        np.testing.assert_array_equal(batch["pixels"][slot], windows[index]["pixels"].numpy())
    # Another look: at least one window differs (colours, light, camera or a distractor).
    assert not np.array_equal(batch[TWIN_PIXELS], batch["pixels"])
    with pytest.raises(KeyError, match="episode 99 is not among"):
        alone.episode_windows(99)


def test_what_is_not_a_look_twin_is_refused(pair, tmp_path: Path) -> None:
    varied, authored = pair
    windows = WindowDataset(varied, 2, split="all", arrays=("pixels", "action"))
    other_seed = _collect(tmp_path / "seed8", "none", seed=8)
    with pytest.raises(ValueError, match=r"not a look twin .*base_seed: 7 .* 8 in"):
        LookTwinWindows(windows, other_seed)
    fewer = _collect(tmp_path / "fewer", "none", episodes=2)
    with pytest.raises(ValueError, match=r"lacks episodes \[2, 3\]"):
        LookTwinWindows(windows, fewer)
    # Same manifests, other trajectories (an env whose look moved its physics): the data
    # layer refuses forged manifests itself, so the twin's reader is pointed elsewhere.
    paired = LookTwinWindows(windows, authored, check_trajectories=False)
    paired.twin.root = other_seed
    with pytest.raises(ValueError, match="episode 0's action differs"):
        paired._check_trajectories()
    with pytest.raises(ValueError, match="visual_preset: 'train' in both"):
        LookTwinWindows(windows, varied)
    with pytest.raises(ValueError, match="windows of one dataset directory"):
        LookTwinWindows([windows], authored)


def _config(out: Path, **changes: object) -> PretrainConfig:
    values = {
        "out": str(out),
        "steps": 2,
        "batch_size": 4,
        "num_steps_ahead": 2,
        "checkpoint_every": 0,
        "image_every": 2,
        "num_images": 2,
        "tensorboard": False,
        "device": "cpu",
        "encoder": TINY_ENCODER,  # of SIZE-pixel frames
        "decoder": DecoderConfig(channels=(16, 8), shuffle=4),
        "transition_hidden_dim": 32,
        "head_hidden_dim": 32,
        "projection_dim": 16,
        "prefetch": 0,
    }
    values.update(changes)
    return PretrainConfig(**values)


def test_pretraining_takes_its_targets_from_the_twin(pair, tmp_path: Path) -> None:
    """The twin's frames get the window's shift and no colour draw, and the losses read them.
    The shift of each window is found from its own frames, then asked of its twin's."""
    from sslrobot.pretraining.augment import shift_windows

    varied, authored = pair
    config = _config(
        tmp_path / "twin", data=str(varied), look_target_data=str(authored), color_jitter=0.3
    )
    run = PretrainRun(config, progress=False)
    plain = PretrainRun(_config(tmp_path / "plain", data=str(varied)), progress=False)
    try:
        raw = run.to_device(collate_windows(run.dataset.read_batch([0, 1, 2, 3])))
        pixels, actions, _, decode_index, _, _, twin = run.augment(*raw, step=1)
        shifted = plain.augment(*raw[:3], None, step=1)[0]  # the same draws, no colour
        pad = config.shift_pad
        offsets = [(dy, dx) for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)]
        for i in range(len(pixels)):
            found = [
                o
                for o in offsets
                if torch.equal(shift_windows(raw[0][i : i + 1], torch.tensor([o]))[0], shifted[i])
            ]
            assert found, f"window {i}: no shift gives its frames"
            expected = shift_windows(raw[3][i : i + 1], torch.tensor([found[0]]))[0]
            assert torch.equal(twin[i], expected)  # the window's shift, and no colour draw
        assert not torch.equal(pixels, shifted)  # the encoder's input was recoloured
        with torch.no_grad():
            own, _ = run.model(pixels, actions, decode_index)
            paired, _ = run.model(pixels, actions, decode_index, look_targets=twin)
        assert own["fdm"] != paired["fdm"] and own["future"] != paired["future"]
        with pytest.raises(ValueError, match="must be the windows' frames in another look"):
            run.model(pixels, actions, look_targets=twin[:, :1])
    finally:
        run.close()
        plain.close()
    out = pretrain(config, progress=False)
    assert (out / "predictions" / "step_00002.png").is_file()
    saved = json.loads((out / "pretrain_config.json").read_text())
    assert saved["pretrain"]["look_target_data"] == str(authored)
    assert saved["look_twin_identity"]["env_kwargs"]["visual_preset"] == "none"


def test_a_resume_takes_a_moved_twin_and_refuses_another_look(pair, tmp_path: Path) -> None:
    varied, authored = pair
    out = tmp_path / "run"
    pretrain(
        _config(out, data=str(varied), look_target_data=str(authored), checkpoint_every=1,
                image_every=0),
        progress=False,
    )  # fmt: skip
    moved = shutil.copytree(authored, tmp_path / "moved")
    resumed = _config(out, data=str(varied), look_target_data=str(moved), checkpoint_every=1,
                      image_every=0, steps=3, resume=True)  # fmt: skip
    pretrain(resumed, progress=False)
    heldout = _collect(tmp_path / "heldout", "heldout")
    with pytest.raises(ValueError, match=r"another look twin .*env_kwargs differ"):
        pretrain(dataclasses.replace(resumed, steps=4, look_target_data=str(heldout)),
                 progress=False)  # fmt: skip


def test_look_target_settings_are_checked(pair, tmp_path: Path) -> None:
    varied, authored = pair
    with pytest.raises(ValueError, match="objective 'inverse' has none of them"):
        _config(tmp_path / "a", data=str(varied), look_target_data=str(authored),
                objective="inverse")  # fmt: skip
    with pytest.raises(ValueError, match="pairs the windows of one dataset; data names 2"):
        _config(tmp_path / "b", data=[str(varied), str(authored)], look_target_data=str(authored))
    paired = LookTwinWindows(WindowDataset(varied, 2, arrays=("pixels", "action")), authored)
    with pytest.raises(ValueError, match="hold a look twin's frames, which this run"):
        PretrainRun(_config(tmp_path / "d"), paired, progress=False)
    with pytest.raises(ValueError, match="but the windows given pair with"):
        PretrainRun(_config(tmp_path / "e", look_target_data=str(varied)), paired, progress=False)
    with pytest.raises(ValueError, match="hold no look twin's frames"):
        run = PretrainRun(
            _config(tmp_path / "c", look_target_data=str(authored)),
            WindowDataset(varied, 2, arrays=("pixels", "action")),
            progress=False,
        )
        run.close()


class _CopyingModel:
    """Predicts o_t for every k, copying the frame it is told to (``copy_from``)."""

    def predict_frames(self, pixels, actions, copy_from=None):
        frame = pixels[:, 0] if copy_from is None else copy_from
        return frame[:, None].repeat(1, actions.shape[1], 1, 1, 1)


def test_predictions_are_scored_against_the_twin(pair, tmp_path: Path) -> None:
    """A look-target model predicts the twin's frames: those are its truth and its copy-last
    baseline, and without the twin its predictions are not scored at all."""
    from sslrobot.evaluation.prediction import prediction_from_dirs, prediction_quality

    varied, authored = pair
    paired = LookTwinWindows(WindowDataset(varied, 2, split="all"), authored)
    scores = prediction_quality(_CopyingModel(), paired, latents=False, max_windows=8)
    assert scores["pred/psnr_k1"] == scores["pred/psnr_copy_last_k1"]
    plain = prediction_quality(_CopyingModel(), paired.windows, latents=False, max_windows=8)
    assert plain["pred/psnr_copy_last_k1"] != scores["pred/psnr_copy_last_k1"]

    twin = tmp_path / "twin"
    shutil.copytree(authored, twin)
    config = _config(tmp_path / "run", data=str(varied), look_target_data=str(twin), steps=1)
    out = pretrain(config, progress=False)
    scored = prediction_from_dirs(out, varied, horizon=2, max_windows=4)
    assert scored["pred/num_windows"] >= 1 and "fdm/latent_cos_k1" in scored
    other = _collect(tmp_path / "other", "train", seed=9)  # another stream: no twin of it
    with pytest.warns(UserWarning, match="does not pair with"):
        assert prediction_from_dirs(out, other, horizon=2, max_windows=4) == {}
    shutil.rmtree(twin)
    with pytest.warns(UserWarning, match="not scored"):
        assert prediction_from_dirs(out, varied, horizon=2, max_windows=4) == {}


def test_the_look_share_is_scale_free() -> None:
    """The share cannot be met by shrinking the features (raw squared moves could: weight 1
    shrank Reach's keypoint spread 7x); 0 for equal features, about 1 for unrelated ones."""
    from sslrobot.pretraining.objectives import look_share_loss

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(512, 8, generator=generator)
    other = torch.randn(512, 8, generator=generator)
    near = features + 0.1 * other
    assert look_share_loss(features, features) == 0
    assert torch.isclose(look_share_loss(features, other), torch.tensor(1.0), atol=0.1)
    assert torch.isclose(
        look_share_loss(0.01 * features, 0.01 * near), look_share_loss(features, near)
    )


def test_the_look_term_keeps_features_still_across_the_two_looks(pair, tmp_path: Path) -> None:
    """``+look:W``: zero when both looks are the same frames, positive for another look, and
    refused without a twin."""
    varied, authored = pair
    config = _config(
        tmp_path / "run",
        data=str(varied),
        look_target_data=str(authored),
        objective="fdm+future+look",
    )
    run = PretrainRun(config, progress=False)
    try:
        batch = run.to_device(collate_windows(run.dataset.read_batch([0, 1, 2, 3])))
        pixels, actions, _, decode_index, _, _, twin = run.augment(*batch, step=1)
        with torch.no_grad():
            same, _ = run.model(pixels, actions, decode_index, look_targets=pixels)
            other, _ = run.model(pixels, actions, decode_index, look_targets=twin)
            with pytest.raises(ValueError, match="pass look_targets"):
                run.model(pixels, actions, decode_index)
        assert same["look"] == 0 and other["look"] > 0
    finally:
        run.close()
    out = pretrain(config, progress=False)
    assert "loss_look" in (out / "metrics.csv").read_text().splitlines()[0]
    with pytest.raises(ValueError, match="it needs look_target_data"):
        _config(tmp_path / "a", data=str(varied), objective="fdm+look")
