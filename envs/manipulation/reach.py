"""sslrobot/Reach-v0: the planar arm touches a randomly placed red target with its fingertip."""

from __future__ import annotations

import numpy as np

from sslrobot.envs.core.env import RobotEnv
from sslrobot.envs.core.physics import Physics
from sslrobot.envs.manipulation.arm import (
    ArmTask,
    arm_scene,
    go_to_action,
    sample_in_sector,
)

#: Fingertip-to-target distance (m, in the table plane) under which the target is reached.
SUCCESS_DISTANCE = 0.045
#: Bonus added to the reward while the target is reached.
SUCCESS_BONUS = 1.0
#: The target is uniform over the sector in front of the shoulder at these distances (m) ...
TARGET_RADIUS = (0.18, 0.46)
#: ... and at most this angle (rad) from the +y axis: reachable without folding the arm
#: into its joint limits, and in view.
TARGET_MAX_BEARING = np.deg2rad(45.0)
#: The arm's fingertip starts at least this far (m) from the target.
MIN_START_DISTANCE = 0.1
_TARGET_HEIGHT = 0.03


class ReachTask(ArmTask):
    """Reward, success and expert of Reach (see ``ReachEnv`` for the spec)."""

    scene = arm_scene("reach.xml")
    state_names = (
        "shoulder",
        "elbow",
        "wrist",
        "shoulder_speed",
        "elbow_speed",
        "wrist_speed",
        "fingertip_x",
        "fingertip_y",
        "target_x",
        "target_y",
        "fingertip_to_target_x",
        "fingertip_to_target_y",
    )

    def __init__(self) -> None:
        super().__init__()
        self._target_xy = np.zeros(2)

    def initialize_episode(self, physics: Physics, rng: np.random.Generator) -> None:
        self._target_xy = sample_in_sector(rng, TARGET_RADIUS, TARGET_MAX_BEARING)
        physics.set_mocap_position("target", (*self._target_xy, _TARGET_HEIGHT))
        self.sample_start_pose(physics, rng, self._target_xy[None], MIN_START_DISTANCE)

    def _distance(self, physics: Physics) -> float:
        return float(np.linalg.norm(self.arm(physics).fingertip_xy(physics) - self._target_xy))

    def get_state(self, physics: Physics) -> np.ndarray:
        arm = self.arm(physics)
        tip = arm.fingertip_xy(physics)
        return np.concatenate(
            [
                arm.joint_angles(physics),
                arm.joint_speeds(physics),
                tip,
                self._target_xy,
                self._target_xy - tip,  # redundant, as in Gymnasium's Reacher: eases learning
            ]
        ).astype(np.float32)

    def reward_terms(self, physics: Physics) -> dict[str, float]:
        distance = self._distance(physics)
        return {
            "distance": -distance,
            "success": SUCCESS_BONUS if distance < SUCCESS_DISTANCE else 0.0,
            "control": self.control_cost(physics),
        }

    def is_success(self, physics: Physics) -> bool:
        return self._distance(physics) < SUCCESS_DISTANCE

    def expert_action(self, physics: Physics) -> np.ndarray:
        """Straight to the target by IK; the speed falls off near it so the tip does not
        overshoot."""
        return go_to_action(self.arm(physics), physics, self._target_xy)


class ReachEnv(RobotEnv):
    """sslrobot/Reach-v0: a planar three-joint arm reaches a red target on a table.

    Seen from the fixed ``front`` camera above and in front of the table (a picture:
    docs/scenes/Reach.png in the source repository).
    The arm's shoulder is at the origin; links of 0.25, 0.22 and 0.08 m turn about vertical
    hinges, so the fingertip moves in the plane z = 0.03 m and reaches 0.55 m.

    Action: Box(-1, 1, (2,), float32), the commanded fingertip velocity in the table plane
    (operational space, as in Meta-World); out-of-range values are clipped, NaN/inf or a wrong
    shape raise ``ValueError``.

    ====  ================  ============================  ============
    idx   name              meaning                       unit at +-1
    ====  ================  ============================  ============
    0     ``fingertip_vx``  fingertip velocity along x    +-0.4 m/s
    1     ``fingertip_vy``  fingertip velocity along y    +-0.4 m/s
    ====  ================  ============================  ============

    Each step, damped-least-squares IK (``arm.fingertip_joint_speeds``) turns the command into
    speed targets of the shoulder, elbow and wrist velocity servos, with a null-space pull
    toward a rest posture and away from the joint limits. Joint speeds beyond 1.5 rad/s are
    scaled down together, so near the base the fingertip keeps the commanded direction but
    moves slower; at full stretch or with a joint at its limit it cannot follow a command that
    needs the blocked motion. A zero action nearly holds the fingertip: while the posture
    relaxes it drifts, over 50 steps, less than 1 cm in most episodes and up to 2.8 cm in a few
    (6 of seeds 0-99 exceed 1 cm). One step = 5 physics steps of 10 ms (20 steps per second).

    Observation (``obs_mode="pixels"``): Dict with ``pixels`` uint8 (image_size, image_size, 3)
    from the ``front`` camera, and ``proprio`` float32 (9,): cos and sin of the shoulder, elbow
    and wrist angles, then their angular velocities in rad/s (``env.proprio_names``).
    ``obs_mode="state"``: the privileged state below as a float32 (12,) Box.

    ``info["state"]`` float32 (12,) (``env.state_names``): shoulder, elbow, wrist angles (rad),
    their speeds (rad/s), fingertip x, y, target x, y and target - fingertip x, y (m, world
    frame; the difference is redundant, as in Gymnasium's Reacher: it spares a state policy
    learning the subtraction from few demonstrations).

    Reward: the sum of ``info["reward/<term>"]``::

        distance = -|fingertip_xy - target_xy|                       (m)
        success  = +1 while |fingertip_xy - target_xy| < 0.045 m (the finger, radius
                   0.016 m, touches the target sphere, radius 0.03 m)
        control  = -0.01 * |joint speed targets / 1.5 rad/s|^2       (the IK's output)

    Start state: the target (a red sphere of radius 0.03 m, no collision) is uniform over the
    table sector 0.18-0.46 m from the shoulder within 45 deg of straight ahead (+y); the arm
    rests with joint angles uniform in shoulder [-0.9, 0.9], elbow [-1.8, 1.8], wrist
    [-1.5, 1.5] rad, redrawn until elbow, wrist and fingertip lie in x in [-0.33, 0.33],
    y in [-0.02, 0.52] m (in view), the fingertip beyond y = 0.1 m and at least 0.1 m from the
    target.

    Episode end: terminated when the fingertip is within 0.045 m of the target
    (``info["is_success"]``) if ``terminate_on_success``; truncated after 50 steps
    (``max_episode_steps``) or on a physics divergence (``info["diverged"] = True``).

    Args:
        image_size: side of the square ``pixels`` observation (default 64).
        obs_mode: ``"pixels"`` (default) or ``"state"``.
        visual_preset: ``"train"`` (default; table colour, light, camera jitter, distractors
            vary per episode), ``"heldout"`` (values never used in training) or ``"none"``.
        terminate_on_success: end the episode on success (default True).
        render_mode: ``"rgb_array"`` (default; ``render()`` is the observation camera) or None.

    Expert: ``sslrobot.envs.expert_action(env)``: fingertip velocity 6/s x (target - fingertip),
    capped at 0.4 m/s (straight to the target, slowing down within 6.7 cm of it).

    Version history: v0: initial.
    """

    task_class = ReachTask
