"""Evaluation of policies: seeded and deterministic, self-describing JSON, videos, aggregation."""

from __future__ import annotations

import argparse
import errno
import json
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_policy import ENV_ID, collect_demos, train_tiny_bc

from sslrobot.evaluation.evaluate import (
    RESULT_FORMAT,
    aggregate_results,
    evaluate,
    load_results,
)
from sslrobot.evaluation.rollouts import (
    FAILURE_RGB,
    RUNNING_RGB,
    SUCCESS_RGB,
    mark_outcome,
    run_episode,
    run_episodes,
)
from sslrobot.evaluation.statistics import success_interval, wilson_interval
from sslrobot.policy import PolicyConfig, train_policy

torch.set_num_threads(1)


class FakeReachEnv(gym.Env):
    """A dot that must reach a seeded goal; Dict obs (pixels, proprio), info state/is_success.

    Succeeds (and terminates) within 0.2 of the goal; TimeLimit-like truncation at 15 steps.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Dict(
            {
                "pixels": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8),
                "proprio": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._pos = np.zeros(2, np.float32)
        self._goal = np.zeros(2, np.float32)
        self._t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        pixels = np.zeros((8, 8, 3), np.uint8)
        row, col = ((self._pos + 1) / 2 * 7).round().astype(int)
        pixels[row, col] = 255
        return {"pixels": pixels, "proprio": self._pos.copy()}

    def _info(self) -> dict[str, Any]:
        state = np.concatenate([self._pos, self._goal])
        return {"state": state, "is_success": bool(np.linalg.norm(self._pos - self._goal) < 0.2)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos = np.zeros(2, np.float32)
        self._goal = self.np_random.uniform(-0.8, 0.8, 2).astype(np.float32)
        self._t = 0
        return self._obs(), self._info()

    def step(self, action):
        self._pos = np.clip(self._pos + 0.1 * np.asarray(action, np.float32), -1, 1)
        self._t += 1
        info = self._info()
        return (
            self._obs(),
            -float(np.linalg.norm(self._pos - self._goal)),
            info["is_success"],
            self._t >= 15,
            info,
        )


def greedy(env: FakeReachEnv):
    """A policy that needs the hidden goal: reaches it within 15 steps from any start."""
    return lambda obs: np.clip((env._goal - obs["proprio"]) * 10, -1, 1)


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    demos = collect_demos(root / "demos", num_episodes=4)
    return train_tiny_bc(demos, root / "policy", num_val_demos=1, val_episodes=1, num_val_checks=1)


# --- rollouts on a fake env --------------------------------------------------------------------


def test_run_episode_marks_success_and_is_deterministic():
    env = FakeReachEnv()
    first, frames = run_episode(env, greedy(env), seed=7, record=True)
    again, _ = run_episode(env, greedy(env), seed=7)
    assert first == again
    assert first.success and first.success_step == first.length < 15
    assert len(frames) == first.length + 1 and frames[0].shape == (8, 8, 3)
    idle, _ = run_episode(env, lambda obs: np.zeros(2, np.float32), seed=7)
    assert not idle.success and idle.success_step is None and idle.length == 15
    assert idle.episode_return < first.episode_return


def test_mark_outcome_colours_the_border():
    frames = [np.full((8, 8, 3), 50, np.uint8) for _ in range(4)]
    solved = mark_outcome(frames, success_step=2, fps=10)
    assert solved[0].shape == (256, 256, 3) and len(solved) == 4 + 10
    assert tuple(solved[1][0, 0]) == RUNNING_RGB and tuple(solved[2][0, 0]) == SUCCESS_RGB
    assert tuple(solved[-1][0, 0]) == SUCCESS_RGB and tuple(solved[-1][128, 128]) == (50, 50, 50)
    failed = mark_outcome(frames, success_step=None, fps=10)
    assert tuple(failed[3][0, 0]) == RUNNING_RGB and tuple(failed[-1][-1, -1]) == FAILURE_RGB


def test_run_episodes_writes_readable_videos(tmp_path):
    import imageio.v2 as imageio

    env = FakeReachEnv()
    results, videos = run_episodes(env, greedy(env), [1, 2, 3], num_videos=2, video_dir=tmp_path)
    assert [r.seed for r in results] == [1, 2, 3] and len(videos) == 2
    frames = [frame for frame in imageio.get_reader(videos[0])]  # list() asks len(): inf
    assert len(frames) == results[0].length + 1 + 10  # the last frame is held for a second
    assert frames[-1][2, 128, 1] > 150 and frames[-1][2, 128, 0] < 80  # green: a success


# --- evaluate on a trained policy --------------------------------------------------------------


def _without_timing(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "eval_wall_time_s"}


def test_evaluate_is_deterministic_for_a_seed(policy_dir, tmp_path):
    first = evaluate(policy_dir, num_episodes=3, seed=100, out_json=tmp_path / "a.json")
    second = evaluate(policy_dir, num_episodes=3, seed=100, out_json=tmp_path / "b.json")
    assert _without_timing(first) == _without_timing(second)
    other = evaluate(policy_dir, num_episodes=3, seed=200)
    assert [e["seed"] for e in other["episodes"]] == [200, 201, 202]
    assert [e["return"] for e in other["episodes"]] != [e["return"] for e in first["episodes"]]


def test_episode_i_is_reset_with_seed_plus_i(policy_dir, monkeypatch):
    """The records' seeds were checked, not the resets: the flags of seeds shared with the
    demonstrations or with validation rest on episode i starting from seed + i."""
    import gymnasium as gym

    resets = []
    reset = gym.Wrapper.reset

    def recording(self, *, seed=None, options=None):
        if seed is not None and (not resets or resets[-1] != seed):  # each wrapper passes it on
            resets.append(seed)
        return reset(self, seed=seed, options=options)

    monkeypatch.setattr(gym.Wrapper, "reset", recording)
    result = evaluate(policy_dir, num_episodes=3, seed=100)
    assert resets == [100, 101, 102]
    assert [e["seed"] for e in result["episodes"]] == [100, 101, 102]


def test_evaluate_writes_a_self_describing_record(policy_dir, tmp_path):
    out = tmp_path / "results" / "none_seed0.json"
    result = evaluate(
        policy_dir, num_episodes=2, seed=100, visual_preset="heldout", out_json=out,
        num_videos=1, checkpoint="best",
    )  # fmt: skip
    on_disk = json.loads(out.read_text())
    assert _without_timing(on_disk) == _without_timing(result)
    for key in ("success_rate", "mean_return", "encoder", "env_id", "seed", "num_demos"):
        assert key in on_disk, key
    low, high = on_disk["success_ci95"]
    assert 0.0 <= low <= on_disk["success_rate"] <= high <= 1.0
    # One training seed's interval is Wilson's of its count: never [0, 0] at 0 successes, as
    # a bootstrap of the episodes was.
    from sslrobot.evaluation.statistics import wilson_interval

    count = sum(bool(e["success"]) for e in on_disk["episodes"])
    assert [low, high] == pytest.approx(list(wilson_interval(count, 2)[1:]))
    assert high > 0.0 and low < 1.0
    assert on_disk["return_ci95"][0] <= on_disk["mean_return"] <= on_disk["return_ci95"][1]
    assert on_disk["encoder"] == "none" and on_disk["env_id"] == ENV_ID
    assert on_disk["checkpoint"] == "best" and on_disk["visual_preset"] == "heldout"
    assert on_disk["num_demos"] == 3 and on_disk["algo"] == "bc"
    from sslrobot.data import open_dataset
    from sslrobot.evaluation.evaluate import encoder_settings
    from sslrobot.policy.setup import demos_settings

    saved = json.loads((Path(policy_dir) / "policy_config.json").read_text())
    assert on_disk["encoder_settings"] == encoder_settings(saved["encoder"])
    demos = open_dataset(Path(saved["demos"]))
    assert on_disk["demos_settings"] == demos_settings(demos.manifest)
    assert set(on_disk["episodes"][0]) >= {"seed", "success", "return", "length"}
    assert len(on_disk["videos"]) == 1 and (out.parent / on_disk["videos"][0]).is_file()
    assert load_results([out])[0]["seed"] == on_disk["seed"]
    # Evaluated again to the same file: the folder holds this record's videos only (it kept
    # the earlier one's beside them, easily taken for this one's); other files stay.
    (out.parent / "none_seed0_videos" / "notes.txt").write_text("mine")
    (out.parent / "none_seed0_videos" / "my_seed1.mp4").write_bytes(b"mine too")
    again = evaluate(policy_dir, num_episodes=2, seed=200, out_json=out, num_videos=2)
    videos = sorted(p.name for p in (out.parent / "none_seed0_videos").iterdir())
    assert videos == sorted(
        [*(v.rsplit("/", 1)[-1] for v in again["videos"]), "notes.txt", "my_seed1.mp4"]
    )
    assert len(again["videos"]) == 2 and "best_seed100" not in " ".join(videos)


def test_an_evaluation_cut_short_leaves_the_videos_of_the_record_in_place(
    policy_dir, tmp_path, monkeypatch
):
    """Videos are written aside until the record naming them is: a Ctrl-C used to leave the
    earlier record naming videos overwritten with the interrupted evaluation's episodes."""
    from sslrobot.evaluation import rollouts

    out = tmp_path / "eval.json"
    first = evaluate(policy_dir, num_episodes=2, seed=100, out_json=out, num_videos=2)
    before = {v: (out.parent / v).read_bytes() for v in first["videos"]}
    calls = []
    real_run_episode = rollouts.run_episode

    def interrupted_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real_run_episode(*args, **kwargs)

    def other_video(path, frames, fps):  # another evaluation's episodes, told apart
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"another evaluation's episode")
        return Path(path)

    monkeypatch.setattr(rollouts, "run_episode", interrupted_after_one)
    monkeypatch.setattr(rollouts, "write_video", other_video)
    with pytest.raises(KeyboardInterrupt):
        evaluate(policy_dir, num_episodes=2, seed=100, out_json=out, num_videos=2)
    assert json.loads(out.read_text())["videos"] == first["videos"]
    assert {v: (out.parent / v).read_bytes() for v in first["videos"]} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "eval_videos"]
    assert sorted(p.name for p in (tmp_path / "eval_videos").iterdir()) == sorted(
        Path(v).name for v in first["videos"]
    )
    # Cut short after the episodes (in the statistics), or the record not written (a full
    # disk) once the videos were moved in: the earlier record's videos are back, and no
    # staging folder is left.
    from sslrobot.evaluation import evaluate as evaluation

    monkeypatch.setattr(rollouts, "run_episode", real_run_episode)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    for name, failure, error in (
        ("bootstrap_ci", interrupted, KeyboardInterrupt),
        ("atomic_write_json", disk_full, OSError),
    ):
        with monkeypatch.context() as patched:
            patched.setattr(evaluation, name, failure)
            with pytest.raises(error):
                evaluate(policy_dir, num_episodes=2, seed=100, out_json=out, num_videos=2)
        assert json.loads(out.read_text())["videos"] == first["videos"]
        assert {v: (out.parent / v).read_bytes() for v in first["videos"]} == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "eval_videos"]


