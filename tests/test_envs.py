"""Invariant checks that every registered sslrobot environment id must pass.

Each test is parametrized over ``sslrobot.envs.ENV_IDS``; every id's module must exist (a
missing or misspelt entry point fails, it is not skipped). Sizes are tiny (16-32 px, a few
seeds) so the file stays fast.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sslrobot.envs
from sslrobot.envs.manipulation.push import PushTask

SMALL = 16  # image side for tests that do not look at the picture


def _require_module(env_id: str) -> None:
    module = gym.spec(env_id).entry_point.split(":")[0]
    assert importlib.util.find_spec(module) is not None, f"{env_id}: no module {module}"


@pytest.fixture(params=sslrobot.envs.ENV_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    _require_module(request.param)
    return request.param


def _make(env_id: str, **kwargs) -> gym.Env:
    kwargs.setdefault("image_size", SMALL)
    return gym.make(env_id, **kwargs)


def _random_actions(env: gym.Env, num_steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(num_steps, *env.action_space.shape)).astype(np.float32)


@pytest.mark.parametrize("obs_mode", ["pixels", "state"])
def test_check_env_passes(env_id: str, obs_mode: str) -> None:
    env = _make(env_id, obs_mode=obs_mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    # Unbounded proprio/state Boxes are deliberate (as in Gymnasium's MuJoCo envs); any other
    # checker warning is a failure (not a ResourceWarning of what an earlier test left to GC).
    messages = [
        str(w.message)
        for w in caught
        if "infinity" not in str(w.message) and not issubclass(w.category, ResourceWarning)
    ]
    assert not messages, messages
    env.close()


def test_spaces_names_and_info(env_id: str) -> None:
    env = _make(env_id, image_size=24)
    base = env.unwrapped
    obs, info = env.reset(seed=0)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (len(base.action_names),), np.float32)
    assert obs["pixels"].shape == (24, 24, 3) and obs["pixels"].dtype == np.uint8
    assert obs["proprio"].shape == (len(base.proprio_names),)
    assert obs["proprio"].dtype == np.float32
    assert info["state"].shape == (len(base.state_names),) and info["state"].dtype == np.float32
    assert len(set(base.state_names)) == len(base.state_names)
    assert isinstance(info["is_success"], bool) and info["diverged"] is False
    assert any(key.startswith("reward/") for key in info)
    assert env.spec.max_episode_steps == sslrobot.envs.MAX_EPISODE_STEPS[env_id]

    state_env = _make(env_id, obs_mode="state")
    state_obs, state_info = state_env.reset(seed=0)
    assert state_env.observation_space.shape == (len(base.state_names),)
    np.testing.assert_array_equal(state_obs, state_info["state"])
    np.testing.assert_array_equal(state_obs, info["state"])  # same seed, other obs mode
    env.close()
    state_env.close()


def test_observations_are_finite_fresh_and_match_render(env_id: str) -> None:
    env = _make(env_id)
    obs, info = env.reset(seed=1)
    previous = (obs["pixels"], obs["proprio"], info["state"])
    for action in _random_actions(env, 20, seed=1):
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        assert np.all(np.isfinite(obs["proprio"])) and np.all(np.isfinite(info["state"]))
        assert np.isfinite(reward)
        current = (obs["pixels"], obs["proprio"], info["state"])
        for old, new in zip(previous, current, strict=True):
            assert not np.shares_memory(old, new)
        np.testing.assert_array_equal(env.render(), obs["pixels"])
        assert not np.shares_memory(env.render(), obs["pixels"])
        previous = current
        if terminated or truncated:
            break
    assert obs["pixels"].std() > 0  # an image, not a blank frame
    env.close()


def test_reward_terms_sum_to_reward(env_id: str) -> None:
    """Random steps, then the expert to success: the terms sum to the reward at every step,
    the success bonus's included (40 mixed steps never reached it on any task)."""
    env = _make(env_id, obs_mode="state")
    env.reset(seed=2)
    for action in _random_actions(env, 10, seed=2):
        _, reward, _, _, info = env.step(action)
        terms = [value for key, value in info.items() if key.startswith("reward/")]
        assert terms and reward == pytest.approx(sum(terms), abs=1e-9)
    for _ in range(300):
        _, reward, terminated, truncated, info = env.step(sslrobot.envs.expert_action(env))
        terms = [value for key, value in info.items() if key.startswith("reward/")]
        assert reward == pytest.approx(sum(terms), abs=1e-9)
        if terminated or truncated:
            break
    assert info["is_success"] and info["reward/success"] > 0  # the bonus was in that sum
    env.close()


