"""sslrobot/Push-v0: the planar arm pushes a yellow cube onto a randomly placed green disc."""

from __future__ import annotations

import mujoco
import numpy as np

from sslrobot.envs.core.env import RobotEnv
from sslrobot.envs.core.physics import Physics
from sslrobot.envs.manipulation.arm import (
    ArmTask,
    arm_scene,
    cap_speed,
    go_to_action,
    move_fingertip_action,
    sample_in_sector,
    set_mocap_position,
)

#: Cube-centre-to-goal-centre distance (m, table plane) under which the cube is on the goal
#: (equal to the goal disc's radius: the cube's centre is over the disc).
SUCCESS_DISTANCE = 0.05
SUCCESS_BONUS = 1.0
#: Weight of the fingertip-to-cube term.
REACH_WEIGHT = 0.5
#: Cube and goal are uniform over the sector in front of the shoulder at these distances (m)
#: and at most OBJECT_MAX_BEARING (rad) from the +y axis, so that the fingertip can get
#: behind the cube from every side without folding the arm into its joint limits.
OBJECT_RADIUS = (0.22, 0.42)
OBJECT_MAX_BEARING = np.deg2rad(40.0)
#: Cube and goal start at least this far apart (m).
MIN_CUBE_GOAL_DISTANCE = 0.12
#: The fingertip starts at least this far (m) from the cube.
MIN_START_DISTANCE = 0.1
CUBE_HALF_SIZE = 0.03

# Expert: it circles the cube at _CIRCLE_RADIUS (m) to get behind it (seen from the goal),
# stepping at most _MAX_CIRCLE_STEP (rad) around per waypoint so the path never cuts through
# the cube, and pushes once the fingertip is within _ALIGN_ANGLE (rad) of the line through
# cube and goal; while pushing it steers back onto that line with _LATERAL_GAIN (1/s).
_CIRCLE_RADIUS = 0.085
_MAX_CIRCLE_STEP = np.pi / 3
_ALIGN_ANGLE = np.deg2rad(25.0)
_LATERAL_GAIN = 8.0
_PUSH_GAIN = 2.0
_PUSH_SPEED = (0.06, 0.2)


def _wrap_angle(angle: float) -> float:
    return float((angle + np.pi) % (2.0 * np.pi) - np.pi)


