"""Navigate: a differential-drive robot finds a red goal cylinder with its egocentric camera."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sslrobot.envs.core.env import RobotEnv
from sslrobot.envs.core.physics import Physics
from sslrobot.envs.core.task import SceneSpec, Task

# --- robot -------------------------------------------------------------------------------
MAX_FORWARD_SPEED = 0.5  # m/s at action[0] = 1
MAX_TURN_RATE = 3.0  # rad/s at action[1] = 1, counter-clockwise seen from above
ROBOT_REST_HEIGHT = 0.07  # m, height of the robot body frame when resting on its wheels

# --- arena and episode sampling ----------------------------------------------------------
ARENA_HALF_SIZE = 1.5  # m, inner faces of the walls are at |x| = 1.5 and |y| = 1.5
START_HALF_SIZE = 1.0  # m, robot start position is uniform in [-1, 1]^2
GOAL_HALF_SIZE = 0.9  # m, goal position is uniform in [-0.9, 0.9]^2
MIN_START_GOAL_DISTANCE = 1.0  # m
NUM_GOAL_CANDIDATES = 64
LANDMARK_WALL_OFFSET = 0.2  # m, landmark centre to the inner face of its wall
LANDMARK_ALONG_WALL = 1.1  # m, landmark position along its wall is uniform in [-1.1, 1.1]
LANDMARKS = ("blue", "green", "yellow", "black")

# --- reward and success --------------------------------------------------------------------
SUCCESS_RADIUS = 0.35  # m, robot centre to goal axis; robot and goal touch at about 0.25 m
DISTANCE_WEIGHT = 0.1
HEADING_WEIGHT = 0.05
SUCCESS_BONUS = 10.0
CONTROL_WEIGHT = 0.01

# --- expert ------------------------------------------------------------------------------
# The expert's action is a continuous function of the goal's distance and bearing: behaviour
# cloning regresses it from 25 demonstrations, and a switching rule (the goal either tracked or
# searched for) gives targets that jump, which a regressor averages into stalls.
CAMERA_HALF_ANGLE = math.radians(45.0)  # the ego camera sees +-45 degrees
EXPERT_TURN_GAIN = 2.0  # action[1] per radian of bearing; saturates beyond ~29 degrees
# A goal on the right is tracked down to -30 degrees; from there to the edge of the view the
# action blends linearly into the search action (turn left on the spot), so that the expert
# never steers towards a goal it cannot see and never switches abruptly.
EXPERT_BLEND_START = math.radians(30.0)
EXPERT_ALIGN_COS = (0.75, 0.95)  # forward speed ramps from 0 to full between these cos(bearing)
EXPERT_STOP_DISTANCE = 0.28  # m, stop driving this close (matters without termination)


def _wrap_angle(angle: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def expert_command(distance: float, bearing: float) -> tuple[float, float]:
    """The scripted expert's (forward, turn) for the goal at ``distance`` (m) and ``bearing``
    (rad, positive = left); ``NavigateTask.expert_action`` applies it to the true pose.

    Tracking steers proportionally (saturated) and drives faster the better the goal is
    centred. Searching turns left on the spot: always left rather than the shorter way,
    because the shorter way depends on where an unseen goal is, which a policy cloned from
    pixels cannot know (demonstrations that contradict the image average to standing still).
    The two blend linearly over the right edge of the view, so the action is continuous in
    the bearing all around the circle (from +45 to +180 degrees tracking already gives the
    search action).
    """
    bearing = _wrap_angle(bearing)
    turn = float(np.clip(EXPERT_TURN_GAIN * bearing, -1.0, 1.0))
    low, high = EXPERT_ALIGN_COS
    alignment = float(np.clip((math.cos(bearing) - low) / (high - low), 0.0, 1.0))
    approach = float(np.clip((distance - EXPERT_STOP_DISTANCE) / 0.1, 0.0, 1.0))
    forward = alignment * approach
    # Weight of the search action: 0 down to -30 degrees, 1 from -45 degrees (out of view) on.
    search = float(
        np.clip((-bearing - EXPERT_BLEND_START) / (CAMERA_HALF_ANGLE - EXPERT_BLEND_START), 0, 1)
    )
    return (1.0 - search) * forward, (1.0 - search) * turn + search * 1.0


def _distance_to_wall(x: float, y: float, cos_yaw: float, sin_yaw: float) -> float:
    """Distance (m) from (x, y) along the heading to the inner face of the arena's walls."""
    distances = [
        (math.copysign(ARENA_HALF_SIZE, direction) - position) / direction
        for position, direction in ((x, cos_yaw), (y, sin_yaw))
        if abs(direction) > 1e-9
    ]
    return float(min(distances))


