"""Collection: determinism, resume without gaps or duplicates, shards, policies, refusals."""

from __future__ import annotations

import dataclasses
import errno
import re
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from archive_damage import truncate
from test_data_fake_env import FAKE_ENV_ID, FakePixelEnv

from sslrobot.data import (
    CollectConfig,
    DatasetWriteError,
    DegenerateFramesError,
    collect,
    open_dataset,
    storage,
    verify_dataset,
)
from sslrobot.data.collection import _Progress, _run_in_process, _run_spec
from sslrobot.data.episode_runner import EpisodeRunner
from sslrobot.data.manifest import write_manifest
from sslrobot.data.storage import read_meta


def fake_config(out, **overrides) -> CollectConfig:
    settings = {
        "env_id": FAKE_ENV_ID,
        "out": out,
        "num_episodes": 4,
        "image_size": 16,
        "env_kwargs": {"image_size": 16},
    }
    settings.update(overrides)
    return CollectConfig(**settings)


def assert_same_episodes(root_a, root_b) -> None:
    a, b = open_dataset(root_a), open_dataset(root_b)
    assert a.episode_ids == b.episode_ids
    for episode_id in a.episode_ids:
        ep_a = a.load_episode(episode_id, include_state=True)
        ep_b = b.load_episode(episode_id, include_state=True)
        assert set(ep_a) == set(ep_b)
        for name in ep_a:
            np.testing.assert_array_equal(ep_a[name], ep_b[name], err_msg=f"{episode_id} {name}")


def test_collect_writes_what_the_env_produced(tmp_path):
    config = fake_config(tmp_path / "d", policy="mixture", mixture="random=0.5,noisy-expert=0.5")
    root = collect(config, progress=False)
    dataset = open_dataset(root)
    manifest = dataset.manifest
    assert dataset.episode_ids == [0, 1, 2, 3]
    assert manifest["env_id"] == FAKE_ENV_ID and manifest["base_seed"] == 0
    assert manifest["policy"]["name"] == "mixture"
    assert manifest["policy"]["params"]["components"]["noisy-expert"]["params"]["noise"] == 0.3
    assert manifest["frame_shape"] == [16, 16, 3] and manifest["state_names"] == ["x", "y", "goal"]
    assert set(manifest["versions"]) >= {"sslrobot", "mujoco", "gymnasium", "numpy"}
    lengths = [dataset.meta(i)["length"] for i in dataset.episode_ids]
    assert manifest["counts"] == {
        "episodes": 4,
        "steps": sum(lengths),
        "frames": sum(lengths) + 4,
    }
    assert verify_dataset(root).ok
    runner = EpisodeRunner(_run_spec(config))
    for episode_id in dataset.episode_ids:
        meta = dataset.meta(episode_id)
        assert meta["seed"] == episode_id and meta["policy"]["via"] == "mixture"
        arrays, _ = runner.rollout(episode_id)
        stored = dataset.load_episode(episode_id, include_state=True)
        for name, array in arrays.items():
            np.testing.assert_array_equal(stored[name], array, err_msg=name)
        assert stored["terminated"][-1] and not stored["terminated"][:-1].any()
        # And by the env's own rules, not only as the runner collect calls records them (a
        # proprio or state recorded a step late matched that runner too).
        proprio, action, state = stored["proprio"], stored["action"], stored["state"]
        np.testing.assert_allclose(proprio[1:], np.clip(proprio[:-1] + 0.2 * action, -1, 1))
        goal = state[0, 2]  # float32 here, a float in the env: 1e-8 apart
        np.testing.assert_allclose(stored["reward"], -np.abs(proprio[1:, 0] - goal), rtol=1e-5)
        np.testing.assert_array_equal(state[:, :2], proprio)
        size = stored["pixels"].shape[1]
        for frame, position in zip(stored["pixels"], proprio, strict=True):
            row, col = ((position + 1.0) / 2.0 * (size - 1)).round().astype(int)
            assert (frame[row, col] == 255).all()  # the dot where proprio puts it
    runner.close()


def test_an_env_without_a_render_mode_argument_is_collected_from_its_pixels(tmp_path):
    """``render_mode="rgb_array"`` was passed to every env not ours, and a pixel-Dict env
    without the argument could not be made at all (``"render_mode": None`` in env_kwargs
    still passed the key)."""
    env_id = "test_data_fake_env:FakePixelsWithoutRenderMode-v0"
    config = fake_config(tmp_path / "d", env_id=env_id, num_episodes=2)
    assert "render_mode" not in config.make_kwargs()
    dataset = open_dataset(collect(config, progress=False))
    assert dataset.load_episode(0)["pixels"].shape[1:] == (16, 16, 3)
    # An env that takes it still gets it; None in env_kwargs passes none.
    assert fake_config(tmp_path / "e").make_kwargs()["render_mode"] == "rgb_array"
    quiet = fake_config(tmp_path / "e", env_kwargs={"image_size": 16, "render_mode": None})
    assert "render_mode" not in quiet.make_kwargs()
    # A module that imports but does not register the id: what it does register is named.
    with pytest.raises(ValueError, match="Module 'test_data_fake_env' registers FakePixels-v0, "):
        fake_config(tmp_path / "f", env_id="test_data_fake_env:Other-v0")


def test_a_mixture_gives_each_episode_one_of_its_components(tmp_path):
    """Each episode records the component its seed drew; over 16 episodes at 3:1 both occur,
    the likelier more often, and the same seeds draw the same components again."""
    mixture = "random=0.75,noisy-expert=0.25"
    names = []
    for out in ("a", "b"):
        config = fake_config(tmp_path / out, num_episodes=16, policy="mixture", mixture=mixture)
        dataset = open_dataset(collect(config, progress=False))
        names.append([dataset.meta(i)["policy"]["name"] for i in dataset.episode_ids])
    assert names[0] == names[1]
    assert set(names[0]) == {"random", "noisy-expert"}
    assert names[0].count("random") > names[0].count("noisy-expert")


