"""Behaviour tests of the arm tasks sslrobot/Reach-v0 and sslrobot/Push-v0: the documented
units, thresholds, start states, camera visibility and expert."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import sslrobot.envs
from sslrobot.envs.manipulation import arm, push, reach

REACH, PUSH = "sslrobot/Reach-v0", "sslrobot/Push-v0"
ARM_BODIES = ("base", "upper_arm", "forearm", "hand")


def _state(env: gym.Env, info: dict) -> dict[str, float]:
    return dict(zip(env.unwrapped.state_names, info["state"].tolist(), strict=True))


def _joint_speed_targets(env: gym.Env) -> np.ndarray:
    """The joint speed targets (rad/s) the IK sent to the arm's servos."""
    physics = env.unwrapped.physics
    return physics.data.ctrl[env.unwrapped.task.arm(physics).actuator_ids]


def _control_cost(env: gym.Env) -> float:
    """The documented control term: -CONTROL_COST * |joint speed targets / max speed|^2."""
    return -arm.CONTROL_COST * float(np.sum((_joint_speed_targets(env) / arm.MAX_JOINT_SPEED) ** 2))


def _colour_masks(frame: np.ndarray) -> dict[str, np.ndarray]:
    """Pixels of the red target, yellow cube and green goal, robust to the presets' lighting."""
    red, green, blue = np.moveaxis(frame.astype(np.int32), -1, 0)
    return {
        "target": (red > 2 * green + 20) & (red > 2 * blue + 20),
        "cube": (red > blue + 60) & (green > blue + 60) & (np.abs(red - green) < 70),
        "goal": (green > red + 50) & (green > blue + 50),
    }


def _hide_arm(env: gym.Env) -> None:
    """Move the arm's geoms to a geom group the camera does not draw."""
    model = env.unwrapped.physics.model
    body_ids = {mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name) for name in ARM_BODIES}
    for geom_id in range(model.ngeom):
        if model.geom_bodyid[geom_id] in body_ids:
            model.geom_group[geom_id] = 5


@pytest.mark.parametrize("env_id", [REACH, PUSH])
def test_action_is_a_fingertip_velocity_in_documented_units(env_id: str) -> None:
    """Away from the workspace's edge, the fingertip moves with action * MAX_TIP_SPEED m/s, and
    the IK never asks the servos for more than MAX_JOINT_SPEED."""
    env = gym.make(env_id, obs_mode="state", terminate_on_success=False)
    assert env.unwrapped.action_names == ("fingertip_vx", "fingertip_vy")
    physics = env.unwrapped.physics
    step_seconds = physics.model.opt.timestep * arm.NUM_SUBSTEPS
    for pose in ([0.0, 1.3, 0.0], [0.2, -1.6, 0.3]):  # elbow bent either way, tip mid-reach
        for action in ([0.5, 0.0], [-0.5, 0.0], [0.0, 0.5], [0.3, -0.4]):
            env.reset(seed=0)
            env.unwrapped.task.arm(physics).set_joint_angles(physics, np.array(pose))
            physics.forward()
            action = np.array(action, np.float32)
            for _ in range(3):  # let the servos reach speed
                _, _, _, _, info = env.step(action)
            tip = np.array(info["state"][6:8])  # fingertip_x, fingertip_y in both tasks
            _, _, _, _, info = env.step(action)
            velocity = (info["state"][6:8] - tip) / step_seconds
            np.testing.assert_allclose(velocity, action * arm.MAX_TIP_SPEED, atol=0.02)
            assert np.all(np.abs(_joint_speed_targets(env)) <= arm.MAX_JOINT_SPEED + 1e-9)
    # Near the base the IK would need more joint speed: the servos get at most the limit.
    env.reset(seed=0)
    env.unwrapped.task.arm(physics).set_joint_angles(physics, np.array([0.0, 2.4, 1.5]))
    physics.forward()
    env.step(np.array([1.0, 1.0], np.float32))
    assert np.max(np.abs(_joint_speed_targets(env))) == pytest.approx(arm.MAX_JOINT_SPEED)


