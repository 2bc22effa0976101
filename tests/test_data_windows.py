"""WindowDataset: windows stay inside episodes, split by episode, corrupt episodes, DataLoader."""

from __future__ import annotations

import pickle
import re
import shutil

import numpy as np
import pytest
import torch
from archive_damage import flip_member_byte, truncate
from test_data_fake_env import FAKE_ENV_ID, collect_fake
from torch.utils.data import DataLoader

from sslrobot.data import CollectConfig, WindowDataset, collect, open_dataset, split_episode_ids
from sslrobot.data.storage import episode_path
from sslrobot.data.windows import open_windows

NUM_STEPS = 4


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("windows") / "d"
    config = CollectConfig(
        env_id=FAKE_ENV_ID, out=root, num_episodes=8, image_size=16, env_kwargs={"image_size": 16}
    )
    return collect(config, progress=False)


def test_windows_cover_every_start_and_never_cross_episodes(dataset_dir):
    torch.set_num_threads(1)
    windows = WindowDataset(dataset_dir, NUM_STEPS, split="all", include_state=True)
    dataset = open_dataset(dataset_dir)
    lengths = {i: dataset.meta(i)["length"] for i in dataset.episode_ids}
    assert len(windows) == sum(length - NUM_STEPS + 1 for length in lengths.values())
    seen = set()
    for index in range(len(windows)):
        episode_id, t = windows.locate(index)
        assert t >= 0 and t + NUM_STEPS <= lengths[episode_id]  # inside one episode
        seen.add((episode_id, t))
        item = windows[index]
        episode = dataset.load_episode(episode_id, include_state=True)
        assert item["pixels"].dtype == torch.uint8 and item["pixels"].shape == (5, 16, 16, 3)
        assert item["action"].dtype == torch.float32 and item["action"].shape == (4, 2)
        np.testing.assert_array_equal(item["pixels"].numpy(), episode["pixels"][t : t + 5])
        np.testing.assert_array_equal(item["proprio"].numpy(), episode["proprio"][t : t + 5])
        np.testing.assert_array_equal(item["action"].numpy(), episode["action"][t : t + 4])
        np.testing.assert_array_equal(item["reward"].numpy(), episode["reward"][t : t + 4])
        np.testing.assert_array_equal(item["state"].numpy(), episode["state"][t : t + 5])
    assert len(seen) == len(windows)
    with pytest.raises(IndexError):
        windows[len(windows)]


def test_split_is_by_episode_and_deterministic(dataset_dir):
    ids = open_dataset(dataset_dir).episode_ids
    train, val = split_episode_ids(ids, 0.25, seed=0)
    assert sorted(train + val) == ids and not set(train) & set(val) and len(val) == 2
    assert (train, val) == split_episode_ids(ids, 0.25, seed=0)
    assert any(split_episode_ids(ids, 0.25, seed=s)[1] != val for s in range(1, 6))
    train_windows = WindowDataset(dataset_dir, NUM_STEPS, split="train", val_fraction=0.25)
    val_windows = WindowDataset(dataset_dir, NUM_STEPS, split="val", val_fraction=0.25)
    assert train_windows.episode_ids == train and val_windows.episode_ids == val
    assert "state" not in train_windows[0]  # privileged state only on request
    train_default = split_episode_ids(ids, 0.1, seed=0)[0]  # WindowDataset's default split
    fewer = WindowDataset(dataset_dir, NUM_STEPS, exclude_episodes=train_default[:2])
    assert fewer.episode_ids == train_default[2:]
    with pytest.raises(ValueError, match="open_windows needs at least one dataset directory"):
        open_windows([], NUM_STEPS)
    with pytest.raises(ValueError, match=r"val_fraction must be a number in \[0, 1\), got 1.0"):
        split_episode_ids(ids, 1.0, seed=0)
    with pytest.raises(ValueError, match=r"val_fraction must be a number in .* got '0\.1'"):
        split_episode_ids(ids, "0.1", seed=0)
    # One episode stays in train, as the docstring says (a lone one went to val before).
    assert split_episode_ids([0], 0.9, seed=0) == ([0], [])
    assert split_episode_ids([0, 1], 0.9, seed=0)[0] != []


