"""The Task interface: what a robot should do in a scene, separate from how it is simulated."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from sslrobot.envs.core.physics import Physics


@dataclass(frozen=True)
class SceneSpec:
    """What the generic environment needs to know about a task's MJCF scene.

    Attributes:
        xml_file: scene file name inside ``sslrobot.assets``.
        camera: name of the camera that produces ``obs["pixels"]``.
        num_substeps: physics steps per environment step (frame skip).
        surface_geoms: geoms whose colour the visual presets may change (floor, table,
            walls); never a task-relevant object, so the task stays well posed.
        distractor_geoms: non-colliding geoms the presets may show and move; parked out of
            view (below the floor) otherwise.
        distractor_region: ((x_lo, y_lo), (x_hi, y_hi)) where shown distractors are placed.
    """

    xml_file: str
    camera: str
    num_substeps: int
    surface_geoms: tuple[str, ...] = ()
    distractor_geoms: tuple[str, ...] = ()
    distractor_region: tuple[tuple[float, float], tuple[float, float]] = ((-0.5, -0.5), (0.5, 0.5))
    distractor_height: float = 0.02
    extra: dict = field(default_factory=dict)


class Task(abc.ABC):
    """Episode hooks for one task; the environment owns physics, rendering and time.

    A task is stateful within an episode (its goal and object positions): ``initialize_episode``
    resets that state from the environment's seeded RNG. Experts are stateless: they act on
    the state alone.
    """

    scene: SceneSpec
    #: Names of the entries of ``get_state`` (privileged: probes and experts only).
    state_names: tuple[str, ...]
    #: The subset of ``state_names`` that one camera frame determines, which the linear probes
    #: average over (all of them for a fixed camera; a task with an egocentric camera and
    #: randomised landmarks narrows it to the robot-relative entries, since world coordinates
    #: of things seen from a moving camera are not a function of the image). ``None``: all.
    view_state_names: tuple[str, ...] | None = None
    #: View variables that a frame determines only while their object is in view, each as
    #: ``(name, condition variable, least value)``: the probes score ``name`` on the frames
    #: whose ``state[condition variable] >= least value`` (Navigate: the goal's distance and
    #: bearing while the goal is inside the ego camera's field of view). Out of view no frame
    #: holds the variable, so every encoder's R^2 there measures only how widely it varies,
    #: which pulls every encoder's score toward the same number. Empty: every frame.
    view_conditions: tuple[tuple[str, str, float], ...] = ()
    #: Whether the camera of ``obs["pixels"]`` moves with the robot (egocentric): then two
    #: episodes' frames share no background, which pretraining that pairs frames of
    #: different episodes (``transport_pairs="batch"``) needs.
    camera_moves: bool = False
    #: Names of the entries of ``get_proprio`` (the robot's own sensing).
    proprio_names: tuple[str, ...]
    #: Names of the action entries, each in [-1, 1].
    action_names: tuple[str, ...]

    @abc.abstractmethod
    def initialize_episode(self, physics: Physics, rng: np.random.Generator) -> None:
        """Place the robot, objects and goal for a new episode (after ``physics.reset()``)."""

    @abc.abstractmethod
    def apply_action(self, physics: Physics, action: np.ndarray) -> None:
        """Write a validated, clipped action in [-1, 1]^A to the actuators."""

    @abc.abstractmethod
    def get_proprio(self, physics: Physics) -> np.ndarray:
        """float32 (P,) robot sensing: joint angles/velocities or wheel odometry."""

    @abc.abstractmethod
    def get_state(self, physics: Physics) -> np.ndarray:
        """float32 (S,) privileged state: object, goal and robot pose."""

    @abc.abstractmethod
    def reward_terms(self, physics: Physics) -> dict[str, float]:
        """Named reward terms; the reward is their sum."""

    @abc.abstractmethod
    def is_success(self, physics: Physics) -> bool:
        """Whether the task is solved in the current state."""

    @abc.abstractmethod
    def expert_action(self, physics: Physics) -> np.ndarray:
        """A scripted expert's action in [-1, 1]^A for the current state."""

    def after_step(self, physics: Physics) -> None:  # noqa: B027 - optional hook
        """Called after each environment step (for tasks that track progress)."""