def test_ik_never_drives_a_joint_at_its_limit_further() -> None:
    """A joint beyond the limit margin is taken out of the solve rather than pushed on."""
    env = gym.make(REACH, obs_mode="state")
    env.reset(seed=0)
    physics = env.unwrapped.physics
    model = env.unwrapped.task.arm(physics)
    rng = np.random.default_rng(0)
    low, high = model.joint_range[:, 0], model.joint_range[:, 1]
    for _ in range(200):
        angles = rng.uniform(0.5 * low, 0.5 * high)
        joint = rng.integers(3)
        side = rng.choice([-1.0, 1.0])
        angles[joint] = 0.97 * (high[joint] if side > 0 else low[joint])
        model.set_joint_angles(physics, angles)
        physics.forward()
        speeds = arm.fingertip_joint_speeds(model, physics, rng.uniform(-0.4, 0.4, 2))
        assert speeds[joint] * side <= 0.0
        assert np.max(np.abs(speeds)) <= arm.MAX_JOINT_SPEED + 1e-9


def test_zero_action_holds_the_fingertip_still() -> None:
    """No command, (almost) no fingertip motion: the null-space posture term moves the joints."""
    env = gym.make(PUSH, obs_mode="state", terminate_on_success=False)
    for seed in range(3):
        s = _state(env, env.reset(seed=seed)[1])
        for _ in range(10):
            _, _, _, _, info = env.step(np.zeros(2, np.float32))
        t = _state(env, info)
        moved = np.hypot(t["fingertip_x"] - s["fingertip_x"], t["fingertip_y"] - s["fingertip_y"])
        assert moved < 0.01


@pytest.mark.parametrize("env_id", [REACH, PUSH])
def test_proprio_and_state_describe_the_same_arm(env_id: str) -> None:
    env = gym.make(env_id, image_size=16)
    obs, info = env.reset(seed=1)
    physics = env.unwrapped.physics
    for _ in range(5):
        obs, _, _, _, info = env.step(env.action_space.sample())
    state = _state(env, info)
    angles = np.array([state[joint] for joint in arm.JOINTS])
    speeds = np.array([state[f"{joint}_speed"] for joint in arm.JOINTS])
    np.testing.assert_allclose(obs["proprio"][:3], np.cos(angles), atol=1e-6)
    np.testing.assert_allclose(obs["proprio"][3:6], np.sin(angles), atol=1e-6)
    np.testing.assert_allclose(obs["proprio"][6:], speeds, atol=1e-6)
    # Positions are recomputed after the step: the state's fingertip is that of the new qpos.
    fresh = mujoco.MjData(physics.model)
    fresh.qpos[:] = physics.data.qpos
    mujoco.mj_kinematics(physics.model, fresh)
    tip = fresh.site_xpos[mujoco.mj_name2id(physics.model, mujoco.mjtObj.mjOBJ_SITE, "fingertip")]
    np.testing.assert_allclose([state["fingertip_x"], state["fingertip_y"]], tip[:2], atol=1e-6)


@pytest.mark.parametrize(
    ("env_id", "differences"),
    [
        (REACH, {"fingertip_to_target": ("fingertip", "target")}),
        (PUSH, {"fingertip_to_cube": ("fingertip", "cube"), "cube_to_goal": ("cube", "goal")}),
    ],
)
def test_relative_state_entries_are_the_differences_of_positions(
    env_id: str, differences: dict[str, tuple[str, str]]
) -> None:
    env = gym.make(env_id, obs_mode="state")
    env.reset(seed=5)
    for _ in range(5):
        _, _, terminated, _, info = env.step(sslrobot.envs.expert_action(env))
        s = _state(env, info)
        for name, (start, end) in differences.items():
            for axis in ("x", "y"):
                expected = s[f"{end}_{axis}"] - s[f"{start}_{axis}"]
                assert s[f"{name}_{axis}"] == pytest.approx(expected, abs=1e-6)
        if terminated:  # an ended episode takes no more steps
            break


def test_reach_reward_and_success_follow_the_documented_formula() -> None:
    env = gym.make(REACH, obs_mode="state")
    info = env.reset(seed=2)[1]
    terminated = False
    costs = []
    while not terminated:
        _, _, terminated, truncated, info = env.step(sslrobot.envs.expert_action(env))
        state = _state(env, info)
        distance = np.hypot(
            state["fingertip_x"] - state["target_x"], state["fingertip_y"] - state["target_y"]
        )
        assert info["reward/distance"] == pytest.approx(-distance, abs=1e-6)
        assert info["is_success"] == (distance < reach.SUCCESS_DISTANCE)
        assert info["reward/success"] == (reach.SUCCESS_BONUS if info["is_success"] else 0.0)
        assert -arm.CONTROL_COST * 3 <= info["reward/control"] <= 0.0
        assert info["reward/control"] == pytest.approx(_control_cost(env), abs=1e-9)
        costs.append(info["reward/control"])
        assert terminated == info["is_success"]
        assert not truncated
    assert min(costs) < 0.0  # the arm moved, so the term was not trivially 0