def test_evaluate_flags_seeds_shared_with_the_demonstrations(policy_dir):
    with pytest.warns(UserWarning, match="also demonstration seeds"):
        result = evaluate(policy_dir, num_episodes=2, seed=0)
    assert result["seeds_shared_with_demos"] == [0, 1]
    assert result["seeds_shared_with_validation"] == []


def test_evaluate_flags_the_validation_seeds_that_chose_the_best_checkpoint(policy_dir):
    from sslrobot.policy.config import VALIDATION_SEED_BASE

    with pytest.warns(UserWarning, match="online validation seeds"):
        result = evaluate(policy_dir, num_episodes=2, seed=VALIDATION_SEED_BASE, checkpoint="best")
    assert result["seeds_shared_with_validation"] == [VALIDATION_SEED_BASE]  # val_episodes=1


def test_evaluate_flags_seeds_the_encoder_was_pretrained_from(tmp_path):
    """`collect --seed 0` and `evaluate --seed 0` both reset episode i with seed i: evaluating
    from the start states of the encoder's own unlabeled stream went unsaid (only
    demonstration, validation and RL-training seeds were flagged)."""
    from test_policy import write_encoder_dir

    from sslrobot.models.encoder import encoder_config_for
    from sslrobot.pretraining import artifacts

    encoder_dir = write_encoder_dir(tmp_path / "encoder", encoder_config_for("cnn", 32))
    streams = [
        {"env_id": ENV_ID, "base_seed": 1000},  # this task's stream: seeds 1000 + id
        {"env_id": "sslrobot/Push-v0", "base_seed": 1000},  # another task's: never flagged
    ]
    artifacts.save_json(
        encoder_dir / artifacts.PRETRAIN_CONFIG,
        {"train_dataset_identities": streams, "train_episode_id_lists": [[0, 2, 3], [1]]},
    )
    assert artifacts.pretraining_reset_seeds(encoder_dir, ENV_ID) == [1000, 1002, 1003]
    demos = collect_demos(tmp_path / "demos", num_episodes=3)
    policy = train_tiny_bc(demos, tmp_path / "policy", encoder=str(encoder_dir))
    with pytest.warns(UserWarning, match=r"2 evaluation seeds are reset seeds of the .* episodes "
                      r"encoder .* was pretrained on \(e\.g\. \[1002, 1003\]\)"):  # fmt: skip
        result = evaluate(policy, num_episodes=3, seed=1001)
    assert result["seeds_shared_with_pretraining"] == [1002, 1003]
    assert evaluate(policy, num_episodes=2, seed=10)["seeds_shared_with_pretraining"] == []


