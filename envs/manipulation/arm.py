"""The planar three-joint arm shared by Reach and Push: actions, proprio, start poses and IK."""

from __future__ import annotations

import mujoco
import numpy as np

from sslrobot.envs.core.physics import Physics
from sslrobot.envs.core.task import SceneSpec, Task

JOINTS = ("shoulder", "elbow", "wrist")
#: Joint speed target (rad/s) at |action| = 1; equals the actuators' ctrlrange in arm.xml.
MAX_JOINT_SPEED = 1.5
#: Weight of the control cost, -CONTROL_COST * sum(action**2).
CONTROL_COST = 0.01
FINGERTIP_SITE = "fingertip"
#: Physics steps of 10 ms per environment step: 20 actions per second.
NUM_SUBSTEPS = 5
#: The strip where the presets place distractor centres: beyond the farthest task object
#: (Reach's target reaches y = 0.49) by more than a distractor's half-depth (0.025), and
#: farther from the camera than every object, so a distractor never hides one.
DISTRACTOR_REGION = ((-0.32, 0.525), (0.32, 0.59))
SURFACE_GEOMS = ("table",)
DISTRACTOR_GEOMS = ("distractor_box", "distractor_cylinder", "distractor_flat")

#: Start pose of the arm: joint angles (rad) uniform in these ranges (shoulder, elbow, wrist)...
START_RANGES = np.array([(-0.9, 0.9), (-1.8, 1.8), (-1.5, 1.5)])
#: ... redrawn until the elbow, wrist and fingertip are in this box ((x_lo, y_lo), (x_hi, y_hi))
#: (m), well inside the camera's view, and the fingertip is beyond START_MIN_TIP_Y (m).
START_REGION = ((-0.33, -0.02), (0.33, 0.52))
START_MIN_TIP_Y = 0.1

# Damped-least-squares IK (see move_fingertip_action): damping (m), relative readiness of
# each joint to move, null-space gain (1/s), rest elbow angle (rad), fingertip position gain
# (1/s) and speed limit (m/s).
_IK_DAMPING = 0.03
_JOINT_SCALE = np.array([1.0, 1.0, 0.5])
_NULLSPACE_GAIN = 1.0
_REST_ELBOW = 1.3
_POSITION_GAIN = 6.0
_MAX_TIP_SPEED = 0.4
_LIMIT_MARGIN = 0.95  # fraction of the half range beyond which a joint counts as at its limit


def arm_scene(xml_file: str) -> SceneSpec:
    """The SceneSpec of an arm scene (both tasks share camera, substeps and distractors)."""
    return SceneSpec(
        xml_file=xml_file,
        camera="front",
        num_substeps=NUM_SUBSTEPS,
        surface_geoms=SURFACE_GEOMS,
        distractor_geoms=DISTRACTOR_GEOMS,
        distractor_region=DISTRACTOR_REGION,
        distractor_height=0.02,
    )


class ArmModel:
    """Indices of the arm in one compiled model, looked up once (tasks query them per step)."""

    def __init__(self, physics: Physics) -> None:
        model = physics.model
        self.model = model
        joint_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in JOINTS]
        self.qpos_adr = np.array([physics.joint_qpos_address(j) for j in JOINTS])
        self.dof_adr = np.array([physics.joint_qvel_address(j) for j in JOINTS])
        self.actuator_ids = np.array(
            [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, j) for j in JOINTS]
        )
        if np.any(self.actuator_ids < 0):
            raise KeyError(f"arm scene lacks an actuator named after each joint {JOINTS}")
        self.joint_range = model.jnt_range[joint_ids].copy()  # (3, 2) rad
        #: Bodies whose origins are the elbow and the wrist.
        self.link_body_ids = np.array(
            [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, b) for b in ("forearm", "hand")]
        )
        self.site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, FINGERTIP_SITE)
        if self.site_id < 0:
            raise KeyError(f"arm scene lacks the site {FINGERTIP_SITE!r}")
        self._jacp = np.zeros((3, model.nv))

    def joint_angles(self, physics: Physics) -> np.ndarray:
        """(3,) shoulder, elbow, wrist angles in rad."""
        return physics.data.qpos[self.qpos_adr].copy()

    def joint_speeds(self, physics: Physics) -> np.ndarray:
        """(3,) joint angular velocities in rad/s."""
        return physics.data.qvel[self.dof_adr].copy()

    def fingertip_xy(self, physics: Physics) -> np.ndarray:
        """(2,) fingertip position on the table plane, in metres."""
        return physics.data.site_xpos[self.site_id, :2].copy()

    def fingertip_jacobian(self, physics: Physics) -> np.ndarray:
        """(2, 3) d(fingertip xy)/d(joint angles)."""
        mujoco.mj_jacSite(self.model, physics.data, self._jacp, None, self.site_id)
        return self._jacp[:2, self.dof_adr]

    def set_joint_angles(self, physics: Physics, angles: np.ndarray) -> None:
        physics.data.qpos[self.qpos_adr] = angles
        physics.data.qvel[self.dof_adr] = 0.0