def test_same_seed_same_data_whatever_the_worker_count(tmp_path):
    collect(fake_config(tmp_path / "one", num_episodes=5, policy="random"), progress=False)
    collect(
        fake_config(tmp_path / "two", num_episodes=5, policy="random", num_envs=2), progress=False
    )
    assert_same_episodes(tmp_path / "one", tmp_path / "two")
    collect(
        fake_config(tmp_path / "other", num_episodes=5, policy="random", seed=1), progress=False
    )
    a = open_dataset(tmp_path / "one").load_episode(0)["action"]
    b = open_dataset(tmp_path / "other").load_episode(0)["action"]
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_resume_fills_gaps_and_extends_without_duplicates(tmp_path):
    root = tmp_path / "d"
    collect(fake_config(root, num_episodes=4), progress=False)
    reference = tmp_path / "reference"
    collect(fake_config(reference, num_episodes=6), progress=False)
    storage.episode_path(root, 1).unlink()  # a gap
    leftover = root / "episodes" / (storage.temp_dir_prefix(2) + "123-abc")
    leftover.write_bytes(b"PK")  # an in-flight copy from a crash
    truncate(storage.episode_path(root, 3), 100)  # as a power loss without fsync can leave it
    with pytest.raises(ValueError, match="pass --resume"):
        collect(fake_config(root, num_episodes=6), progress=False)
    with pytest.warns(UserWarning, match="episode 3 .* is incomplete"):
        collect(fake_config(root, num_episodes=6, resume=True), progress=False)
    assert not leftover.exists()
    assert_same_episodes(root, reference)
    assert open_dataset(root).manifest["counts"]["episodes"] == 6
    report = verify_dataset(root)
    assert report.ok and len(report.set_aside) == 1  # the torn copy is kept, out of the way
    # The same command again, every episode there: said as such, not "continue to 6".
    with pytest.raises(ValueError, match=r"already holds all 6 episodes .*: nothing to collect"):
        collect(fake_config(root, num_episodes=6), progress=False)
    with pytest.raises(FileNotFoundError, match=r"dataset directory \S+nope does not exist"):
        open_dataset(tmp_path / "nope")


def test_resume_checks_an_interrupted_runs_episodes_byte_for_byte(tmp_path):
    """A zeroed block (power loss without fsync) keeps an episode's structure; episodes newer
    than the manifest's last write, an interrupted run's, are checked against checksums."""
    import os

    root = tmp_path / "d"
    collect(fake_config(root, num_episodes=3), progress=False)
    reference = tmp_path / "reference"
    collect(fake_config(reference, num_episodes=3), progress=False)
    manifest = root / "manifest.json"
    old = manifest.stat().st_mtime - 60
    os.utime(manifest, (old, old))  # as if the run had not finished: episodes are newer
    path = storage.episode_path(root, 2)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    assert storage.check_episode(path, checksums=False) == []  # the structure is intact
    with pytest.warns(UserWarning, match="episode 2 .* is incomplete"):
        collect(fake_config(root, num_episodes=3, resume=True), progress=False)
    assert_same_episodes(root, reference)