def test_rl_records_the_demonstration_seeds_of_its_normalisation(tmp_path):
    pytest.importorskip("stable_baselines3")
    demos = collect_demos(tmp_path / "demos", num_episodes=2)
    out = train_policy(
        PolicyConfig(
            env_id=ENV_ID, encoder="state", algo="rl", rl_algorithm="ppo", out=tmp_path / "ppo",
            steps=64, batch_size=32, demos=demos, progress=False,
        )
    )  # fmt: skip
    record = json.loads((out / "policy_config.json").read_text())
    assert record["demo_seeds"] == [0, 1] and record["num_demos"] == 0
    with pytest.warns(UserWarning, match="also normalisation-demonstration seeds"):
        result = evaluate(out, num_episodes=1, seed=1)
    assert result["seeds_shared_with_demos"] == [1]


def test_evaluate_on_another_task_warns_and_says_so(policy_dir):
    # Push's observations and actions have Reach's sizes, so the policy runs; a transfer test
    # then, or a slip of the user's, so it is named.
    with pytest.warns(UserWarning, match=f"was trained on '{ENV_ID}'; evaluating it on"):
        result = evaluate(policy_dir, env_id="sslrobot/Push-v0", num_episodes=1, seed=100)
    assert result["env_id"] == "sslrobot/Push-v0" and result["policy_env_id"] == ENV_ID


