"""Episode storage: exact round trip, atomic commit, corruption detection, write errors."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import zipfile

import numpy as np
import pytest
from archive_damage import flip_member_byte, truncate

from sslrobot.data import DatasetWriteError, open_dataset, storage, verify_dataset
from sslrobot.data.manifest import FORMAT_NAME, FORMAT_VERSION, write_manifest
from sslrobot.data.storage import (
    check_episode,
    episode_path,
    list_episode_ids,
    read_meta,
    write_episode,
)


def make_arrays(length: int, seed: int, size: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "pixels": rng.integers(0, 256, (length + 1, size, size, 3), dtype=np.uint8),
        "proprio": rng.standard_normal((length + 1, 4)).astype(np.float32),
        "action": rng.uniform(-1, 1, (length, 2)).astype(np.float32),
        "reward": rng.standard_normal(length).astype(np.float32),
        "terminated": np.arange(length) == length - 1,
        "truncated": np.zeros(length, bool),
        "state": rng.standard_normal((length + 1, 5)).astype(np.float32),
    }


def make_dataset(
    root, lengths: dict[int, int], size: int = 8, format_version: int = FORMAT_VERSION
) -> None:
    """A dataset written with the storage writer alone (no env)."""
    write_manifest(
        root,
        {
            "format": FORMAT_NAME,
            "format_version": format_version,
            "env_id": "synthetic",
            "frame_shape": [size, size, 3],
            "proprio_dim": 4,
            "action_dim": 2,
            "state_dim": 5,
            "num_episodes_requested": max(lengths) + 1,
        },
    )
    for episode_id, length in lengths.items():
        arrays = make_arrays(length, episode_id, size)
        write_episode(root, episode_id, arrays, {"seed": episode_id}, format_version=format_version)


@pytest.mark.parametrize("format_version", [1, 2])
def test_round_trip_is_exact_and_state_is_opt_in(tmp_path, format_version):
    make_dataset(tmp_path, {0: 5, 3: 9}, format_version=format_version)
    dataset = open_dataset(tmp_path)
    assert dataset.episode_ids == [0, 3]
    for episode_id, length in ((0, 5), (3, 9)):
        written = make_arrays(length, episode_id)
        loaded = dataset.load_episode(episode_id)
        assert "state" not in loaded  # evaluation-only: loaded only when asked for
        loaded = dataset.load_episode(episode_id, include_state=True)
        assert set(loaded) == set(written)
        for name, array in written.items():
            assert loaded[name].dtype == array.dtype
            np.testing.assert_array_equal(loaded[name], array, err_msg=name)
        assert isinstance(loaded["pixels"], np.memmap)
        assert dataset.meta(episode_id)["length"] == length


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
def test_readers_that_hold_many_episodes_keep_no_files_open(tmp_path):
    """Each mapped array keeps a file open: the probe held every episode's (about 7 files
    each) and `sslrobot probe` failed with "Too many open files" on the default preset's
    200 episodes under a 1024 limit; demonstrations held 3-4 per episode."""
    from sslrobot.evaluation.probe import iter_probe_frames
    from sslrobot.policy.demos import load_transitions

    make_dataset(tmp_path, {i: 4 for i in range(40)})
    dataset = open_dataset(tmp_path)
    before = _open_files()
    held = dataset.load_episode(0)
    assert _open_files() > before  # mapped: files open while the arrays live
    del held
    loaded = dataset.load_episode(0, include_state=True, in_memory=True)
    assert _open_files() == before and not isinstance(loaded["pixels"], np.memmap)
    np.testing.assert_array_equal(loaded["state"], make_arrays(4, 0)["state"])
    frames = iter_probe_frames(dataset, list(range(40)), max_frames=None, seed=0)
    next(frames)
    assert _open_files() <= before + 8  # one episode's at most, not forty
    assert len(list(frames)) == 39
    transitions = load_transitions(dataset, list(range(40)), pixels=True, state=True)
    assert _open_files() == before and transitions.actions.shape == (160, 2)


@pytest.mark.parametrize("format_version", [1, 2])
def test_commit_never_overwrites_an_episode(tmp_path, format_version):
    """(Atomicity itself: test_disk_full_names_the_path_and_keeps_written_episodes.)"""
    make_dataset(tmp_path, {0: 4}, format_version=format_version)
    assert list((tmp_path / "episodes").iterdir()) == [episode_path(tmp_path, 0)]
    for version in (1, 2):  # not even through the other format's name
        with pytest.raises(FileExistsError, match="already exists"):
            write_episode(tmp_path, 0, make_arrays(6, 1), {}, format_version=version)
    assert list((tmp_path / "episodes").iterdir()) == [episode_path(tmp_path, 0)]
    np.testing.assert_array_equal(
        open_dataset(tmp_path).load_episode(0)["action"], make_arrays(4, 0)["action"]
    )


def test_bad_arrays_are_refused_before_writing(tmp_path):
    arrays = make_arrays(4, 0)
    arrays["action"] = arrays["action"][:3]
    with pytest.raises(ValueError, match="'pixels' has 5 rows, expected 4"):
        write_episode(tmp_path, 0, arrays, {})
    arrays = make_arrays(4, 0)
    arrays["pixels"] = arrays["pixels"].astype(np.float32)
    with pytest.raises(ValueError, match="dtype float32, expected uint8"):
        write_episode(tmp_path, 0, arrays, {})
    assert list_episode_ids(tmp_path) == []


def test_an_episode_is_one_standard_npz(tmp_path):
    make_dataset(tmp_path, {0: 3})
    path = episode_path(tmp_path, 0)
    assert path.name == "ep_000000.npz" and path.is_file()
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None  # every member's CRC-32 holds
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    with np.load(path) as arrays:  # any numpy reads it
        np.testing.assert_array_equal(arrays["pixels"], make_arrays(3, 0)["pixels"])
        np.testing.assert_array_equal(arrays["state.eval_only"], make_arrays(3, 0)["state"])


def test_verify_names_truncated_and_bit_flipped_episodes(tmp_path):
    make_dataset(tmp_path, {0: 5, 1: 5, 2: 5})
    truncate(episode_path(tmp_path, 1), -10)  # the zip's directory is at the end
    flipped = episode_path(tmp_path, 2)
    flip_member_byte(flipped, "pixels.npy")

    report = verify_dataset(tmp_path)
    assert not report.ok and report.num_ok == 1
    assert set(report.corrupt) == {1, 2}
    assert str(episode_path(tmp_path, 1)) in report.corrupt[1][0]
    assert "not a complete episode archive" in report.corrupt[1][0]
    assert f"{flipped}: member pixels.npy is corrupt" in report.corrupt[2][0]
    assert "CRC" in report.corrupt[2][0]
    # the cheap structural check catches truncation, only the checksum catches the bit flip
    assert check_episode(flipped, checksums=False) == []
    assert check_episode(episode_path(tmp_path, 0), checksums=True) == []
    np.testing.assert_array_equal(
        open_dataset(tmp_path).load_episode(0)["pixels"], make_arrays(5, 0)["pixels"]
    )


def test_verified_loading_refuses_a_bit_flip_that_memory_maps_read_unseen(tmp_path):
    """Probes and demonstrations load episodes through memory maps, which check nothing;
    they ask ``load_episode(verify=True)``, which names the damaged episode."""
    from sslrobot.evaluation.probe import iter_probe_frames
    from sslrobot.policy.demos import load_transitions

    make_dataset(tmp_path, {0: 5, 1: 5})
    flip_member_byte(episode_path(tmp_path, 1), "pixels.npy")
    dataset = open_dataset(tmp_path)
    dataset.load_episode(1)  # unchecked: the flipped frame would be used as data
    assert dataset.load_episode(0, verify=True)["pixels"].shape[0] == 6
    message = r"episode 1 of .* is damaged: .*member pixels.npy is corrupt.*sslrobot data verify"
    with pytest.raises(ValueError, match=message):
        dataset.load_episode(1, verify=True)
    with pytest.raises(ValueError, match="episode_id must be an integer id, got '0'"):
        dataset.load_episode("0")
    with pytest.raises(ValueError, match=message):
        list(iter_probe_frames(dataset, [0, 1], max_frames=None, seed=0))
    with pytest.raises(ValueError, match=message):
        load_transitions(dataset, [0, 1], pixels=True, state=False)


def test_verify_names_an_episode_stored_under_another_id(tmp_path):
    make_dataset(tmp_path, {0: 5, 1: 5})
    shutil.copyfile(episode_path(tmp_path, 0), episode_path(tmp_path, 2))  # a copy, renamed
    report = verify_dataset(tmp_path)
    assert not report.ok and set(report.corrupt) == {2}
    assert report.corrupt[2] == [
        f"{episode_path(tmp_path, 2)}: holds episode 0, not 2 as its name says"
    ]


def test_verify_names_truncated_and_bit_flipped_files_of_format_1(tmp_path):
    make_dataset(tmp_path, {0: 5, 1: 5, 2: 5}, format_version=1)
    truncated = episode_path(tmp_path, 1) / "pixels.npy"
    truncated.write_bytes(truncated.read_bytes()[:-10])
    flipped = episode_path(tmp_path, 2) / "action.npy"
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 0xFF
    flipped.write_bytes(bytes(data))

    report = verify_dataset(tmp_path)
    assert not report.ok and report.num_ok == 1
    assert set(report.corrupt) == {1, 2}
    assert str(truncated) in report.corrupt[1][0] and "bytes stored" in report.corrupt[1][0]
    assert str(flipped) in report.corrupt[2][0] and "sha256" in report.corrupt[2][0]
    # the cheap structural check catches truncation, only the checksum catches the bit flip
    assert check_episode(episode_path(tmp_path, 2), checksums=False) == []
    assert check_episode(episode_path(tmp_path, 0), checksums=True) == []
    np.testing.assert_array_equal(
        open_dataset(tmp_path).load_episode(0)["pixels"], make_arrays(5, 0)["pixels"]
    )


def test_a_format_1_file_record_that_is_not_an_object_is_named(tmp_path):
    """``"files": {"pixels.npy": 5}`` in a format-1 meta.json (plain text, no checksum of its
    own) made verify and --resume fail with an AttributeError naming no file."""
    import json

    make_dataset(tmp_path, {0: 3, 1: 3}, format_version=1)
    meta_path = episode_path(tmp_path, 1) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["files"]["pixels.npy"] = 5
    meta_path.write_text(json.dumps(meta))
    report = verify_dataset(tmp_path)
    assert set(report.corrupt) == {1}
    assert str(meta_path) in report.corrupt[1][0] and "'pixels.npy' is 5" in report.corrupt[1][0]


def test_verify_names_broken_metadata_and_reports_gaps(tmp_path):
    make_dataset(tmp_path, {0: 3, 2: 3})
    flip_member_byte(episode_path(tmp_path, 2), "meta.json", position=3)
    report = verify_dataset(tmp_path)
    assert report.missing_ids == [1]
    assert "meta.json" in report.corrupt[2][0]
    assert any("CORRUPT episode 2" in line for line in report.lines())


def test_metadata_of_the_wrong_shape_is_named_not_a_crash(tmp_path):
    """A meta.json edited by hand into valid JSON of another shape (a list, a policy given
    as a string) reached readers that look fields up by name: AttributeError tracebacks."""
    from sslrobot.data.verify import dataset_summary

    make_dataset(tmp_path, {0: 3, 1: 3, 2: 3}, format_version=1)
    meta_file = episode_path(tmp_path, 1) / "meta.json"
    meta_file.write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"{re.escape(str(meta_file))} holds a JSON list"):
        read_meta(episode_path(tmp_path, 1))
    meta = json.loads((episode_path(tmp_path, 2) / "meta.json").read_text())
    (episode_path(tmp_path, 2) / "meta.json").write_text(json.dumps({**meta, "policy": "x"}))
    summary = dataset_summary(tmp_path)
    assert summary["stats"]["unreadable_metadata"] == [1]
    assert summary["stats"]["episodes"] == 2  # episode 2 counts, its policy unnamed
    assert "CORRUPT episode 1" in "\n".join(verify_dataset(tmp_path).lines())
    # A return missing (or NaN) made every return statistic NaN, and --json print NaN.
    first = json.loads((episode_path(tmp_path, 0) / "meta.json").read_text())
    (episode_path(tmp_path, 0) / "meta.json").write_text(json.dumps({**first, "return": 1.5}))
    (episode_path(tmp_path, 2) / "meta.json").write_text(
        json.dumps({k: v for k, v in meta.items() if k != "return"})
    )
    returns = dataset_summary(tmp_path)["stats"]["episode_return"]
    assert returns == {"mean": 1.5, "std": 0.0, "min": 1.5, "max": 1.5, "nonfinite": 1}
    json.dumps(returns, allow_nan=False)


def _write_archive_until_disk_full(file, members, text):
    """An archive writer that writes part of an episode, then finds the disk full."""
    file.write(b"PK\x03\x04 part of an episode")
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("format_version", [1, 2])
def test_disk_full_names_the_path_and_keeps_written_episodes(tmp_path, monkeypatch, format_version):
    make_dataset(tmp_path, {0: 4}, format_version=format_version)
    calls = {"n": 0}
    real_write = storage.write_new_file

    def failing_write(path, chunks, fsync):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, chunks, fsync)

    monkeypatch.setattr(storage, "write_new_file", failing_write)
    monkeypatch.setattr(storage, "write_archive", _write_archive_until_disk_full)
    with pytest.raises(
        DatasetWriteError, match=r"No space left on device.*free some space"
    ) as info:
        write_episode(tmp_path, 1, make_arrays(4, 1), {}, format_version=format_version)
    assert info.value.errno == errno.ENOSPC
    assert str(tmp_path / "episodes") in str(info.value)
    assert list((tmp_path / "episodes").iterdir()) == [episode_path(tmp_path, 0)]  # no temp left
    assert verify_dataset(tmp_path).ok


def test_unwritable_directory_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(DatasetWriteError, match=re.escape(str(blocker))):
        write_episode(blocker / "dataset", 0, make_arrays(2, 0), {})


def test_meta_records_arrays_and_eval_only(tmp_path):
    make_dataset(tmp_path, {0: 3})
    meta = read_meta(episode_path(tmp_path, 0))
    assert meta["eval_only"] == ["state"] and meta["length"] == 3
    assert meta["files"]["state.eval_only.npy"]["array"] == "state"
    assert meta["files"]["pixels.npy"]["shape"] == [4, 8, 8, 3]


def test_format_1_meta_records_a_sha256_per_file(tmp_path):
    make_dataset(tmp_path, {0: 3}, format_version=1)
    meta = json.loads((episode_path(tmp_path, 0) / "meta.json").read_text())
    assert meta["eval_only"] == ["state"]
    assert all(len(info["sha256"]) == 64 for info in meta["files"].values())


def test_loading_a_damaged_episode_says_how_to_find_and_recollect_them(tmp_path):
    make_dataset(tmp_path, {0: 5, 1: 5})
    truncate(episode_path(tmp_path, 1), -10)
    with pytest.raises(ValueError, match=r"not a complete episode archive .*data verify") as error:
        open_dataset(tmp_path).load_episode(1)
    assert f"sslrobot collect --out {tmp_path} --resume" in str(error.value)


def test_every_single_bit_flip_is_reported_or_harmless(tmp_path):
    """A flip anywhere in an episode file, headers and zip directory included, is named by
    ``check_episode`` (never an exception of the zip or NumPy parsers, which would crash
    ``data verify``, ``collect --resume`` and pretraining's scan instead of setting the
    episode aside); where nothing is named the arrays read back exactly."""
    make_dataset(tmp_path / "clean", {0: 2}, size=2)
    source = episode_path(tmp_path / "clean", 0)
    original = open_dataset(tmp_path / "clean").load_episode(0, include_state=True)
    pristine = source.read_bytes()
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "clean", damaged)
    target = episode_path(damaged, 0)
    num_named = 0
    for position in range(len(pristine)):
        data = bytearray(pristine)
        data[position] ^= 0x01
        target.write_bytes(bytes(data))
        problems = check_episode(target, checksums=True)  # raises nothing
        if problems:
            num_named += 1
            continue
        episode = open_dataset(damaged).load_episode(0, include_state=True, verify=True)
        for name, array in original.items():
            np.testing.assert_array_equal(episode[name], array, err_msg=f"byte {position}")
    assert num_named > len(pristine) // 2


def test_a_local_header_pointing_past_the_end_is_named_not_raised(tmp_path):
    """A member's local header whose extra-field length runs past the file made ``zipfile``
    raise EOFError, which crashed ``data verify`` (the command meant to find damage), ``data
    info`` and pretraining's scan."""
    import struct

    from sslrobot.data.archive import list_members

    make_dataset(tmp_path, {0: 2, 1: 2}, size=2)
    path = episode_path(tmp_path, 1)
    pristine = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        offsets = {info.filename: info.header_offset for info in archive.infolist()}
    assert set(offsets) == set(list_members(path))
    for name, offset in offsets.items():
        data = bytearray(pristine)
        struct.pack_into("<H", data, offset + 28, 60000)  # the extra field's length
        path.write_bytes(bytes(data))
        assert check_episode(path, checksums=True), name
        report = verify_dataset(tmp_path)
        assert not report.ok and 1 in report.corrupt, name