class _SceneIndex:
    """Ids, addresses and wheel geometry of one model, looked up once: per-step queries by
    name would cost more than the physics itself."""

    def __init__(self, physics: Physics) -> None:
        model = physics.model
        self.model = model
        self.robot_body = model.body("robot").id
        self.robot_qpos = physics.joint_qpos_address("robot_root")
        self.robot_qvel = physics.joint_qvel_address("robot_root")
        wheels = ("wheel_left", "wheel_right")
        self.wheel_qpos = np.array([physics.joint_qpos_address(name) for name in wheels])
        self.wheel_qvel = np.array([physics.joint_qvel_address(name) for name in wheels])
        self.goal_geom = physics.geom_id("goal")
        self.landmark_geoms = np.array([physics.geom_id(f"landmark_{c}") for c in LANDMARKS])
        # Wheel geometry comes from the scene so that the action mapping and the odometry
        # can never disagree with the simulated robot.
        self.wheel_radius = float(model.geom_size[physics.geom_id("wheel_left"), 0])
        left, right = (model.body(name).pos[1] for name in wheels)
        self.wheel_track = float(abs(left - right))
        max_wheel_speed = (
            MAX_FORWARD_SPEED + 0.5 * MAX_TURN_RATE * self.wheel_track
        ) / self.wheel_radius
        actuator_limit = float(np.min(np.abs(model.actuator_ctrlrange)))
        if max_wheel_speed > actuator_limit:
            raise ValueError(
                f"navigate_base.xml (every Navigate scene's robot): wheel actuators' "
                f"ctrlrange {actuator_limit} rad/s is below the "
                f"{max_wheel_speed:.2f} rad/s that full forward plus full turn needs"
            )