def test_evaluate_cli(policy_dir, tmp_path, capsys):
    from sslrobot.commands import policy as commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    out = tmp_path / "cli.json"
    args = parser.parse_args(
        ["evaluate", "--policy", str(policy_dir), "--episodes", "2", "--seed", "50",
         "--out", str(out), "--videos", "1"]
    )  # fmt: skip
    assert args.func(args) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert f"result: {out}" in printed and "video:" in printed
    assert "evaluate: 100%" in captured.err  # the progress bar (episodes, rate, successes)
    assert json.loads(out.read_text())["num_episodes"] == 2


def test_a_state_policy_on_another_task_names_the_state_widths():
    """A state oracle's proprio is empty on every task: the widths that differ are the
    state's, and the message used to print only the (equal) proprio ones."""
    from types import SimpleNamespace

    from sslrobot.evaluation.evaluate import _check_policy_fits

    record = {"action_dim": 2, "proprio_dim": 0, "feature_dim": 12, "env_id": "sslrobot/Reach-v0"}
    shapes = SimpleNamespace(action_dim=2, proprio_dim=0, obs_mode="state", state_dim=20)
    policy = SimpleNamespace(record=record)
    with pytest.raises(ValueError, match=r"Push-v0's \(state 12 vs 20\)"):
        _check_policy_fits(policy, shapes, "sslrobot/Push-v0", "p")


def test_evaluate_rejects_bad_arguments(policy_dir, tmp_path):
    with pytest.raises(ValueError, match="num_episodes must be an int >= 1"):
        evaluate(policy_dir, num_episodes=0)
    with pytest.raises(ValueError, match=r"num_episodes must be an int >= 1, got 1\.0"):
        evaluate(policy_dir, num_episodes=1.0)
    assert evaluate(policy_dir, num_episodes=np.int64(1))["num_episodes"] == 1  # NumPy's too
    assert evaluate(policy_dir, num_episodes=1, seed=np.int64(500))["eval_seed"] == 500
    with pytest.raises(ValueError, match="unknown env id 'sslrobot/Nope-v0'"):
        evaluate(policy_dir, env_id="sslrobot/Nope-v0", num_episodes=1)
    # A Reach policy on Navigate: same action size since the arm takes fingertip velocities,
    # but the proprio differs, and the error names both envs and sizes.
    with pytest.raises(ValueError, match=r"do not match sslrobot/Navigate-v1's \(proprio 9 vs 6\)"):
        evaluate(policy_dir, env_id="sslrobot/Navigate-v1", num_episodes=1)
    # A directory as the result file: refused before any episode runs, not after all of them.
    with pytest.raises(ValueError, match=r"out_json .* is a directory; give a file name"):
        evaluate(tmp_path / "never_loaded", num_episodes=1, out_json=tmp_path)
    # A result path under a file: refused before the episodes, not by the final write.
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match=r"x\.json is a file, not a directory"):
        evaluate(tmp_path / "never_loaded", num_episodes=1, out_json=tmp_path / "x.json" / "r")
    with pytest.raises(ValueError, match="is not an sslrobot evaluation result"):
        load_results([tmp_path / "x.json"])


