"""Shared helpers: devices without silent fallback, atomic writes, config dicts and hashes."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from pathlib import Path

import pytest
import torch

from sslrobot.data import DatasetWriteError
from sslrobot.data.fileio import atomic_write_json as write_dataset_json
from sslrobot.models.encoder import EncoderConfig
from sslrobot.pretraining import artifacts
from sslrobot.pretraining.config import PretrainConfig
from sslrobot.utils import io
from sslrobot.utils.config import check_known_fields, config_hash, config_to_dict
from sslrobot.utils.device import (
    as_device,
    bfloat16_autocast,
    full_precision,
    has_native_bfloat16,
    preserved_cudnn_flags,
    resolve_device,
)
from sslrobot.utils.versions import package_versions


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_cpu_without_accelerators(no_accelerators):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")
    assert resolve_device("cpu", local_rank=3) == torch.device("cpu")


def test_unavailable_devices_are_errors_not_fallbacks(no_accelerators):
    with pytest.raises(ValueError, match="'cuda' requested but CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="'cuda:1' requested but CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(ValueError, match="'mps' requested but MPS is not available"):
        resolve_device("mps")
    with pytest.raises(ValueError, match="'mps:0' requested but MPS is not available"):
        resolve_device("mps:0")  # torch's name of the one MPS device: known, not available
    for name in ("tpu", "gpu", "", "cpu:7", "cpu:abc", "mps:1", "cuda:", "cuda:x"):
        with pytest.raises(ValueError, match="unknown device"):
            resolve_device(name)


def test_malformed_cuda_names_are_refused_even_with_gpus(two_gpus):
    for name in ("cuda:", "cuda:x", "cuda:-1", "cuda:\u00b2"):  # "²".isdigit(), int() fails
        with pytest.raises(ValueError, match="unknown device"):
            resolve_device(name, local_rank=1)


def test_configs_refuse_unknown_device_names_when_made():
    """A policy's config took "bogus" and "cuda:x" and failed only in training, after its
    directory was made (the pretraining config took "cuda:x")."""
    from sslrobot.policy.config import PolicyConfig
    from sslrobot.pretraining.config import PretrainConfig

    for name in ("bogus", "cuda:x", "cpu:0", 0):
        with pytest.raises(ValueError, match="unknown device"):
            PolicyConfig(
                env_id="sslrobot/Reach-v0", out="o", encoder="none", algo="rl", device=name
            )
        with pytest.raises(ValueError, match="unknown device"):
            PretrainConfig(out="o", data="d", device=name)
    assert PolicyConfig(
        env_id="sslrobot/Reach-v0", out="o", encoder="none", algo="rl", device="cuda:1"
    )


def test_cuda_index_comes_from_the_name_or_the_local_rank(two_gpus):
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"cuda:2 requested but only 2 GPUs exist"):
        resolve_device("cuda:2")
    with pytest.raises(ValueError, match="unknown device 'cuda:x'"):
        resolve_device("cuda:x")


def test_loaders_take_names_auto_included_or_devices(no_accelerators):
    assert as_device("auto") == torch.device("cpu")
    assert as_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="'cuda' requested"):
        as_device("cuda")
    with pytest.raises(ValueError, match="'cuda' requested"):  # not torch's AssertionError
        as_device(torch.device("cuda"))


def test_atomic_write_replaces_with_a_shareable_file(tmp_path):
    path = tmp_path / "new" / "a.json"
    io.atomic_write_json(path, {"b": 1, "a": [1, 2]})
    io.atomic_write_json(path, {"b": 2})
    assert path.read_text() == '{\n  "b": 2\n}\n'
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]
    assert io._umask() == mask  # read from /proc where it can be, not set to 0 and back
    # Lock files too follow the umask (they were 0644 whatever it was: a group sharing a
    # dataset under umask 002 could not take a lock another member made).
    previous = os.umask(0o002)
    try:
        with io.exclusive_lock(tmp_path / "x.lock", "busy"):
            pass
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "x.lock").stat().st_mode) == 0o664


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.txt"
    io.atomic_write_text(path, "old")

    def broken(file):
        file.write(b"half")
        raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError, match="writer crashed"):
        io.atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_write_errors_name_the_path_and_keep_errno(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match=re.escape(f"cannot write {blocker / 'x' / 'a.txt'}")):
        io.atomic_write_text(blocker / "x" / "a.txt", "text")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError, match=r"cannot write .*a\.txt: No space left") as info:
        io.atomic_write_text(tmp_path / "a.txt", "text")
    assert info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_sync_dir_flushes_the_directory_after_the_rename(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(
        io, "fsync_dir", lambda path: synced.append((path, sorted(os.listdir(path))))
    )
    io.atomic_write_text(tmp_path / "a.txt", "x")
    assert synced == []
    io.atomic_write(tmp_path / "b.txt", lambda file: file.write(b"y"), sync_dir=True)
    assert synced == [(tmp_path, ["a.txt", "b.txt"])]  # after the rename: no temp file left


def test_a_failed_directory_sync_says_the_file_was_written(tmp_path, monkeypatch):
    def broken(path):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(io, "fsync_dir", broken)
    with pytest.raises(OSError, match=r"wrote .*c\.txt but could not sync its directory") as info:
        io.atomic_write(tmp_path / "c.txt", lambda file: file.write(b"new"), sync_dir=True)
    assert info.value.errno == errno.EIO
    assert (tmp_path / "c.txt").read_bytes() == b"new"


def test_atomic_write_to_name_gives_the_writer_a_path_with_the_suffix(tmp_path):
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert tmp.parent == tmp_path and tmp.suffix == ".zip" and tmp.name.startswith(".m.zip.")
        tmp.write_bytes(b"zip")

    synced = []
    real_fsync = io.os.fsync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    with pytest.MonkeyPatch.context() as patch:  # the writer's file is flushed before the rename
        patch.setattr(io.os, "fsync", recording)
        assert io.atomic_write_to_name(tmp_path / "m.zip", write) == tmp_path / "m.zip"
    assert synced == [str(seen[0])]
    assert (tmp_path / "m.zip").read_bytes() == b"zip" and not seen[0].exists()

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise ValueError("encoder failed")

    with pytest.raises(ValueError, match="encoder failed"):
        io.atomic_write_to_name(tmp_path / "m.zip", broken)
    assert [p.name for p in tmp_path.iterdir()] == ["m.zip"]


def test_dataset_writes_add_a_remedy_and_stay_strict_json(tmp_path, monkeypatch):
    with pytest.raises(TypeError):
        write_dataset_json(tmp_path / "manifest.json", {"path": tmp_path})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(DatasetWriteError) as info:
        write_dataset_json(tmp_path / "manifest.json", {"a": 1})
    message = str(info.value)
    assert message.count(str(tmp_path / "manifest.json")) == 1
    assert "No space left on device; free some space" in message
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_config_dicts_are_json_shaped_and_unknown_fields_are_named():
    config = EncoderConfig.drqv2()
    values = config_to_dict(PretrainConfig(out="run", encoder=config))
    assert values["encoder"]["strides"] == [2, 1, 1, 1] == config.to_dict()["strides"]
    assert json.loads(json.dumps(values)) == values
    assert PretrainConfig.from_dict(values) == PretrainConfig(out="run", encoder=config)
    with pytest.raises(ValueError, match=r"unknown PretrainConfig fields \['bogus'\]; known: "):
        check_known_fields(PretrainConfig, {**values, "bogus": 1})


def test_config_hash_ignores_key_order_and_sees_values():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    path = Path("/data/x")  # not JSON: hashed through str(), as cache keys hold paths
    assert config_hash({"path": path}) == config_hash({"path": "/data/x"})
    assert len(config_hash({"path": path})) == 16
    # Sets are hashed sorted: their iteration order changes with PYTHONHASHSEED.
    assert config_hash({"s": {"fdm", "future", "recon"}}) == config_hash(
        {"s": ["fdm", "future", "recon"]}
    )


def test_pretrain_config_sections_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pretrain_config\.json"):
        artifacts.read_config_section(tmp_path, "pretrain", PretrainConfig.from_dict)
    artifacts.save_json(tmp_path / artifacts.PRETRAIN_CONFIG, {"pretrain": {"out": "x", "oops": 1}})
    for section in ("pretrain", "world_model"):
        with pytest.raises(ValueError, match=rf"pretrain_config\.json has no valid '{section}'"):
            artifacts.read_config_section(tmp_path, section, PretrainConfig.from_dict)


def test_package_versions_mark_missing_packages():
    versions = package_versions(("torch", "surely-not-a-package"), missing=None)
    assert versions["torch"] == torch.__version__ and versions["surely-not-a-package"] is None
    assert next(iter(versions)) == "python"


def test_the_console_prints_the_package_warnings_as_one_line() -> None:
    """The package's own warnings are advice (a changed setting, a count that runs nowhere):
    one ``sslrobot CMD: warning:`` line like its errors; other libraries' keep Python's form."""
    import io

    import sslrobot.cli as cli
    from sslrobot.pipeline import run as pipeline_run

    passed_on = []
    show = cli.warning_printer("run", lambda *args: passed_on.append(args))
    out = io.StringIO()
    show(UserWarning("num_demos [2, 3]: ..."), UserWarning, pipeline_run.__file__, 12, out)
    assert out.getvalue() == "sslrobot run: warning: num_demos [2, 3]: ...\n"
    assert passed_on == []
    show(UserWarning("from torch"), UserWarning, "/somewhere/torch/nn/x.py", 3, out)
    assert len(passed_on) == 1 and passed_on[0][2] == "/somewhere/torch/nn/x.py"


def test_configs_take_the_commands_spellings_and_refuse_others_by_name() -> None:
    """The README says each config takes the command's options as fields: the values the
    command line writes as text ("256,256", "0/2", an architecture's name, "off") are read
    as it reads them; a string is not taken as a sequence of widths (hidden_dims="256" was a
    head of widths 2, 5, 6)."""
    from sslrobot.data import CollectConfig
    from sslrobot.policy import PolicyConfig
    from sslrobot.pretraining import PretrainConfig

    policy = {"env_id": "sslrobot/Reach-v0", "encoder": "none", "algo": "bc", "out": "o"}
    policy["demos"] = "d"
    assert PolicyConfig(**policy, hidden_dims="256").hidden_dims == (256,)
    assert PolicyConfig(**policy, hidden_dims="64, 32").hidden_dims == (64, 32)
    for bad in ("a,b", 2.5, (2.5,), (True,), ()):
        with pytest.raises(ValueError, match="hidden_dims must be integer widths"):
            PolicyConfig(**policy, hidden_dims=bad)
    collect = {"env_id": "sslrobot/Reach-v0", "out": "o"}
    assert CollectConfig(**collect, shard="1/2").shard == (1, 2)
    mixture = {"random": 0.3, "noisy-expert": 0.7}
    made = CollectConfig(**collect, policy="mixture", mixture=mixture)
    assert made.mixture == "random=0.3,noisy-expert=0.7"
    pretrain = PretrainConfig(data="d", out="o", encoder="cnn", decoder="heatmaps", amp="off")
    assert (pretrain.encoder.arch, pretrain.decoder.heatmaps, pretrain.amp) == ("cnn", True, False)
    with pytest.raises(ValueError, match=r"encoder must be an architecture name .* got 3"):
        PretrainConfig(data="d", out="o", encoder=3)
    with pytest.raises(ValueError, match="unknown decoder 'x'"):
        PretrainConfig(data="d", out="o", decoder="x")


def test_cudnn_flags_survive_stable_baselines3_seeding():
    """SB3 seeds a GPU learner by setting cuDNN's flags for the process; the RL stage puts
    them back, so later stages of ``sslrobot run`` keep the user's (CPU: the same call)."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.utils import set_random_seed

    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark)
    try:
        cudnn.deterministic, cudnn.benchmark = False, True
        with preserved_cudnn_flags():
            set_random_seed(0, using_cuda=True)
            assert (cudnn.deterministic, cudnn.benchmark) == (True, False)
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    finally:
        cudnn.deterministic, cudnn.benchmark = before


