"""Minari export round trip (needs the optional extra: minari with a storage backend)."""

from __future__ import annotations

import importlib.util
import os
import warnings

import numpy as np
import pytest
from test_data_fake_env import FAKE_ENV_ID

from sslrobot.data import CollectConfig, collect, open_dataset

minari = pytest.importorskip("minari")
BACKENDS = [name for name in ("h5py", "pyarrow") if importlib.util.find_spec(name) is not None]
needs_backend = pytest.mark.skipif(
    not BACKENDS, reason="minari is installed without a storage backend (h5py or pyarrow)"
)


def test_missing_backend_names_the_extra_to_install(tmp_path, monkeypatch):
    from sslrobot.data import minari_export
    from sslrobot.data.minari_export import export_minari

    # h5py made missing (the dev extras install it, which skipped this test everywhere).
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        minari_export.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "h5py" else find_spec(name, *args),
    )

    config = CollectConfig(
        env_id=FAKE_ENV_ID,
        out=tmp_path / "d",
        num_episodes=1,
        image_size=16,
        env_kwargs={"image_size": 16},
    )
    root = collect(config, progress=False)
    with pytest.raises(ImportError, match=r"needs h5py: pip install 'minari\[hdf5\]'"):
        export_minari(root, "sslrobot/fake/random-v0", data_format="hdf5")


@needs_backend
def test_minari_round_trip_is_lossless(tmp_path, monkeypatch):
    from sslrobot.data.minari_export import export_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    config = CollectConfig(
        env_id=FAKE_ENV_ID,
        out=tmp_path / "d",
        num_episodes=3,
        image_size=16,
        env_kwargs={"image_size": 16},
    )
    root = collect(config, progress=False)
    data_format = "hdf5" if "h5py" in BACKENDS else "arrow"
    with pytest.warns(UserWarning, match="records no env spec .*serialising callables"):
        path = export_minari(
            root, "sslrobot/fake/random-v0", include_state=True, data_format=data_format
        )  # the fake env is registered with a class, which Gymnasium cannot serialise
    assert path.is_dir()
    # Minari's namespace metadata at every level of the id, as its own writer leaves it
    assert {"sslrobot", "sslrobot/fake"} <= set(minari.namespace.list_local_namespaces())

    exported = minari.load_dataset("sslrobot/fake/random-v0")
    source = open_dataset(root)
    assert exported.total_episodes == 3
    assert exported.total_steps == sum(source.meta(i)["length"] for i in source.episode_ids)
    for episode, episode_id in zip(exported.iterate_episodes(), source.episode_ids, strict=True):
        arrays = source.load_episode(episode_id, include_state=True)
        np.testing.assert_array_equal(episode.observations["pixels"], arrays["pixels"])
        np.testing.assert_array_equal(episode.observations["proprio"], arrays["proprio"])
        np.testing.assert_array_equal(episode.actions, arrays["action"])
        np.testing.assert_array_equal(episode.rewards, arrays["reward"])
        np.testing.assert_array_equal(episode.terminations, arrays["terminated"])
        np.testing.assert_array_equal(episode.truncations, arrays["truncated"])
        np.testing.assert_array_equal(episode.infos["state"], arrays["state"])
    with pytest.raises(ValueError, match="already exists"):
        export_minari(root, "sslrobot/fake/random-v0", data_format=data_format)
    # Minari JPEG-encodes only images of 32 px and more: --jpeg on 16 px frames says so.
    with pytest.warns(UserWarning, match="--jpeg does nothing for .* 16 px frames"):
        export_minari(root, "sslrobot/fake/jpeg-v0", data_format=data_format, jpeg=True)
    # A relative MINARI_DATASETS_PATH (Minari doubles it in paths it builds itself).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", "relative_minari")
    path = export_minari(root, "sslrobot/fake/relative-v0", data_format=data_format)
    assert (tmp_path / "relative_minari").resolve() in path.resolve().parents
    assert minari.load_dataset("sslrobot/fake/relative-v0").total_episodes == 3


@needs_backend
def test_an_export_recovers_the_env_it_was_collected_with(tmp_path, monkeypatch):
    """It recorded no env spec, so Minari's recover_environment() failed."""
    from sslrobot.data.minari_export import export_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    config = CollectConfig(env_id="sslrobot/Reach-v0", out=tmp_path / "d", num_episodes=2,
                           image_size=16, max_episode_steps=3)  # fmt: skip
    data_format = "hdf5" if "h5py" in BACKENDS else "arrow"
    root = collect(config, progress=False)
    with warnings.catch_warnings():  # Minari's four nags made a good export look broken
        warnings.simplefilter("error")
        export_minari(root, "sslrobot/reach/tiny-v0", data_format=data_format, author="me")
    dataset = minari.load_dataset("sslrobot/reach/tiny-v0")
    assert dataset.storage.metadata["author"] == {"me"}
    for env in (dataset.recover_environment(), dataset.recover_environment(eval_env=True)):
        assert env.spec.id == "sslrobot/Reach-v0" and env.spec.max_episode_steps == 3
        assert env.reset(seed=0)[0]["pixels"].shape == (16, 16, 3)  # the collection's kwargs
        env.close()