def test_evaluate_never_overwrites_another_commands_file(policy_dir, tmp_path):
    """``--out DATA/manifest.json`` or the policy's own config was overwritten with the
    record (exit 0), leaving a dataset or policy no command could read; an earlier result
    is still replaced, as a rerun should."""
    config = policy_dir / "policy_config.json"
    before = config.read_bytes()
    with pytest.raises(ValueError, match=r"policy_config\.json exists and is not an sslrobot "
                       r"evaluation result .*\(a file of a policy"):  # fmt: skip
        evaluate(policy_dir, num_episodes=1, out_json=config)
    assert config.read_bytes() == before
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    with pytest.raises(ValueError, match=r"notes\.json exists and is not"):
        evaluate(policy_dir, num_episodes=1, out_json=notes)
    result = tmp_path / "result.json"
    evaluate(policy_dir, num_episodes=1, out_json=result)
    assert evaluate(policy_dir, num_episodes=2, out_json=result)["num_episodes"] == 2
    assert json.loads(result.read_text())["num_episodes"] == 2


def test_a_policy_file_given_as_the_policy_is_named_as_a_file(policy_dir):
    with pytest.raises(ValueError, match=r"final\.safetensors is a file; give the directory"):
        evaluate(policy_dir / "final.safetensors", num_episodes=1)