class ArmTask(Task):
    """What Reach and Push share: the action mapping, proprio and control cost.

    Subclasses set ``scene`` and ``state_names`` and implement the task hooks; they call
    ``self.arm(physics)`` for the cached joint and site indices.
    """

    action_names = tuple(f"{joint}_speed" for joint in JOINTS)
    proprio_names = (
        *(f"cos_{joint}" for joint in JOINTS),
        *(f"sin_{joint}" for joint in JOINTS),
        *(f"{joint}_speed" for joint in JOINTS),
    )

    def __init__(self) -> None:
        self._arm: ArmModel | None = None

    def arm(self, physics: Physics) -> ArmModel:
        if self._arm is None or self._arm.model is not physics.model:
            self._arm = ArmModel(physics)
        return self._arm

    def apply_action(self, physics: Physics, action: np.ndarray) -> None:
        physics.data.ctrl[self.arm(physics).actuator_ids] = action * MAX_JOINT_SPEED

    def get_proprio(self, physics: Physics) -> np.ndarray:
        arm = self.arm(physics)
        angles = arm.joint_angles(physics)
        speeds = arm.joint_speeds(physics)
        return np.concatenate([np.cos(angles), np.sin(angles), speeds]).astype(np.float32)

    def control_cost(self, physics: Physics) -> float:
        """-CONTROL_COST * |action|^2 of the action being applied (0 right after a reset)."""
        action = physics.data.ctrl[self.arm(physics).actuator_ids] / MAX_JOINT_SPEED
        return -CONTROL_COST * float(np.dot(action, action))

    def sample_start_pose(
        self,
        physics: Physics,
        rng: np.random.Generator,
        keep_away: np.ndarray,
        min_distance: float,
    ) -> None:
        """Put the arm at rest in a random pose: joints uniform in their start ranges, redrawn
        until the elbow, wrist and fingertip lie in ``START_REGION`` (in view), the fingertip
        is in front of the base and at least ``min_distance`` from each xy point in
        ``keep_away`` (shape (K, 2))."""
        arm = self.arm(physics)
        low, high = START_RANGES[:, 0], START_RANGES[:, 1]
        (x_lo, y_lo), (x_hi, y_hi) = START_REGION
        for _ in range(1000):
            arm.set_joint_angles(physics, rng.uniform(low, high))
            mujoco.mj_kinematics(physics.model, physics.data)
            tip = arm.fingertip_xy(physics)
            points = np.vstack([physics.data.xpos[arm.link_body_ids, :2], tip])  # (3, 2)
            in_view = np.all((points >= (x_lo, y_lo)) & (points <= (x_hi, y_hi)))
            far_enough = np.all(np.linalg.norm(keep_away - tip, axis=1) >= min_distance)
            if in_view and far_enough and tip[1] > START_MIN_TIP_Y:
                return
        raise RuntimeError(f"{type(self).__name__}: no start pose found in 1000 draws")


