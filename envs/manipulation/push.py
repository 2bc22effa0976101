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
    sample_in_sector,
    tip_velocity_action,
)

#: Cube-centre-to-goal-centre distance (m, table plane) under which the cube is on the goal
#: (equal to the goal disc's radius: the cube's centre is over the disc).
SUCCESS_DISTANCE = 0.05
SUCCESS_BONUS = 1.0
#: Weight of the fingertip-to-cube term.
REACH_WEIGHT = 0.5
#: Cube and goal centres always lie in the sector in front of the shoulder at these distances
#: (m) and at most OBJECT_MAX_BEARING (rad) from the +y axis: in view, and short of the
#: distractor strip.
OBJECT_RADIUS = (0.2, 0.42)
OBJECT_MAX_BEARING = np.deg2rad(40.0)
#: The cube starts uniform over the nearer part of that sector ...
CUBE_RADIUS = (0.2, 0.3)
CUBE_MAX_BEARING = np.deg2rad(35.0)
#: ... and the goal this far (m) beyond it, at most GOAL_MAX_TURN (rad) off the direction from
#: the shoulder through the cube: the arm pushes the cube away from itself, as in Meta-World's
#: push, rather than in any direction, which 25 demonstrations cover too sparsely to clone.
GOAL_DISTANCE = (0.12, 0.18)
GOAL_MAX_TURN = np.deg2rad(30.0)
#: The fingertip starts at least this far (m) from the cube, on the cube's near side as seen
#: from the goal, so it never starts between cube and goal.
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