def test_push_reward_and_success_follow_the_documented_formula() -> None:
    env = gym.make(PUSH, obs_mode="state")
    env.reset(seed=3)
    terminated = False
    costs = []
    while not terminated:
        _, _, terminated, truncated, info = env.step(sslrobot.envs.expert_action(env))
        s = _state(env, info)
        cube_to_goal = np.hypot(s["cube_x"] - s["goal_x"], s["cube_y"] - s["goal_y"])
        tip_to_cube = np.hypot(s["fingertip_x"] - s["cube_x"], s["fingertip_y"] - s["cube_y"])
        assert info["reward/push"] == pytest.approx(-cube_to_goal, abs=1e-6)
        assert info["reward/reach"] == pytest.approx(-push.REACH_WEIGHT * tip_to_cube, abs=1e-6)
        assert info["is_success"] == (cube_to_goal < push.SUCCESS_DISTANCE)
        assert info["reward/success"] == (push.SUCCESS_BONUS if info["is_success"] else 0.0)
        assert info["reward/control"] == pytest.approx(_control_cost(env), abs=1e-9)
        costs.append(info["reward/control"])
        assert terminated == info["is_success"] and not truncated
    assert min(costs) < 0.0


def _in_sector(xy: np.ndarray, radius: tuple[float, float], max_bearing: float) -> bool:
    distance = float(np.hypot(*xy))
    bearing = float(np.arctan2(-xy[0], xy[1]))  # from +y, counter-clockwise
    return radius[0] - 1e-9 <= distance <= radius[1] + 1e-9 and abs(bearing) <= max_bearing


def test_start_states_follow_their_rules() -> None:
    reach_env = gym.make(REACH, obs_mode="state")
    push_env = gym.make(PUSH, obs_mode="state")
    (x_lo, y_lo), (x_hi, y_hi) = arm.START_REGION
    targets, cubes = [], []
    for seed in range(30):
        s = _state(reach_env, reach_env.reset(seed=seed)[1])
        target = np.array([s["target_x"], s["target_y"]])
        tip = np.array([s["fingertip_x"], s["fingertip_y"]])
        assert _in_sector(target, reach.TARGET_RADIUS, reach.TARGET_MAX_BEARING)
        assert np.linalg.norm(tip - target) >= reach.MIN_START_DISTANCE
        targets.append(target)

        s = _state(push_env, push_env.reset(seed=seed)[1])
        cube, goal = np.array([s["cube_x"], s["cube_y"]]), np.array([s["goal_x"], s["goal_y"]])
        tip = np.array([s["fingertip_x"], s["fingertip_y"]])
        assert _in_sector(cube, push.CUBE_RADIUS, push.CUBE_MAX_BEARING)
        assert _in_sector(goal, push.OBJECT_RADIUS, push.OBJECT_MAX_BEARING)
        to_goal = goal - cube
        lo, hi = push.GOAL_DISTANCE
        assert lo - 1e-6 <= np.linalg.norm(to_goal) <= hi + 1e-6
        # The goal lies beyond the cube, within GOAL_MAX_TURN of straight outward.
        cosine = to_goal @ cube / (np.linalg.norm(to_goal) * np.linalg.norm(cube))
        assert cosine >= np.cos(push.GOAL_MAX_TURN) - 1e-6
        assert np.linalg.norm(tip - cube) >= push.MIN_START_DISTANCE
        assert (tip - cube) @ to_goal < 0.0  # the fingertip starts on the cube's near side
        physics = push_env.unwrapped.physics
        links = physics.data.xpos[push_env.unwrapped.task.arm(physics).link_body_ids, :2]
        for x, y in [*links, tip]:
            assert x_lo <= x <= x_hi and y_lo <= y <= y_hi
        assert s["cube_vx"] == 0.0 and s["cube_vy"] == 0.0
        cubes.append(cube)
    # Spread out: the cube in a sector 0.1 m deep, the target one 0.28 m deep.
    assert np.std(targets, axis=0).min() > 0.05 and np.std(cubes, axis=0).min() > 0.02