def collect_interrupted_after_two(monkeypatch, config: CollectConfig) -> None:
    """``collect(config)`` stopped as by Ctrl-C once two episodes are committed."""
    calls = {"n": 0}
    real_commit = EpisodeRunner.commit

    def killed_after_two(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real_commit(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(EpisodeRunner, "commit", killed_after_two)
        with pytest.raises(KeyboardInterrupt):
            collect(config, progress=False)


def backdate_and_tear(root, marker, episode_id: int) -> float:
    """Date ``marker`` a minute before episode 0 was written (an interrupted run's start) and
    zero a block in the middle of ``episode_id`` as a power loss can, its structure intact;
    returns the marker's time."""
    import os

    old = os.stat(storage.episode_path(root, 0)).st_mtime - 60
    os.utime(marker, (old, old))
    path = storage.episode_path(root, episode_id)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    assert storage.check_episode(path, checksums=False) == []
    return old


def test_an_interrupted_shard_is_checked_though_another_shard_rewrote_the_manifest(
    tmp_path, monkeypatch
):
    """The manifest's mtime was the only sign of an unfinished run, and a concurrent shard (or
    an interrupted resume) moves it past the torn episodes; each shard now keeps a marker from
    its first unfinished run's start until it finishes."""
    import os

    root = tmp_path / "d"
    marker = root / ".locks" / "shard-0-of-2.unfinished"
    collect_interrupted_after_two(monkeypatch, fake_config(root, num_episodes=8, shard=(0, 2)))
    assert marker.exists()  # the interrupted run's sign stays
    old = os.stat(storage.episode_path(root, 0)).st_mtime - 60
    os.utime(marker, (old, old))
    collect(fake_config(root, num_episodes=8, shard=(1, 2)), progress=False)  # rewrites manifest
    assert not (root / ".locks" / "shard-1-of-2.unfinished").exists()  # finished: no marker
    path = storage.episode_path(root, 2)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    os.utime(path, (old + 30, old + 30))  # torn before the manifest's last write
    assert storage.check_episode(path, checksums=False) == []  # the structure is intact
    with pytest.warns(UserWarning, match="episode 2 .* is incomplete"):
        collect(fake_config(root, num_episodes=8, shard=(0, 2), resume=True), progress=False)
    assert not marker.exists()
    reference = collect(fake_config(tmp_path / "reference", num_episodes=8), progress=False)
    assert_same_episodes(root, reference)


def test_a_resume_in_another_shard_layout_checks_the_interrupted_runs_episodes(
    tmp_path, monkeypatch
):
    """The markers are named by layout: a whole-dataset resume of an interrupted 2-shard run
    must still see that run's, and, having collected everything, remove it."""
    import os

    root = tmp_path / "d"
    collect_interrupted_after_two(monkeypatch, fake_config(root, num_episodes=6, shard=(0, 2)))
    marker = root / ".locks" / "shard-0-of-2.unfinished"
    old = backdate_and_tear(root, marker, 2)
    path = storage.episode_path(root, 2)
    os.utime(path, (old + 30, old + 30))
    os.utime(root / "manifest.json", (old + 45, old + 45))  # written after the torn episode
    with pytest.warns(UserWarning, match="episode 2 .* is incomplete"):
        collect(fake_config(root, num_episodes=6, resume=True), progress=False)
    assert list((root / ".locks").glob("*.unfinished")) == []


def test_fsync_collects_into_a_new_directory_and_resumes(tmp_path):
    """episodes/ made before the manifest made the run refuse its own directory (and every
    rerun after it): it is made once the manifest is written, and synced before any commit."""
    root = tmp_path / "d"
    collect(fake_config(root, num_episodes=2, fsync=True), progress=False)
    collect(fake_config(root, num_episodes=3, fsync=True, resume=True), progress=False)
    reference = collect(fake_config(tmp_path / "reference", num_episodes=3), progress=False)
    assert_same_episodes(root, reference)


def test_verify_names_an_episode_copied_in_from_another_dataset(tmp_path):
    """Same id, same shapes, its own checksums: only its reset seed tells it from this
    dataset's own (base seed + id), and verify checked only the id."""
    mine = collect(fake_config(tmp_path / "mine", num_episodes=2), progress=False)
    other = collect(fake_config(tmp_path / "other", num_episodes=2, seed=100), progress=False)
    shutil.copyfile(storage.episode_path(other, 1), storage.episode_path(mine, 1))
    report = verify_dataset(mine)
    assert set(report.corrupt) == {1}
    assert "reset with seed 101, not this dataset's base seed 0 + 1" in report.corrupt[1][0]


@pytest.mark.parametrize(
    ("mine", "other", "named"),
    [
        ({}, {"policy": "noisy-expert"}, "collected by policy {'name': 'noisy-expert'"),
        ({"max_episode_steps": 5}, {"max_episode_steps": 9}, "has 9 steps, over this dataset's"),
    ],
)
def test_verify_names_an_episode_of_another_dataset_with_the_same_seed(
    tmp_path, mine, other, named
):
    """Most datasets keep the default base seed 0, so the seed check passed an episode copied
    in from another dataset of the same env: another policy's, or one longer than this
    dataset's time limit."""
    mine_root = collect(fake_config(tmp_path / "mine", num_episodes=4, **mine), progress=False)
    other_root = collect(fake_config(tmp_path / "other", num_episodes=4, **other), progress=False)
    assert read_meta(storage.episode_path(other_root, 1))["seed"] == 1  # the seed check passes
    shutil.copyfile(storage.episode_path(other_root, 1), storage.episode_path(mine_root, 1))
    report = verify_dataset(mine_root)
    assert set(report.corrupt) == {1} and named in report.corrupt[1][0], report.corrupt


def test_verify_checks_a_mixtures_episodes_against_their_component(tmp_path):
    """A mixture's episodes each record one component: its own are sound, and those of a
    mixture with another noise are named where their component is the noisy expert."""
    spec = {"policy": "mixture", "mixture": "random=0.5,noisy-expert=0.5", "num_episodes": 8}
    mine_root = collect(fake_config(tmp_path / "mine", **spec), progress=False)
    assert verify_dataset(mine_root).ok
    other_root = collect(fake_config(tmp_path / "other", noise=0.5, **spec), progress=False)
    noisy = set()
    for episode_id in range(8):
        if read_meta(storage.episode_path(other_root, episode_id))["policy"]["name"] != "random":
            noisy.add(episode_id)
        path = storage.episode_path(mine_root, episode_id)
        shutil.copyfile(storage.episode_path(other_root, episode_id), path)
    assert 0 < len(noisy) < 8  # both components drawn
    report = verify_dataset(mine_root)
    assert set(report.corrupt) == noisy  # a random episode of the same seed is the same data
    assert all(
        "collected by policy {'name': 'noisy-expert'" in p[0] for p in report.corrupt.values()
    )


def test_fsync_flushes_the_new_directories_own_entries(tmp_path, monkeypatch):
    """With --fsync the dataset directory's own entry in its parent (and each folder
    created above it) was never flushed: a power loss could lose the whole directory."""
    from sslrobot.utils import io

    synced = []
    real = io.fsync_dir
    monkeypatch.setattr(io, "fsync_dir", lambda path: (synced.append(Path(path)), real(path)))
    root = tmp_path / "new" / "d"
    collect(fake_config(root, num_episodes=1, fsync=True), progress=False)
    assert synced[:2] == [tmp_path, tmp_path / "new"]


def test_a_smaller_resume_keeps_the_marker_of_the_episodes_it_did_not_check(tmp_path, monkeypatch):
    """A resume to fewer episodes finished and removed the marker, so the interrupted run's
    later episodes were never checked byte for byte by the resume that collected them all."""
    import os

    root = tmp_path / "d"
    collect_interrupted_after_two(monkeypatch, fake_config(root, num_episodes=4))
    marker = root / ".locks" / "shard-0-of-1.unfinished"
    backdate_and_tear(root, marker, 1)
    with pytest.warns(UserWarning, match="asked for 4 episodes earlier"):
        collect(fake_config(root, num_episodes=1, resume=True), progress=False)
    assert marker.exists()  # episode 1 is the interrupted run's and still unchecked
    os.utime(root / "manifest.json", None)  # the smaller run's last write came after it
    with pytest.warns(UserWarning, match="episode 1 .* is incomplete"):
        collect(fake_config(root, num_episodes=4, resume=True), progress=False)
    assert not marker.exists()
    reference = collect(fake_config(tmp_path / "reference", num_episodes=4), progress=False)
    assert_same_episodes(root, reference)


def test_a_format_1_dataset_resumes_in_its_own_format(tmp_path):
    reference = collect(fake_config(tmp_path / "reference", num_episodes=5), progress=False)
    root = tmp_path / "old"  # the first three episodes, rewritten as format 1 wrote them
    manifest = dict(open_dataset(reference).manifest, format_version=1)
    write_manifest(root, manifest)
    for episode_id in range(3):
        arrays = open_dataset(reference).load_episode(episode_id, include_state=True)
        meta = read_meta(storage.episode_path(reference, episode_id))
        storage.write_episode(root, episode_id, arrays, meta, format_version=1)
    collect(fake_config(root, num_episodes=5, resume=True), progress=False)
    assert all(storage.episode_path(root, i).is_dir() for i in range(5))  # no mixed formats
    assert open_dataset(root).manifest["format_version"] == 1
    assert_same_episodes(root, reference)
    assert verify_dataset(root).ok


def test_other_settings_are_refused_in_an_existing_dataset(tmp_path):
    root = tmp_path / "d"
    collect(fake_config(root, num_episodes=2), progress=False)
    with pytest.raises(ValueError, match="base_seed: 0 in the dataset vs 7 now"):
        collect(fake_config(root, num_episodes=3, seed=7, resume=True), progress=False)
    # A mixture's order decides which component each episode gets, so it is part of it.
    mixed = tmp_path / "mixed"
    spelled = {"policy": "mixture", "mixture": "random=0.5,noisy-expert=0.5"}
    collect(fake_config(mixed, num_episodes=2, **spelled), progress=False)
    reordered = {"policy": "mixture", "mixture": "noisy-expert=0.5,random=0.5"}
    with pytest.raises(ValueError, match="order"):
        collect(fake_config(mixed, num_episodes=3, resume=True, **reordered), progress=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"not empty and has no manifest\.json"):
        collect(fake_config(tmp_path / "junk"), progress=False)
    assert [p.name for p in (tmp_path / "junk").iterdir()] == ["notes.txt"]  # no lock folder


def test_a_changed_env_or_package_versions_are_caught_on_resume(tmp_path):
    """Only the settings were compared: episodes of an env whose code now gives other shapes
    or bounds joined silently, and the manifest claimed the new versions for all of them."""
    import json

    root = tmp_path / "d"
    collect(fake_config(root, num_episodes=2), progress=False)
    manifest_path = root / "manifest.json"
    original = json.loads(manifest_path.read_text())
    changed = {**original, "proprio_dim": original["proprio_dim"] + 1}
    manifest_path.write_text(json.dumps(changed))
    with pytest.raises(ValueError, match=r"proprio_dim: .* in the dataset vs .* now"):
        collect(fake_config(root, num_episodes=3, resume=True), progress=False)
    older = {**original, "versions": {**original["versions"], "mujoco": "2.0.0"}}
    older.pop("state_names", None)  # fields an older manifest lacks are not compared
    manifest_path.write_text(json.dumps(older))
    with pytest.warns(UserWarning, match=r"other package versions \(mujoco 2\.0\.0 -> "):
        collect(fake_config(root, num_episodes=3, resume=True), progress=False)
    kept = json.loads(manifest_path.read_text())
    assert kept["versions_earlier"] == [older["versions"]]
    assert kept["versions"] == original["versions"] and len(open_dataset(root).episode_ids) == 3


def test_a_shard_is_written_by_one_collector_at_a_time(tmp_path):
    from sslrobot.data.collection import _shard_lock

    root = tmp_path / "d"
    root.mkdir()
    collect(fake_config(root, num_episodes=1), progress=False)
    before = (root / "manifest.json").read_bytes()
    with _shard_lock(root, (0, 1)), pytest.raises(BlockingIOError, match="another collector"):
        collect(fake_config(root, num_episodes=2, resume=True), progress=False)
    # Refused before it touched the manifest the shard's writer is filling.
    assert (root / "manifest.json").read_bytes() == before
    collect(fake_config(root, num_episodes=2, resume=True), progress=False)  # lock released
    assert open_dataset(root).episode_ids == [0, 1]


def test_shards_collect_disjoint_episodes_into_one_directory(tmp_path):
    collect(fake_config(tmp_path / "whole", num_episodes=5), progress=False)
    for index in range(2):
        collect(fake_config(tmp_path / "sharded", num_episodes=5, shard=(index, 2)), progress=False)
        expected = [i for i in range(5) if i % 2 <= index]
        assert open_dataset(tmp_path / "sharded").episode_ids == expected
    assert_same_episodes(tmp_path / "whole", tmp_path / "sharded")
    assert verify_dataset(tmp_path / "sharded").missing_ids == []


def test_every_manifest_write_counts_under_the_dataset_lock(tmp_path, monkeypatch):
    """Shards that finish together counted their episodes and wrote the manifest unlocked, so
    the last writer's older count could stand (one shard's episodes left out of ``counts``)."""
    import fcntl
    import os

    from sslrobot.data import collection

    root = tmp_path / "d"
    held: list[bool] = []
    write = collection.write_manifest

    def checking_write(path, manifest):
        fd = os.open(root / ".locks" / "manifest.lock", os.O_RDWR)
        try:  # another open file cannot take the lock while this process holds it
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(False)
        except BlockingIOError:
            held.append(True)
        finally:
            os.close(fd)
        write(path, manifest)

    monkeypatch.setattr(collection, "write_manifest", checking_write)
    collect(fake_config(root, num_episodes=3, shard=(0, 2)), progress=False)
    collect(fake_config(root, num_episodes=3, shard=(1, 2)), progress=False)
    assert len(held) == 4 and all(held)
    assert collection.read_manifest(root)["counts"]["episodes"] == 3


def test_collect_refuses_another_commands_directory_by_name(tmp_path):
    """An encoder's or a policy's directory was refused only as "not empty and has no
    manifest.json"; a path under a file failed at mkdir with a bare errno."""
    encoder = tmp_path / "enc"
    encoder.mkdir()
    (encoder / "encoder_config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"is an encoder \(`sslrobot pretrain --out`\), not a "
                       r"dataset's directory"):  # fmt: skip
        collect(fake_config(encoder, num_episodes=1), progress=False)
    with pytest.raises(ValueError, match=r"encoder_config\.json is a file, not a directory"):
        collect(fake_config(encoder / "encoder_config.json" / "d", num_episodes=1), progress=False)
    assert sorted(p.name for p in encoder.iterdir()) == ["encoder_config.json"]


def test_expert_and_noisy_expert_actions(tmp_path):
    collect(fake_config(tmp_path / "expert", policy="expert"), progress=False)
    collect(fake_config(tmp_path / "noisy0", policy="noisy-expert", noise=0.0), progress=False)
    collect(fake_config(tmp_path / "noisy", policy="noisy-expert", noise=0.5), progress=False)
    assert_same_episodes(tmp_path / "expert", tmp_path / "noisy0")
    expert = open_dataset(tmp_path / "expert").load_episode(0)
    noisy = open_dataset(tmp_path / "noisy").load_episode(0)
    assert np.all(np.abs(noisy["action"]) <= 1.0)
    assert not np.allclose(noisy["action"][:, 1], expert["action"][:, 1])  # expert's y is 0
    # AR(1) noise with rho=0.9 is correlated step to step, unlike white noise
    y = noisy["action"][:, 1]
    assert np.corrcoef(y[:-1], y[1:])[0, 1] > 0.3


def test_expert_policy_needs_an_expert(tmp_path):
    config = CollectConfig(
        env_id="Reacher-v5", out=tmp_path / "d", policy="expert", num_episodes=1, image_size=16
    )
    with pytest.raises(ValueError, match=r"needs a scripted expert.*Reacher-v5"):
        collect(config, progress=False)


def test_reacher_renders_and_records_vector_obs_as_proprio_and_state(tmp_path):
    config = CollectConfig(
        env_id="Reacher-v5", out=tmp_path / "d", num_episodes=2, image_size=16, max_episode_steps=6
    )
    dataset = open_dataset(collect(config, progress=False))
    episode = dataset.load_episode(1, include_state=True)
    assert episode["pixels"].shape == (7, 16, 16, 3) and episode["pixels"].std() > 0
    assert episode["proprio"].shape == (7, 10)
    np.testing.assert_array_equal(episode["state"], episode["proprio"])
    assert episode["truncated"][-1]
    assert dataset.manifest["env_kwargs"] == {"render_mode": "rgb_array", "width": 16, "height": 16}
    assert dataset.manifest["state_source"] == "observation"
    assert dataset.manifest["env_spec"]["version"] == 5
    assert dataset.manifest["view_conditions"] is None  # not an sslrobot task
    # Gymnasium aims Reacher's camera at the scene of a process's first render: a pool
    # worker's used to depend on the episode the scheduler handed it first.
    two = dataclasses.replace(config, out=tmp_path / "two", num_episodes=4, num_envs=2)
    one = dataclasses.replace(config, out=tmp_path / "one", num_episodes=4)
    collect(one, progress=False)
    collect(two, progress=False)
    assert_same_episodes(tmp_path / "one", tmp_path / "two")


def test_manifest_records_the_tasks_view_conditions(tmp_path):
    config = CollectConfig(
        env_id="sslrobot/Navigate-v1", out=tmp_path / "d", num_episodes=1, image_size=16,
        max_episode_steps=3,
    )  # fmt: skip
    manifest = open_dataset(collect(config, progress=False)).manifest
    recorded = {name for name, variable, _ in manifest["view_conditions"]}
    assert recorded == {"goal_distance", "goal_cos_bearing", "goal_sin_bearing"}
    assert recorded < set(manifest["view_state_names"])


def test_a_black_first_frame_is_refused_with_the_renderer_hint(tmp_path):
    kwargs = {"image_size": 16, "black_from_step": 0}
    with pytest.raises(
        DegenerateFramesError, match=r"frame 0 of episode 0 .*all black.*Gymnasium 1\.4's"
    ):
        collect(fake_config(tmp_path / "d", env_kwargs=kwargs), progress=False)
    assert storage.list_episode_ids(tmp_path / "d") == []


def test_one_colour_frames_later_in_an_episode_are_recorded_with_one_warning(tmp_path, monkeypatch):
    """An ego camera against a wall sees one colour (Navigate-v1, noisy expert): refusing
    that frame stopped the collection for good, since its seed renders it again."""
    from sslrobot.data import frames

    monkeypatch.setattr(frames, "_warned_of_constant_frames", False)
    kwargs = {"image_size": 16, "black_from_step": 5}
    config = fake_config(tmp_path / "d", env_kwargs=kwargs, num_episodes=2)
    with pytest.warns(UserWarning, match="frame 5 of episode 0 is one constant colour") as caught:
        dataset = open_dataset(collect(config, progress=False))
    assert len([w for w in caught if "constant colour" in str(w.message)]) == 1
    pixels = dataset.load_episode(dataset.episode_ids[1])["pixels"]
    assert pixels[5:].max() == 0 and pixels[:5].max() > 0
    # A second collection in the same process is told too (a script collecting several
    # datasets heard of the first one's alone).
    with pytest.warns(UserWarning, match="frame 5 of episode 0 is one constant colour"):
        collect(fake_config(tmp_path / "e", env_kwargs=kwargs, num_episodes=1), progress=False)


def test_a_huge_time_limit_reserves_frames_for_the_episode_not_the_limit(tmp_path):
    """The frame buffer was sized to the time limit: 3,000,000 steps asked 34 GB of an
    expert whose Reach episodes end on success within 40 steps."""
    config = CollectConfig(env_id="sslrobot/Reach-v0", out=tmp_path / "d", num_episodes=1,
                           image_size=64, policy="expert", max_episode_steps=3_000_000)  # fmt: skip
    dataset = open_dataset(collect(config, progress=False))
    assert 1 < len(dataset.load_episode(dataset.episode_ids[0])["pixels"]) < 100
    from sslrobot.data.episode_runner import _FRAME_BUFFER_RESERVE_BYTES, _FrameBuffer

    # What was reserved, not only what was kept: Linux reserves a large np.empty lazily, so
    # on a machine with 34 GB free the collection above passed without the cap.
    buffer = _FrameBuffer(np.zeros((64, 64, 3), np.uint8), 3_000_001)
    assert buffer.data.nbytes <= _FRAME_BUFFER_RESERVE_BYTES


def test_frozen_frames_are_judged_on_episodes_long_enough_to_show_motion(tmp_path):
    """At 8 px a 2-step episode renders 3 identical frames legitimately (the arm moves less
    than a pixel): that aborted the collection as a frozen renderer."""
    from sslrobot.data.frames import FROZEN_MIN_FRAMES, check_frame_stream

    config = CollectConfig(env_id="sslrobot/Reach-v0", out=tmp_path / "d", num_episodes=12,
                           image_size=8, max_episode_steps=2)  # fmt: skip
    assert len(open_dataset(collect(config, progress=False)).episode_ids) == 12
    frames = np.tile(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(1, 8, 8, 3), (3, 1, 1, 1))
    check_frame_stream(frames, "env", 0)  # too short to judge
    frozen = np.repeat(frames[:1], FROZEN_MIN_FRAMES, axis=0)
    with pytest.raises(DegenerateFramesError, match="all 10 frames of episode 0 are identical"):
        check_frame_stream(frozen, "env", 0)


def test_a_script_without_the_main_guard_is_told_so(tmp_path):
    """Its spawned workers import the script, which collected in its turn and failed on the
    parent's lock ("another collector is writing shard 0/1"): 88 lines pointing elsewhere."""
    import subprocess
    import sys

    script = tmp_path / "no_guard.py"
    script.write_text(
        "from sslrobot.data.collect_config import CollectConfig\n"
        "from sslrobot.data.collection import collect\n"
        f"collect(CollectConfig(env_id='sslrobot/Reach-v0', out={str(tmp_path / 'd')!r}, "
        "num_episodes=2, num_envs=2, image_size=16), progress=False)\n"
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)  # fmt: skip
    assert run.returncode != 0
    first_error = next(line for line in run.stderr.splitlines() if "Error:" in line)
    assert "collect() was called while a worker process imported the calling script" in first_error
    assert "BlockingIOError" not in run.stderr


def test_disk_full_during_collection_keeps_written_episodes(tmp_path, monkeypatch):
    root = tmp_path / "d"
    calls = {"n": 0}
    real_write = storage.write_archive

    def failing_write(file, members, text):
        calls["n"] += 1
        if calls["n"] > 2:  # the third episode: a part of it reaches the disk, then no space
            file.write(b"PK\x03\x04")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(file, members, text)

    monkeypatch.setattr(storage, "write_archive", failing_write)
    with pytest.raises(DatasetWriteError, match=f"{re.escape(str(root))}.*No space left on device"):
        collect(fake_config(root, num_episodes=4), progress=False)
    monkeypatch.undo()
    assert open_dataset(root).episode_ids == [0, 1]
    report = verify_dataset(root)
    assert report.ok and report.temp_dirs == [] and report.missing_ids == [2, 3]


def test_unwritable_output_directory_is_named(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    # A file where the directory should be: named with the path, before anything is written.
    expected = f"{blocker / 'd'}: {blocker} is a file, not a directory"
    with pytest.raises(ValueError, match=re.escape(expected)):
        collect(fake_config(blocker / "d"), progress=False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"env_id": "sslrobot/Pusj-v0"}, "unknown env id 'sslrobot/Pusj-v0'.*sslrobot/Push-v0"),
        ({"env_id": "NoSuchEnv-v3"}, r"unknown env id 'NoSuchEnv-v3'\. sslrobot ids: .*other"),
        ({"env_id": "Reacher-v9"}, r"Did you mean (Reacher-v\d, )*Reacher-v5\? sslrobot"),
        ({"env_id": "Push-v0"}, r"'Push-v0'\. Did you mean sslrobot/Push-v0\? sslrobot ids"),
        ({"policy": "greedy"}, "unknown policy 'greedy'.*noisy-expert"),
        ({"num_episodes": 0}, "num_episodes must be an integer >= 1, got 0"),
        ({"num_envs": 0}, "num_envs must be an integer >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"policy": "mixture"}, "needs mixture fractions"),
        ({"policy": "mixture", "mixture": "random=0.5,expert=0.2"}, "sum to 1, got 0.7"),
        ({"policy": "mixture", "mixture": "random=0.5,clever=0.5"}, "'clever' is unknown"),
        ({"mixture": "random=1"}, "only used with policy 'mixture'"),
        ({"shard": (2, 2)}, r"shard must be \(I, N\) with 0 <= I < N"),
        ({"noise": -0.1}, "noise must be a finite number >= 0"),
        ({"policy": "random", "noise": 0.5}, "noise=0.5: the noise is noisy-expert's"),
        (
            {"policy": "mixture", "mixture": "random=0.5,expert=0.5", "noise": 0.9},
            "noise=0.9: .* mixture 'random=0.5,expert=0.5' would ignore it",
        ),
        ({"visual_preset": "train"}, "visual_preset applies to sslrobot/\\* envs only"),
        ({"env_kwargs": {"f": object()}}, "env_kwargs must be JSON-serialisable"),
        ({"env_kwargs": {"obs_mode": "state"}}, "obs_mode='state': a dataset records pixels"),
        ({"num_episodes": np.float64(2)}, "num_episodes must be an integer >= 1, got"),
    ],
)
def test_bad_settings_give_clear_errors(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        fake_config(tmp_path / "d", **overrides)


def test_numpy_integers_are_integers(tmp_path):
    config = fake_config(tmp_path / "d", num_episodes=np.int64(2), seed=np.int32(3))
    assert (config.num_episodes, config.seed) == (2, 3) and type(config.num_episodes) is int


class _MissingAtMake(FakePixelEnv):
    def __init__(self, **kwargs) -> None:
        raise gym.error.DependencyNotInstalled("Box2D is not installed")


class _MissingAtReset(FakePixelEnv):
    """Like Pendulum-v1, which imports pygame only when it first renders."""

    def reset(self, *, seed=None, options=None):
        raise gym.error.DependencyNotInstalled("pygame is not installed")


@pytest.mark.parametrize(
    ("env_class", "action", "cause"),
    [(_MissingAtMake, "be made", "Box2D"), (_MissingAtReset, "be reset and rendered", "pygame")],
)
def test_an_env_with_a_missing_dependency_is_named_not_a_traceback(
    tmp_path, env_class, action, cause
):
    """gymnasium.error.DependencyNotInstalled (not a ValueError) used to reach the CLI as a
    traceback; it becomes a ValueError naming the env and the cause, before any file is made."""
    env_id = f"test/{env_class.__name__.strip('_')}-v0"
    gym.register(id=env_id, entry_point=env_class, max_episode_steps=20)
    try:
        config = fake_config(tmp_path / "d", env_id=env_id, env_kwargs={})
        message = rf"env '{env_id}' cannot {action} \(a package it needs is not installed\)"
        with pytest.raises(ValueError, match=rf"{message}: {cause} is not installed"):
            collect(config, progress=False)
    finally:
        del gym.registry[env_id]
    assert not (tmp_path / "d").exists()


def test_a_collector_with_another_shard_layout_at_work_is_refused(tmp_path):
    """Shards of other layouts overlap ours, and each deletes its own episodes' in-flight
    files on start, so a 2-shard writer must not run beside a 1-shard one."""
    from sslrobot.utils.io import exclusive_lock

    root = tmp_path / "d"
    (root / ".locks").mkdir(parents=True)
    with (
        exclusive_lock(root / ".locks" / "shard-0-of-1.lock", "held by this test"),
        pytest.raises(BlockingIOError, match=r"writing .* in 1 shards"),
    ):
        collect(fake_config(root, shard=(1, 2)), progress=False)
    collect(fake_config(root, shard=(1, 2)), progress=False)  # once it is done: fine
    assert sorted(open_dataset(root).episode_ids) == [1, 3]


def test_settings_are_checked_under_the_dataset_lock(tmp_path):
    """Two collectors started together used to check an empty directory, then each write its
    own manifest: now the check waits for the lock, and sees the other's manifest."""
    import threading

    from sslrobot.utils.io import exclusive_lock

    root = tmp_path / "d"
    (root / ".locks").mkdir(parents=True)
    errors = []

    def second_collector():
        try:
            collect(fake_config(root, seed=1000, shard=(1, 2)), progress=False)
        except ValueError as error:
            errors.append(error)

    with exclusive_lock(root / ".locks" / "manifest.lock", "held by this test"):
        thread = threading.Thread(target=second_collector)
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive()  # waiting for the lock, not yet checking
        collect(fake_config(tmp_path / "first"), progress=False)  # the first one's manifest:
        shutil.copy(tmp_path / "first" / "manifest.json", root / "manifest.json")
    thread.join()
    assert errors and "seed" in str(errors[0])


def test_frames_of_another_size_than_asked_are_refused(tmp_path):
    """An env that does not take --image-size (here: kwargs that override it) used to be
    recorded with the size asked for, which every later stage trusts."""
    config = fake_config(tmp_path / "d", image_size=16, env_kwargs={"image_size": 24})
    with pytest.raises(ValueError, match=r"renders 24x24 frames .* not the 16x16 asked for"):
        collect(config, progress=False)
    assert not (tmp_path / "d" / "manifest.json").exists()


def test_gymnasium_mujoco_frames_survive_another_gl_context():
    """Gymnasium's renderer draws black once another GL context is current; we re-bind it."""
    import gymnasium as gym

    from sslrobot.data.frames import get_frame

    reacher = gym.make("Reacher-v5", render_mode="rgb_array", width=16, height=16)
    other = gym.make("sslrobot/Reach-v0", image_size=16)
    try:
        obs, _ = reacher.reset(seed=0)
        reference = get_frame(reacher, obs, from_obs=False)
        assert reference.std() > 0  # two black frames would compare equal too
        other.reset(seed=0)  # renders: its GL context becomes current
        obs, _ = reacher.reset(seed=0)
        np.testing.assert_array_equal(get_frame(reacher, obs, from_obs=False), reference)
    finally:
        reacher.close()
        other.close()


def test_a_callable_entry_point_is_recorded_by_name_and_old_reprs_do_not_block_resume():
    """``str`` of a function entry point holds its memory address, different in every
    process: resume compared it and refused every custom env registered with a function."""
    from sslrobot.data.collection import entry_point_name
    from sslrobot.data.manifest import check_same_dataset

    assert entry_point_name(fake_config) == f"{__name__}:fake_config"
    assert entry_point_name("pkg.envs:MyEnv") == "pkg.envs:MyEnv"
    spec = {"id": "my/Env-v0", "version": 0, "entry_point": "<function make at 0x7f31>"}
    old = {"env_spec": spec, "format": "x"}
    check_same_dataset(old, {"env_spec": {**spec, "entry_point": "pkg:make"}, "format": "x"}, "d")
    with pytest.raises(ValueError, match="env_spec"):
        check_same_dataset(old, {"env_spec": {**spec, "id": "my/Env-v1"}, "format": "x"}, "d")


def test_visual_presets_are_the_envs_own_table(tmp_path, monkeypatch):
    """collect checked visual_preset against a fixed tuple, so a preset registered in-process
    (bench_nuisance's only-FACTOR ones) passed the envs and failed here; an unknown name is
    refused with the envs' list."""
    from sslrobot.data import CollectConfig
    from sslrobot.envs.core import variation

    def config(preset):
        return CollectConfig(env_id="sslrobot/Reach-v0", out=tmp_path / "d", policy="random",
                             num_episodes=1, visual_preset=preset)  # fmt: skip

    with pytest.raises(ValueError, match=r"visual_preset must be one of \['heldout', 'none', 'tr"):
        config("only-light")
    monkeypatch.setitem(variation.PRESETS, "only-light", variation.PRESETS["none"])
    assert config("only-light").visual_preset == "only-light"


class _StateFromStepsOnly(FakePixelEnv):
    """An env giving ``info["state"]`` from ``step()`` only, a common way to write one."""

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return obs, {k: v for k, v in info.items() if k != "state"}


class _FlatStateFromStepsOnly(_StateFromStepsOnly):
    """The same with a flat vector observation (frames from ``render()``), whose reset row
    was taken from the observation and the others from the info, without a word."""

    def __init__(self, image_size: int = 16, render_mode: str | None = "rgb_array") -> None:
        super().__init__(image_size=image_size, render_mode=render_mode)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)

    def _obs(self):
        return np.array([*self._pos, 0.0], np.float32)

    def render(self):
        return FakePixelEnv._obs(self)["pixels"]


@pytest.mark.parametrize("env_class", [_StateFromStepsOnly, _FlatStateFromStepsOnly])
def test_an_env_with_state_from_its_steps_only_is_refused_by_name(tmp_path, env_class):
    env_id = f"{env_class.__name__.strip('_')}-v0"
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=env_class, max_episode_steps=20)
    config = fake_config(tmp_path / "d", env_id=env_id, num_episodes=2)
    with pytest.raises(ValueError, match=rf"{env_id} gives info\['state'\] from step\(\) but not"):
        collect(config, progress=False)
    assert storage.list_episode_ids(tmp_path / "d") == []  # nothing half-recorded was committed