class PushTask(ArmTask):
    """Reward, success and expert of Push (see ``PushEnv`` for the spec)."""

    scene = arm_scene("push.xml")
    state_names = (
        "shoulder",
        "elbow",
        "wrist",
        "shoulder_speed",
        "elbow_speed",
        "wrist_speed",
        "fingertip_x",
        "fingertip_y",
        "cube_x",
        "cube_y",
        "cube_cos4yaw",
        "cube_sin4yaw",
        "cube_vx",
        "cube_vy",
        "goal_x",
        "goal_y",
    )

    def __init__(self) -> None:
        super().__init__()
        self._goal_xy = np.zeros(2)
        self._cube_ids: tuple[object, int, int] | None = None  # (model, body id, qvel address)

    def _cube(self, physics: Physics) -> tuple[int, int]:
        """(body id, qvel address) of the cube, looked up once per model."""
        if self._cube_ids is None or self._cube_ids[0] is not physics.model:
            body_id = mujoco.mj_name2id(physics.model, mujoco.mjtObj.mjOBJ_BODY, "cube")
            self._cube_ids = (physics.model, body_id, physics.joint_qvel_address("cube"))
        return self._cube_ids[1], self._cube_ids[2]

    def initialize_episode(self, physics: Physics, rng: np.random.Generator) -> None:
        while True:
            cube_xy = sample_in_sector(rng, OBJECT_RADIUS, OBJECT_MAX_BEARING)
            goal_xy = sample_in_sector(rng, OBJECT_RADIUS, OBJECT_MAX_BEARING)
            if np.linalg.norm(cube_xy - goal_xy) >= MIN_CUBE_GOAL_DISTANCE:
                break
        yaw = rng.uniform(0.0, 0.5 * np.pi)
        quaternion = (np.cos(0.5 * yaw), 0.0, 0.0, np.sin(0.5 * yaw))
        physics.set_joint_position("cube", np.array([*cube_xy, CUBE_HALF_SIZE, *quaternion]))
        self._goal_xy = goal_xy
        set_mocap_position(physics, "goal", (*goal_xy, 0.0))
        self.sample_start_pose(physics, rng, cube_xy[None], MIN_START_DISTANCE)

    def _cube_xy(self, physics: Physics) -> np.ndarray:
        return physics.data.xpos[self._cube(physics)[0], :2].copy()

    def get_state(self, physics: Physics) -> np.ndarray:
        arm = self.arm(physics)
        body_id, address = self._cube(physics)
        rotation = physics.data.xmat[body_id]  # (9,) row-major 3x3
        yaw = np.arctan2(rotation[3], rotation[0])
        cube_velocity = physics.data.qvel[address : address + 2]  # world-frame linear x, y
        return np.concatenate(
            [
                arm.joint_angles(physics),
                arm.joint_speeds(physics),
                arm.fingertip_xy(physics),
                self._cube_xy(physics),
                (np.cos(4.0 * yaw), np.sin(4.0 * yaw)),
                cube_velocity,
                self._goal_xy,
            ]
        ).astype(np.float32)

    def reward_terms(self, physics: Physics) -> dict[str, float]:
        tip = self.arm(physics).fingertip_xy(physics)
        cube = self._cube_xy(physics)
        cube_to_goal = float(np.linalg.norm(cube - self._goal_xy))
        return {
            "reach": -REACH_WEIGHT * float(np.linalg.norm(tip - cube)),
            "push": -cube_to_goal,
            "success": SUCCESS_BONUS if cube_to_goal < SUCCESS_DISTANCE else 0.0,
            "control": self.control_cost(physics),
        }

    def is_success(self, physics: Physics) -> bool:
        return float(np.linalg.norm(self._cube_xy(physics) - self._goal_xy)) < SUCCESS_DISTANCE

    def expert_action(self, physics: Physics) -> np.ndarray:
        """Get behind the cube as seen from the goal, then push it along the cube-goal line.

        Stateless, so it recovers from any state (noisy actions, a cube that turned or drifted
        off the line): the push direction is recomputed every step, and once the fingertip is
        off the line by more than the alignment angle it walks around the cube again.
        """
        arm = self.arm(physics)
        tip, cube = arm.fingertip_xy(physics), self._cube_xy(physics)
        to_goal = self._goal_xy - cube
        cube_to_goal = float(np.linalg.norm(to_goal))
        push_direction = to_goal / max(cube_to_goal, 1e-6)
        offset = tip - cube
        tip_bearing = np.arctan2(offset[1], offset[0])
        behind_bearing = np.arctan2(-push_direction[1], -push_direction[0])
        turn = _wrap_angle(behind_bearing - tip_bearing)
        if abs(turn) < _ALIGN_ANGLE and np.linalg.norm(offset) < _CIRCLE_RADIUS + 0.02:
            normal = np.array([-push_direction[1], push_direction[0]])
            lateral = float(offset @ normal)
            speed = float(np.clip(_PUSH_GAIN * cube_to_goal, *_PUSH_SPEED))
            velocity = speed * push_direction - _LATERAL_GAIN * lateral * normal
            return move_fingertip_action(arm, physics, cap_speed(velocity, _PUSH_SPEED[1]))
        bearing = tip_bearing + float(np.clip(turn, -_MAX_CIRCLE_STEP, _MAX_CIRCLE_STEP))
        waypoint = cube + _CIRCLE_RADIUS * np.array([np.cos(bearing), np.sin(bearing)])
        return go_to_action(arm, physics, waypoint)