def test_by_default_every_episode_of_a_small_dataset_stays_open(dataset_dir, monkeypatch):
    """Random windows reopened a file for nearly every window with a 32-episode LRU (half the
    reading time on a 1,000-episode stream); the default now scales with the open-file limit."""
    import resource

    from sslrobot.data import windows as windows_module

    opened: list[str] = []
    real_open = windows_module.os.open
    monkeypatch.setattr(windows_module.os, "open", lambda *a: opened.append(a[0]) or real_open(*a))
    windows = WindowDataset(dataset_dir, NUM_STEPS, split="all")
    for _ in range(3):
        windows.read_batch(list(range(len(windows))))
    assert len(opened) == len(set(opened)) == len(windows.episode_ids)  # each file once
    windows.close()
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, 4096))
    assert WindowDataset(dataset_dir, NUM_STEPS).max_open_episodes == 128  # was 32
    assert windows_module.default_open_episodes(5) == 25  # format 1: a file per array
    assert windows_module.default_open_episodes(1, readers=3) == 42  # the parts of a mix
    mixed = windows_module.open_windows([dataset_dir, dataset_dir], NUM_STEPS)
    assert [part.max_open_episodes for part in mixed.parts] == [64, 64]
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1 << 20, 1 << 20))
    assert windows_module.default_open_episodes(1) == 4096  # capped: containers set huge limits


def test_a_reader_at_the_open_file_limit_closes_its_files_and_retries(dataset_dir, monkeypatch):
    """Readers share the process's limit (a mix's parts, train and validation): meeting it
    closed nothing and stopped the run with EMFILE."""
    import errno

    from sslrobot.data import windows as windows_module

    windows = WindowDataset(dataset_dir, NUM_STEPS, split="all")
    windows.read_batch(list(range(len(windows))))
    assert len(windows._files) == len(windows.episode_ids)
    real_open, calls = windows_module.os.open, []

    def full_once(path, flags):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.EMFILE, "Too many open files", path)
        return real_open(path, flags)

    last = len(windows) - 1
    expected = windows[last]["pixels"].numpy()
    windows.close()
    windows.read_batch([0])  # one episode open again
    monkeypatch.setattr(windows_module.os, "open", full_once)
    np.testing.assert_array_equal(windows.read_batch([last])["pixels"][0], expected)
    assert len(calls) == 2 and len(windows._files) == 1  # closed the others, opened once more


def test_no_window_longer_than_the_episodes(dataset_dir):
    with pytest.raises(ValueError, match="no window of 50 steps"):
        WindowDataset(dataset_dir, 50, split="all")
    with pytest.raises(ValueError, match="num_steps must be an integer >= 0"):
        WindowDataset(dataset_dir, -1)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 0"):
        WindowDataset(dataset_dir, 2.0)
    assert WindowDataset(dataset_dir, np.int64(2), split="all").num_steps == 2  # NumPy's too


def test_dataloader_workers_and_bounded_open_episodes(dataset_dir):
    torch.set_num_threads(1)
    windows = WindowDataset(dataset_dir, NUM_STEPS, split="all", max_open_episodes=2)
    clone = pickle.loads(pickle.dumps(windows))
    assert len(clone) == len(windows) and len(clone._files) == 0
    loader = DataLoader(windows, batch_size=8, shuffle=True, num_workers=2)
    total = 0
    for batch in loader:
        assert batch["pixels"].dtype == torch.uint8 and batch["pixels"].shape[1:] == (5, 16, 16, 3)
        total += batch["pixels"].shape[0]
    assert total == len(windows)
    for index in range(len(windows)):
        windows[index]
    assert len(windows._files) <= 2
    windows.close()
    assert windows[0]["pixels"].shape == (5, 16, 16, 3)  # reopens after close


def test_corrupt_episodes_are_skipped_with_a_warning_or_refused(tmp_path, dataset_dir):
    root = tmp_path / "copy"
    shutil.copytree(dataset_dir, root)
    truncated = episode_path(root, 3)
    truncate(truncated, -4)
    flip_member_byte(episode_path(root, 5), "pixels.npy", position=-7)

    with pytest.warns(
        UserWarning,
        match=f"episode 3 of {re.escape(str(root))} is corrupt.*{re.escape(str(truncated))}",
    ):
        windows = WindowDataset(root, NUM_STEPS, split="all")
    assert 3 not in windows.episode_ids and 5 in windows.episode_ids
    with pytest.warns(UserWarning) as caught:
        checked = WindowDataset(root, NUM_STEPS, split="all", verify_checksums=True)
    assert any(f"episode 5 of {root}" in str(w.message) and "CRC" in str(w.message) for w in caught)
    assert set(checked.skipped) == {3, 5}
    assert windows[0]["pixels"].shape == (5, 16, 16, 3)  # the others stay readable
    with pytest.raises(ValueError, match=r"episode 3 .* is corrupt.*strict=True"):
        WindowDataset(root, NUM_STEPS, split="all", strict=True)