class _FlatWithoutRenderMode(FakePixelEnv):
    """Vector observations, and a constructor without ``render_mode``: no way to frames."""

    def __init__(self, image_size: int = 16) -> None:
        super().__init__(image_size=image_size)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _obs(self):
        return self._pos.copy()


def test_an_env_that_cannot_render_is_not_told_to_pass_render_mode(tmp_path):
    """The advice to pass render_mode through --env-kwargs, followed, made the constructor
    refuse the argument: a second error instead of the way on."""
    env_id = "FlatWithoutRenderMode-v0"
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=_FlatWithoutRenderMode, max_episode_steps=20)
    config = fake_config(tmp_path / "d", env_id=env_id, env_kwargs={"image_size": 16})
    with pytest.raises(ValueError, match="its constructor takes no render_mode") as refused:
        collect(config, progress=False)
    assert "--env-kwargs" not in str(refused.value)


def test_a_users_module_beside_them_is_named_with_the_way_to_import_it(tmp_path, monkeypatch):
    """``module:Id`` with the module in the working directory failed as a bare "No module
    named", since the `sslrobot` script does not import from there."""
    import sys

    from sslrobot.data.collect_config import find_env_spec

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "my_envs_here.py").write_text("")
    with pytest.raises(ValueError, match=r"No module named 'my_envs_here' \(a module beside you.*"
                       r"PYTHONPATH=\. or as python -m sslrobot\)"):  # fmt: skip
        find_env_spec("my_envs_here:Mine-v0")
    with pytest.raises(ValueError, match=r"No module named 'nowhere_at_all'$"):
        find_env_spec("nowhere_at_all:Mine-v0")  # not beside them either: no hint


class _FailingRunner:
    """Duck-typed ``EpisodeRunner``: episode 0's write fails, episode 1's rollout fails."""

    def rollout(self, episode_id: int):
        if episode_id == 1:
            raise RuntimeError("the env crashed")
        return {}, {}

    def commit(self, episode_id: int, arrays, meta):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_is_not_hidden_behind_the_next_rollouts_error():
    progress = _Progress(total=2, desc="test", enabled=False)
    with pytest.raises(RuntimeError, match="the env crashed") as raised:
        _run_in_process(_FailingRunner(), [0, 1], progress)
    assert any("No space left on device" in note for note in raised.value.__notes__)