class PushEnv(RobotEnv):
    """sslrobot/Push-v0: a planar three-joint arm pushes a cube onto a goal disc on a table.

    The arm of ``sslrobot/Reach-v0`` (same actions, proprio and camera; docs/scenes/Push.png),
    a yellow 6 cm cube that slides on the table (0.1 kg, friction 0.5) and a flat green goal
    disc (radius 0.05 m, no collision). Only the arm's blue finger touches the cube; the links
    pass over it.

    Action: Box(-1, 1, (3,), float32), joint velocity targets of velocity servos; out-of-range
    values are clipped, NaN/inf or a wrong shape raise ``ValueError``.

    ====  ==================  ==========================  ============
    idx   name                meaning                     unit at +-1
    ====  ==================  ==========================  ============
    0     ``shoulder_speed``  shoulder angular velocity   +-1.5 rad/s
    1     ``elbow_speed``     elbow angular velocity      +-1.5 rad/s
    2     ``wrist_speed``     wrist angular velocity      +-1.5 rad/s
    ====  ==================  ==========================  ============

    Positive speeds turn counter-clockwise seen from above. One step = 5 physics steps of
    10 ms (20 steps per second).

    Observation (``obs_mode="pixels"``): Dict with ``pixels`` uint8 (image_size, image_size, 3)
    from the ``front`` camera, and ``proprio`` float32 (9,): cos and sin of the shoulder, elbow
    and wrist angles, then their angular velocities in rad/s (``env.proprio_names``).
    ``obs_mode="state"``: the privileged state below as a float32 (16,) Box.

    ``info["state"]`` float32 (16,) (``env.state_names``): shoulder, elbow, wrist angles (rad),
    their speeds (rad/s), fingertip x, y (m), cube x, y (m), cos and sin of 4 x the cube's yaw
    (the cube looks the same every quarter turn), cube velocity x, y (m/s), goal x, y (m); all
    positions in the world frame.

    Reward: the sum of ``info["reward/<term>"]``::

        reach   = -0.5 * |fingertip_xy - cube_xy|                    (m)
        push    = -|cube_xy - goal_xy|                               (m)
        success = +1 while |cube_xy - goal_xy| < 0.05 m
        control = -0.01 * |action|^2

    Start state: cube and goal centres uniform over the table sector 0.22-0.42 m from the
    shoulder within 40 deg of straight ahead (+y), at least 0.12 m apart (redrawn otherwise);
    cube yaw uniform in [0, pi/2); the arm rests with joint angles uniform in shoulder
    [-0.9, 0.9], elbow [-1.8, 1.8], wrist [-1.5, 1.5] rad, redrawn until elbow, wrist and
    fingertip lie in x in [-0.33, 0.33], y in [-0.02, 0.52] m (in view), the fingertip beyond
    y = 0.1 m and at least 0.1 m from the cube.

    Episode end: terminated when the cube's centre is within 0.05 m of the goal's centre
    (``info["is_success"]``) if ``terminate_on_success``; truncated after 150 steps
    (``max_episode_steps``) or on a physics divergence (``info["diverged"] = True``).

    Args:
        image_size: side of the square ``pixels`` observation (default 64).
        obs_mode: ``"pixels"`` (default) or ``"state"``.
        visual_preset: ``"train"`` (default; table colour, light, camera jitter, distractors
            vary per episode), ``"heldout"`` (values never used in training) or ``"none"``.
        terminate_on_success: end the episode on success (default True).
        render_mode: ``"rgb_array"`` (default; ``render()`` is the observation camera) or None.

    Expert: ``sslrobot.envs.expert_action(env)``: walks the fingertip around the cube until it
    is behind it as seen from the goal, then pushes along the cube-goal line, steering back onto
    it as the cube turns (damped-least-squares IK).

    Version history: v0: initial.
    """

    def __init__(
        self,
        image_size: int = 64,
        obs_mode: str = "pixels",
        visual_preset: str = "train",
        terminate_on_success: bool = True,
        render_mode: str | None = "rgb_array",
    ) -> None:
        super().__init__(
            PushTask(),
            image_size=image_size,
            obs_mode=obs_mode,
            visual_preset=visual_preset,
            terminate_on_success=terminate_on_success,
            render_mode=render_mode,
        )