class NavigateTask(Task):
    """Find and reach the red goal; ``NavigateEnv``'s docstring is the specification."""

    scene = SceneSpec(
        xml_file="navigate.xml",
        camera="ego",
        num_substeps=5,
        surface_geoms=("floor", "wall_east", "wall_west", "wall_north", "wall_south"),
        distractor_geoms=("distractor_0", "distractor_1"),
        distractor_region=((-1.3, 1.38), (1.3, 1.42)),
        distractor_height=0.14,
        extra={"overhead_camera": "top"},
    )
    camera_moves = True  # the ego camera rides on the robot
    state_names = (
        "robot_x",
        "robot_y",
        "robot_cos_yaw",
        "robot_sin_yaw",
        "goal_x",
        "goal_y",
        "goal_distance",
        "goal_cos_bearing",
        "goal_sin_bearing",
        "wall_ahead_distance",
        *(f"landmark_{colour}_{axis}" for colour in LANDMARKS for axis in ("x", "y")),
        *(f"landmark_{colour}_{axis}" for colour in LANDMARKS for axis in ("ahead", "left")),
    )
    # What one ego frame determines: the goal relative to the robot (in view in ~78% of the
    # noisy-expert frames) and the free space straight ahead. World coordinates are not a
    # function of an egocentric frame (landmarks and goal move every episode), and each
    # landmark is in view in only 24-30% of frames, so their robot-frame coordinates are
    # reported by the probes but left out of the mean.
    view_state_names = (
        "goal_distance",
        "goal_cos_bearing",
        "goal_sin_bearing",
        "wall_ahead_distance",
    )
    # The goal's distance and bearing are in the frame only while the goal is: its centre
    # within the camera's +-45 degrees (78% of the noisy-expert frames). Elsewhere one frame
    # says only that it is not ahead, for any encoder, so the probes score them in view.
    view_conditions = tuple(
        (name, "goal_cos_bearing", math.cos(CAMERA_HALF_ANGLE))
        for name in ("goal_distance", "goal_cos_bearing", "goal_sin_bearing")
    )
    proprio_names = (
        "wheel_left_velocity",
        "wheel_right_velocity",
        "odometry_x",
        "odometry_y",
        "odometry_cos_yaw",
        "odometry_sin_yaw",
    )
    action_names = ("forward", "turn")

    def __init__(self) -> None:
        self._index: _SceneIndex | None = None
        self._last_action = np.zeros(2)
        self._odometry = np.zeros(3)  # x (m), y (m), yaw (rad) in the start frame
        self._last_wheel_angles = np.zeros(2)

    # --- episode -------------------------------------------------------------------------
    def initialize_episode(self, physics: Physics, rng: np.random.Generator) -> None:
        """Random start pose, goal and landmark layout, drawn from ``rng`` in a fixed order."""
        index = self._scene_index(physics)
        start = rng.uniform(-START_HALF_SIZE, START_HALF_SIZE, size=2)
        yaw = rng.uniform(-math.pi, math.pi)
        # Rejection sampling over a fixed number of candidates keeps the RNG stream length
        # independent of the outcome. Even from the arena centre (the worst start, ~10%
        # acceptance) all 64 fail with probability ~1e-3; then the goal takes the corner
        # farthest from the start, which is always at least 1.27 m away.
        candidates = rng.uniform(-GOAL_HALF_SIZE, GOAL_HALF_SIZE, size=(NUM_GOAL_CANDIDATES, 2))
        far = np.linalg.norm(candidates - start, axis=1) >= MIN_START_GOAL_DISTANCE
        if far.any():
            goal = candidates[int(np.argmax(far))]
        else:
            goal = np.where(start >= 0.0, -GOAL_HALF_SIZE, GOAL_HALF_SIZE)
        walls = rng.permutation(4)  # the wall each landmark stands against
        along = rng.uniform(-LANDMARK_ALONG_WALL, LANDMARK_ALONG_WALL, size=len(LANDMARKS))

        inner = ARENA_HALF_SIZE - LANDMARK_WALL_OFFSET
        landmarks = np.empty((len(LANDMARKS), 2))
        for i, (wall, offset) in enumerate(zip(walls, along, strict=True)):
            # wall 0: east (+x), 1: west (-x), 2: north (+y), 3: south (-y)
            if wall < 2:
                landmarks[i] = (inner if wall == 0 else -inner, offset)
            else:
                landmarks[i] = (offset, inner if wall == 2 else -inner)
        self._place_objects(physics, goal, landmarks)

        physics.data.qpos[index.robot_qpos : index.robot_qpos + 7] = (
            start[0],
            start[1],
            ROBOT_REST_HEIGHT,
            math.cos(0.5 * yaw),
            0.0,
            0.0,
            math.sin(0.5 * yaw),
        )
        self._last_action = np.zeros(2)
        self._odometry = np.zeros(3)
        self._last_wheel_angles = physics.data.qpos[index.wheel_qpos].copy()

    def _place_objects(self, physics: Physics, goal: np.ndarray, landmarks: np.ndarray) -> None:
        """Put the goal at ``goal`` (x, y) and landmark i at ``landmarks[i]`` (x, y), in metres.

        v0's goal and landmarks are static world geoms moved in the model (the visual preset
        restores authored positions before ``initialize_episode`` runs). MuJoCo draws them
        there but collides with them only where its collision pre-filter, built from the
        authored positions when the scene compiled, still overlaps their new ones: the robot
        drives through them in most layouts and is stopped by them in some (17 and 19 of 100
        seeds, for the goal and the blue landmark). ``NavigateV1Task`` puts them on mocap
        bodies instead, solid everywhere.
        """
        index = self._scene_index(physics)
        model = physics.model
        model.geom_pos[index.goal_geom, :2] = goal
        for geom, position in zip(index.landmark_geoms, landmarks, strict=True):
            model.geom_pos[geom, :2] = position

    def apply_action(self, physics: Physics, action: np.ndarray) -> None:
        """(forward, turn) -> wheel speed targets (rad/s); the mapping never saturates."""
        index = self._scene_index(physics)
        self._last_action = np.array(action, dtype=np.float64)
        forward = MAX_FORWARD_SPEED * self._last_action[0]
        turn = MAX_TURN_RATE * self._last_action[1]
        half_track = 0.5 * index.wheel_track
        physics.data.ctrl[:] = (
            (forward - turn * half_track) / index.wheel_radius,
            (forward + turn * half_track) / index.wheel_radius,
        )

    def after_step(self, physics: Physics) -> None:
        """Dead reckoning from the wheel encoders (midpoint rule), as a real robot does it:
        wheel slip shows up as odometry drift. It tracks the axle's midpoint (where a
        differential drive's kinematics hold), not the body origin 3 cm behind it."""
        index = self._scene_index(physics)
        angles = physics.data.qpos[index.wheel_qpos].copy()
        left, right = index.wheel_radius * (angles - self._last_wheel_angles)
        self._last_wheel_angles = angles
        distance = 0.5 * (left + right)
        rotation = (right - left) / index.wheel_track
        heading = self._odometry[2] + 0.5 * rotation
        self._odometry += (distance * math.cos(heading), distance * math.sin(heading), rotation)
        self._odometry[2] = _wrap_angle(self._odometry[2])

    # --- observations --------------------------------------------------------------------
    def get_proprio(self, physics: Physics) -> np.ndarray:
        index = self._scene_index(physics)
        wheel_left, wheel_right = physics.data.qvel[index.wheel_qvel]
        x, y, yaw = self._odometry
        return np.array(
            [wheel_left, wheel_right, x, y, math.cos(yaw), math.sin(yaw)], dtype=np.float32
        )

    def get_state(self, physics: Physics) -> np.ndarray:
        """Pose, goal (also relative to the robot) and landmarks; see ``NavigateEnv``.

        The goal's distance and bearing are redundant with the poses, but they are what the
        expert acts on: from world coordinates alone a state-oracle policy must learn an
        atan2 of differences rotated by the yaw, which 25 demonstrations do not pin down.
        The robot's speeds are left out: they nearly equal the last action, and behaviour
        cloning on them learns to repeat it (spinning or standing still), the copycat
        failure of imitation (de Haan et al. 2019, "Causal confusion in imitation learning").
        """
        index = self._scene_index(physics)
        x, y, yaw = self._robot_pose(physics)
        distance, bearing = self.goal_polar(physics)
        geom_xpos = physics.data.geom_xpos
        landmarks = geom_xpos[index.landmark_geoms, :2]  # (4, 2) world x, y
        offsets = landmarks - np.array([x, y])
        cos_yaw, sin_yaw = math.cos(yaw), math.sin(yaw)
        ahead = offsets[:, 0] * cos_yaw + offsets[:, 1] * sin_yaw
        left = -offsets[:, 0] * sin_yaw + offsets[:, 1] * cos_yaw
        return np.array(
            [
                x,
                y,
                math.cos(yaw),
                math.sin(yaw),
                *geom_xpos[index.goal_geom, :2],
                distance,
                math.cos(bearing),
                math.sin(bearing),
                _distance_to_wall(x, y, cos_yaw, sin_yaw),
                *landmarks.ravel(),
                *np.stack([ahead, left], axis=1).ravel(),
            ],
            dtype=np.float32,
        )

    # --- reward and success ----------------------------------------------------------------
    def reward_terms(self, physics: Physics) -> dict[str, float]:
        distance, bearing = self.goal_polar(physics)
        return {
            "distance": -DISTANCE_WEIGHT * distance,
            "heading": HEADING_WEIGHT * (math.cos(bearing) - 1.0),
            "success": SUCCESS_BONUS * float(distance < SUCCESS_RADIUS),
            "control": -CONTROL_WEIGHT * float(np.dot(self._last_action, self._last_action)),
        }

    def is_success(self, physics: Physics) -> bool:
        return self.goal_polar(physics)[0] < SUCCESS_RADIUS

    def expert_action(self, physics: Physics) -> np.ndarray:
        """Search by turning left until the goal is in view, then steer to it and drive
        (``expert_command`` of the goal's true distance and bearing)."""
        return np.array(expert_command(*self.goal_polar(physics)), dtype=np.float32)

    # --- queries -------------------------------------------------------------------------
    def goal_polar(self, physics: Physics) -> tuple[float, float]:
        """Distance (m) from the robot's centre to the goal's axis, and the goal's bearing
        (rad, positive = to the robot's left)."""
        index = self._scene_index(physics)
        x, y, yaw = self._robot_pose(physics)
        goal = physics.data.geom_xpos[index.goal_geom]
        dx, dy = goal[0] - x, goal[1] - y
        return math.hypot(dx, dy), _wrap_angle(math.atan2(dy, dx) - yaw)

    def _robot_pose(self, physics: Physics) -> tuple[float, float, float]:
        """Robot x (m), y (m) and yaw (rad) from the simulator (privileged)."""
        body = self._scene_index(physics).robot_body
        x, y = physics.data.xpos[body, :2]
        rotation = physics.data.xmat[body]  # row-major (3, 3)
        return float(x), float(y), math.atan2(rotation[3], rotation[0])

    def _scene_index(self, physics: Physics) -> _SceneIndex:
        if self._index is None or self._index.model is not physics.model:
            self._index = _SceneIndex(physics)
        return self._index