def _sample_cube_and_goal(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cube xy uniform over its sector, goal xy GOAL_DISTANCE beyond it within GOAL_MAX_TURN of
    straight outward; both redrawn together until the goal is in the object sector."""
    while True:
        cube_xy = sample_in_sector(rng, CUBE_RADIUS, CUBE_MAX_BEARING)
        outward = np.arctan2(cube_xy[1], cube_xy[0]) + rng.uniform(-GOAL_MAX_TURN, GOAL_MAX_TURN)
        goal_xy = cube_xy + rng.uniform(*GOAL_DISTANCE) * np.array(
            [np.cos(outward), np.sin(outward)]
        )
        distance = float(np.hypot(*goal_xy))
        bearing = float(np.arctan2(-goal_xy[0], goal_xy[1]))  # from +y, counter-clockwise
        if distance <= OBJECT_RADIUS[1] and abs(bearing) <= OBJECT_MAX_BEARING:
            return cube_xy, goal_xy


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
        "fingertip_to_cube_x",
        "fingertip_to_cube_y",
        "cube_to_goal_x",
        "cube_to_goal_y",
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
        cube_xy, goal_xy = _sample_cube_and_goal(rng)
        yaw = rng.uniform(0.0, 0.5 * np.pi)
        quaternion = (np.cos(0.5 * yaw), 0.0, 0.0, np.sin(0.5 * yaw))
        physics.set_joint_position("cube", np.array([*cube_xy, CUBE_HALF_SIZE, *quaternion]))
        self._goal_xy = goal_xy
        physics.set_mocap_position("goal", (*goal_xy, 0.0))
        behind = (cube_xy, goal_xy - cube_xy)
        self.sample_start_pose(physics, rng, cube_xy[None], MIN_START_DISTANCE, behind=behind)

    def _cube_xy(self, physics: Physics) -> np.ndarray:
        return physics.data.xpos[self._cube(physics)[0], :2].copy()

    def get_state(self, physics: Physics) -> np.ndarray:
        arm = self.arm(physics)
        body_id, address = self._cube(physics)
        rotation = physics.data.xmat[body_id]  # (9,) row-major 3x3
        yaw = np.arctan2(rotation[3], rotation[0])
        cube_velocity = physics.data.qvel[address : address + 2]  # world-frame linear x, y
        tip, cube = arm.fingertip_xy(physics), self._cube_xy(physics)
        return np.concatenate(
            [
                arm.joint_angles(physics),
                arm.joint_speeds(physics),
                tip,
                cube,
                (np.cos(4.0 * yaw), np.sin(4.0 * yaw)),
                cube_velocity,
                self._goal_xy,
                # Redundant, as in Fetch's object_rel_pos: an MLP on absolute positions learns
                # the push from 25 demonstrations far worse than with these differences.
                cube - tip,
                self._goal_xy - cube,
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
            return tip_velocity_action(cap_speed(velocity, _PUSH_SPEED[1]))
        bearing = tip_bearing + float(np.clip(turn, -_MAX_CIRCLE_STEP, _MAX_CIRCLE_STEP))
        waypoint = cube + _CIRCLE_RADIUS * np.array([np.cos(bearing), np.sin(bearing)])
        return go_to_action(arm, physics, waypoint)


class PushEnv(RobotEnv):
    """sslrobot/Push-v0: a planar three-joint arm pushes a cube onto a goal disc on a table.

    The arm of ``sslrobot/Reach-v0`` (same actions, proprio and camera; a picture:
    docs/scenes/Push.png in the source repository),
    a yellow 6 cm cube that slides on the table (0.1 kg, friction 0.5) and a flat green goal
    disc (radius 0.05 m, no collision). Only the arm's blue finger touches the cube; the links
    pass over it.

    Action: Box(-1, 1, (2,), float32), the commanded fingertip velocity in the table plane
    (operational space, as in Meta-World); out-of-range values are clipped, NaN/inf or a wrong
    shape raise ``ValueError``.

    ====  ================  ============================  ============
    idx   name              meaning                       unit at +-1
    ====  ================  ============================  ============
    0     ``fingertip_vx``  fingertip velocity along x    +-0.4 m/s
    1     ``fingertip_vy``  fingertip velocity along y    +-0.4 m/s
    ====  ================  ============================  ============

    Damped-least-squares IK turns it into the three joints' speed targets, as in Reach (see
    ``ReachEnv``). One step = 5 physics steps of 10 ms (20 steps per second).

    Observation (``obs_mode="pixels"``): Dict with ``pixels`` uint8 (image_size, image_size, 3)
    from the ``front`` camera, and ``proprio`` float32 (9,): cos and sin of the shoulder, elbow
    and wrist angles, then their angular velocities in rad/s (``env.proprio_names``).
    ``obs_mode="state"``: the privileged state below as a float32 (20,) Box.

    ``info["state"]`` float32 (20,) (``env.state_names``): shoulder, elbow, wrist angles (rad),
    their speeds (rad/s), fingertip x, y (m), cube x, y (m), cos and sin of 4 x the cube's yaw
    (the cube looks the same every quarter turn), cube velocity x, y (m/s), goal x, y (m),
    cube - fingertip x, y (m) and goal - cube x, y (m); all in the world frame. The two
    differences are redundant (as Fetch's ``object_rel_pos``): a state policy
    behaviour-cloned from 25 demonstrations learns the push much better with them.

    Reward: the sum of ``info["reward/<term>"]``::

        reach   = -0.5 * |fingertip_xy - cube_xy|                    (m)
        push    = -|cube_xy - goal_xy|                               (m)
        success = +1 while |cube_xy - goal_xy| < 0.05 m
        control = -0.01 * |joint speed targets / 1.5 rad/s|^2        (the IK's output)

    Start state: the cube's centre is drawn uniform over the table sector 0.2-0.3 m from the
    shoulder within 35 deg of straight ahead (+y), its yaw uniform in [0, pi/2); the goal's
    centre lies 0.12-0.18 m (uniform) beyond it, in a direction within 30 deg (uniform) of the
    line from the shoulder through the cube, both redrawn together until the goal is within
    0.42 m of the shoulder and 40 deg of +y (in view). The redraw favours cubes near the
    shoulder: over 20,000 starts the cube's median distance is 0.241 m, and 15% lie beyond
    0.27 m (34% would, uniformly). The arm rests with joint angles uniform
    in shoulder [-0.9, 0.9], elbow [-1.8, 1.8], wrist [-1.5, 1.5] rad, redrawn until elbow,
    wrist and fingertip lie in x in [-0.33, 0.33], y in [-0.02, 0.52] m (in view), the
    fingertip beyond y = 0.1 m, at least 0.1 m from the cube and on the cube's near side seen
    from the goal ((fingertip - cube) . (goal - cube) < 0). So the cube must travel at least
    0.07 m, pushed away from the arm's base (as in Meta-World's push); pushes in every
    direction, from anywhere, are too varied to clone from 25 demonstrations.

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

    Expert: ``sslrobot.envs.expert_action(env)``: a fingertip velocity that walks the fingertip
    around the cube until it is behind it as seen from the goal, then pushes along the cube-goal
    line, steering back onto it as the cube turns.

    Version history: v0: initial.
    """

    task_class = PushTask