def test_fsync_flushes_the_new_episodes_folder_in_its_parent(tmp_path, monkeypatch):
    """With ``fsync``, the first episode also syncs the dataset directory, where the new
    ``episodes/`` folder's own entry lives (a power loss could drop the folder otherwise)."""
    synced = []
    monkeypatch.setattr(storage, "fsync_dir", lambda path: synced.append(path))
    write_episode(tmp_path, 0, make_arrays(4, 0), {}, fsync=True)
    assert tmp_path in synced and tmp_path / "episodes" in synced
    synced.clear()
    write_episode(tmp_path, 1, make_arrays(4, 1), {}, fsync=True)
    assert tmp_path not in synced and tmp_path / "episodes" in synced  # once is enough
    synced.clear()
    write_episode(tmp_path / "other", 0, make_arrays(4, 0), {}, fsync=False)
    assert synced == []


def test_the_commit_itself_never_replaces_an_episode(tmp_path, monkeypatch):
    """The up-front exists check leaves a window (a killed worker's episode committed by its
    retry); the link that commits must fail rather than replace, and with fsync the archive's
    bytes are flushed before it is linked."""
    make_dataset(tmp_path, {0: 2}, size=2)
    final = episode_path(tmp_path, 0)
    before = final.read_bytes()
    synced = []
    real_fsync = storage.os.fsync
    monkeypatch.setattr(storage.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    chunks = {"action.npy": storage._npy_chunks(np.zeros((2, 2), np.float32))}
    tmp = final.parent / (storage.temp_dir_prefix(0) + "race")
    with pytest.raises(FileExistsError):
        storage._commit_archive(tmp, final, chunks, {"episode_id": 0}, fsync=True)
    assert final.read_bytes() == before and synced  # untouched; the new file was flushed
    monkeypatch.undo()
    synced.clear()
    monkeypatch.setattr(storage.os, "fsync", lambda fd: synced.append(fd))
    storage._commit_archive(
        final.parent / "other", final.parent / "ep_000009.npz", chunks, {}, fsync=False
    )
    assert synced == []