class NavigateV1Task(NavigateTask):
    """Navigate-v1: the goal and the landmarks are mocap bodies, which collide where drawn."""

    scene = dataclasses.replace(NavigateTask.scene, xml_file="navigate_v1.xml")

    def _place_objects(self, physics: Physics, goal: np.ndarray, landmarks: np.ndarray) -> None:
        physics.set_mocap_position("goal", (*goal, 0.0))
        for colour, position in zip(LANDMARKS, landmarks, strict=True):
            physics.set_mocap_position(f"landmark_{colour}", (*position, 0.0))


class NavigateEnv(RobotEnv):
    """``sslrobot/Navigate-v0``: drive a differential-drive robot to a red goal cylinder that
    it must first find with its egocentric camera.

    **Scene** (``assets/navigate.xml``, its arena and robot in ``navigate_base.xml``, which
    v1's ``navigate_v1.xml`` shares): a 3 m x 3 m arena (walls 0.8 m high) with four
    coloured landmarks (blue box, green cylinder, yellow box, black cylinder, 0.32 m tall), one
    against each wall, and a red goal cylinder (0.12 m radius, 0.7 m tall; the only red object
    and the tallest). The robot is a 0.24 m disc on two 4 cm wheels (track 0.27 m) with
    velocity-controlled motors (torque limit 0.2 N m) and a frictionless rear caster. It
    collides with the walls; in v0 with the landmarks and the goal only in some layouts (a
    moved static geom collides where the pre-filter built from its authored position still
    overlaps it), and it drives through them in the others (``NavigateV1Env``,
    ``sslrobot/Navigate-v1``, fixes that: solid everywhere). Physics: 10 ms steps,
    5 per env step, so one env step is 50 ms (20 Hz).

    **Action**: Box(-1, 1, (2,), float32); out-of-range values are clipped, NaN/inf or a wrong
    shape raise ``ValueError``.

    ====  =========  =======================================================  ============
    idx   name       meaning                                                   unit at 1.0
    ====  =========  =======================================================  ============
    0     forward    forward speed target (negative drives backwards)          0.5 m/s
    1     turn       yaw rate target, positive = counter-clockwise (left)      3.0 rad/s
    ====  =========  =======================================================  ============

    Targets become wheel speed targets ``(v -+ w * track / 2) / wheel_radius`` (at most 22.6
    rad/s, inside the motors' 25 rad/s range); the motors reach them in about 0.2 s.

    **Observation** (``obs_mode="pixels"``): Dict with

    - ``pixels``: uint8 (image_size, image_size, 3) from the ``ego`` camera on the robot's
      mast (0.19 m above the floor, tilted 20 degrees down, 90 degree field of view).
    - ``proprio``: float32 (6,) ``wheel_left_velocity``, ``wheel_right_velocity`` (rad/s),
      then wheel odometry dead-reckoned from the wheel encoders since the episode start, in
      the start frame: ``odometry_x``, ``odometry_y`` (m), ``odometry_cos_yaw``,
      ``odometry_sin_yaw``. Never the goal, nor the true pose. The point it tracks is the
      wheel axle's midpoint, 3 cm ahead of the body origin that the state's ``robot_x``,
      ``robot_y`` give: turning on the spot moves that origin (up to 6 cm for half a turn),
      not the odometry, so the two differ by that offset beside wheel slip.

    ``obs_mode="state"`` gives the privileged state instead: float32 (26,), the same vector
    as ``info["state"]``.

    **Privileged state** ``info["state"]`` (names in ``state_names``): ``robot_x``,
    ``robot_y`` (m), ``robot_cos_yaw``, ``robot_sin_yaw``, ``goal_x``, ``goal_y`` (m), the
    goal relative to the robot: ``goal_distance`` (m, robot centre to goal axis),
    ``goal_cos_bearing``, ``goal_sin_bearing`` (bearing positive to the left), the free space
    ahead ``wall_ahead_distance`` (m, robot centre to the wall along the heading), then
    ``landmark_<colour>_x/_y`` (m) for blue, green, yellow, black, then the same landmarks in
    the robot's frame, ``landmark_<colour>_ahead/_left`` (m). Origin at the arena centre,
    x east, y north. ``view_state_names`` (goal distance and bearing, free space ahead) is
    what one ego frame determines, the goal's only while it is in view (``view_conditions``:
    its centre within the camera's +-45 degrees); the probes average their R^2 over it, each
    goal variable scored on the frames where the goal is in view. No
    speeds: they nearly equal the last action, and a state-oracle policy cloned on them
    repeats it (spins, stalls); the proprio still has the wheel speeds.

    **Reward**: ``distance + heading + success + control``, each in ``info["reward/<term>"]``:

    - ``distance = -0.1 * d``, d = distance (m) from the robot centre to the goal axis;
    - ``heading = 0.05 * (cos(b) - 1)``, b = bearing of the goal from the robot's heading;
    - ``success = 10`` when ``d < 0.35`` m, else 0;
    - ``control = -0.01 * |a|^2`` for the (clipped) action of this step.

    Every term but ``success`` is at most 0, so standing still near the goal never pays.

    **Start state**: robot uniform in [-1, 1]^2 m with a uniform yaw (so the goal is usually
    out of view and must be searched for), at rest. Goal uniform in [-0.9, 0.9]^2 m at least
    1 m from the robot. Landmarks: a random assignment of landmarks to walls, each 0.2 m off
    its wall at a uniform position in [-1.1, 1.1] m along it. The straight line from any start
    to the goal never meets a landmark. All of it comes from the ``reset`` seed.

    **Episode end**: terminated on success (``d < 0.35`` m) when ``terminate_on_success``;
    truncated after 250 steps (12.5 s; registered ``max_episode_steps``, about twice the
    expert's longest episode, so imperfect policies have time to recover) or on a physics
    divergence (``info["diverged"] = True``). ``info["is_success"]`` reports success.

    **Expert** (``sslrobot.envs.expert_action(env)``, ``expert_command``): turns left on the
    spot while the goal is out of view; once it is in view, steers to it proportionally
    (``turn = clip(2 * bearing, -1, 1)``) and drives, at full speed within ~18 degrees of the
    goal and not at all beyond ~41 degrees. A goal 30 to 45 degrees to the right blends
    linearly into the search, so the action is a continuous function of the goal's distance and
    bearing (smooth targets for behaviour cloning) and always follows from what the camera
    shows: it searches always to the left. 200/200 seeds succeed, in 114 steps at most.

    **Visual presets** recolour the floor and walls, scale the light, jitter the ego camera
    position and show up to two non-colliding distractor boxes in a strip along the north
    wall (never in the robot's path nor in front of the goal). The overhead camera ``top``
    shows the whole arena (not used for observations).

    Args:
        image_size: side of the square ``pixels`` observation, in pixels.
        obs_mode: ``"pixels"`` or ``"state"``.
        visual_preset: ``"train"``, ``"heldout"`` or ``"none"``.
        terminate_on_success: end the episode once the robot reaches the goal.
        render_mode: ``"rgb_array"`` (the ego camera) or None.

    Version history:
        v0: initial. The goal and the landmarks are static geoms moved in the model, which
            MuJoCo draws where they are put but does not collide with there.
        v1 (``NavigateV1Env``): they are mocap bodies, so the robot collides with them where
            they are drawn; nothing else changed (same layouts, frames and expert for a seed
            until the robot touches one).
    """

    task_class = NavigateTask


class NavigateV1Env(NavigateEnv):
    """``sslrobot/Navigate-v1``: Navigate-v0 (``NavigateEnv``, whose docstring is the
    specification) with the goal and the landmarks on mocap bodies, so the robot collides with
    them where they are drawn in every layout (v0's collide in some only). For a seed, the
    layout, the frames and the expert's actions equal v0's until the robot touches the goal or
    a landmark.
    """

    task_class = NavigateV1Task