_DETERMINISM_SCRIPT = """
import hashlib, json, sys
import gymnasium as gym, numpy as np
import sslrobot.envs
out = {}
for env_id in json.loads(sys.argv[1]):
    for seed in (5, 6):
        env = gym.make(env_id, image_size=24, visual_preset="train")
        obs, info = env.reset(seed=seed)
        digest = hashlib.sha256()
        rng = np.random.default_rng(seed)
        for step in range(25):
            digest.update(obs["pixels"].tobytes())
            digest.update(obs["proprio"].tobytes())
            digest.update(info["state"].tobytes())
            if step % 2:
                action = sslrobot.envs.expert_action(env)
            else:
                action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            digest.update(np.float64(reward).tobytes())
            if terminated or truncated:
                obs, info = env.reset()
        out[f"{env_id}@{seed}"] = digest.hexdigest()
        env.close()
print(json.dumps(out))
"""


def test_same_seed_gives_identical_pixels_and_states_across_processes() -> None:
    env_ids = list(sslrobot.envs.ENV_IDS)
    for env_id in env_ids:
        _require_module(env_id)
    command = [sys.executable, "-c", _DETERMINISM_SCRIPT, json.dumps(env_ids)]
    runs = [
        json.loads(
            subprocess.run(
                command, check=True, capture_output=True, text=True, env=dict(os.environ)
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    for env_id in env_ids:  # the hashes do depend on the seed (the check can fail)
        assert runs[0][f"{env_id}@5"] != runs[0][f"{env_id}@6"]


@pytest.mark.parametrize(
    ("bad_action", "problem"),
    [
        ("wrong_shape", "shape"),
        ("nan", "NaN"),
        ("inf", "inf"),
        ("text", "not numeric"),
        ("numeric_text", "not numeric"),  # NumPy would parse these as numbers
    ],
)
def test_bad_actions_raise_a_value_error_naming_the_env(
    env_id: str, bad_action: str, problem: str
) -> None:
    env = _make(env_id, obs_mode="state")
    env.reset(seed=0)
    size = env.action_space.shape[0]
    action = {
        "wrong_shape": np.zeros(size + 1, np.float32),
        "nan": np.full(size, np.nan, np.float32),
        "inf": np.array([np.inf] + [0.0] * (size - 1), np.float32),
        "text": "forward",
        "numeric_text": ["1"] * size,
    }[bad_action]
    with pytest.raises(ValueError) as error:
        env.unwrapped.step(action)
    message = str(error.value)
    assert type(env.unwrapped).__name__ in message and problem in message
    env.close()


def test_out_of_range_actions_are_clipped(env_id: str) -> None:
    clipped_env = _make(env_id, obs_mode="state")
    wild_env = _make(env_id, obs_mode="state")
    clipped_env.reset(seed=3)
    wild_env.reset(seed=3)
    for action in _random_actions(clipped_env, 10, seed=3):
        wild = action * 7.0  # mostly far outside [-1, 1]
        a = clipped_env.step(np.clip(wild, -1.0, 1.0))
        b = wild_env.unwrapped.step(wild)  # past gymnasium's checker, straight to the env
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == b[1]
    clipped_env.close()
    wild_env.close()


def test_divergence_truncates_with_a_flag_and_no_nan(
    env_id: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)  # MuJoCo logs its warning to MUJOCO_LOG.TXT in the cwd
    env = _make(env_id)
    for corrupt in ("huge_velocity", "nan_position", "huge_force"):
        env.reset(seed=4)
        data = env.unwrapped.physics.data
        placed = data.mocap_pos.copy()  # the episode's target / goal / pillars, where mocap
        if corrupt == "huge_velocity":
            data.qvel[:] = 1e9
        elif corrupt == "huge_force":  # MuJoCo resets the data itself (bad qacc), mocap too
            data.qfrc_applied[:] = 1e20
        else:
            data.qpos[:] = np.nan
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert truncated and not terminated and info["diverged"] is True
        if corrupt != "nan_position":  # restored with the robot, not left at the XML's
            np.testing.assert_array_equal(data.mocap_pos, placed)
        assert np.all(np.isfinite(obs["proprio"])) and np.all(np.isfinite(info["state"]))
        assert np.isfinite(reward)
        assert reward == pytest.approx(
            sum(value for key, value in info.items() if key.startswith("reward/"))
        )
        # The reward of the state handed back (a flat 0 outranked every ordinary step).
        restored = env.unwrapped.task.reward_terms(env.unwrapped.physics)
        assert reward == pytest.approx(sum(restored.values())) and reward != 0.0
        with pytest.raises(RuntimeError, match="reset"):
            env.unwrapped.step(np.zeros(env.action_space.shape, np.float32))
        _, info = env.reset(seed=4)
        assert info["diverged"] is False
        _, _, _, truncated, info = env.step(np.zeros(env.action_space.shape, np.float32))
        assert info["diverged"] is False and not truncated
    env.close()


def test_async_vector_env_with_spawn(env_id: str) -> None:
    # "module:id" makes gymnasium import sslrobot.envs in the spawned worker first.
    make = functools.partial(gym.make, f"sslrobot.envs:{env_id}", image_size=SMALL)
    envs = gym.vector.AsyncVectorEnv([make, make], context="spawn")
    try:
        obs, infos = envs.reset(seed=[0, 1])
        assert obs["pixels"].shape == (2, SMALL, SMALL, 3)
        assert infos["state"].shape[0] == 2
        for _ in range(3):
            obs, rewards, _, _, infos = envs.step(envs.action_space.sample())
        assert obs["proprio"].shape[0] == 2 and np.all(np.isfinite(rewards))
    finally:
        envs.close()


def test_expert_succeeds_on_a_small_seed_sweep(env_id: str) -> None:
    env = _make(env_id, obs_mode="state")
    max_steps = sslrobot.envs.MAX_EPISODE_STEPS[env_id]
    successes = 0
    for seed in range(10):
        env.reset(seed=seed)
        for _ in range(max_steps):
            action = sslrobot.envs.expert_action(env)
            assert action.dtype == np.float32 and env.action_space.contains(action)
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        successes += bool(info["is_success"])
    assert successes >= 9, f"{env_id}: expert solved {successes}/10 episodes"
    env.close()


def test_expert_action_names_what_it_cannot_act_for() -> None:
    vector = gym.make_vec("sslrobot/Reach-v0", num_envs=2, image_size=16)
    with pytest.raises(ValueError, match="takes one environment, got a vector env"):
        sslrobot.envs.expert_action(vector)
    vector.close()
    with pytest.raises(ValueError, match="takes a gymnasium environment, got str"):
        sslrobot.envs.expert_action("sslrobot/Reach-v0")
    with pytest.raises(ValueError, match="'CartPole-v1' has no scripted expert"):
        sslrobot.envs.expert_action(gym.make("CartPole-v1"))


def test_episode_truncates_at_the_step_limit_without_success_termination(env_id: str) -> None:
    env = _make(env_id, obs_mode="state", terminate_on_success=False)
    env.reset(seed=0)
    max_steps = sslrobot.envs.MAX_EPISODE_STEPS[env_id]
    num_steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(sslrobot.envs.expert_action(env))
        num_steps += 1
        assert not terminated and num_steps <= max_steps
    assert num_steps == max_steps
    env.close()


def test_visual_presets_change_pixels_but_not_the_state(env_id: str) -> None:
    presets = ("train", "heldout", "none")
    envs = {preset: _make(env_id, image_size=32, visual_preset=preset) for preset in presets}
    for seed in (0, 1):
        results = {preset: env.reset(seed=seed) for preset, env in envs.items()}
        for _ in range(5):
            action = sslrobot.envs.expert_action(envs["none"])
            results = {preset: env.step(action) for preset, env in envs.items()}
        states = [result[-1]["state"] for result in results.values()]
        for state in states[1:]:
            np.testing.assert_array_equal(states[0], state)
        pixels = [result[0]["pixels"] for result in results.values()]
        for i, first in enumerate(pixels):
            for second in pixels[i + 1 :]:
                assert not np.array_equal(first, second)
    for env in envs.values():
        env.close()


def _run_command(argv: list[str]) -> int:
    """Parse and run one ``sslrobot`` subcommand of ``sslrobot.commands.envs``."""
    import argparse

    from sslrobot.commands import envs as envs_commands

    parser = argparse.ArgumentParser(prog="sslrobot")
    envs_commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_envs_command_lists_every_id_with_its_spaces(capsys: pytest.CaptureFixture) -> None:
    assert _run_command(["envs"]) == 0
    out = capsys.readouterr().out
    for env_id in sslrobot.envs.ENV_IDS:
        assert env_id in out
    assert "observation (pixels): Dict('pixels': Box(0, 255, (64, 64, 3), uint8)" in out
    assert "action: Box(-1.0, 1.0, (2,), float32)" in out  # fingertip velocity; forward, turn
    assert "shipped encoder: --encoder pretrained:sslrobot/Push-v0" in out
    assert "pretrained:sslrobot/Navigate-v0" not in out  # only the latest versions ship one
    assert (
        "Navigate-v0  (truncated after 250 steps; out of date, kept for published results: "
        "use sslrobot/Navigate-v1)" in out
    )
    assert "Navigate-v1  (truncated after 250 steps)" in out


def test_demo_command_writes_an_expert_video(tmp_path, capsys: pytest.CaptureFixture) -> None:
    import imageio.v3 as iio

    from sslrobot.commands.envs import HOLD_FRAMES

    out = tmp_path / "videos" / "reach.mp4"
    argv = ["demo", "--env", "sslrobot/Reach-v0", "--out", str(out), "--image-size", "32"]
    assert _run_command(argv) == 0
    printed = capsys.readouterr().out  # "wrote PATH (N steps, solved)"
    _, path, steps = printed.split()[:3]
    assert "solved" in printed and "not solved" not in printed
    assert Path(path).parent == out.parent and Path(path).is_file()  # .gif without ffmpeg
    frames = iio.imread(path)
    # reset frame + one per step + the held last frames, each (32, 32, 3)
    assert frames.shape == (int(steps.lstrip("(")) + 1 + HOLD_FRAMES, 32, 32, 3)
    with pytest.raises(ValueError, match="unknown env"):
        _run_command(["demo", "--env", "sslrobot/Nope-v0", "--out", str(tmp_path / "x.mp4")])
    upper = tmp_path / "reach.GIF"  # the suffix in capitals went to ffmpeg, which refused it
    assert _run_command(["demo", "--env", "sslrobot/Reach-v0", "--out", str(upper),
                         "--image-size", "32"]) == 0  # fmt: skip
    assert iio.imread(upper).shape[1:] == (32, 32, 3)


def test_videos_fall_back_to_gif_where_ffmpeg_cannot_be_found(tmp_path, monkeypatch) -> None:
    """imageio-ffmpeg installed without a usable program crashed evaluation on its first video,
    blaming the output directory."""
    import imageio.v3 as iio

    from sslrobot.evaluation import rollouts
    from sslrobot.evaluation.rollouts import write_video

    # The caller's mistakes are named as such, not taken for ffmpeg's (which would have
    # turned every later video of the process into a GIF).
    monkeypatch.setattr(rollouts, "_mp4_failure", None)
    mixed = [np.zeros((16, 16, 3), np.uint8), np.zeros((8, 16, 3), np.uint8)]
    for bad in ([], mixed):
        with pytest.raises(ValueError, match=r"frames must be \(H, W, 3\) of one size"):
            write_video(tmp_path / "bad.mp4", bad, fps=20)
    assert rollouts._mp4_failure is None
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-such-ffmpeg"))
    frames = [np.full((16, 16, 3), 10 * i, np.uint8) for i in range(4)]
    path = write_video(tmp_path / "clip.mp4", frames, fps=20)
    assert path == tmp_path / "clip.gif" and iio.imread(path).shape == (4, 16, 16, 3)
    # Found but unusable: not executable, or a build without x264 (it fails the write, or
    # leaves an empty file for a short clip). Warned once; later videos are GIFs straight away.
    not_executable = tmp_path / "ffmpeg-noexec"
    not_executable.write_text("")
    no_x264 = tmp_path / "ffmpeg-no-x264"
    no_x264.write_text("#!/bin/sh\necho 'Unknown encoder libx264' >&2\nexit 1\n")
    no_x264.chmod(0o755)
    for exe, count in ((not_executable, 4), (no_x264, 4), (no_x264, 200)):
        monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(exe))
        monkeypatch.setattr(rollouts, "_mp4_failure", None)
        clip = [np.full((16, 16, 3), i % 250, np.uint8) for i in range(count)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = write_video(tmp_path / f"a{count}.mp4", clip, fps=20)
            second = write_video(tmp_path / f"b{count}.mp4", clip, fps=20)
        assert (first.suffix, second.suffix) == (".gif", ".gif"), exe
        assert iio.imread(second).shape == (count, 16, 16, 3)
        if exe == no_x264:
            assert [str(w.message) for w in caught if "GIFs instead" in str(w.message)], exe
            assert len([w for w in caught if "GIFs instead" in str(w.message)]) == 1
        assert not list(tmp_path.glob(".a*")) and not (tmp_path / f"a{count}.mp4").exists()


def test_demo_command_refuses_a_negative_seed_before_making_the_env(tmp_path) -> None:
    """gymnasium refused it only at reset, with a traceback instead of the CLI's one line."""
    out = tmp_path / "x.mp4"
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        _run_command(["demo", "--env", "sslrobot/Reach-v0", "--out", str(out), "--seed", "-1"])
    assert not out.exists()
    # A file that is not a video, or a directory: ffmpeg's traceback after the whole episode.
    for bad in (tmp_path / "d.txt", tmp_path):
        with pytest.raises(ValueError, match=r"--out must name a video file ending in \.mp4"):
            _run_command(["demo", "--env", "sslrobot/Reach-v0", "--out", str(bad)])
    # Under a file: "File exists", naming the video, came only after the whole episode.
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"afile is a file, not a directory"):
        _run_command(["demo", "--env", "sslrobot/Reach-v0", "--out", str(tmp_path / "afile/x.gif")])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"obs_mode": "rgb"}, "unknown obs_mode 'rgb'"),
        ({"image_size": 4}, r"image_size must be an int in \[8, 1024\], got 4"),
        ({"visual_preset": "sunny"}, "^ReachEnv: unknown visual_preset 'sunny'"),
        ({"visual_preset": ["train"]}, r"unknown visual_preset \['train'\]"),
        # A task by name, as a class, or another id's: errors naming nothing, or Push run
        # silently under Reach's id and time limit.
        ({"task": "push"}, "ReachEnv: task must be a Task instance, got 'push'"),
        ({"task": PushTask}, "ReachEnv: task must be a Task instance"),
        ({"task": PushTask()}, "ReachEnv: task must be a ReachTask, got a PushTask"),
        # A string "False" is truthy: it used to leave termination on; None turned it off.
        ({"terminate_on_success": "False"}, "terminate_on_success must be True or False"),
        ({"terminate_on_success": None}, "terminate_on_success must be True or False, got None"),
    ],
)
def test_bad_constructor_arguments_are_named(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        gym.make("sslrobot/Reach-v0", **kwargs)


def test_a_task_object_given_to_several_envs_is_not_shared() -> None:
    """gymnasium.make_vec hands every sub-env the same task object: the last reset's target
    stood in all of them (env 0 observed env 1's target). And a subclass of an id's task (v1
    Navigate's under Navigate-v0) ran with the id's spec, as another task would."""
    from sslrobot.envs.manipulation.reach import ReachTask
    from sslrobot.envs.navigation.navigate import NavigateTask, NavigateV1Task

    vec = gym.make_vec("sslrobot/Reach-v0", num_envs=2, vectorization_mode="sync",
                       task=ReachTask(), obs_mode="state")  # fmt: skip
    observations, _ = vec.reset(seed=[0, 1])
    for index, seed in enumerate((0, 1)):
        alone = gym.make("sslrobot/Reach-v0", obs_mode="state")
        np.testing.assert_array_equal(observations[index], alone.reset(seed=seed)[0])
        alone.close()
    vec.close()
    assert issubclass(NavigateV1Task, NavigateTask)
    with pytest.raises(ValueError, match="task must be a NavigateTask, got a NavigateV1Task"):
        gym.make("sslrobot/Navigate-v0", task=NavigateV1Task())


def test_the_api_refuses_what_it_would_ignore_or_misread() -> None:
    """Reset options were ignored (a per-episode look silently stayed the train one), the
    expert acted on a state no reset had set up, and an ended episode kept stepping and
    paying the success bonus."""
    env = gym.make("sslrobot/Reach-v0", image_size=16).unwrapped
    with pytest.raises(RuntimeError, match="ReachEnv: call reset\\(\\) before expert_action"):
        env.expert_action()
    with pytest.raises(ValueError, match="ReachEnv: reset takes no options"):
        env.reset(seed=0, options={"visual_preset": "heldout"})
    env.reset(seed=0, options={})  # empty options are no options
    for _ in range(200):
        *_, terminated, _, info = env.step(env.expert_action())
        if terminated:
            break
    assert terminated and info["is_success"]
    with pytest.raises(RuntimeError, match="call reset\\(\\) before step"):
        env.step(env.expert_action())
    env.reset(seed=1)
    env.step(env.expert_action())  # a new episode steps again
    env.close()


def test_missing_gl_libraries_are_named_before_any_backend_is_imported(monkeypatch) -> None:
    """Importing mujoco.egl binds PyOpenGL to EGL for the process, so a backend whose library
    is absent is skipped unimported, and the error names what is missing."""
    from sslrobot.envs.core import render

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(render, "_library_found", lambda backend: False)
    monkeypatch.setattr(render, "_import_context_class", lambda backend: pytest.fail(backend))
    with pytest.raises(RuntimeError, match="egl: libEGL not found; osmesa: libOSMesa not found"):
        render.make_gl_context(16, 16)
    with pytest.raises(OSError):  # which the command line prints as one line, not a traceback
        render.make_gl_context(16, 16)


@pytest.mark.parametrize("backend", ["bogus", "osmesa-without-its-library"])
def test_a_backend_mujoco_cannot_import_is_one_line_naming_mujoco_gl(backend, tmp_path) -> None:
    """MUJOCO_GL=bogus, or osmesa without libOSMesa, fail inside ``import mujoco`` (with a
    RuntimeError, an AttributeError from PyOpenGL): the commands printed tracebacks."""
    env = {**os.environ, "MUJOCO_GL": backend.split("-")[0], "LD_LIBRARY_PATH": str(tmp_path)}
    env.pop("PYOPENGL_PLATFORM", None)  # set by this process's EGL renderers; not a user's
    if backend.startswith("osmesa") and importlib.util.find_spec("OpenGL") is None:
        pytest.skip("PyOpenGL is not installed")
    command = [sys.executable, "-m", "sslrobot", "demo", "--env", "sslrobot/Reach-v0",
               "--out", str(tmp_path / "x.gif"), "--image-size", "16"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        pytest.skip(f"MUJOCO_GL={env['MUJOCO_GL']} works on this machine")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"MuJoCo failed to import with MUJOCO_GL='{env['MUJOCO_GL']}'" in done.stderr


def test_rendering_from_another_thread_is_refused_by_name() -> None:
    """MuJoCo's GL context stays current in the thread that first rendered; another thread's
    render failed with EGL's own EGL_BAD_ACCESS, which named neither thread nor remedy."""
    import threading

    env = gym.make("sslrobot/Reach-v0", image_size=SMALL)
    env.reset(seed=0)
    errors: list[BaseException] = []

    def step_elsewhere() -> None:
        try:
            env.reset(seed=1)
        except RuntimeError as error:
            errors.append(error)

    worker = threading.Thread(target=step_elsewhere, name="worker")
    worker.start()
    worker.join()
    assert len(errors) == 1
    assert "was made in thread 'MainThread'" in str(errors[0]) and "'worker'" in str(errors[0])
    env.reset(seed=2)  # its own thread renders on
    env.close()  # as the error advises: then another thread may render it
    frames: list[np.ndarray] = []
    worker = threading.Thread(target=lambda: frames.append(env.reset(seed=2)[0]["pixels"]))
    worker.start()
    worker.join()
    assert len(frames) == 1 and frames[0].shape == (SMALL, SMALL, 3)
    env.close()  # from another thread than the context's: freed, not EGL_BAD_ACCESS


def test_gymnasium_mujoco_envs_render_headless_without_mujoco_gl(tmp_path) -> None:
    """The README's own-environment example (``collect --env Reacher-v5``) crashed in
    mjr_makeContext on a headless machine without MUJOCO_GL: Gymnasium's renderer tries GLFW
    first, where sslrobot's own envs chose EGL by themselves."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY")
    }
    options = "collect --env Reacher-v5 --policy random --episodes 1 --image-size 16 --out"
    command = [sys.executable, "-m", "sslrobot", *options.split(), str(tmp_path / "d")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_no_headless_backend_for_gymnasium_envs_is_named(monkeypatch) -> None:
    """Without a working EGL or OSMesa, Gymnasium's renderer fell back to GLFW and failed in
    mjr_makeContext naming no cause; the choice of backend says what to install instead. With
    a display, or MUJOCO_GL set, nothing is chosen."""
    from sslrobot.envs.core import render

    def unavailable(width, height):
        raise render.RenderingUnavailableError("install Mesa's EGL or OSMesa")

    monkeypatch.setattr(render, "make_gl_context", unavailable)
    for name in ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(render, "_other_renderers_set_up", False)
    with pytest.raises(OSError, match="install Mesa's EGL or OSMesa"):
        render.choose_backend_for_other_renderers()
    monkeypatch.setattr(render, "_other_renderers_set_up", False)
    monkeypatch.setenv("DISPLAY", ":0")
    render.choose_backend_for_other_renderers()  # a desktop: GLFW's to do
    assert "MUJOCO_GL" not in os.environ


_FORK_SCRIPT = """
import os, sys
import gymnasium as gym
import sslrobot.envs
from sslrobot.envs.core.render import RenderingUnavailableError
env = gym.make("sslrobot/Reach-v0", image_size=16)
env.reset(seed=0)  # the parent renders with llvmpipe first
pid = os.fork()
if pid == 0:
    import signal
    signal.alarm(60)  # a hung child dies (SIGALRM) instead of outliving the test
    try:
        child = gym.make("sslrobot/Reach-v0", image_size=16)
        child.reset(seed=0)
    except RenderingUnavailableError as error:
        os._exit(3 if "forked from one that had rendered" in str(error) else 4)
    os._exit(5)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Mesa's llvmpipe and fork")
def test_a_process_forked_after_llvmpipe_rendered_is_refused_not_hung() -> None:
    """With LP_NUM_THREADS >= 1 a child forked after its parent rendered hung for good at its
    first frame (Gymnasium's async vector envs fork by default on Linux)."""
    probe = subprocess.run(
        [sys.executable, "-c", "from sslrobot.envs.core import render as r; "
         "c, _ = r.make_gl_context(1, 1); print(r._is_software_renderer(c))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    if probe.stdout.strip() != "True":
        pytest.skip("the GL renderer here is not Mesa's llvmpipe")
    env = {**os.environ, "LP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT], env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "3", done.stderr


def test_a_renderer_that_fails_after_its_context_frees_it(monkeypatch) -> None:
    """Only MjrContext's FatalError freed the GL context; any other failure after it (making
    it current, the scene) leaked it."""
    import mujoco

    from sslrobot.envs.core import render

    freed = []

    class FakeContext:
        def make_current(self) -> None:
            pass

        def free(self) -> None:
            freed.append(True)

    def broken_scene(*args, **kwargs):
        raise MemoryError("no room for the scene")

    monkeypatch.setattr(render, "make_gl_context", lambda w, h: (FakeContext(), "egl"))
    monkeypatch.setattr(render.mujoco, "MjvScene", broken_scene)
    model = mujoco.MjModel.from_xml_string("<mujoco><worldbody/></mujoco>")
    with pytest.raises(MemoryError):
        render.Renderer(model, 8, 8)
    assert freed == [True]