def test_mixed_windows_concatenate_datasets_and_refuse_mismatches(tmp_path, dataset_dir):
    from sslrobot.data.windows import MixedWindowDataset, open_windows

    other = collect_fake(tmp_path / "other", num_episodes=3, image_size=16, seed=50)
    single = open_windows(dataset_dir, NUM_STEPS, split="all")
    assert isinstance(single, WindowDataset)
    mixed = open_windows([dataset_dir, other], NUM_STEPS, split="all")
    assert isinstance(mixed, MixedWindowDataset)
    second = WindowDataset(other, NUM_STEPS, split="all")
    assert len(mixed) == len(single) + len(second)
    np.testing.assert_array_equal(mixed[len(single)]["pixels"], second[0]["pixels"])
    picks = [len(single) + 1, 0, len(mixed) - 1, 3]  # both parts, out of order
    batch = mixed.read_batch(picks)
    for name in ("pixels", "action"):
        np.testing.assert_array_equal(batch[name], np.stack([mixed[i][name] for i in picks]))
    mixed.close()

    small = collect_fake(tmp_path / "small", num_episodes=2, image_size=8)
    mismatch = r"cannot mix .*small.* frame_shape \(8, 8, 3\) vs \(16, 16, 3\)"
    with pytest.raises(ValueError, match=mismatch):
        open_windows([dataset_dir, small], NUM_STEPS, split="all")


def test_batch_read_matches_single_windows_and_arrays_subset(dataset_dir):
    windows = WindowDataset(dataset_dir, NUM_STEPS, split="all", include_state=True)
    picks = [5, 0, len(windows) - 1, 5]
    batch = windows.read_batch(picks)
    for name in ("pixels", "proprio", "action", "reward", "state"):
        expected = np.stack([windows[i][name].numpy() for i in picks])
        np.testing.assert_array_equal(batch[name], expected)
        assert batch[name].dtype == expected.dtype
    # A batch spanning more episodes than may stay open reads the same (LRU evictions).
    tight = WindowDataset(dataset_dir, NUM_STEPS, split="all", max_open_episodes=1)
    spread = list(range(0, len(tight), 7))
    np.testing.assert_array_equal(
        tight.read_batch(spread)["pixels"], np.stack([windows[i]["pixels"] for i in spread])
    )
    assert len(tight._files) <= 1
    # Threads sharing that reader: an eviction closed descriptors mid-read, or handed their
    # numbers to another episode's file (wrong frames, no error).
    from concurrent.futures import ThreadPoolExecutor

    picks = [list(range(start, len(tight), 5)) for start in range(5)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            batches = list(pool.map(lambda p: tight.read_batch(p)["pixels"], picks))
            singles = list(pool.map(lambda p: np.stack([tight[i]["pixels"] for i in p]), picks))
            for pick, batch, single in zip(picks, batches, singles, strict=True):
                expected = np.stack([windows[i]["pixels"] for i in pick])
                np.testing.assert_array_equal(batch, expected)
                np.testing.assert_array_equal(single, expected)
    pickle.loads(pickle.dumps(tight))[0]  # the lock does not travel; a new one is made
    lean = WindowDataset(dataset_dir, NUM_STEPS, split="all", arrays=("pixels", "action"))
    assert set(lean[0]) == {"pixels", "action"} == set(lean.read_batch([1, 2]))
    np.testing.assert_array_equal(lean.read_batch([3])["pixels"][0], windows[3]["pixels"])
    loader = DataLoader(lean, batch_size=4)  # the default collate still works per window
    assert next(iter(loader))["pixels"].shape == (4, NUM_STEPS + 1, 16, 16, 3)
    with pytest.raises(ValueError, match="arrays must name some of"):
        WindowDataset(dataset_dir, NUM_STEPS, arrays=("pixels", "depth"))
    # A name given twice collapsed into one offset and misaligned every episode's table,
    # failing later as a short read that blamed the dataset.
    with pytest.raises(ValueError, match=r"arrays name \['reward'\] more than once"):
        WindowDataset(dataset_dir, NUM_STEPS, arrays=("reward", "reward", "action"))