def test_autocast_helpers_are_no_ops_without_autocast():
    """Without autocast, full precision and a disabled bfloat16 autocast change nothing (and
    do not build an autocast at all: torch before 2.5 refuses one on MPS even disabled)."""
    cpu = torch.device("cpu")
    assert not has_native_bfloat16(cpu)
    assert isinstance(bfloat16_autocast(cpu, enabled=False), contextlib.nullcontext)
    assert isinstance(full_precision(cpu), contextlib.nullcontext)
    # A device type without autocast (as MPS before torch 2.5) is one where none runs.
    assert isinstance(full_precision(torch.device("meta")), contextlib.nullcontext)
    with bfloat16_autocast(cpu, enabled=True):
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
        with full_precision(cpu):
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_a_result_path_that_is_not_a_regular_file_is_refused_unread(tmp_path):
    """A FIFO (or a device) as ``--out`` was read whole to see whether it held an earlier
    result, which blocked for ever; it is refused without reading."""
    import os

    from sslrobot.utils.artifacts import check_result_file

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="pipe exists and is not a result"):
        check_result_file(fifo, lambda record: True, "a result")
    earlier = tmp_path / "r.json"
    earlier.write_text('{"kind": 1}')
    check_result_file(earlier, lambda record: record == {"kind": 1}, "a result")  # replaced


