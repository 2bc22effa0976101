"""The encoders shipped in the wheel: intact, still matching the envs, usable by name."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

import sslrobot
from sslrobot.data import CollectConfig, collect
from sslrobot.policy import PolicyConfig, train_policy
from sslrobot.policy.encoders import resolve_encoder
from sslrobot.pretrained import (
    PRETRAINED_PREFIX,
    PROVENANCE,
    REFERENCE_SEEDS,
    file_sha256,
    read_provenance,
    reset_frame_features,
    scene_hashes,
    shipped_encoder_dir,
    shipped_encoder_names,
)
from sslrobot.pretraining.artifacts import ENCODER_WEIGHTS

torch.set_num_threads(1)

#: Features of the same reset frames may move this much (a ±2 grey-level change of every pixel
#: moved them by at most 0.003); the held-out look moves them by 0.48-1.03 and no variation at
#: all by 0.11-0.20 (measured when they were shipped).
FEATURE_TOLERANCE = 0.02
SHIPPED = ("sslrobot/Navigate-v1", "sslrobot/Push-v0", "sslrobot/Reach-v0")
SCENE_FILES = {
    "sslrobot/Navigate-v1": {"navigate_v1.xml", "navigate_base.xml"},
    "sslrobot/Push-v0": {"push.xml", "arm.xml"},
    "sslrobot/Reach-v0": {"reach.xml", "arm.xml"},
}


def _collect_reach(out, policy: str, num_episodes: int):
    """Reach episodes at the shipped encoders' 64 px."""
    config = CollectConfig(
        env_id="sslrobot/Reach-v0", out=out, policy=policy, num_episodes=num_episodes, image_size=64
    )
    return collect(config, progress=False)


def test_one_encoder_is_shipped_per_latest_task():
    """A new task version (the pipeline runs the latest) needs its encoder shipped too."""
    assert shipped_encoder_names() == tuple(sorted(sslrobot.envs.LATEST_ENV_IDS)) == SHIPPED


@pytest.mark.parametrize("env_id", SHIPPED)
def test_scene_hashes_cover_the_files_each_task_loads(env_id):
    assert set(scene_hashes(env_id)) == SCENE_FILES[env_id]


@pytest.mark.parametrize("env_id", SHIPPED)
def test_shipped_weights_are_the_ones_their_provenance_names(env_id):
    path = shipped_encoder_dir(PRETRAINED_PREFIX + env_id)
    provenance = read_provenance(path)
    assert provenance["env_id"] == env_id and provenance["objective"] == "fdm+future"
    assert file_sha256(path / ENCODER_WEIGHTS) == provenance["weights_sha256"]
    measured = provenance["measured"]["bc_success_25_demos"]
    assert set(measured) == {"fdm+future", "none", "state"}


@pytest.mark.parametrize("env_id", SHIPPED)
def test_envs_still_render_the_world_the_weights_were_trained_on(env_id):
    """A changed scene file or look would leave the weights describing another world: ship
    them again (scripts/ship_encoders.py) from a run of the changed envs."""
    spec = PRETRAINED_PREFIX + env_id
    provenance = read_provenance(shipped_encoder_dir(spec))
    assert scene_hashes(env_id) == provenance["scene_sha256"], (
        f"a scene file changed since {env_id}'s encoder was shipped"
    )
    reference = provenance["reference_features"]
    encoder, config = sslrobot.load_encoder(spec)
    assert reference["reset_seeds"] == list(REFERENCE_SEEDS)
    now = np.array(reset_frame_features(encoder, env_id, config.image_size))
    np.testing.assert_allclose(now, reference["features"], rtol=0, atol=FEATURE_TOLERANCE)


def test_the_feature_check_would_see_another_look():
    """The check above can fail: the same encoder on the same resets without the training
    look's variation gives features further from the reference than the tolerance."""
    spec = PRETRAINED_PREFIX + "sslrobot/Reach-v0"
    provenance = read_provenance(shipped_encoder_dir(spec))
    reference = np.array(provenance["reference_features"]["features"])
    encoder, config = sslrobot.load_encoder(spec)
    plain = reset_frame_features(
        encoder, "sslrobot/Reach-v0", config.image_size, visual_preset="none"
    )
    assert np.abs(np.array(plain) - reference).max() > 5 * FEATURE_TOLERANCE


def test_load_encoder_by_name_is_frozen_and_equals_the_files():
    encoder, config = sslrobot.load_encoder("pretrained:Push-v0")  # namespace optional
    path = shipped_encoder_dir("pretrained:sslrobot/Push-v0")
    weights = safetensors.torch.load_file(str(path / ENCODER_WEIGHTS))
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    for name, tensor in encoder.state_dict().items():
        torch.testing.assert_close(tensor, weights[name], rtol=0, atol=0)
    assert config.image_size == 64