def move_fingertip_action(arm: ArmModel, physics: Physics, tip_velocity: np.ndarray) -> np.ndarray:
    """Action (3,) in [-1, 1] that moves the fingertip with ``tip_velocity`` (2,) m/s.

    Weighted damped least squares: with joint scales S (the wrist moves half as readily as the
    shoulder and elbow, so that it does not fold to its limit first) and Js = J S,
    dq = S (Js^T (Js Js^T + d^2 I)^-1 v + N g), where N projects onto the null space of Js.
    The damping keeps dq bounded near the stretched (singular) arm; the secondary motion g
    pulls toward a rest posture (shoulder straight ahead, elbow bent by _REST_ELBOW on the
    side it is on, wrist straight), which also leads out of the singularity, and, harder near
    them, away from the joint limits. A joint at its limit that would be driven further is
    taken out of the solve (its column zeroed), so the other joints do the work instead of the
    arm stalling. The joint speeds are scaled down together (not clipped one by one) so the
    fingertip keeps its direction.
    """
    jacobian = arm.fingertip_jacobian(physics) * _JOINT_SCALE  # (2, 3), Js
    angles = arm.joint_angles(physics)
    middle = arm.joint_range.mean(axis=1)
    half_span = 0.5 * (arm.joint_range[:, 1] - arm.joint_range[:, 0])
    normalized = (angles - middle) / half_span  # -1 and +1 at the limits
    elbow_side = 1.0 if angles[1] >= 0.0 else -1.0  # keep the elbow on the side it is on
    rest = np.array([0.0, elbow_side * _REST_ELBOW, 0.0])
    secondary = _NULLSPACE_GAIN * ((rest - angles) / half_span - 2.0 * normalized**5)
    secondary = secondary / _JOINT_SCALE  # in the scaled coordinates of Js
    near_limit = np.abs(normalized) > _LIMIT_MARGIN
    joint_speeds = np.zeros(3)
    for _ in range(3):
        gram = jacobian @ jacobian.T + _IK_DAMPING**2 * np.eye(2)
        pseudo_inverse = jacobian.T @ np.linalg.inv(gram)  # (3, 2)
        null_projector = np.eye(3) - pseudo_inverse @ jacobian
        joint_speeds = _JOINT_SCALE * (pseudo_inverse @ tip_velocity + null_projector @ secondary)
        blocked = near_limit & (np.sign(joint_speeds) == np.sign(normalized))
        blocked &= np.any(jacobian != 0.0, axis=0)
        if not np.any(blocked):
            break
        jacobian[:, blocked] = 0.0
        secondary[blocked] = 0.0
    action = joint_speeds / MAX_JOINT_SPEED
    peak = float(np.max(np.abs(action)))
    if peak > 1.0:
        action = action / peak
    return action.astype(np.float32)


def go_to_action(arm: ArmModel, physics: Physics, waypoint: np.ndarray) -> np.ndarray:
    """Action (3,) steering the fingertip toward ``waypoint`` (2,): proportional speed, capped."""
    velocity = _POSITION_GAIN * (waypoint - arm.fingertip_xy(physics))
    return move_fingertip_action(arm, physics, cap_speed(velocity, _MAX_TIP_SPEED))


def sample_in_sector(
    rng: np.random.Generator, radius: tuple[float, float], max_bearing: float
) -> np.ndarray:
    """(2,) xy uniform over the annular sector in front of the shoulder: distance from it in
    ``radius`` (m), angle from the +y axis within +-``max_bearing`` (rad)."""
    r_lo, r_hi = radius
    distance = np.sqrt(rng.uniform(r_lo**2, r_hi**2))  # uniform in area, not in radius
    bearing = rng.uniform(-max_bearing, max_bearing)
    return distance * np.array([-np.sin(bearing), np.cos(bearing)])


def set_mocap_position(physics: Physics, body: str, position: tuple[float, ...]) -> None:
    """Place a mocap body (target, goal) at ``position`` (3,) in world coordinates."""
    body_id = mujoco.mj_name2id(physics.model, mujoco.mjtObj.mjOBJ_BODY, body)
    mocap_id = physics.model.body_mocapid[body_id] if body_id >= 0 else -1
    if mocap_id < 0:
        raise KeyError(f"no mocap body named {body!r} in the scene")
    physics.data.mocap_pos[mocap_id] = position


def cap_speed(velocity: np.ndarray, max_speed: float) -> np.ndarray:
    """``velocity`` scaled down to at most ``max_speed`` in norm, direction kept."""
    speed = float(np.linalg.norm(velocity))
    return velocity if speed <= max_speed else velocity * (max_speed / speed)