@pytest.mark.parametrize("preset", ["none", "train", "heldout"])
def test_task_objects_are_visible_at_64px_in_every_preset(preset: str) -> None:
    """With the arm hidden, nothing else (distractors, lighting, table colour) may hide the
    target, cube or goal: each keeps most of its pixels at 64x64."""
    for env_id, objects in ((REACH, ("target",)), (PUSH, ("cube", "goal"))):
        env = gym.make(env_id, image_size=64, visual_preset=preset)
        _hide_arm(env)
        for seed in range(6):
            masks = _colour_masks(env.reset(seed=seed)[0]["pixels"])
            for name in objects:
                assert masks[name].sum() >= {"target": 10, "cube": 25, "goal": 25}[name], (
                    f"{env_id} {preset} seed {seed}: {name} shows {masks[name].sum()} pixels"
                )
        env.close()


def test_distractors_stay_beyond_every_task_object() -> None:
    env = gym.make(PUSH, image_size=16, visual_preset="heldout")
    model = env.unwrapped.physics.model
    ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, g) for g in arm.DISTRACTOR_GEOMS]
    # Half-depth (along y) of each distractor: a box's second size, a cylinder's radius.
    half_depth = max(
        model.geom_size[i][1]
        if model.geom_type[i] == mujoco.mjtGeom.mjGEOM_BOX
        else model.geom_size[i][0]
        for i in ids
    )
    reach_model = gym.make(REACH, image_size=16).unwrapped.physics.model
    target_radius = reach_model.geom_size[
        mujoco.mj_name2id(reach_model, mujoco.mjtObj.mjOBJ_GEOM, "target")
    ][0]
    farthest_object = max(
        reach.TARGET_RADIUS[1] + target_radius,
        push.OBJECT_RADIUS[1] + push.CUBE_HALF_SIZE * np.sqrt(2.0),
    )
    (_, y_lo), _ = arm.DISTRACTOR_REGION
    assert y_lo - half_depth > farthest_object
    for seed in range(5):
        env.reset(seed=seed)
        shown = [model.geom_pos[i] for i in ids if model.geom_pos[i][2] > -1.0]
        assert len(shown) == 2  # heldout shows two
        for x, y, _ in shown:
            (x_lo, y_lo), (x_hi, y_hi) = arm.DISTRACTOR_REGION
            assert x_lo <= x <= x_hi and y_lo <= y <= y_hi


def test_push_expert_moves_the_cube_with_the_finger_only() -> None:
    env = gym.make(PUSH, obs_mode="state")
    model = env.unwrapped.physics.model
    cube = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "cube")
    finger = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "finger_collision")
    table = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "table")
    env.reset(seed=4)
    touched = False
    for _ in range(sslrobot.envs.MAX_EPISODE_STEPS[PUSH]):
        _, _, terminated, truncated, info = env.step(sslrobot.envs.expert_action(env))
        data = env.unwrapped.physics.data
        for contact in data.contact[: data.ncon]:
            pair = {int(contact.geom1), int(contact.geom2)}
            assert pair in ({cube, table}, {cube, finger}), f"unexpected contact {pair}"
            touched |= pair == {cube, finger}
        if terminated or truncated:
            break
    assert touched and info["is_success"]


def test_expert_recovers_from_correlated_action_noise() -> None:
    """The experts are stateless, so noisy-expert data (a later issue) still reaches the goal."""
    for env_id in (REACH, PUSH):
        env = gym.make(env_id, obs_mode="state")
        successes = 0
        for seed in range(5):
            rng = np.random.default_rng(seed)
            env.reset(seed=seed)
            noise = np.zeros(2)
            for _ in range(sslrobot.envs.MAX_EPISODE_STEPS[env_id]):
                noise = 0.9 * noise + 0.44 * rng.normal(0.0, 0.3, 2)
                action = np.clip(sslrobot.envs.expert_action(env) + noise, -1, 1)
                _, _, terminated, truncated, info = env.step(action.astype(np.float32))
                if terminated or truncated:
                    break
            successes += info["is_success"]
        assert successes >= 4, f"{env_id}: noisy expert solved {successes}/5"