def test_a_negative_seed_is_refused_before_the_policy_loads(tmp_path, capsys):
    """gymnasium refused it only at the first reset, with a traceback of its own."""
    from sslrobot.cli import main

    with pytest.raises(ValueError, match=r"seed must be an int >= 0 .*, got -5"):
        evaluate(tmp_path / "not_loaded", num_episodes=1, seed=-5)
    argv = ["evaluate", "--policy", str(tmp_path), "--seed", "-5", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sslrobot evaluate: error: seed must be an int >= 0") and "\n" not in err
    # Config fields behind options of other names are named as the options typed.
    for option, value, said in [
        ("--episodes", "0", "--episodes must be an int >= 1, got 0"),
        ("--videos", "-1", "--videos must be >= 0, got -1"),
    ]:
        argv = ["evaluate", "--policy", str(tmp_path), option, value, "--out", str(tmp_path)]
        assert main(argv) == 2
        assert capsys.readouterr().err.strip() == f"sslrobot evaluate: error: {said}"


class _NeedsAMissingPackage(gym.Env):
    def __init__(self, **kwargs: Any) -> None:
        raise gym.error.DependencyNotInstalled('pygame is not installed, run `pip install "x"`')


def test_envs_gymnasium_cannot_make_are_named_with_the_cause():
    """Policies make their env with the sslrobot arguments: a missing extra dependency, or an
    env outside sslrobot/ that takes none of them, is a one-line error naming the env."""
    from sslrobot.policy.environment import make_env

    env_id = "test/NeedsAMissingPackage-v0"
    gym.register(id=env_id, entry_point=_NeedsAMissingPackage)
    try:
        with pytest.raises(ValueError, match=rf"env '{env_id}' cannot be made \(a package it "
                           r"needs is not installed\): pygame is not installed"):  # fmt: skip
            make_env(env_id, 32, "pixels")
    finally:
        del gym.registry[env_id]
    with pytest.raises(ValueError, match=r"env 'Pendulum-v1' does not take the sslrobot env ar"):
        make_env("Pendulum-v1", 32, "pixels")


# --- aggregation over training seeds -----------------------------------------------------------


def _record(encoder: str, seed: int, successes: list[int], checkpoint: str = "final") -> dict:
    return {
        "encoder": encoder,
        "env_id": ENV_ID,
        "num_demos": 25,
        "algo": "bc",
        "checkpoint": checkpoint,
        "visual_preset": "train",
        "seed": seed,
        "episodes": [{"success": bool(s), "return": float(s)} for s in successes],
    }


def test_aggregate_results_per_encoder_task_and_demos():
    records = [_record("fdm+future", s, [1, 1, 0, 1]) for s in range(3)]
    records += [_record("none", s, [0, 0, s % 2, 0]) for s in range(3)]
    records += [_record("none", s, [1, 1, 1, 1], checkpoint="best") for s in range(3)]
    rows = aggregate_results(records)
    by_key = {(r["encoder"], r["checkpoint"]): r for r in rows}
    assert len(rows) == 3
    fdm = by_key[("fdm+future", "final")]
    assert fdm["num_seeds"] == 3 and fdm["seeds"] == [0, 1, 2] and fdm["num_episodes"] == 12
    assert fdm["success"]["mean"] == pytest.approx(0.75)
    assert fdm["success"]["low"] <= 0.75 <= fdm["success"]["high"]
    none = by_key[("none", "final")]
    assert none["success"]["mean"] == pytest.approx(0.25 / 3)
    assert none["success_per_seed"] == [0.0, 0.25, 0.0]
    # 12 of 12 is not a certainty: Wilson's interval, not the bootstrap's zero width.
    low = wilson_interval(12, 12)[1]
    assert by_key[("none", "best")]["success"] == {"mean": 1.0, "low": low, "high": 1.0}
    assert {tuple(r["seeds_shared_with"]) for r in rows} == {()}
    # A seed evaluated from start states its encoder was pretrained from: said, not pooled
    # silently.
    records[1] = {**records[1], "seeds_shared_with_pretraining": [3]}
    with pytest.warns(UserWarning, match=r"share with their pretraining"):
        rows = aggregate_results(records)
    assert [r["seeds_shared_with"] for r in rows if r["encoder"] == "fdm+future"] == [
        ["pretraining"]
    ]


def test_damaged_result_records_are_named_not_a_key_error(tmp_path):
    good = {**_record("none", 0, [1, 0]), "format": RESULT_FORMAT, "num_episodes": 2}
    cases = [
        ({k: v for k, v in good.items() if k != "visual_preset"}, r"lacks \['visual_preset'\]"),
        ({**good, "episodes": []}, "holds no episodes"),
        ({**good, "episodes": [{"success": True}, {"success": False, "return": 0.0}]},
         "episode 0 lacks success or return"),
        ({**good, "num_episodes": 3}, "says num_episodes=3 but holds 2 episodes"),
        # Hand-edited values: a TypeError traceback, or a message naming no file, before.
        ({**good, "episodes": [{"success": True, "return": None}]},
         "episode 0's return must be a finite number, got None"),
        ({**good, "episodes": [{"success": "false", "return": 1.0}]},
         "episode 0's success must be true or false, got 'false'"),
        ({**good, "episodes": [{"success": 0.5, "return": 1.0}]},
         "episode 0's success must be true or false, got 0.5"),
    ]  # fmt: skip
    for record, message in cases:
        path = tmp_path / "r.json"
        path.write_text(json.dumps(record))
        with pytest.raises(ValueError, match=f"evaluation result {path}.*{message}"):
            load_results([path])
    with pytest.raises(ValueError, match=r"record 1 \('none', seed 1\) holds no episodes"):
        aggregate_results([good, {**good, "seed": 1, "episodes": []}], min_seeds=1)


def test_seeds_evaluated_from_the_same_start_states_are_resampled_together():
    outcomes = [1, 1, 0, 0, 1, 0, 0, 0, 1, 0] * 3
    records = [_record("none", s, outcomes) for s in range(3)]
    for record in records:
        for start, episode in enumerate(record["episodes"], 300000):
            episode["seed"] = start
    (row,) = aggregate_results(records)
    assert row["episodes_shared"] is True
    crossed = success_interval([outcomes] * 3, seed=0, shared_episodes=True)
    nested = success_interval([outcomes] * 3, seed=0)
    assert (row["success"]["low"], row["success"]["high"]) == crossed[1:]
    assert crossed[2] - crossed[1] > nested[2] - nested[1]  # one draw of 30, not three
    records[2]["episodes"][0]["seed"] = 1  # another start state: not one shared draw
    (row,) = aggregate_results(records)
    assert row["episodes_shared"] is False
    assert (row["success"]["low"], row["success"]["high"]) == nested[1:]


def test_aggregate_results_needs_enough_distinct_seeds():
    with pytest.raises(ValueError, match="has 2 training seeds"):
        aggregate_results([_record("none", s, [1]) for s in range(2)])
    with pytest.raises(ValueError, match="training seed 0 appears twice"):
        aggregate_results([_record("none", 0, [1]), _record("none", 0, [0])], min_seeds=1)


def test_aggregate_results_refuses_records_of_different_evaluations():
    records = [_record("none", s, [1, 0]) for s in range(3)]
    records[2]["policy_env_id"] = "sslrobot/Push-v0"  # a transfer test among native runs
    with pytest.raises(ValueError, match="differ in policy_env_id"):
        aggregate_results(records)
    records = [{**_record("none", s, [1, 0]), "eval_seed": 100 * s} for s in range(3)]
    with pytest.raises(ValueError, match="differ in eval_seed"):
        aggregate_results(records)
    # Policies trained with other settings (seeds 0-1 for 30k steps, seed 2 for 60k) are not
    # one configuration's seeds; records from before the field are not compared on it.
    from sslrobot.evaluation.evaluate import train_settings

    configs = [{"seed": s, "steps": 30_000 if s < 2 else 60_000, "out": f"p{s}"} for s in range(3)]
    assert train_settings({"train_config": configs[0]}) == train_settings(
        {"train_config": configs[1]}
    )  # the seed and the output directory may differ
    records = [
        {**_record("none", s, [1, 0]), "train_settings": train_settings({"train_config": c})}
        for s, c in enumerate(configs)
    ]
    with pytest.raises(ValueError, match="differ in train_settings"):
        aggregate_results(records)
    records[2]["_result_path"] = "runs/x/seed2/result.json"  # named, to train it again
    odd = train_settings({"train_config": configs[2]})
    with pytest.raises(ValueError, match=f"seed 2: {odd} \\(runs/x/seed2/result.json\\)"):
        aggregate_results(records)
    records[2]["train_settings"] = None  # written before it was recorded
    assert aggregate_results(records)[0]["num_seeds"] == 3
    # A seed trained on demonstrations of another look (whose path is a per-seed setting).
    records = [{**_record("none", s, [1, 0]), "policy_visual_preset": "train"} for s in range(3)]
    records[1]["policy_visual_preset"] = "heldout"
    with pytest.raises(ValueError, match="differ in policy_visual_preset"):
        aggregate_results(records)
    # RL seeds normalised on demonstrations beside seeds normalised on random rollouts (both
    # record num_demos 0, and the demos' path is a per-seed setting).
    from sslrobot.evaluation.evaluate import _normalization_kind

    kinds = [_normalization_kind({"algo": "rl", "normalization": n}) for n in (
        "demonstrations d (5 episodes)", "400 random-action steps (2 envs)",
        "400 random-action steps (2 envs, a reset every 25)")]  # fmt: skip
    # Rollouts of whole episodes (before session 34) and reset ones give other statistics.
    assert kinds == ["demonstrations", "rollouts", "rollouts, a reset every 25"]
    assert _normalization_kind({"algo": "bc", "normalization": "x"}) is None
    records = [{**_record("none", s, [1, 0]), "policy_normalization": kinds[s > 0]}
               for s in range(3)]  # fmt: skip
    with pytest.raises(ValueError, match="differ in policy_normalization"):
        aggregate_results(records)
    # Seeds under one label with encoders of another architecture (a user's `enc` directory
    # holding a cnn for two seeds and keypoints for the third) or with demonstrations of
    # another policy: pooled into one row before session 35.
    from sslrobot.evaluation.evaluate import encoder_settings
    from sslrobot.models import EncoderConfig
    from sslrobot.policy.setup import demos_settings

    cnn, keypoints = (
        encoder_settings({"kind": "pretrained", "config": EncoderConfig(readout=r).to_dict()})
        for r in ("linear", "keypoints")
    )
    assert cnn != keypoints
    records = [{**_record("enc", s, [1, 0]), "encoder_settings": cnn} for s in range(3)]
    assert aggregate_results(records)[0]["num_seeds"] == 3
    records[2]["encoder_settings"] = keypoints
    with pytest.raises(ValueError, match="differ in encoder_settings"):
        aggregate_results(records)
    manifest = {"env_id": ENV_ID, "policy": {"name": "expert"}, "base_seed": 0, "image_size": 32}
    own_seed = demos_settings({**manifest, "base_seed": 5})  # a seed's demonstrations of its own
    noisy = demos_settings({**manifest, "policy": {"name": "noisy_expert"}})
    assert own_seed == demos_settings(manifest) != noisy
    records = [{**_record("none", s, [1, 0]), "demos_settings": own_seed} for s in range(3)]
    records[1]["demos_settings"] = noisy
    with pytest.raises(ValueError, match="differ in demos_settings"):
        aggregate_results(records)


def test_an_env_without_is_success_is_refused_not_scored_as_failures():
    """Every episode counted as failed, without a word, on an env that reports no success."""
    import gymnasium as gym

    from sslrobot.evaluation.rollouts import run_episode

    env = gym.make("CartPole-v1")
    try:
        with pytest.raises(ValueError, match="CartPole-v1 reports no 'is_success'"):
            run_episode(env, lambda obs: 0, seed=0)
    finally:
        env.close()


def test_the_record_names_the_look_the_policy_trained_in(policy_dir):
    result = evaluate(policy_dir, num_episodes=1, seed=500, visual_preset="heldout")
    assert result["visual_preset"] == "heldout"
    from sslrobot.policy.checkpoint import read_policy_config

    trained_in = read_policy_config(policy_dir)["demos_visual_preset"]
    assert result["policy_visual_preset"] == trained_in


def test_evaluation_defaults_to_the_look_the_policy_trained_in(policy_dir, tmp_path, monkeypatch):
    """It defaulted to ``train``: a policy of ``none`` demonstrations was scored out of its
    look, a generalisation test, without a word. The env is checked, not only the record
    (which said ``none`` with the env made in another look)."""
    import shutil
    from pathlib import Path

    from sslrobot.policy import environment
    from sslrobot.policy.checkpoint import CONFIG_FILE

    made = []
    real_make_env = environment.make_env

    def recording(*args, **kwargs):
        made.append(kwargs.get("visual_preset"))
        return real_make_env(*args, **kwargs)

    monkeypatch.setattr(environment, "make_env", recording)

    copy = Path(shutil.copytree(policy_dir, tmp_path / "policy"))
    config = json.loads((copy / CONFIG_FILE).read_text())
    assert config["demos_visual_preset"] == "train"
    (copy / CONFIG_FILE).write_text(json.dumps({**config, "demos_visual_preset": "none"}))
    result = evaluate(copy, num_episodes=1, seed=500)
    assert result["visual_preset"] == result["policy_visual_preset"] == "none"
    assert evaluate(policy_dir, num_episodes=1, seed=500)["visual_preset"] == "train"
    assert evaluate(policy_dir, num_episodes=1, seed=500, visual_preset="heldout")
    assert made == ["none", "train", "heldout"]


def test_check_env_id_takes_a_module_id_and_names_close_ones() -> None:
    """Unknown ids get the collector's message (close ids, ours); a ``module:EnvId`` whose
    module registers the env is accepted, as gym.make accepts it."""
    from test_data_fake_env import FAKE_ENV_ID

    from sslrobot.policy.environment import check_env_id

    ours = check_env_id(FAKE_ENV_ID)
    assert "sslrobot/Reach-v0" in ours
    with pytest.raises(ValueError, match=r"'Reach-v0'\. Did you mean sslrobot/Reach-v0\?"):
        check_env_id("Reach-v0")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        check_env_id("no_such_module:Thing-v0")


def test_the_state_oracle_learns_reach_from_25_demonstrations(tmp_path) -> None:
    """The loop learns, not only runs: BC on the privileged state with the default preset's
    demonstrations and budget succeeds on most evaluation episodes (87% on 300 episodes in the
    published runs; 90% on these 20), where a misaligned action or observation would leave it
    near the untrained head's few. Seconds: no pixels reach the learner."""
    from sslrobot.data import CollectConfig, collect
    from sslrobot.policy import PolicyConfig, train_policy

    demos = collect(
        CollectConfig(env_id="sslrobot/Reach-v0", out=tmp_path / "demos", policy="expert",
                      num_episodes=25, seed=200_000, image_size=16),
        progress=False,
    )  # fmt: skip
    policy = train_policy(
        PolicyConfig(env_id="sslrobot/Reach-v0", encoder="state", algo="bc", out=tmp_path / "bc",
                     demos=demos, num_demos=25, steps=1000, batch_size=128, progress=False)
    )  # fmt: skip
    assert evaluate(policy, num_episodes=20, seed=300_000)["success_rate"] >= 0.6


def test_a_refused_evaluation_leaves_no_folder_for_its_result(policy_dir, tmp_path, monkeypatch):
    """The result's folder was made when the path was checked, and a refusal after it (an
    unavailable device) left it empty."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "new" / "deeper" / "eval.json"
    with pytest.raises(ValueError, match="CUDA is not available"):
        evaluate(policy_dir, num_episodes=1, seed=500, out_json=out, device="cuda")
    assert not (tmp_path / "new").exists()