@needs_backend
@pytest.mark.filterwarnings("ignore:the export records no env spec")
def test_an_interrupted_export_leaves_nothing_at_the_destination(tmp_path, monkeypatch):
    """Chunks are written into a staging root and the dataset is renamed into place at the
    end: while (and if) the export stops between chunks, no dataset of fewer episodes loads
    under its id, and the next export of that id is not refused."""
    from minari.storage import get_dataset_path

    from sslrobot.data import minari_export

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setattr(minari_export, "_CHUNK_BYTES", 1)  # 3 episodes, 3 chunks
    config = CollectConfig(env_id=FAKE_ENV_ID, out=tmp_path / "d", num_episodes=3,
                           image_size=16, env_kwargs={"image_size": 16})  # fmt: skip
    root = collect(config, progress=False)
    data_format = "hdf5" if "h5py" in BACKENDS else "arrow"
    destination = get_dataset_path("sslrobot/fake/cut-v0")
    seen: list[bool] = []
    update = minari.MinariDataset.update_dataset_from_buffer

    def interrupted(self, buffers):
        seen.append(destination.exists())
        raise KeyboardInterrupt  # as a kill between chunks, but catchable here

    monkeypatch.setattr(minari.MinariDataset, "update_dataset_from_buffer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        minari_export.export_minari(root, "sslrobot/fake/cut-v0", data_format=data_format)
    assert seen == [False] and not destination.exists()
    assert not list(tmp_path.glob(".sslrobot-export-*"))  # the staging root is removed
    # A kill -9 skips that cleanup: the next export removes what killed exports of this host
    # left (their process gone), not a running export's or another host's.
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    host = socket.gethostname()
    names = {"killed": f"{gone}@{host}-abc_12", "running": f"{os.getpid()}@{host}-def34",
             "elsewhere": f"{gone}@not-{host}-gh5", "older": "x1y2z3"}  # fmt: skip
    for name in names.values():
        (tmp_path / f".sslrobot-export-{name}" / "datasets").mkdir(parents=True)
    monkeypatch.setattr(minari.MinariDataset, "update_dataset_from_buffer", update)
    with pytest.warns(UserWarning, match=r"removed 1 staging copies .*-abc_12$"):
        minari_export.export_minari(root, "sslrobot/fake/cut-v0", data_format=data_format)
    assert minari.load_dataset("sslrobot/fake/cut-v0").total_episodes == 3
    left = sorted(p.name for p in tmp_path.glob(".sslrobot-export-*"))
    assert left == sorted(f".sslrobot-export-{names[k]}" for k in ("running", "elsewhere", "older"))


@needs_backend
@pytest.mark.filterwarnings("ignore:the export records no env spec")
def test_export_refuses_a_dataset_with_a_corrupt_episode(tmp_path, monkeypatch):
    """Episodes are read through memory maps, which check nothing; the export verifies
    checksums first rather than export a bit flip as data."""
    from archive_damage import flip_member_byte

    from sslrobot.data.minari_export import export_minari
    from sslrobot.data.storage import episode_path

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    config = CollectConfig(env_id=FAKE_ENV_ID, out=tmp_path / "d", num_episodes=2,
                           image_size=16, env_kwargs={"image_size": 16})  # fmt: skip
    root = collect(config, progress=False)
    flip_member_byte(episode_path(root, 1), "pixels.npy")
    data_format = "hdf5" if "h5py" in BACKENDS else "arrow"
    with pytest.raises(ValueError, match=r"1 corrupt episode\(s\) .*member pixels.npy"):
        export_minari(root, "sslrobot/fake/flipped-v0", data_format=data_format)


def test_export_chunks_hold_a_byte_budget_of_frames_not_a_count_of_episodes(monkeypatch):
    """64 episodes a chunk held 3 GB of 256 px Navigate frames at once."""
    from types import SimpleNamespace

    from sslrobot.data import minari_export

    lengths = {0: 9, 1: 9, 2: 29, 3: 4, 4: 4}
    dataset = SimpleNamespace(episode_ids=list(lengths), meta=lambda i: {"length": lengths[i]})
    monkeypatch.setattr(minari_export, "_CHUNK_BYTES", 20 * 100)  # 20 frames of 100 bytes
    assert minari_export._chunks(dataset, 100) == [[0, 1], [2], [3, 4]]


def test_export_names_a_manifest_field_it_needs_and_lacks(tmp_path):
    from sslrobot.data import minari_export

    manifest = {"action_dim": 2, "action_low": [-1.0, -1.0], "action_high": [1.0, 1.0],
                "policy": {"name": "random"}, "base_seed": 0, "env_kwargs": {}}  # fmt: skip
    minari_export._check_export_fields(manifest, tmp_path / "manifest.json")
    with pytest.raises(ValueError, match=r"manifest.json lacks 'action_low'"):
        minari_export._check_export_fields(
            {k: v for k, v in manifest.items() if k != "action_low"}, tmp_path / "manifest.json"
        )
    with pytest.raises(ValueError, match=r"action_high must be a list of action_dim numbers"):
        minari_export._check_export_fields({**manifest, "action_high": [1.0]}, tmp_path)
