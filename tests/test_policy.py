"""Policy learning on frozen encoders: freezing, feature caching, BC end to end, clear errors."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

import sslrobot
from sslrobot.data import CollectConfig, collect, open_dataset
from sslrobot.models.encoder import Encoder, EncoderConfig, encoder_config_for
from sslrobot.models.features import extract_features
from sslrobot.policy import PolicyConfig, load_policy, train_policy
from sslrobot.policy.bc import BCData, bc_loss
from sslrobot.policy.cache import FeatureCache, module_fingerprint
from sslrobot.policy.checkpoint import ResumeError, read_policy_config
from sslrobot.policy.config import DEFAULT_BC_STEPS, DEFAULT_RL_STEPS, VALIDATION_SEED_BASE
from sslrobot.policy.demos import select_demo_ids
from sslrobot.policy.encoders import resolve_encoder
from sslrobot.policy.network import BCNetwork, ObservationEncoder
from sslrobot.policy.normalizer import Normalizer
from sslrobot.pretraining import artifacts

torch.set_num_threads(1)

ENV_ID = "sslrobot/Reach-v0"
IMAGE_SIZE = 32
NUM_DEMO_EPISODES = 5


# --- helpers shared with the other test_policy_* files ---------------------------------------


def collect_demos(out: Path, env_id: str = ENV_ID, num_episodes: int = NUM_DEMO_EPISODES) -> Path:
    """Expert demonstrations at 32x32 (episode i reset with seed i)."""
    config = CollectConfig(
        env_id=env_id, out=out, policy="expert", num_episodes=num_episodes, image_size=IMAGE_SIZE
    )
    return collect(config, progress=False)


def train_tiny_bc(demos: Path, out: Path, encoder: str = "none", **overrides) -> Path:
    """A few gradient steps of BC: seconds on one CPU thread."""
    values = {
        "env_id": ENV_ID,
        "encoder": encoder,
        "algo": "bc",
        "out": out,
        "demos": demos,
        "num_demos": 3,
        "steps": 30,
        "batch_size": 32,
        "progress": False,
        "device": "cpu",  # the CPU run the tests promise, on a CUDA machine too
        **overrides,
    }
    return train_policy(PolicyConfig(**values))


def write_encoder_dir(out: Path, config: EncoderConfig, seed: int = 0) -> Path:
    """A user encoder directory in the `pretrain --out` layout that `load_encoder` reads."""
    torch.manual_seed(seed)
    encoder = Encoder(config)
    artifacts.save_json(out / artifacts.ENCODER_CONFIG, config.to_dict())
    artifacts.save_safetensors(out / artifacts.ENCODER_WEIGHTS, encoder.state_dict())
    return out


class BatchNormEncoder(nn.Module):
    """A tiny fake encoder whose buffers *would* change in train mode (BatchNorm), and whose
    weights would change under any gradient step: both must stay bit-identical when frozen."""

    feature_dim = 6

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=4, stride=4)
        self.norm = nn.BatchNorm2d(4)
        self.linear = nn.Linear(4 * 4 * 4, self.feature_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float() / 255.0 - 0.5  # (B, 3, 16, 16)
        return self.linear(torch.relu(self.norm(self.conv(x))).flatten(1))  # (B, 6)


def _random_batch(num: int = 12, size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "pixels": torch.randint(
            0, 256, (num, size, size, 3), dtype=torch.uint8, generator=generator
        ),
        "proprio": torch.randn(num, 5, generator=generator),
        "actions": torch.rand(num, 2, generator=generator) * 2 - 1,
    }


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return collect_demos(tmp_path_factory.mktemp("demos") / "reach")


@pytest.fixture(scope="module")
def trained(demos, tmp_path_factory) -> Path:
    """A `none`-encoder BC policy with validation demos and episodes (so a best checkpoint)."""
    out = tmp_path_factory.mktemp("policy") / "none"
    return train_tiny_bc(demos, out, num_val_demos=1, val_episodes=2, num_val_checks=2, seed=3)


# --- freezing ---------------------------------------------------------------------------------


def test_frozen_encoder_is_bit_identical_after_bc_updates():
    encoder = BatchNormEncoder()
    obs_encoder = ObservationEncoder(encoder, feature_dim=6, proprio_dim=5, frozen=True)
    network = BCNetwork(obs_encoder, action_dim=2, hidden_dims=(16,))
    encoder_before = {k: v.clone() for k, v in encoder.state_dict().items()}
    head_before = {k: v.clone() for k, v in network.head.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=1e-2)
    network.train()  # must not switch the frozen encoder (and its BatchNorm) to train mode
    batch = _random_batch()
    for step in range(5):
        data = BCData(batch["actions"], pixels=batch["pixels"], proprio=batch["proprio"])
        loss = bc_loss(network, data)  # frames encoded on the fly: the gradient path exists
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss), step
    assert not encoder.training
    assert all(not p.requires_grad and p.grad is None for p in encoder.parameters())
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, encoder_before[name]), name
    changed = [not torch.equal(v, head_before[k]) for k, v in network.head.state_dict().items()]
    assert any(changed), "the head must have trained, or this test proves nothing"


def test_frozen_none_encoder_is_saved_exactly_as_initialised(trained):
    policy = load_policy(trained)
    reference = resolve_encoder("none", IMAGE_SIZE, seed=3).module
    saved = policy.obs_encoder.encoder.state_dict()
    assert saved.keys() == reference.state_dict().keys()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(saved[name], tensor), name


def test_baseline_encoders_take_the_runs_architecture(demos, tmp_path):
    out = train_tiny_bc(demos, tmp_path / "kp", encoder="none", steps=2, encoder_arch="keypoints")
    saved = load_policy(out).obs_encoder.encoder
    assert saved.config == EncoderConfig.keypoints(image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match="encoder_arch must be one of"):
        train_tiny_bc(demos, tmp_path / "bad", encoder_arch="vit")


def test_scratch_encoder_trains_end_to_end(demos, tmp_path):
    out = train_tiny_bc(demos, tmp_path / "scratch", encoder="scratch", steps=5, seed=1)
    trained_encoder = load_policy(out).obs_encoder.encoder.state_dict()
    initial = resolve_encoder("scratch", IMAGE_SIZE, seed=1).module.state_dict()
    assert any(not torch.equal(trained_encoder[k], v) for k, v in initial.items())
    record = json.loads((out / "policy_config.json").read_text())
    assert record["encoder"]["kind"] == "scratch"
    assert record["feature_cache"]["frames_encoded"] == 0  # nothing to cache: it trains


# --- feature caching ---------------------------------------------------------------------------


def test_cached_features_equal_on_the_fly(tmp_path):
    encoder = BatchNormEncoder()
    obs_encoder = ObservationEncoder(encoder, feature_dim=6, proprio_dim=5, frozen=True)
    network = BCNetwork(obs_encoder, action_dim=2, hidden_dims=(16,))
    batch = _random_batch(num=10)
    pixels = batch["pixels"].numpy()
    lengths = np.array([4, 6])
    cache = FeatureCache(tmp_path, encoder, {"dataset": "a"}, batch_size=3)
    cached = cache.features((0, 1), lengths, pixels)
    assert cache.num_computed_frames == 10
    on_the_fly = torch.cat([obs_encoder.features(batch["pixels"][i : i + 1]) for i in range(10)])
    np.testing.assert_allclose(cached, on_the_fly.numpy(), rtol=0, atol=1e-6)
    # A second run with the same encoder and dataset reads the disk and encodes nothing.
    again = FeatureCache(tmp_path, encoder, {"dataset": "a"}, batch_size=3)
    np.testing.assert_array_equal(again.features((0, 1), lengths, pixels), cached)
    assert again.num_computed_frames == 0
    # A damaged entry is encoded again and replaced: an empty file raised EOFError, and an
    # array of another width failed later, in the concatenation.
    files = sorted(again.directory.glob("episode_*.npy"))
    files[0].write_bytes(b"")
    np.save(files[1], np.zeros((6, 4), np.float32))
    repaired = FeatureCache(tmp_path, encoder, {"dataset": "a"}, batch_size=3)
    np.testing.assert_array_equal(repaired.features((0, 1), lengths, pixels), cached)
    assert repaired.num_computed_frames == 10 and np.load(files[1]).shape == (6, 6)
    # Without a directory, episodes are encoded one by one as well: the same bits.
    no_disk = FeatureCache(None, encoder, {"dataset": "a"}, batch_size=3)
    np.testing.assert_array_equal(no_disk.features((0, 1), lengths, pixels), cached)
    # The head sees the same inputs either way.
    obs_encoder.feature_norm.fit(cached)
    obs_encoder.proprio_norm.fit(batch["proprio"])
    with torch.no_grad():
        from_cache = network.act_from_features(torch.from_numpy(cached), batch["proprio"])
        from_frames = network(batch["pixels"], batch["proprio"])
    torch.testing.assert_close(from_cache, from_frames, rtol=0, atol=1e-6)


def test_cache_is_keyed_by_encoder_weights(tmp_path):
    pixels = _random_batch(num=4)["pixels"].numpy()
    lengths = np.array([4])
    torch.manual_seed(0)
    first = FeatureCache(tmp_path, BatchNormEncoder(), {"d": 1}, 4)
    torch.manual_seed(1)
    second = FeatureCache(tmp_path, BatchNormEncoder(), {"d": 1}, 4)
    assert first.directory != second.directory
    assert not np.array_equal(
        first.features((0,), lengths, pixels), second.features((0,), lengths, pixels)
    )
    assert second.num_computed_frames == 4


def test_scratch_shifts_its_frames_every_step_and_frozen_encoders_do_not(
    demos, tmp_path, monkeypatch
):
    """The from-scratch baseline is DrQ's: random shifts of pad 4 on every BC step's frames.
    Nothing else checked that the shift happens (a pad of 0 would have passed every test)."""
    from sslrobot.policy import bc

    pads = []
    shift = bc.random_shift
    monkeypatch.setattr(bc, "random_shift", lambda x, pad, g: pads.append(pad) or shift(x, pad, g))
    shifted = train_tiny_bc(demos, tmp_path / "scratch", encoder="scratch", steps=3)
    assert pads == [4, 4, 4]
    pads.clear()
    train_tiny_bc(demos, tmp_path / "none", encoder="none", steps=3)
    assert pads == []  # cached features: no frame reaches the head
    monkeypatch.setattr(bc, "random_shift", lambda x, pad, g: x)
    unshifted = train_tiny_bc(demos, tmp_path / "unshifted", encoder="scratch", steps=3)
    assert (shifted / "final.safetensors").read_bytes() != (
        unshifted / "final.safetensors"
    ).read_bytes()


def test_pixel_policies_never_load_the_privileged_state(demos, tmp_path, monkeypatch):
    """Only the state oracle may read ``state``: a dataset that refuses to hand it out trains
    every pixel encoder."""
    from sslrobot.data.dataset import EpisodeDataset

    load = EpisodeDataset.load_episode

    def without_state(self, episode_id, include_state=False, **kwargs):
        if include_state:
            raise AssertionError(f"episode {episode_id}'s privileged state was loaded")
        return load(self, episode_id, include_state=False, **kwargs)

    monkeypatch.setattr(EpisodeDataset, "load_episode", without_state)
    for encoder in ("none", "scratch"):
        train_tiny_bc(demos, tmp_path / encoder, encoder=encoder, steps=2)
    with pytest.raises(AssertionError, match="privileged state was loaded"):
        train_tiny_bc(demos, tmp_path / "state", encoder="state", steps=2)


def test_cache_is_keyed_by_the_feature_code_and_batch_size(tmp_path, monkeypatch):
    """Weights and config alone served features of an older ``Encoder.forward`` (the keypoint
    expectations changed, the package's version did not); a batch's size moves the last bits
    of CPU convolutions."""
    import sslrobot.policy.cache as cache_module

    encoder = BatchNormEncoder()
    first = FeatureCache(tmp_path, encoder, {"d": 1}, 4)
    assert FeatureCache(tmp_path, encoder, {"d": 1}, 4).directory == first.directory
    assert FeatureCache(tmp_path, encoder, {"d": 1}, 8).directory != first.directory
    assert FeatureCache(tmp_path, encoder, {"d": 2}, 4).directory != first.directory  # data
    code = cache_module.feature_code_fingerprint(encoder)
    monkeypatch.setattr(cache_module.torch, "__version__", "0.0.0")
    assert cache_module.feature_code_fingerprint(encoder) != code
    monkeypatch.setattr(cache_module, "feature_code_fingerprint", lambda module: "edited")
    assert FeatureCache(tmp_path, encoder, {"d": 1}, 4).directory != first.directory


def test_cache_is_keyed_by_device_type(tmp_path, monkeypatch):
    """A GPU's features differ from a CPU's in the last bits: a CPU run must not read them."""
    import sslrobot.policy.cache as cache_module

    encoder = BatchNormEncoder()
    on_cpu = FeatureCache(tmp_path, encoder, {"d": 1}, 4)
    monkeypatch.setattr(cache_module, "module_device", lambda module: torch.device("cuda", 0))
    on_gpu = FeatureCache(tmp_path, encoder, {"d": 1}, 4)
    assert on_cpu.directory is not None and on_gpu.directory is not None
    assert on_cpu.directory.parent.name == "cpu" and on_gpu.directory.parent.name == "cuda"
    assert on_cpu.directory.parent.parent == on_gpu.directory.parent.parent


def test_cache_key_is_the_episodes_identity_not_the_manifests_bookkeeping(tmp_path):
    """Every collect --resume rewrote the manifest's time and counts, and the key held the
    whole manifest and the path: a grown or moved dataset re-encoded every episode."""
    import shutil

    from sslrobot.policy.setup import demos_cache_key

    demos = collect_demos(tmp_path / "demos", num_episodes=2)
    before = demos_cache_key(open_dataset(demos).manifest)
    config = CollectConfig(env_id=ENV_ID, out=demos, policy="expert", num_episodes=3,
                           image_size=IMAGE_SIZE, resume=True)  # fmt: skip
    collect(config, progress=False)
    assert demos_cache_key(open_dataset(demos).manifest) == before
    moved = shutil.copytree(demos, tmp_path / "moved")
    assert demos_cache_key(open_dataset(moved).manifest) == before
    other = CollectConfig(env_id=ENV_ID, out=tmp_path / "other", policy="expert", seed=5,
                          num_episodes=1, image_size=IMAGE_SIZE)  # fmt: skip
    assert demos_cache_key(open_dataset(collect(other, progress=False)).manifest) != before
    # The encoder's settings are in its fingerprint too: same weights, other paddings.
    config = encoder_config_for("cnn", IMAGE_SIZE)
    plain = Encoder(config)
    padded = Encoder(dataclasses.replace(config, paddings=(1, 1, 1)))
    padded.load_state_dict(plain.state_dict())
    assert module_fingerprint(plain) != module_fingerprint(padded)


def test_the_record_says_what_the_loop_ran(demos, tmp_path):
    """The requested batch_size was recorded where the demonstrations held fewer frames (the
    loop trains on them all), and defaulted steps and lr as None."""
    from sslrobot.utils.device import resolve_device

    out = train_tiny_bc(demos, tmp_path / "state", encoder="state", batch_size=100_000, steps=3,
                        device="auto")  # fmt: skip
    record = read_policy_config(out)
    frames = record["num_train_samples"]
    assert frames < 100_000 and record["train_config"]["batch_size"] == 100_000
    assert record["trained_with"] == {"steps": 3, "batch_size": frames, "learning_rate": 1e-3}
    # What was asked and what it resolved to, on this machine.
    assert record["train_config"]["device"] == "auto"
    assert record["device_type"] == resolve_device("auto").type


def test_the_policy_directory_is_judged_under_its_lock(demos, tmp_path, monkeypatch):
    """Judged before the lock, a job that finished between the check and this one's lock had
    its policy deleted as if --overwrite had been given."""
    import fcntl

    from sslrobot.policy import checkpoint
    from sslrobot.utils.io import OUTPUT_LOCK

    judged = []
    check = checkpoint.check_policy_out

    def held_while_judged(out, *args, **kwargs):
        with open(out / OUTPUT_LOCK) as file, pytest.raises(BlockingIOError):
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process's view
        judged.append(out)
        return check(out, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "check_policy_out", held_while_judged)
    out = train_tiny_bc(demos, tmp_path / "bc", steps=2)
    assert judged and set(judged) == {out}


def test_a_new_run_into_a_policy_dir_clears_the_old_policy_first(demos, tmp_path, monkeypatch):
    """Checkpoints are written during training, the config at the end: an interrupted second
    run left the first run's config naming the second's weights."""
    from sslrobot.policy import bc

    out = train_tiny_bc(demos, tmp_path / "bc")
    assert read_policy_config(out)["seed"] == 0
    # Without --overwrite a finished policy is refused before any work: nothing is lost.
    with pytest.raises(ValueError, match=r"holds a trained policy .* pass --overwrite"):
        train_tiny_bc(demos, out, seed=7)
    assert read_policy_config(out)["seed"] == 0 and (out / "final.safetensors").is_file()
    # A fresh run clears an earlier run's checkpoints and logs file by file: what a user keeps
    # in folders of those names, in a project directory given as --out, stays.
    for folder in ("logs", "checkpoints"):
        (out / folder).mkdir(exist_ok=True)
        (out / folder / "my_notes.txt").write_text("mine")
    (out / "checkpoints" / "bc_state_7.pt").write_bytes(b"an earlier run's")
    train_tiny_bc(demos, out, seed=8, overwrite=True)
    assert (out / "logs" / "my_notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["my_notes.txt"]
    assert read_policy_config(out)["seed"] == 8 and (out / "logs" / "bc.csv").is_file()
    # A file where the directory should go: named as --out (it was a bare "[Errno 17]").
    with pytest.raises(ValueError, match=r"--out .*config.json is a file, not a directory"):
        train_tiny_bc(demos, out / "policy_config.json", seed=7)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bc, "_fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_tiny_bc(demos, out, seed=7, overwrite=True)
    with pytest.raises(ValueError, match=r"policy_config\.json is missing"):
        load_policy(out)
    assert not list(out.glob("*.safetensors"))
    # Only a policy's own files go, and an encoder's directory is never cleared.
    encoder_dir = write_encoder_dir(tmp_path / "enc", encoder_config_for("cnn", IMAGE_SIZE))
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"is an encoder \(`sslrobot pretrain --out`\), not a "):
        train_tiny_bc(demos, encoder_dir)
    assert (encoder_dir / artifacts.ENCODER_WEIGHTS).is_file()
    # Nor a dataset's: its policy files went in beside the manifest and episodes.
    with pytest.raises(ValueError, match=r"is a dataset \(`sslrobot collect --out`\), not a "):
        train_tiny_bc(demos, demos)
    assert not (demos / "policy_config.json").exists()
    # A path under a file: named, not a bare "[Errno 20] Not a directory".
    with pytest.raises(ValueError, match=r"--out .*: .*encoder_config\.json is a file, not a "):
        train_tiny_bc(demos, encoder_dir / "encoder_config.json" / "sub")


def test_validation_seeds_must_not_be_demonstration_seeds(tmp_path):
    config = CollectConfig(
        env_id=ENV_ID,
        out=tmp_path / "demos",
        policy="expert",
        num_episodes=2,
        image_size=IMAGE_SIZE,
        seed=VALIDATION_SEED_BASE,
    )
    demos = collect(config, progress=False)
    with pytest.raises(ValueError, match=r"start from seeds \[1000000\] that online validation"):
        train_tiny_bc(demos, tmp_path / "bc", num_demos=2, val_episodes=1)


def test_damaged_policy_configs_are_named(tmp_path):
    path = tmp_path / "policy_config.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match="must hold a JSON object, got list"):
        read_policy_config(tmp_path)
    path.write_text('{"format_version": 1, "algo": "bc", "checkpoints": {}}')
    with pytest.raises(ValueError, match=r"lacks \['env_id', 'obs_mode', 'image_size'"):
        read_policy_config(tmp_path)


@pytest.mark.parametrize(
    "field", ["head", "obs_mode", "image_size", "action_dim", "seed", "encoder.kind"]
)
def test_a_policy_config_missing_what_evaluation_reads_is_named(trained, tmp_path, field):
    """A field that loading or evaluating reads, deleted by hand, gave a ``KeyError``
    traceback from deep in ``evaluate``: only six fields were checked."""
    import shutil

    from sslrobot.evaluation.evaluate import evaluate

    policy = shutil.copytree(trained, tmp_path / "policy")
    record = json.loads((policy / "policy_config.json").read_text())
    if "." in field:
        del record["encoder"][field.split(".")[1]]
    else:
        del record[field]
    (policy / "policy_config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=rf"lacks \['{field}'\]: not a whole policy config"):
        evaluate(policy, num_episodes=1, seed=0)


def test_trained_policy_acts_from_frames_as_from_cached_features(trained, demos):
    policy = load_policy(trained)
    episode = open_dataset(demos).load_episode(0)
    length = episode["action"].shape[0]
    pixels, proprio = episode["pixels"][:length], episode["proprio"][:length]
    features = extract_features(policy.obs_encoder.encoder, pixels, 16)
    with torch.no_grad():
        inputs = policy.obs_encoder.from_features(
            torch.from_numpy(features), torch.from_numpy(np.array(proprio, dtype=np.float32))
        )
    from_cache = policy._head(inputs)
    from_frames = policy.act_batch({"pixels": pixels, "proprio": proprio})
    np.testing.assert_allclose(from_frames, from_cache, rtol=0, atol=1e-6)


def test_the_cached_features_are_each_frames_own(demos, tmp_path):
    """What training read from the cache, file by file: episode i's features of its own frames
    in order (features rolled by one frame against their actions passed every other test)."""
    cache = tmp_path / "cache"
    out = train_tiny_bc(demos, tmp_path / "bc", cache_dir=cache, feature_batch_size=16)
    policy = load_policy(out)
    dataset = open_dataset(demos)
    files = sorted(cache.rglob("episode_*.npy"))
    assert [f.name for f in files] == [f"episode_{i:06d}.npy" for i in range(3)]  # num_demos
    for path in files:
        episode = dataset.load_episode(int(path.stem.split("_")[1]))
        pixels = episode["pixels"][: episode["action"].shape[0]]
        expected = extract_features(policy.obs_encoder.encoder, pixels, 16)
        np.testing.assert_array_equal(np.load(path), expected)


def test_observations_unlike_the_training_ones_are_named(trained, demos):
    """Float frames used to be cast to near-black uint8 ones and acted on without a word; a
    proprio of the wrong width or a missing key failed deep in torch."""
    policy = load_policy(trained)
    episode = open_dataset(demos).load_episode(0)
    pixels, proprio = np.array(episode["pixels"][0]), np.array(episode["proprio"][0])
    size, width = policy.image_size, policy.record["proprio_dim"]
    for observation, message in [
        ({"pixels": pixels / 255.0, "proprio": proprio},
         rf"'pixels' uint8 \(B, {size}, {size}, 3\) as the env renders them, got float64"),
        ({"pixels": pixels[:8], "proprio": proprio}, r"'pixels' uint8 .*got uint8 \(1, 8,"),
        ({"pixels": pixels, "proprio": proprio[:2]},
         rf"'proprio' of shape \(1, {width}\), got \(1, 2\)"),
        ({"pixels": pixels}, r"'pixels' and 'proprio', got dict with keys \['pixels'\]"),
        (pixels, "a dict with 'pixels' and 'proprio', got ndarray"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            policy(observation)
    assert policy({"pixels": pixels, "proprio": proprio}).shape == (policy.record["action_dim"],)


# --- BC end to end -----------------------------------------------------------------------------


def test_bc_end_to_end_writes_a_loadable_policy(trained, demos):
    record = json.loads((trained / "policy_config.json").read_text())
    assert record["algo"] == "bc" and record["env_id"] == ENV_ID
    assert record["num_demos"] == 3 and record["demo_episode_ids"] == [0, 1, 2]
    assert record["val_episode_ids"] == [4]
    assert record["encoder"]["name"] == "none" and record["image_size"] == IMAGE_SIZE
    assert set(record["checkpoints"]) == {"final", "best"}
    assert "eval/val_success" in record["best"] and "bc/val_loss" in record["best"]
    assert (trained / "logs" / "bc.csv").read_text().startswith("step,")
    obs = {
        "pixels": np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
        "proprio": np.zeros(record["proprio_dim"], np.float32),
    }
    for checkpoint in ("final", "best"):
        policy = load_policy(trained, checkpoint=checkpoint)
        action = policy(obs)
        assert action.shape == (record["action_dim"],) and action.dtype == np.float32
        assert np.all(np.abs(action) <= 1.0)
        np.testing.assert_array_equal(action, load_policy(trained, checkpoint=checkpoint)(obs))


def test_best_checkpoint_is_highest_success_then_lowest_loss_then_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The best checkpoint is the validation check with the highest ``eval/val_success``; among
    equal successes the lowest ``bc/val_loss``; among full ties the later check. Driven through
    ``_fit`` with fabricated validation results, one check per step."""
    from sslrobot.policy import bc

    # (success, loss) per check: success outranks loss (2 over 1), loss breaks a success tie
    # (3 over 2), a full tie goes to the later check (4 over 3), and neither a lower success
    # with a lower loss (5) nor an equal success with a higher loss (6) replaces it.
    results = [(0.5, 0.1), (1.0, 0.3), (1.0, 0.2), (1.0, 0.2), (0.5, 0.0), (1.0, 0.25)]
    snapshots: list[dict[str, torch.Tensor]] = []
    saved_at: list[int] = []

    class FakeValidator:
        def __init__(self) -> None:
            self.successes = iter(success for success, _ in results)

        def success_rate(self) -> float:
            return next(self.successes)

        def close(self) -> None:
            pass

    def fake_loss(network: BCNetwork, data: BCData, batch_size: int) -> float:
        snapshots.append({k: v.clone() for k, v in network.state_dict().items()})
        return results[len(snapshots) - 1][1]

    save_weights = bc.save_weights

    def recording_save(path: Path, module: nn.Module) -> Path:
        saved_at.append(len(snapshots))  # the step whose check is being saved
        return save_weights(path, module)

    monkeypatch.setattr(bc, "_bc_validator", lambda record, network, device: FakeValidator())
    monkeypatch.setattr(bc, "evaluate_loss", fake_loss)
    monkeypatch.setattr(bc, "save_weights", recording_save)
    config = PolicyConfig(env_id=ENV_ID, encoder="none", algo="bc", out=tmp_path, demos="d",
                          steps=6, num_val_checks=6, val_episodes=1, batch_size=4,
                          progress=False)  # fmt: skip
    torch.manual_seed(0)
    network = BCNetwork(ObservationEncoder(None, 3, 0, frozen=True), 2, (8,))
    data = BCData(torch.rand(8, 2) * 2 - 1, features=torch.randn(8, 3))
    record = {"encoder": {"kind": "none", "weights_fingerprint": None}}
    history = bc._fit(config, network, data, data, record, torch.device("cpu"))

    assert [row["step"] for row in history.rows] == [1, 2, 3, 4, 5, 6]
    assert [(r["eval/val_success"], r["bc/val_loss"]) for r in history.rows] == results
    assert saved_at == [1, 2, 3, 4]
    assert history.best == history.rows[3]
    best = safetensors.torch.load_file(str(tmp_path / "best.safetensors"))
    assert best.keys() == snapshots[3].keys()
    for name, tensor in snapshots[3].items():
        assert torch.equal(best[name], tensor), name
    assert not torch.equal(best["head.net.0.weight"], snapshots[2]["head.net.0.weight"])


def test_an_epoch_is_one_pass_of_full_minibatches():
    from sslrobot.policy.bc import total_bc_steps

    def steps(**overrides):
        config = PolicyConfig(env_id=ENV_ID, encoder="none", algo="bc", out="o", demos="d",
                              batch_size=256, **overrides)  # fmt: skip
        return total_bc_steps(config, 300)

    assert steps(epochs=1) == 1 and steps(epochs=3) == 3  # was ceil(300 / 256) = 2 per epoch
    assert steps(steps=7) == 7
    small = PolicyConfig(env_id=ENV_ID, encoder="none", algo="bc", out="o", demos="d", epochs=2)
    assert total_bc_steps(small, 100) == 2  # fewer samples than a batch: one batch per pass


def test_weight_decay_is_the_heads_not_the_scratch_encoders(demos, tmp_path, monkeypatch):
    from sslrobot.policy import bc

    groups = []
    adamw = torch.optim.AdamW

    def recording(params, **kwargs):
        optimizer = adamw(params, **kwargs)
        groups.extend(optimizer.param_groups)
        return optimizer

    monkeypatch.setattr(bc.torch.optim, "AdamW", recording)
    out = train_tiny_bc(demos, tmp_path / "wd", encoder="scratch", weight_decay=0.5, steps=2)
    decay = {g["weight_decay"]: sum(p.numel() for p in g["params"]) for g in groups}
    from sslrobot.models.encoder import Encoder, encoder_config_for
    from sslrobot.policy.network import MLPHead
    from sslrobot.utils.architectures import DEFAULT_ENCODER_ARCH

    encoder = Encoder(encoder_config_for(DEFAULT_ENCODER_ARCH, IMAGE_SIZE))  # scratch's
    record = json.loads((out / "policy_config.json").read_text())
    head = MLPHead(encoder.config.feature_dim + record["proprio_dim"], record["action_dim"],
                   record["head"]["hidden_dims"])  # fmt: skip
    # Every head weight decayed (biases too: a filter on p.ndim dropped them unseen).
    assert decay == {
        0.5: sum(p.numel() for p in head.parameters()),
        0.0: sum(p.numel() for p in encoder.parameters()),
    }


def test_online_validation_uses_the_demonstrations_look(tmp_path, monkeypatch):
    """Demonstrations recorded under another visual preset are validated under it too (the
    validator used to build a ``train`` env whatever the demonstrations showed)."""

    config = CollectConfig(
        env_id=ENV_ID,
        out=tmp_path / "demos",
        policy="expert",
        num_episodes=4,
        image_size=IMAGE_SIZE,
        env_kwargs={"visual_preset": "heldout"},
    )
    demos = collect(config, progress=False)
    from sslrobot.policy import validation

    presets = []
    make_env = validation.make_env

    def recording(*args, visual_preset="train", **kwargs):
        presets.append(visual_preset)
        return make_env(*args, visual_preset=visual_preset, **kwargs)

    monkeypatch.setattr(validation, "make_env", recording)
    out = train_tiny_bc(demos, tmp_path / "bc", num_val_demos=1, val_episodes=1, num_val_checks=1)
    assert json.loads((out / "policy_config.json").read_text())["demos_visual_preset"] == "heldout"
    assert presets[-1] == "heldout"  # the validator's env


def test_augmented_copies_add_shifted_recoloured_frames_of_the_same_actions(demos, tmp_path):
    """``augment_copies`` K: the head fits on the frames plus K copies, each encoded by the
    frozen encoder, with the same actions and proprio; the same seed draws the same copies."""
    from sslrobot.policy.bc import with_augmented_copies

    config = PolicyConfig(env_id=ENV_ID, encoder="none", algo="bc", out=tmp_path, demos=demos,
                          augment_copies=2, augment_pad=2, seed=5)  # fmt: skip
    torch.manual_seed(0)
    encoder = Encoder(encoder_config_for("keypoints", image_size=IMAGE_SIZE)).eval()
    pixels = np.random.default_rng(0).integers(0, 256, (6, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    features = torch.from_numpy(extract_features(encoder, pixels, 4))
    data = BCData(torch.rand(6, 2), features=features, proprio=torch.rand(6, 9))
    augmented = with_augmented_copies(data, pixels, encoder, config)
    assert len(augmented) == 18
    torch.testing.assert_close(augmented.features[:6], features)  # the frames themselves first
    assert not torch.allclose(augmented.features[6:12], features)  # copies encode other pixels
    torch.testing.assert_close(augmented.actions, data.actions.repeat(3, 1))
    torch.testing.assert_close(augmented.proprio, data.proprio.repeat(3, 1))
    again = with_augmented_copies(data, pixels, encoder, config)
    torch.testing.assert_close(again.features, augmented.features)
    out = train_tiny_bc(demos, tmp_path / "policy", augment_copies=2, steps=None, epochs=2,
                        batch_size=8)  # fmt: skip
    record = read_policy_config(out)
    frames = sum(len(open_dataset(demos).load_episode(i)["action"]) for i in range(3))
    assert record["num_train_samples"] == 3 * frames
    assert record["train_config"]["augment_copies"] == 2
    assert record["metrics"]["step"] == 2 * (frames // 8)  # an epoch: the demonstrations' frames


def test_state_oracle_uses_the_privileged_state(demos, tmp_path):
    out = train_tiny_bc(demos, tmp_path / "state", encoder="state", steps=None, epochs=2)
    policy = load_policy(out)
    assert policy.obs_mode == "state" and policy.obs_encoder.encoder is None
    state = open_dataset(demos).load_episode(0, include_state=True)["state"][0]
    assert policy(state).shape == (policy.record["action_dim"],)
    with pytest.raises(ValueError, match=rf"states as numbers of shape \(B, {len(state)}\)"):
        policy(state[:-1])
    with pytest.raises(ValueError, match="states as numbers"):
        policy({"pixels": state, "proprio": state})


def test_num_demos_picks_the_first_episodes_and_validation_the_last():
    ids = list(range(10))
    assert select_demo_ids(ids, 3, 2, Path("d")) == ([0, 1, 2], [8, 9])
    assert select_demo_ids(ids, None, 2, Path("d")) == (list(range(8)), [8, 9])
    with pytest.raises(ValueError, match=r"demonstrations d hold 10 episodes"):
        select_demo_ids(ids, 9, 2, Path("d"))


def test_normalizer_standardises_and_leaves_constant_dims_centred():
    values = np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    norm = Normalizer(2).fit(values)
    np.testing.assert_allclose(norm(torch.from_numpy(values)).numpy(), [[-1, 0], [1, 0]])


def test_train_policy_cli(demos, tmp_path, capsys):
    from sslrobot.commands import policy as commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    out = tmp_path / "cli"
    args = parser.parse_args(
        ["train-policy", "--env", ENV_ID, "--encoder", "none", "--algo", "bc", "--demos",
         str(demos), "--num-demos", "2", "--seed", "0", "--out", str(out), "--steps", "3",
         "--batch-size", "16", "--hidden-dims", "16,8", "--weight-decay", "0.1", "--no-progress"]
    )  # fmt: skip
    assert args.func(args) == 0
    assert f"policy: {out}" in capsys.readouterr().out
    assert (out / "policy_config.json").is_file() and (out / "final.safetensors").is_file()
    saved = json.loads((out / "policy_config.json").read_text())["train_config"]
    assert saved["hidden_dims"] == [16, 8] and saved["weight_decay"] == 0.1
    with pytest.raises(SystemExit):
        parser.parse_args(["train-policy", "--env", ENV_ID, "--encoder", "none", "--algo", "bc",
                           "--out", str(out), "--hidden-dims", "wide"])  # fmt: skip
    assert "expected comma-separated ints, got 'wide'" in capsys.readouterr().err


# --- clear errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"algo": "dagger"}, "algo must be one of"),
        ({"encoder": "scratch", "algo": "rl"}, "scratch.*algo=.bc. only"),
        ({"steps": 3, "epochs": 2}, "steps or epochs, not both"),
        ({"demos": None}, r"demos \(--demos\) is required"),
        ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
        ({"rl_algorithm": "ddpg"}, "rl_algorithm must be one of"),
        ({"hidden_dims": ()}, "hidden_dims"),
        ({"num_envs": 4}, "num_envs=4: only algo='rl' uses these"),
        ({"rl_algorithm": "ppo"}, "rl_algorithm='ppo': only algo='rl'"),
        ({"algo": "rl", "weight_decay": 0.5, "num_val_demos": 5}, "weight_decay=0.5, num_val_d"),
        ({"algo": "rl", "demos": None, "num_demos": 5}, "num_demos=5: RL without demos"),
        ({"algo": "rl", "rl_norm_steps": 99}, "rl_norm_steps=99: RL with demos fits"),
        ({"augment_pad": 9}, "augment_pad=9: only the scratch encoder and augment_copies"),
        ({"augment_copies": 2, "encoder": "scratch"}, "augment_copies=2: .*scratch shifts"),
        ({"augment_copies": 2, "encoder": "state"}, "augment_copies=2: augmented copies"),
        ({"augment_copies": 2, "algo": "rl"}, "augment_copies=2: .* algo 'rl'"),
        ({"augment_copies": -1}, "augment_copies must be an int >= 0"),
        ({"augment_color": 0.3}, "augment_color=0.3: only augment_copies"),
        ({"augment_copies": 1, "augment_color": 1.0}, "augment_color must be in"),
        ({"augment_copies": 1, "augment_color": 0.0, "augment_pad": 0}, "repeat the frames"),
        ({"encoder": "scratch", "augment_pad": 32, "image_size": 32}, "must be below image_s"),
        # Past what NumPy's seeding or a float32 optimiser holds: failed later, unnamed.
        ({"seed": 2**32}, r"seed must be <= 4294967295 \(2\*\*32 - 1\), got 4294967296"),
        ({"lr": 1e39}, "lr must be finite, > 0 and <= 3.4e"),
        # Online validation off: the checks' count would be ignored.
        ({"algo": "rl", "num_val_checks": 3}, r"num_val_checks=3: RL checks only its online"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    values = {"env_id": ENV_ID, "encoder": "none", "algo": "bc", "out": "o", "demos": "d"}
    with pytest.raises(ValueError, match=message):
        PolicyConfig(**{**values, **overrides})


@pytest.mark.parametrize("lr", [math.inf, math.nan, 0.0, -1e-3, True, "1e-3"])
def test_lr_must_be_finite_and_positive(lr):
    """inf passed the old ``> 0`` check and turned the first update into NaN weights."""
    values = {"env_id": ENV_ID, "encoder": "none", "algo": "bc", "out": "o", "demos": "d"}
    with pytest.raises(ValueError, match=rf"lr must be finite, > 0 .*, got {re.escape(repr(lr))}"):
        PolicyConfig(**values, lr=lr)


@pytest.mark.parametrize("decay", [math.inf, math.nan, -0.1, True, "0.1"])
def test_weight_decay_must_be_finite_and_not_negative(decay):
    """inf passed the old ``>= 0`` check; AdamW then made the weights NaN and the error
    blamed the learning rate."""
    values = {"env_id": ENV_ID, "encoder": "none", "algo": "bc", "out": "o", "demos": "d"}
    message = rf"weight_decay must be finite and >= 0, got {re.escape(repr(decay))}"
    with pytest.raises(ValueError, match=message):
        PolicyConfig(**values, weight_decay=decay)
    assert PolicyConfig(**values, weight_decay=0).weight_decay == 0
    assert PolicyConfig(**values, weight_decay=np.float32(0.01)).weight_decay > 0  # NumPy's
    assert PolicyConfig(**values, weight_decay=np.int64(1)).weight_decay == 1


def test_a_diverging_bc_loss_is_one_line_from_the_cli(demos, tmp_path, capsys):
    """A NaN loss (here from a huge --lr) is the user's to fix: the CLI prints one line naming
    the step and the lr, as it does for bad input, instead of a FloatingPointError traceback."""
    from sslrobot.cli import main
    from sslrobot.policy.bc import NonFiniteBCLossError

    argv = ["train-policy", "--env", ENV_ID, "--encoder", "scratch", "--algo", "bc", "--demos",
            str(demos), "--lr", "1e9", "--steps", "5", "--batch-size", "16", "--out",
            str(tmp_path / "p"), "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(
        r"sslrobot train-policy: error: BC loss is nan at step \d with lr 1e\+09; lower --lr", err
    ), err
    assert issubclass(NonFiniteBCLossError, FloatingPointError)  # what callers caught before


def test_bad_encoder_paths_are_named(demos, tmp_path):
    missing = tmp_path / "no_such_encoder"
    with pytest.raises(ValueError, match=f"pretrained:ENV_ID .*{re.escape(str(missing))} does n"):
        train_tiny_bc(demos, tmp_path / "p1", encoder=str(missing))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match=f"{re.escape(str(a_file))} is not a directory"):
        train_tiny_bc(demos, tmp_path / "p2", encoder=str(a_file))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"{re.escape(str(empty))}.*encoder_config.json"):
        train_tiny_bc(demos, tmp_path / "p3", encoder=str(empty))
    # A refused run leaves no trace: its lock file kept a later `collect --out` there out.
    assert not any((tmp_path / name).exists() for name in ("p1", "p2", "p3"))
    with pytest.raises(ValueError):
        train_tiny_bc(demos, tmp_path / "made" / "above" / "p4", encoder=str(missing))
    assert not (tmp_path / "made").exists()
    with pytest.raises(ValueError):  # a directory of the user's own stays, without the lock
        train_tiny_bc(demos, empty, encoder=str(missing))
    assert empty.is_dir() and not list(empty.iterdir())
    with pytest.raises(ValueError, match=f"cache_dir {re.escape(str(a_file))} is a file"):
        train_tiny_bc(demos, tmp_path / "p5", cache_dir=a_file)
    with pytest.raises(ValueError, match=f"cache_dir {re.escape(str(a_file / 'c'))}: .* is a f"):
        train_tiny_bc(demos, tmp_path / "p5", cache_dir=a_file / "c")
    assert not (tmp_path / "p5").exists()


def test_bad_demo_paths_are_named(demos, tmp_path):
    missing = tmp_path / "no_demos"
    with pytest.raises(ValueError, match=f"{re.escape(str(missing))} does not exist"):
        train_tiny_bc(missing, tmp_path / "p")
    manifest = demos / "manifest.json"  # a file of the dataset, not the dataset
    with pytest.raises(ValueError, match=f"{re.escape(str(manifest))} is a file; give the dir"):
        train_tiny_bc(manifest, tmp_path / "p")
    with pytest.raises(ValueError, match=r"collected on 'sslrobot/Reach-v0'.*Push-v0"):
        train_policy(
            PolicyConfig(env_id="sslrobot/Push-v0", encoder="none", algo="bc", out=tmp_path / "q",
                         demos=demos, steps=1, progress=False)
        )  # fmt: skip


@pytest.mark.parametrize(
    ("encoder_config", "message"),
    [
        (EncoderConfig(image_size=64), r"expects 64x64 frames with 3 channels.*\(32, 32, 3\)"),
        (
            EncoderConfig(image_size=32, frame_stack=2),
            r"32x32 frames with 6 channels.*\(32, 32, 3\)",
        ),
    ],
)
@pytest.mark.parametrize("algo", ["bc", "rl"])
def test_mismatched_encoder_is_a_clear_error(demos, tmp_path, encoder_config, message, algo):
    if algo == "rl":
        pytest.importorskip("stable_baselines3")
    encoder_dir = write_encoder_dir(tmp_path / "encoder", encoder_config)
    with pytest.raises(ValueError, match=f"encoder {re.escape(str(encoder_dir))}.*" + message):
        train_tiny_bc(
            demos, tmp_path / "p", encoder=str(encoder_dir), image_size=IMAGE_SIZE, algo=algo
        )


def test_pretrained_encoder_directory_trains_and_is_labelled(demos, tmp_path):
    encoder_dir = write_encoder_dir(tmp_path / "my_encoder", EncoderConfig(image_size=IMAGE_SIZE))
    out = train_tiny_bc(demos, tmp_path / "p", encoder=str(encoder_dir), steps=3)
    record = load_policy(out).record
    assert record["encoder"]["kind"] == "pretrained"
    assert record["encoder"]["name"] == "my_encoder"  # no pretrain_config.json: the dir name
    assert record["image_size"] == IMAGE_SIZE


def test_bad_policy_paths_are_named(trained, demos, tmp_path):
    missing = tmp_path / "no_policy"
    pattern = f"policy directory {re.escape(str(missing))} does not exist"
    with pytest.raises(ValueError, match=pattern):
        load_policy(missing)
    with pytest.raises(ValueError, match=r"policy_config\.json is missing"):
        load_policy(demos)
    with pytest.raises(ValueError, match="checkpoint must be one of"):
        load_policy(trained, checkpoint="latest")
    no_best = train_tiny_bc(demos, tmp_path / "no_best", steps=2)
    pattern = f"policy {re.escape(str(no_best))} has no 'best' checkpoint"
    with pytest.raises(ValueError, match=pattern):
        load_policy(no_best, checkpoint="best")


def test_online_validation_leaves_the_final_weights_as_they_were(demos, tmp_path):
    """`sslrobot run` turned validation on for every policy (session 19): checking the network
    on validation episodes must not touch training (no random draws, no mode left behind), so
    the final checkpoint is the one a run without validation trains."""
    for name, settings in (("none", {"augment_copies": 1}), ("scratch", {})):
        plain = train_tiny_bc(demos, tmp_path / f"{name}-plain", encoder=name, **settings)
        checked = train_tiny_bc(demos, tmp_path / f"{name}-checked", encoder=name,
                                val_episodes=1, num_val_checks=3, **settings)  # fmt: skip
        assert (plain / "final.safetensors").read_bytes() == (
            checked / "final.safetensors"
        ).read_bytes(), name


def test_an_interrupted_bc_run_resumes_to_the_uninterrupted_runs_weights(
    demos, tmp_path, monkeypatch
):
    """`train-policy --resume` continues BC from its last check: weights, optimiser, the
    generator that shuffles and shifts, the data order and the checks so far all come back,
    so the final and best checkpoints and the log are the uninterrupted run's, byte for byte
    (scratch: the generator shifts its frames too)."""
    from sslrobot.policy import bc

    settings = {"encoder": "scratch", "num_val_demos": 1, "num_val_checks": 3, "seed": 4}
    calls = []  # the loss evaluations of each run: a resume repeats none of the cut run's
    loss = bc.bc_loss
    monkeypatch.setattr(bc, "bc_loss", lambda *args: calls.append(1) or loss(*args))
    whole = train_tiny_bc(demos, tmp_path / "whole", **settings)
    whole_calls = len(calls)
    save = bc._BCResumeCheckpoints.save

    def save_then_stop(self, loop, *args):
        save(self, loop, *args)
        if loop["step"] == 20:  # the second of three checks: one still ahead of it
            raise KeyboardInterrupt

    monkeypatch.setattr(bc._BCResumeCheckpoints, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_tiny_bc(demos, tmp_path / "cut", **settings)
    cut_calls = len(calls) - whole_calls
    monkeypatch.setattr(bc._BCResumeCheckpoints, "save", save)
    cut = tmp_path / "cut"
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == [
        "bc_state_20.pt", "best_20.safetensors", "resume.json",
    ]  # fmt: skip
    assert not (cut / "policy_config.json").exists()
    with pytest.raises(ValueError, match=r"other settings \(batch_size 32 -> 16\)"):
        train_tiny_bc(demos, cut, batch_size=16, resume=True, **settings)
    with pytest.raises(ValueError, match="holds no checkpoint to resume"):
        train_tiny_bc(demos, tmp_path / "empty", resume=True, **settings)
    # The same command again without --resume would clear the checkpoint: refused unasked.
    with pytest.raises(ValueError, match=r"interrupted run's checkpoint .* pass --resume"):
        train_tiny_bc(demos, cut, **settings)
    assert (cut / "checkpoints" / "resume.json").is_file()

    # The best model the checkpoint names, gone: a ResumeError, which `sslrobot run` answers
    # by training anew, not a FileNotFoundError that failed the stage.
    best = cut / "checkpoints" / "best_20.safetensors"
    kept = best.read_bytes()
    best.unlink()
    with pytest.raises(ResumeError, match=r"best_20\.safetensors, which the resume checkpoint"):
        train_tiny_bc(demos, cut, resume=True, **settings)
    best.write_bytes(kept)

    before = len(calls)
    resumed = train_tiny_bc(demos, cut, resume=True, **settings)
    assert len(calls) - before == whole_calls - cut_calls  # it continued, it did not start over
    for name in ("final.safetensors", "best.safetensors", "logs/bc.csv"):
        assert (resumed / name).read_bytes() == (whole / name).read_bytes(), name
    record = read_policy_config(resumed)
    assert (
        record["resumed_at_steps"] == [20] and read_policy_config(whole)["resumed_at_steps"] == []
    )
    assert record["best"] == read_policy_config(whole)["best"]
    assert not (resumed / "checkpoints").exists()  # finished: nothing left to resume


def train_cut_at_first_checkpoint(monkeypatch, demos: Path, out: Path, **settings) -> None:
    """A tiny BC run stopped as by Ctrl-C right after its first resume checkpoint."""
    from sslrobot.policy import bc

    save = bc._BCResumeCheckpoints.save

    def save_then_stop(self, loop, *args):
        save(self, loop, *args)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(bc._BCResumeCheckpoints, "save", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            train_tiny_bc(demos, out, **settings)


def test_a_resume_with_another_cpu_thread_count_says_it_is_not_bit_exact(
    demos, tmp_path, monkeypatch
):
    """Sums split over threads round otherwise: a job requeued on a node with other cores
    continued without a word, and was not the uninterrupted run bit for bit."""
    out = tmp_path / "cut"
    train_cut_at_first_checkpoint(monkeypatch, demos, out, num_val_demos=1, num_val_checks=3)
    state = out / "checkpoints" / "resume.json"
    record = json.loads(state.read_text())
    assert record["cpu_threads"] == torch.get_num_threads()
    state.write_text(json.dumps({**record, "cpu_threads": torch.get_num_threads() + 1}))
    with pytest.warns(UserWarning, match=rf"trained with {torch.get_num_threads() + 1} CPU thr"):
        train_tiny_bc(demos, out, resume=True, num_val_demos=1, num_val_checks=3)


def test_a_checkpoint_saved_before_a_setting_existed_resumes_at_its_default(
    demos, tmp_path, monkeypatch
):
    """demo_offset (session 36) is the first field added since resume was: checkpoints saved
    before it lack the key, and were refused as "other settings (demo_offset None -> 0)"."""
    out = tmp_path / "cut"
    train_cut_at_first_checkpoint(monkeypatch, demos, out, num_val_demos=1, num_val_checks=3)
    state = out / "checkpoints" / "resume.json"
    record = json.loads(state.read_text())
    del record["settings"]["demo_offset"]
    state.write_text(json.dumps(record))
    train_tiny_bc(demos, out, resume=True, num_val_demos=1, num_val_checks=3)
    assert (out / "policy_config.json").is_file()


def test_a_refused_bc_resume_opens_no_validation_env(demos, tmp_path, monkeypatch):
    """The online validator (an env and its renderer) was made before the resume checkpoint
    loaded, and a damaged one left it open in the process that goes on to train anew."""
    from sslrobot.policy import bc

    settings = {"val_episodes": 1, "num_val_checks": 2}
    train_cut_at_first_checkpoint(monkeypatch, demos, tmp_path / "cut", **settings)
    (state,) = (tmp_path / "cut" / "checkpoints").glob("bc_state_*.pt")
    state.write_bytes(b"damaged")
    opened = []
    monkeypatch.setattr(bc, "_bc_validator", lambda *args, **kwargs: opened.append(args))
    with pytest.raises(ResumeError):
        train_tiny_bc(demos, tmp_path / "cut", resume=True, **settings)
    assert opened == []


def test_resume_refuses_a_frozen_encoder_whose_weights_changed(demos, tmp_path, monkeypatch):
    """The encoder's path is a setting, its weights were not: a directory retrained (or a
    shipped encoder updated) between the interruption and the resume gave the resumed head
    other features than the ones it had been fitted on. The weights' fingerprint is recorded
    in the policy's config and checked on resume."""

    encoder_dir = write_encoder_dir(
        tmp_path / "encoder", encoder_config_for("keypoints", IMAGE_SIZE), seed=0
    )
    settings = {"encoder": str(encoder_dir), "num_val_demos": 1, "num_val_checks": 3}
    train_cut_at_first_checkpoint(monkeypatch, demos, tmp_path / "cut", **settings)
    write_encoder_dir(encoder_dir, encoder_config_for("keypoints", IMAGE_SIZE), seed=1)
    with pytest.raises(ValueError, match=r"other settings \(encoder_weights '[0-9a-f]{16}' ->"):
        train_tiny_bc(demos, tmp_path / "cut", resume=True, **settings)
    # A checkpoint written before the fingerprint was recorded resumes, unchecked, as it did.
    state_path = tmp_path / "cut" / "checkpoints" / "resume.json"
    state = json.loads(state_path.read_text())
    del state["settings"]["encoder_weights"]
    state_path.write_text(json.dumps(state))
    resumed = train_tiny_bc(demos, tmp_path / "cut", resume=True, **settings)
    fingerprint = read_policy_config(resumed)["encoder"]["weights_fingerprint"]
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)


def test_resume_refuses_demonstrations_that_grew_under_the_same_path(demos, tmp_path, monkeypatch):
    """Only the path and the counts were compared: a dataset grown by ``collect --resume``
    resumed on other episodes (the held-out one among the training ones), with normalisers
    fitted on the old ones, and the record claimed the new ids for the whole run."""
    import shutil

    grown = shutil.copytree(demos, tmp_path / "demos")
    count = len(open_dataset(grown).episode_ids)
    settings = {"num_demos": None, "num_val_demos": 1, "num_val_checks": 3}
    train_cut_at_first_checkpoint(monkeypatch, grown, tmp_path / "cut", **settings)
    config = CollectConfig(env_id=ENV_ID, out=grown, policy="expert",
                           num_episodes=count + 1, image_size=IMAGE_SIZE, resume=True)  # fmt: skip
    collect(config, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(demo_episode_ids .*val_episode_ids"):
        train_tiny_bc(grown, tmp_path / "cut", resume=True, **settings)


def test_a_bc_run_cut_between_its_checkpoint_files_resumes_from_the_last_whole_one(
    demos, tmp_path, monkeypatch
):
    """Killed after the step-20 state file but before the resume.json naming it, and after a
    later best.safetensors of the steps it abandons: the step-10 checkpoint is still whole,
    puts back its best, and the run ends as an uninterrupted one. A state file from another
    device type (its generator state differs) is refused by name."""
    from sslrobot.policy import bc

    settings = {"encoder": "scratch", "num_val_demos": 1, "num_val_checks": 3, "seed": 4}
    whole = train_tiny_bc(demos, tmp_path / "whole", **settings)
    write_json = bc.atomic_write_json

    def stop_before_naming_step_20(path, value, **options):
        if value.get("step") == 20:
            raise KeyboardInterrupt
        return write_json(path, value, **options)

    monkeypatch.setattr(bc, "atomic_write_json", stop_before_naming_step_20)
    with pytest.raises(KeyboardInterrupt):
        train_tiny_bc(demos, tmp_path / "cut", **settings)
    monkeypatch.setattr(bc, "atomic_write_json", write_json)
    cut = tmp_path / "cut"
    assert {"bc_state_10.pt", "bc_state_20.pt"} <= {p.name for p in (cut / "checkpoints").iterdir()}
    (cut / "best.safetensors").write_bytes(b"weights of the abandoned steps")

    state_file = cut / "checkpoints" / "bc_state_10.pt"
    saved = torch.load(state_file, weights_only=True)
    torch.save({**saved, "generator": torch.zeros(16, dtype=torch.uint8)}, state_file)
    with pytest.raises(ResumeError, match="another device type than cpu"):
        train_tiny_bc(demos, cut, resume=True, **settings)
    torch.save(saved, state_file)

    resumed = train_tiny_bc(demos, cut, resume=True, **settings)
    for name in ("final.safetensors", "best.safetensors", "logs/bc.csv"):
        assert (resumed / name).read_bytes() == (whole / name).read_bytes(), name
    assert read_policy_config(resumed)["resumed_at_steps"] == [10]


def test_bc_on_data_the_expert_did_not_collect_warns(tmp_path) -> None:
    """Cloning imitates whatever acted: a noisy stream passed as demonstrations by mistake
    trains, but the user is told."""
    config = CollectConfig(
        env_id=ENV_ID, out=tmp_path / "noisy", policy="noisy-expert", num_episodes=3,
        image_size=IMAGE_SIZE,
    )  # fmt: skip
    noisy = collect(config, progress=False)
    with pytest.warns(UserWarning, match="collected by the 'noisy-expert' policy, not 'expert'"):
        train_tiny_bc(noisy, tmp_path / "bc", num_demos=2, steps=2)


def test_a_second_writer_of_the_same_policy_directory_is_refused(demos, tmp_path) -> None:
    """--overwrite into a directory another train-policy still writes deleted its files."""
    from sslrobot.utils.io import OUTPUT_LOCK, exclusive_lock

    out = tmp_path / "bc"
    out.mkdir()
    held = exclusive_lock(out / OUTPUT_LOCK, "held by the test")
    with held, pytest.raises(BlockingIOError, match="another train-policy is writing"):
        train_tiny_bc(demos, out, steps=2)
    train_tiny_bc(demos, out, steps=2)
    assert read_policy_config(out)["trained_with"]["steps"] == 2


def test_an_unknown_env_id_is_named_before_the_demonstrations(demos, tmp_path) -> None:
    """A misspelt id used to be reported as demonstrations of another env."""
    named = r"unknown env id 'sslrobot/Reech-v0'\. Did you mean sslrobot/Reach-v0\?"
    with pytest.raises(ValueError, match=named) as raised:
        train_tiny_bc(demos, tmp_path / "bc", env_id="sslrobot/Reech-v0")
    assert not (tmp_path / "bc").exists()
    # Policies run on the sslrobot tasks only: no advice to give an env of one's own.
    assert str(raised.value).endswith("(policies train and evaluate on these tasks only).")
    assert "module:EnvId" not in str(raised.value)


def test_train_policy_cli_overwrites_only_when_told(demos, tmp_path, capsys) -> None:
    from sslrobot.cli import main

    out = train_tiny_bc(demos, tmp_path / "bc")
    argv = ["train-policy", "--env", ENV_ID, "--encoder", "none", "--algo", "bc", "--demos",
            str(demos), "--num-demos", "3", "--steps", "2", "--seed", "5", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "holds a trained policy" in capsys.readouterr().err
    assert read_policy_config(out)["seed"] == 0
    assert main([*argv, "--overwrite"]) == 0
    assert read_policy_config(out)["seed"] == 5


def test_an_encoder_arch_beside_a_pretrained_encoder_that_it_does_not_name_warns(
    demos, tmp_path
) -> None:
    """A pretrained directory brings its own architecture; --encoder-arch naming another was
    dropped without a word."""
    import warnings as warnings_module

    encoder_dir = write_encoder_dir(tmp_path / "enc", EncoderConfig(image_size=IMAGE_SIZE))
    with pytest.warns(UserWarning, match="encoder_arch 'resnet' is ignored: .* brings its own"):
        train_tiny_bc(demos, tmp_path / "a", encoder=str(encoder_dir), steps=2,
                      encoder_arch="resnet")  # fmt: skip
    with warnings_module.catch_warnings():
        warnings_module.simplefilter("error")  # the arch it is: nothing to say
        train_tiny_bc(demos, tmp_path / "b", encoder=str(encoder_dir), steps=2,
                      encoder_arch="cnn")  # fmt: skip
    # What the baselines would ignore is refused (it was accepted without a word).
    with pytest.raises(ValueError, match="encoder_arch='resnet': the state oracle reads no"):
        train_tiny_bc(demos, tmp_path / "c", encoder="state", encoder_arch="resnet")
    for baseline in ("state", "scratch"):
        with pytest.raises(ValueError, match=f"cache_dir=.*encoder '{baseline}' would ignore"):
            train_tiny_bc(demos, tmp_path / "d", encoder=baseline, cache_dir=tmp_path / "cache")


def test_help_states_the_defaults_the_config_uses(capsys):
    """The step budgets are None in the parser (resolved by algorithm), so argparse cannot
    show them: the help text says them, and must say what the config does."""
    from sslrobot.cli import main

    with pytest.raises(SystemExit):
        main(["train-policy", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"BC gradient steps (default: {DEFAULT_BC_STEPS})" in text
    assert f"RL env steps (default: {DEFAULT_RL_STEPS})" in text
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"sslrobot {sslrobot.__version__}"


def test_temporaries_of_killed_checkpoint_writes_are_cleared(tmp_path) -> None:
    """A save killed midway leaves ``.NAME.<random><suffix>`` (a replay buffer's can be
    gigabytes); only ``.*.tmp`` was matched, so they outlived pruning and --overwrite."""
    from sslrobot.policy.checkpoint import CHECKPOINT_DIR, clear_run_files, prune_checkpoints
    from sslrobot.utils.io import temp_prefix

    folder = tmp_path / CHECKPOINT_DIR
    folder.mkdir()
    leftovers = [
        folder / f"{temp_prefix('replay_buffer_3.pkl')}k2j4.pkl",
        folder / f"{temp_prefix('model_3.zip')}x9.zip",
        folder / f"{temp_prefix('resume.json')}q1.tmp",
    ]
    for path in [*leftovers, folder / "resume.json", folder / "notes.txt"]:
        path.write_text("x")
    prune_checkpoints(folder, keep={"resume.json"})
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "resume.json"]
    leftovers[0].write_text("x")
    clear_run_files(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # a user's file stays


def test_bc_follows_its_seed(demos, tmp_path) -> None:
    """The same seed gives the same head and curve on CPU, another seed another head: with
    the loop's generators fixed to 0, only the random encoders' weights followed the seed, and
    every test passed (a study over seeds of the state oracle's head would repeat one run)."""
    runs = [
        train_tiny_bc(demos, tmp_path / f"s{seed}-{i}", encoder="state", seed=seed, steps=20)
        for i, seed in enumerate((0, 0, 1))
    ]
    weights = [(run / "final.safetensors").read_bytes() for run in runs]
    curves = [(run / "logs" / "bc.csv").read_text() for run in runs]
    assert weights[0] == weights[1] and curves[0] == curves[1]
    assert weights[0] != weights[2] and curves[0] != curves[2]


# --- first-frame context ----------------------------------------------------------------------


def test_first_frame_context_pairs_each_row_with_its_own_episodes_first_row():
    """Rows of consecutive episodes (and of each augmented copy, in the frames' order) get
    their own episode's first row beside them; lengths that do not cover the rows are refused."""
    from sslrobot.policy.bc import with_first_frame_context

    features = torch.arange(10.0)[:, None]  # episodes of 2 and 3 rows, then a copy of both
    data = BCData(torch.zeros(10, 2), features=features, proprio=torch.zeros(10, 9))
    context = with_first_frame_context(data, np.tile([2, 3], 2))
    assert context.features[:, 1].tolist() == [0, 0, 2, 2, 2, 5, 5, 7, 7, 7]
    torch.testing.assert_close(context.features[:, 0], features[:, 0])
    with pytest.raises(ValueError, match="sum to 5, not 10 rows"):
        with_first_frame_context(data, [2, 3])


def test_a_policy_with_context_keeps_the_first_frame_until_reset(demos, tmp_path):
    """``context="first"``: the head is twice as wide in features, the policy acts on the
    episode's first observation beside the current one until ``reset()``, evaluation resets
    it at every episode (so it is deterministic for a seed), and the stateless paths refuse it."""
    from sslrobot.evaluation.evaluate import evaluate
    from sslrobot.policy.network import policy_inputs

    out = train_tiny_bc(demos, tmp_path / "first", context="first", augment_copies=1)
    record = read_policy_config(out)
    assert record["context"] == "first"
    assert record["num_train_samples"] == 2 * sum(
        len(open_dataset(demos).load_episode(i)["action"]) for i in range(3)
    )
    policy = load_policy(out)
    assert policy.obs_encoder.feature_norm.mean.shape[-1] == 2 * record["feature_dim"]
    episode = open_dataset(demos).load_episode(4)
    first, later = ({k: episode[k][i] for k in ("pixels", "proprio")} for i in (0, 5))
    policy.reset()
    action_after_first = (policy(first), policy(later))
    policy.reset()
    alone = policy(later)  # now the episode's first observation: another context
    assert not np.allclose(action_after_first[1], alone)
    policy.reset()
    np.testing.assert_array_equal(policy(first), action_after_first[0])
    np.testing.assert_array_equal(policy(later), action_after_first[1])
    batch = {k: np.asarray(v)[None] for k, v in later.items()}
    with pytest.raises(ValueError, match="reads its episode's first frame too"):
        policy_inputs(policy.obs_encoder, batch, "pixels", torch.device("cpu"))
    # Seed 8's episode is the same second as alone: evaluation starts each episode afresh.
    pair = evaluate(out, num_episodes=2, seed=7, device="cpu")["episodes"]
    assert pair[1] == evaluate(out, num_episodes=1, seed=8, device="cpu")["episodes"][0]
    state = train_tiny_bc(demos, tmp_path / "state", encoder="state", context="first")
    assert (
        load_policy(state).obs_encoder.input_feature_dim
        == 2 * read_policy_config(state)["feature_dim"]
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"encoder": "scratch"}, "encoder 'scratch' with algo 'bc' cannot take it"),
        ({"algo": "rl", "demos": None}, "encoder 'none' with algo 'rl' cannot take it"),
        ({"context": "last"}, r"context must be one of \('none', 'first'\)"),
    ],
)
def test_context_is_refused_where_no_first_frame_is_kept(overrides, message, tmp_path):
    values = {"env_id": ENV_ID, "encoder": "none", "algo": "bc", "out": tmp_path,
              "demos": tmp_path, "context": "first", **overrides}  # fmt: skip
    with pytest.raises(ValueError, match=message):
        PolicyConfig(**values)