def test_artifact_markers_are_the_files_the_commands_write():
    """``utils.artifacts`` names the marker files as literals (it must not import torch or the
    commands); a renamed file would silently stop the refusals."""
    from sslrobot.data.manifest import MANIFEST_NAME
    from sslrobot.policy.checkpoint import CONFIG_FILE
    from sslrobot.pretraining.artifacts import ENCODER_CONFIG, PRETRAIN_CONFIG
    from sslrobot.utils.artifacts import MARKERS

    assert [name for name, _ in MARKERS] == [
        MANIFEST_NAME, PRETRAIN_CONFIG, ENCODER_CONFIG, CONFIG_FILE,
    ]  # fmt: skip


def test_a_filesystem_without_flock_is_named(tmp_path, monkeypatch):
    """Lustre without its flock option and NFS without a lock service raise ENOSYS/ENOLCK:
    the command printed "[Errno 38] Function not implemented" with no path or remedy."""
    import fcntl

    def failing(code: int):
        def flock(fd, operation):
            raise OSError(code, os.strerror(code))

        return flock

    out = tmp_path / "out"
    lock = re.escape(str(out / io.OUTPUT_LOCK))
    monkeypatch.setattr(fcntl, "flock", failing(errno.ENOSYS))
    with pytest.raises(OSError, match=rf"cannot lock {lock}: .* flock") as error:
        io.output_lock(out, "sslrobot pretrain").__enter__()
    assert error.value.errno == errno.ENOSYS
    monkeypatch.setattr(fcntl, "flock", failing(errno.EIO))
    with pytest.raises(OSError, match=r"^\[Errno 5\] Input/output error$"):  # stays what it is
        io.output_lock(out, "sslrobot pretrain").__enter__()


