"""CLI of the data layer, and the crash test: SIGKILL mid-collection, then --resume."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest
from archive_damage import flip_member_byte
from test_data_fake_env import FAKE_ENV_ID

from sslrobot.cli import _message
from sslrobot.commands import data as data_commands
from sslrobot.data import open_dataset, verify_dataset
from sslrobot.data.storage import episode_path, list_episode_ids

TESTS_DIR = Path(__file__).resolve().parent
# The lead wires `register` into sslrobot/cli.py; this runs the same parser on its own.
CLI = (
    "import argparse, sys; from sslrobot.commands import data; "
    "p = argparse.ArgumentParser(prog='sslrobot'); data.register(p.add_subparsers()); "
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sslrobot")
    data_commands.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def collect_args(root: Path, episodes: int, *extra: str, step_sleep: float = 0.0) -> list[str]:
    kwargs = json.dumps({"image_size": 16, "step_sleep": step_sleep})
    return [
        "collect", "--env", FAKE_ENV_ID, "--episodes", str(episodes), "--out", str(root),
        "--image-size", "16", "--env-kwargs", kwargs, "--no-progress", *extra,
    ]  # fmt: skip


def test_collect_info_verify(tmp_path, capsys):
    root = tmp_path / "d"
    assert run_cli(*collect_args(root, 3, "--policy", "noisy-expert", "--noise", "0.2")) == 0
    assert f"dataset: {root}" in capsys.readouterr().out
    assert run_cli("data", "info", str(root)) == 0
    out = capsys.readouterr().out
    assert f'env_id: "{FAKE_ENV_ID}"' in out and '"noise": 0.2' in out and "episodes: 3" in out
    assert run_cli("data", "info", str(root), "--json") == 0
    assert json.loads(capsys.readouterr().out)["stats"]["episodes"] == 3
    # Asked for 30 (fewer exist: a killed run): the text lists 20 missing ids, not all.
    with pytest.warns(UserWarning, match="asked for 3 episodes earlier, this run for 2"):
        assert run_cli(*collect_args(root, 2, "--policy", "noisy-expert", "--noise", "0.2",
                                     "--resume")) == 0  # fmt: skip
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "num_episodes_requested": 30}))
    capsys.readouterr()
    assert run_cli("data", "info", str(root)) == 0
    out = capsys.readouterr().out
    assert "missing_ids: [3, 4, 5," in out and ", 22, ...] (27 in all; --json lists them)" in out
    assert "counts: " in out and "(at the manifest's last write" in out
    assert run_cli("data", "verify", str(root)) == 0
    assert "3 episodes OK, 0 corrupt" in capsys.readouterr().out
    broken = episode_path(root, 1)
    flip_member_byte(broken, "reward.npy")
    assert run_cli("data", "verify", str(root)) == 1
    out = capsys.readouterr().out
    assert f"CORRUPT episode 1: {broken}: member reward.npy is corrupt" in out
    assert "2 episodes OK" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["collect", "--env", "x", "--episodes", "1", "--out", "o", "--shard", "3/2"],
        ["collect", "--env", "x", "--episodes", "1", "--out", "o", "--env-kwargs", "[1]"],
        ["data", "verify"],
    ],
)
def test_malformed_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(*argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_a_missing_optional_extra_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    from sslrobot.cli import main
    from sslrobot.data import minari_export

    def missing(data_format: str):
        raise ImportError("Minari's 'parquet' storage needs pyarrow: pip install 'minari[parquet]'")

    monkeypatch.setattr(minari_export, "_import_minari", missing)
    argv = ["data", "export-minari", str(tmp_path), "--name", "x/y-v0"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "sslrobot data export-minari: error: Minari's 'parquet' storage needs pyarrow: "
        "pip install 'minari[parquet]'"
    )


@pytest.mark.parametrize("action", ["info", "verify"])
@pytest.mark.parametrize(("text", "kind"), [("[1, 2]", "array"), ("3", "number"), ("null", "null")])
def test_a_manifest_that_is_not_a_json_object_is_named(tmp_path, capsys, action, text, kind):
    """Valid JSON of another kind used to end in AttributeError: 'list' object has no 'get'."""
    from sslrobot.cli import main

    manifest = tmp_path / "manifest.json"
    manifest.write_text(text)
    assert main(["data", action, str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sslrobot data {action}: error: {manifest} is not an sslrobot dataset manifest: it "
        f"holds a JSON {kind}, not an object"
    )


@pytest.mark.parametrize("action", ["info", "verify"])
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"num_episodes_requested": None}, "num_episodes_requested must be a non-negative "
         "integer, got None"),
        ({"frame_shape": None}, "frame_shape must be a list of 3 positive integers (H, W, C), "
         "got None"),
        ({"action_dim": "2"}, "action_dim must be a non-negative integer, got '2'"),
    ],
)  # fmt: skip
def test_a_manifest_field_readers_need_is_named_when_wrong(tmp_path, capsys, action, edit, message):
    """`data verify` and `data info` crashed on a null num_episodes_requested (TypeError), and
    a manifest without frame_shape passed verify and failed later as a bare KeyError."""
    from test_data_storage import make_dataset

    from sslrobot.cli import main

    make_dataset(tmp_path, {0: 3})
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    assert main(["data", action, str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"sslrobot data {action}: error: {path}: {message}"
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items()
                                if k not in edit}))  # fmt: skip
    assert main(["data", action, str(tmp_path)]) == 2
    assert f"{path} lacks {next(iter(edit))!r}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name", ["bad", "sslrobot/push/random", "../outside-v0", "a b-v0", "x/y-v0"]
)
def test_a_minari_id_without_its_form_is_named_before_any_work(tmp_path, monkeypatch, capsys, name):
    """Minari's own parser took ``bad`` and failed inside with a TypeError; the id is checked
    before the dataset is read (here it does not even exist). Minari itself need not be
    installed for the check."""
    from sslrobot.cli import main
    from sslrobot.data import minari_export

    monkeypatch.setattr(minari_export, "_import_minari", lambda data_format: (None, None))
    assert main(["data", "export-minari", str(tmp_path / "nothing"), "--name", name]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"sslrobot data export-minari: error: Minari dataset id {name!r} is malformed: Minari needs"
    )
    assert "(namespace/)name-vN, e.g. sslrobot/push/random-v0" in err and "\n" not in err


def test_export_formats_offered_are_the_libraries(capsys):
    from sslrobot.data.minari_export import DATA_FORMATS

    with pytest.raises(SystemExit):
        run_cli("data", "export-minari", "d", "--name", "x/y-v0", "--data-format", "zip")
    assert f"choose from {', '.join(map(repr, DATA_FORMATS))}" in capsys.readouterr().err


def test_unknown_policy_from_the_cli(tmp_path):
    with pytest.raises(ValueError, match="unknown policy 'best'"):
        run_cli(*collect_args(tmp_path / "d", 2, "--policy", "best"))


def test_config_errors_name_the_options_typed(tmp_path, capsys):
    """``--episodes 0`` used to be refused as ``num_episodes must be ...``, a name the user
    never typed; a field recorded with its value (``num_episodes=100``) keeps its name."""
    from sslrobot.cli import in_option_names, main

    assert main(collect_args(tmp_path / "d", 0)) == 2
    err = capsys.readouterr().err.strip()
    assert err == "sslrobot collect: error: --episodes must be an integer >= 1, got 0"
    # Every option whose field has an underscore, without a list kept by hand.
    assert main([*collect_args(tmp_path / "d", 1), "--num-envs", "0"]) == 2
    assert "error: --num-envs must be an integer >= 1" in capsys.readouterr().err
    options = {"num_episodes": "--episodes", "env_id": "--env"}
    assert in_option_names("file says num_episodes=100, env_id 'x'", options) == (
        "file says num_episodes=100, --env 'x'"
    )
    assert in_option_names("my_num_episodes and --num_episodes stay", options) == (
        "my_num_episodes and --num_episodes stay"
    )
    kept = "cannot create /d/env_id for /d/env_id/r.json, {'num_episodes': 5}, x.env_id"
    assert in_option_names(kept, options) == kept  # paths, quoted keys


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigkill_mid_collection_then_resume_gives_exactly_n_episodes(tmp_path):
    root = tmp_path / "d"
    num_episodes = 24
    # Slow enough steps that the kill lands mid-collection even if this process is not
    # scheduled for a second or two (about 4 s in all).
    argv = collect_args(root, num_episodes, "--num-envs", "2", step_sleep=0.03)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, *argv],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list_episode_ids(root)) < 4:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "collector made no progress"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # the collector only; its workers must follow it
        proc.wait()
        deadline = time.monotonic() + 10
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group_alive(proc.pid), "collector workers outlived the killed collector"
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    killed_at = list_episode_ids(root)
    assert 4 <= len(killed_at) < num_episodes
    assert verify_dataset(root).ok  # whatever is visible is complete

    assert run_cli(*argv, "--resume") == 0
    dataset = open_dataset(root)
    assert dataset.episode_ids == list(range(num_episodes))
    report = verify_dataset(root)
    assert report.ok and report.missing_ids == [] and report.temp_dirs == []
    assert report.num_ok == num_episodes
    assert dataset.manifest["counts"]["episodes"] == num_episodes
    seeds = [dataset.meta(i)["seed"] for i in dataset.episode_ids]
    assert seeds == list(range(num_episodes))


def test_a_worker_whose_collector_died_before_it_started_exits():
    """A collector killed while its workers were still importing died before they asked for
    its death signal: they took the queued episodes, wrote them after the kill and never
    exited. A worker started under another parent than the collector now exits at once."""
    code = (
        "import os, sys\n"
        "from sslrobot.data.episode_runner import die_with_parent\n"
        "die_with_parent(int(sys.argv[1]))\n"
        "print('alive')\n"
    )
    for parent, alive in ((os.getpid(), True), (os.getpid() + 1_000_000, False)):
        done = subprocess.run(
            [sys.executable, "-c", code, str(parent)], capture_output=True, text=True, timeout=60
        )
        assert (done.returncode, done.stdout.strip()) == ((0, "alive") if alive else (1, ""))


@pytest.mark.parametrize(
    ("module", "function", "argv", "advice"),
    [
        (
            "data",
            "_collect",
            ["collect", "--env", "e", "--episodes", "1", "--out", "x"],
            "--resume",
        ),
        ("run", "_run", ["run", "--out", "x"], "rerun the same command to continue"),
        ("probe", "_probe", ["probe", "--encoder", "e", "--data", "d"], "rerun the command"),
    ],
)
def test_ctrl_c_advice_fits_the_command(module, function, argv, advice, monkeypatch, capsys):
    """Only collect and pretrain have --resume: the others were told to use it too."""
    import importlib

    from sslrobot.cli import main

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(
        importlib.import_module(f"sslrobot.commands.{module}"), function, interrupted
    )
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted; ") and advice in err
    assert ("--resume" in err) == (module == "data")


def test_a_ctrl_c_that_ctypes_wrapped_is_an_interruption(monkeypatch, capsys):
    """A Ctrl-C while ctypes converted an EGL call's arguments came as ``ctypes.ArgumentError:
    argument 1: KeyboardInterrupt``, a traceback with exit code 1 instead of the advice."""
    import ctypes

    from sslrobot.cli import main
    from sslrobot.commands import data

    def wrapped(args):
        raise ctypes.ArgumentError("argument 1: KeyboardInterrupt")

    monkeypatch.setattr(data, "_collect", wrapped)
    argv = ["collect", "--env", "e", "--episodes", "1", "--out", "x"]
    assert main(argv) == 130
    assert "rerun the same command with --resume" in capsys.readouterr().err

    def other(args):
        raise ctypes.ArgumentError("argument 1: TypeError: wrong type")

    monkeypatch.setattr(data, "_collect", other)
    with pytest.raises(ctypes.ArgumentError):  # a real bug stays a traceback
        main(argv)


def test_a_resume_with_another_look_names_the_option_not_the_whole_env_kwargs(tmp_path, capsys):
    """``--resume --visual-preset heldout`` on a dataset collected in ``train`` was refused
    as ``--env-kwargs: {...} vs {...}``, an option the user never passed."""
    from sslrobot.cli import main

    out = str(tmp_path / "d")
    argv = ["collect", "--env", "sslrobot/Reach-v0", "--episodes", "1", "--out", out,
            "--image-size", "16", "--max-episode-steps", "3", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--resume", "--visual-preset", "heldout"]) == 2
    err = capsys.readouterr().err
    assert "(--env-kwargs: --visual-preset 'train' in the dataset vs 'heldout' now)" in err


def test_the_one_line_error_keeps_the_notes_a_traceback_would_show():
    error = ValueError("frames are all black")
    error.add_note("the episode being written meanwhile failed too: OSError(28)")
    assert _message(error) == (
        "frames are all black; the episode being written meanwhile failed too: OSError(28)"
    )
    assert _message(OSError(2, "no such dataset")) == "no such dataset"
