"""The planar three-joint arm shared by Reach and Push: actions, proprio, start poses and IK.

Actions are operational-space, as in Meta-World: a commanded fingertip velocity in the table
plane, which ``apply_action`` turns into the three joints' speed targets by damped-least-squares
IK. A policy (and a behaviour-cloned one above all) then learns where to move the fingertip,
not the arm's inverse kinematics.
"""

from __future__ import annotations

import mujoco
import numpy as np

from sslrobot.envs.core.physics import Physics
from sslrobot.envs.core.task import SceneSpec, Task

JOINTS = ("shoulder", "elbow", "wrist")
#: Commanded fingertip speed (m/s) along x or y at |action| = 1 (the experts cap the norm of
#: their command at it too, though (1, 1) asks for 0.57 m/s diagonally).
MAX_TIP_SPEED = 0.4
#: Largest joint speed target (rad/s) the IK commands; equals the actuators' ctrlrange in
#: arm.xml. Joint speeds beyond it are scaled down together, so the fingertip slows down but
#: keeps its direction.
MAX_JOINT_SPEED = 1.5
#: Weight of the control cost, -CONTROL_COST * sum((joint speed targets / MAX_JOINT_SPEED)**2).
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

# Damped-least-squares IK (see fingertip_joint_speeds): damping (m), relative readiness of
# each joint to move, null-space gain (1/s), rest elbow angle (rad); and the experts'
# fingertip position gain (1/s) (see go_to_action).
_IK_DAMPING = 0.03
_JOINT_SCALE = np.array([1.0, 1.0, 0.5])
_JOINT_SCALE_TUPLE = tuple(_JOINT_SCALE.tolist())
_NULLSPACE_GAIN = 1.0
_REST_ELBOW = 1.3
_POSITION_GAIN = 6.0
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
        #: Centre and half width (rad) of each joint's range, as floats for the scalar IK.
        self.joint_middle = tuple(self.joint_range.mean(axis=1).tolist())
        self.joint_half_span = tuple((0.5 * np.diff(self.joint_range, axis=1)[:, 0]).tolist())
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

    action_names = ("fingertip_vx", "fingertip_vy")
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
        """Action (2,) in [-1, 1]: fingertip velocity ``action * MAX_TIP_SPEED`` (m/s), sent to
        the velocity servos as joint speed targets (rad/s) by ``fingertip_joint_speeds``."""
        arm = self.arm(physics)
        joint_speeds = fingertip_joint_speeds(arm, physics, action * MAX_TIP_SPEED)
        physics.data.ctrl[arm.actuator_ids] = joint_speeds

    def get_proprio(self, physics: Physics) -> np.ndarray:
        arm = self.arm(physics)
        angles = arm.joint_angles(physics)
        speeds = arm.joint_speeds(physics)
        return np.concatenate([np.cos(angles), np.sin(angles), speeds]).astype(np.float32)

    def control_cost(self, physics: Physics) -> float:
        """-CONTROL_COST * |joint speed targets / MAX_JOINT_SPEED|^2 being applied (0 right
        after a reset): a cost on the joints' effort, read from the actuators, so it needs no
        memory of the action and lies in [-3 CONTROL_COST, 0]."""
        normalized = physics.data.ctrl[self.arm(physics).actuator_ids] / MAX_JOINT_SPEED
        return -CONTROL_COST * float(np.dot(normalized, normalized))

    def sample_start_pose(
        self,
        physics: Physics,
        rng: np.random.Generator,
        keep_away: np.ndarray,
        min_distance: float,
        behind: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Put the arm at rest in a random pose: joints uniform in their start ranges, redrawn
        until the elbow, wrist and fingertip lie in ``START_REGION`` (in view), the fingertip
        is in front of the base and at least ``min_distance`` from each xy point in
        ``keep_away`` (shape (K, 2)), and, if ``behind = (point, direction)`` (each (2,)) is
        given, on the far side of ``point`` from ``direction``: (tip - point) . direction < 0.
        Raises ``RuntimeError`` if 1000 draws find no such pose."""
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
            on_side = behind is None or float((tip - behind[0]) @ behind[1]) < 0.0
            if in_view and far_enough and on_side and tip[1] > START_MIN_TIP_Y:
                return
        raise RuntimeError(f"{type(self).__name__}: no start pose found in 1000 draws")


def fingertip_joint_speeds(arm: ArmModel, physics: Physics, tip_velocity: np.ndarray) -> np.ndarray:
    """Joint speed targets (3,) in rad/s, at most MAX_JOINT_SPEED each, that move the fingertip
    with ``tip_velocity`` (2,) m/s.

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
    # Scalar Python on purpose: this runs every step, and for a 2x3 system numpy's per-call
    # overhead made the solve cost more than the five physics steps it commands.
    jac_x, jac_y = (arm.fingertip_jacobian(physics) * _JOINT_SCALE).tolist()  # rows of Js
    angles = arm.joint_angles(physics).tolist()
    velocity_x, velocity_y = float(tip_velocity[0]), float(tip_velocity[1])
    elbow_side = 1.0 if angles[1] >= 0.0 else -1.0  # keep the elbow on the side it is on
    rest = (0.0, elbow_side * _REST_ELBOW, 0.0)
    normalized, secondary = [], []  # normalized is -1 and +1 at the limits
    for angle, middle, half, goal, scale in zip(
        angles, arm.joint_middle, arm.joint_half_span, rest, _JOINT_SCALE_TUPLE, strict=True
    ):
        position = (angle - middle) / half
        normalized.append(position)
        # In the scaled coordinates of Js, hence the division by the joint's scale.
        secondary.append(_NULLSPACE_GAIN * ((goal - angle) / half - 2.0 * position**5) / scale)
    joint_speeds = [0.0, 0.0, 0.0]
    for _ in range(3):
        # Js^+ (v - Js g) + g, which equals Js^+ v + N g, with Js^+ = Js^T (Js Js^T + d^2 I)^-1.
        xx = _dot(jac_x, jac_x) + _IK_DAMPING**2
        xy = _dot(jac_x, jac_y)
        yy = _dot(jac_y, jac_y) + _IK_DAMPING**2
        residual_x = velocity_x - _dot(jac_x, secondary)
        residual_y = velocity_y - _dot(jac_y, secondary)
        determinant = xx * yy - xy * xy
        solved_x = (yy * residual_x - xy * residual_y) / determinant
        solved_y = (xx * residual_y - xy * residual_x) / determinant
        joint_speeds = [
            scale * (jx * solved_x + jy * solved_y + g)
            for jx, jy, g, scale in zip(jac_x, jac_y, secondary, _JOINT_SCALE_TUPLE, strict=True)
        ]
        blocked = [
            abs(position) > _LIMIT_MARGIN
            and speed != 0.0
            and (speed > 0.0) == (position > 0.0)
            and (jx != 0.0 or jy != 0.0)
            for position, speed, jx, jy in zip(normalized, joint_speeds, jac_x, jac_y, strict=True)
        ]
        if not any(blocked):
            break
        for joint in range(3):
            if blocked[joint]:
                jac_x[joint] = jac_y[joint] = secondary[joint] = 0.0
    peak = max(abs(speed) for speed in joint_speeds)
    if peak > MAX_JOINT_SPEED:
        joint_speeds = [speed * (MAX_JOINT_SPEED / peak) for speed in joint_speeds]
    return np.array(joint_speeds)


def _dot(first: list[float], second: list[float]) -> float:
    return first[0] * second[0] + first[1] * second[1] + first[2] * second[2]


def tip_velocity_action(tip_velocity: np.ndarray) -> np.ndarray:
    """Action (2,) float32 in [-1, 1] commanding ``tip_velocity`` (2,) m/s, capped in norm at
    MAX_TIP_SPEED (direction kept, so a diagonal move is not faster than a straight one)."""
    return (cap_speed(tip_velocity, MAX_TIP_SPEED) / MAX_TIP_SPEED).astype(np.float32)


def go_to_action(arm: ArmModel, physics: Physics, waypoint: np.ndarray) -> np.ndarray:
    """Action (2,) steering the fingertip toward ``waypoint`` (2,): proportional speed, capped."""
    return tip_velocity_action(_POSITION_GAIN * (waypoint - arm.fingertip_xy(physics)))


def sample_in_sector(
    rng: np.random.Generator, radius: tuple[float, float], max_bearing: float
) -> np.ndarray:
    """(2,) xy uniform over the annular sector in front of the shoulder: distance from it in
    ``radius`` (m), angle from the +y axis within +-``max_bearing`` (rad)."""
    r_lo, r_hi = radius
    distance = np.sqrt(rng.uniform(r_lo**2, r_hi**2))  # uniform in area, not in radius
    bearing = rng.uniform(-max_bearing, max_bearing)
    return distance * np.array([-np.sin(bearing), np.cos(bearing)])


def cap_speed(velocity: np.ndarray, max_speed: float) -> np.ndarray:
    """``velocity`` scaled down to at most ``max_speed`` in norm, direction kept."""
    speed = float(np.linalg.norm(velocity))
    return velocity if speed <= max_speed else velocity * (max_speed / speed)