def test_lazy_names_are_listed_for_completion_and_help() -> None:
    import sslrobot
    import sslrobot.data
    import sslrobot.pretraining

    assert "load_encoder" in dir(sslrobot)
    assert {"pretrain", "PretrainConfig"} <= set(dir(sslrobot.pretraining))
    assert "WindowDataset" in dir(sslrobot.data)


def test_configs_refuse_truthy_strings_for_switches_and_take_paths() -> None:
    """``overwrite="no"`` is truthy: a finished policy was replaced. ``collect`` returns a
    Path, which ``PretrainConfig`` refused; bad values are named when the config is made."""
    from pathlib import Path

    from sslrobot.data import CollectConfig
    from sslrobot.policy.config import PolicyConfig
    from sslrobot.pretraining import PretrainConfig

    policy = {
        "env_id": "sslrobot/Reach-v0",
        "encoder": "none",
        "algo": "bc",
        "demos": "d",
        "out": "o",
    }
    with pytest.raises(ValueError, match="overwrite must be true or false, got 'no'"):
        PolicyConfig(**policy, overwrite="no")
    with pytest.raises(ValueError, match="out must be a directory path, got None"):
        PolicyConfig(**{**policy, "out": None})
    with pytest.raises(ValueError, match="tensorboard must be true or false, got 'no'"):
        PretrainConfig(out="o", data="d", tensorboard="no")
    with pytest.raises(ValueError, match="salience_weight must be a finite number >= 0"):
        PretrainConfig(out="o", data="d", salience_weight=-1)
    config = PretrainConfig(out=Path("o"), data=[Path("d")])
    assert (config.out, config.data) == ("o", "d")
    collect = {"env_id": "sslrobot/Reach-v0", "num_episodes": 1}
    with pytest.raises(ValueError, match="resume must be true or false, got 1"):
        CollectConfig(**collect, out="o", resume=1)
    with pytest.raises(ValueError, match="out must be a directory path, got None"):
        CollectConfig(**collect, out=None)
    with pytest.raises(ValueError, match=r"noise_correlation must be in \[0, 1\), got '0.5'"):
        CollectConfig(**collect, out="o", policy="noisy-expert", noise_correlation="0.5")