def test_a_damaged_shipped_encoder_is_refused(tmp_path, monkeypatch):
    """safetensors keeps no checksum: a NaN written into the weights loaded silently and gave
    NaN features, with the right hash beside it in the provenance."""
    import shutil

    import sslrobot.pretrained as pretrained

    root = tmp_path / "encoders"
    shutil.copytree(shipped_encoder_dir("pretrained:Reach-v0").parent, root)
    monkeypatch.setattr(pretrained, "shipped_encoders_root", lambda: root)
    sslrobot.load_encoder("pretrained:Reach-v0")  # the copy is intact
    weights = root / "Reach-v0" / ENCODER_WEIGHTS
    tensors = safetensors.torch.load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name].view(-1)[0] = float("nan")
    safetensors.torch.save_file(tensors, str(weights))
    with pytest.raises(ValueError, match=r"Reach-v0/encoder\.safetensors is missing or not"):
        sslrobot.load_encoder("pretrained:Reach-v0")
    with pytest.raises(ValueError, match="damaged; reinstall"):
        resolve_encoder("pretrained:sslrobot/Reach-v0", 64, seed=0)
    # A truncated provenance gave a bare JSONDecodeError naming no file; a missing one made
    # the encoder read as never shipped ("no shipped encoder ...; the wheel ships: ..."), as
    # if the name had a typo.
    provenance = root / "Push-v0" / PROVENANCE
    text = provenance.read_text()
    provenance.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"Push-v0/provenance\.json is missing or damaged"):
        sslrobot.load_encoder("pretrained:Push-v0")
    provenance.unlink()
    assert "sslrobot/Push-v0" in pretrained.shipped_encoder_names()
    with pytest.raises(ValueError, match=r"Push-v0/provenance\.json is missing or damaged"):
        sslrobot.load_encoder("pretrained:Push-v0")


@pytest.mark.parametrize("env_id", SHIPPED)
def test_shipped_encoders_record_the_data_they_trained_on(env_id):
    """What lets a probe leave their training episodes out of a copy or a recollection of the
    default preset's stream (``trained_episodes``), whose path is not the recorded one."""
    from sslrobot.data.manifest import EPISODE_FIELDS
    from sslrobot.pretraining.artifacts import PRETRAIN_CONFIG

    path = shipped_encoder_dir(PRETRAINED_PREFIX + env_id)
    saved = json.loads((path / PRETRAIN_CONFIG).read_text())
    (identity,) = saved["train_dataset_identities"]
    (episodes,) = saved["train_episode_id_lists"]
    assert set(identity) == set(EPISODE_FIELDS) and identity["env_id"] == env_id
    assert list(saved["train_episode_ids"].values()) == [episodes] and len(episodes) == 900


@pytest.mark.parametrize(
    "spec",
    [
        "pretrained:sslrobot/Lift-v0",
        "pretrained:",
        "pretrained:sslrobot/../Push-v0",
        "pretrained:push-v0",  # exact names, on case-insensitive file systems too
        "pretrained:sslrobot/Navigate-v0",  # no encoder for an older version
    ],
)
def test_unknown_shipped_encoder_names_what_is_shipped(spec):
    with pytest.raises(ValueError, match=r"no shipped encoder .*pretrained:sslrobot/Push-v0"):
        sslrobot.load_encoder(spec)
    with pytest.raises(ValueError, match="no shipped encoder"):
        resolve_encoder(spec, image_size=64, seed=0)


def test_bc_on_a_shipped_encoder_by_name(tmp_path):
    """``--encoder pretrained:<env id>`` resolves like a pretrain directory: the objective as
    the name, the weights frozen through training."""
    demos = _collect_reach(tmp_path / "demos", "expert", num_episodes=3)
    spec = "pretrained:sslrobot/Reach-v0"
    before = {k: v.clone() for k, v in sslrobot.load_encoder(spec)[0].state_dict().items()}

    def bc_on_reach(encoder: str, out: Path, **options) -> Path:
        config = PolicyConfig(env_id="sslrobot/Reach-v0", encoder=encoder, algo="bc", out=out,
                              demos=demos, num_demos=3, progress=False, **options)  # fmt: skip
        return train_policy(config)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = bc_on_reach(spec, tmp_path / "policy", steps=20, batch_size=32)
    assert not [w for w in caught if "transfer test" in str(w.message)]  # the task's own
    record = json.loads((out / "policy_config.json").read_text())
    assert record["encoder"]["kind"] == "pretrained"
    assert record["encoder"]["name"] == "fdm+future"
    assert record["encoder"]["source"] == str(shipped_encoder_dir(spec).resolve())
    saved = safetensors.torch.load_file(str(out / "final.safetensors"))
    for name, tensor in before.items():
        torch.testing.assert_close(saved[f"obs_encoder.encoder.{name}"], tensor, rtol=0, atol=0)
    # Another task's shipped encoder: allowed (a transfer test), never silently; the same for
    # a directory, whose recorded streams name the env (a copy, not the spec).
    copied = shutil.copytree(shipped_encoder_dir("pretrained:Push-v0"), tmp_path / "push_enc")
    for encoder, said in (
        ("pretrained:Push-v0", r"pretrained on sslrobot/Push-v0's frames.*a transfer"),
        (str(copied), r"pretrained on streams of sslrobot/Push-v0; training on .* transfer"),
    ):
        with pytest.warns(UserWarning, match=said):
            bc_on_reach(encoder, tmp_path / "transfer", steps=1, overwrite=True)


def test_probe_takes_a_shipped_encoder_and_scores_the_probe_alone(tmp_path):
    """The shipped directory keeps the pretraining's config but not its world model, so the
    probe runs and the prediction metrics are skipped rather than failing on a missing file."""
    from sslrobot.evaluation.probe import ProbeConfig, run_probe

    data = _collect_reach(tmp_path / "data", "random", num_episodes=4)
    results = run_probe(
        ProbeConfig(encoder="pretrained:sslrobot/Reach-v0", data=str(data), device="cpu")
    )
    assert np.isfinite(results["probe/r2_mean"]) and results["probe/feature_dim"] == 64
    assert not any(key.startswith("pred/") for key in results)
