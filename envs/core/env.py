"""One generic Gymnasium environment: Physics + Task + camera, frame skip, seeding, checks."""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sslrobot.envs.core.physics import Physics
from sslrobot.envs.core.render import Renderer
from sslrobot.envs.core.task import Task
from sslrobot.envs.core.variation import PRESETS as VISUAL_PRESETS
from sslrobot.envs.core.variation import SceneVariation

OBS_MODES = ("pixels", "state")
#: Frame sides the renderer takes (``image_size``), inclusive.
IMAGE_SIZE_RANGE = (8, 1024)


def asset_path(file_name: str) -> str:
    """Absolute path of a file shipped in ``sslrobot.assets`` (works from a wheel too)."""
    path = resources.files("sslrobot.assets").joinpath(file_name)
    if not path.is_file():
        raise FileNotFoundError(f"asset {file_name!r} not found in sslrobot.assets ({path})")
    return str(path)


class RobotEnv(gym.Env):
    """Generic pixel environment; each task module subclasses it only to set its docstring
    (the spec) and its Task.

    Args:
        task: the task (scene, reward, success, expert); default ``task_class()``.
        image_size: side of the square ``pixels`` observation.
        obs_mode: ``"pixels"`` (Dict of pixels + proprio) or ``"state"`` (privileged state Box,
            for the state-oracle baseline).
        visual_preset: ``"train"``, ``"heldout"`` or ``"none"`` (see ``variation.PRESETS``).
        terminate_on_success: end the episode (terminated=True) once the task is solved.
        render_mode: ``"rgb_array"`` (the observation camera) or None (``render()``
            returns None).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}

    #: The task a subclass runs when none is passed; a task module's env class sets only this
    #: and its docstring (the spec).
    task_class: ClassVar[type[Task] | None] = None

    def __init__(
        self,
        task: Task | None = None,
        image_size: int = 64,
        obs_mode: str = "pixels",
        visual_preset: str = "train",
        terminate_on_success: bool = True,
        render_mode: str | None = "rgb_array",
    ) -> None:
        name = type(self).__name__
        if task is None:
            if self.task_class is None:
                raise ValueError(f"{name}: pass a task or set {name}.task_class")
            task = self.task_class()
        if not isinstance(task, Task):  # a name or a class failed later, naming neither
            raise ValueError(f"{name}: task must be a Task instance, got {task!r}")
        if self.task_class is not None and type(task) is not self.task_class:
            # Another task under this id would run with this id's spec and time limit.
            raise ValueError(
                f"{name}: task must be a {self.task_class.__name__}, got a "
                f"{type(task).__name__} (make that task's own env instead)"
            )
        if obs_mode not in OBS_MODES:
            raise ValueError(f"{name}: unknown obs_mode {obs_mode!r}; choose one of {OBS_MODES}")
        low, high = IMAGE_SIZE_RANGE
        if not isinstance(image_size, int | np.integer) or not low <= image_size <= high:
            raise ValueError(
                f"{name}: image_size must be an int in [{low}, {high}], got {image_size!r}"
            )
        if not isinstance(terminate_on_success, bool | np.bool_):  # "False" is truthy
            raise ValueError(
                f"{name}: terminate_on_success must be True or False, got {terminate_on_success!r}"
            )
        if not isinstance(visual_preset, str) or visual_preset not in VISUAL_PRESETS:
            raise ValueError(
                f"{name}: unknown visual_preset {visual_preset!r}; choose one of "
                f"{sorted(VISUAL_PRESETS)}"
            )
        if render_mode not in (None, "rgb_array"):
            raise ValueError(
                f"{name}: render_mode must be 'rgb_array' or None, got {render_mode!r}"
            )
        # A copy of its own: gymnasium.make_vec (and make(env.spec)) hand every sub-env the
        # same task object, whose per-episode state (the target drawn) the last reset set for
        # all of them.
        self.task = copy.deepcopy(task)
        task = self.task
        self.image_size = int(image_size)
        self.obs_mode = obs_mode
        self.visual_preset = visual_preset
        self.terminate_on_success = bool(terminate_on_success)
        self.render_mode = render_mode
        self.physics = Physics.from_xml_path(asset_path(task.scene.xml_file))
        self.variation = SceneVariation(self.physics, task.scene, visual_preset)
        self._camera_id = self.physics.camera_id(task.scene.camera)
        self._renderer: Renderer | None = None  # made lazily: state mode needs no GL
        self.control_timestep = task.scene.num_substeps * self.physics.timestep
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.control_timestep)}

        self.state_names = task.state_names
        self.view_state_names = task.view_state_names or task.state_names
        self.view_conditions = task.view_conditions
        self.proprio_names = task.proprio_names
        self.action_names = task.action_names
        num_actions = len(task.action_names)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(num_actions,), dtype=np.float32)
        state_space = spaces.Box(-np.inf, np.inf, shape=(len(task.state_names),), dtype=np.float32)
        if obs_mode == "state":
            self.observation_space = state_space
        else:
            size = self.image_size
            self.observation_space = spaces.Dict(
                {
                    "pixels": spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8),
                    "proprio": spaces.Box(
                        -np.inf, np.inf, shape=(len(task.proprio_names),), dtype=np.float32
                    ),
                }
            )
        self._needs_reset = True
        self._has_reset = False  # the expert reads a state only a reset sets up

    # --- gymnasium API -------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if options:  # the look is fixed at construction; anything here would be ignored
            raise ValueError(
                f"{type(self).__name__}: reset takes no options (set visual_preset and the "
                f"rest when making the env), got {options!r}"
            )
        super().reset(seed=seed)
        self.physics.reset()
        self.variation.apply(self.physics, self.np_random)
        self.task.initialize_episode(self.physics, self.np_random)
        self.physics.forward()
        self._needs_reset = False
        self._has_reset = True
        info = self._info(self.task.reward_terms(self.physics), diverged=False)
        return self._observation(), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError(f"{type(self).__name__}: call reset() before step()")
        action = self._validate_action(action)
        before = self.physics.get_state()
        self.task.apply_action(self.physics, action)
        self.physics.step(self.task.scene.num_substeps)
        if self.physics.is_diverged():
            # Never hand NaNs to a learner: restore the state before the step and end the
            # episode. If even that was not finite (it was written from outside), keep the
            # state MuJoCo reset the data to, or reset it here.
            if Physics.is_finite_state(before):
                self.physics.set_state(before)
            elif not Physics.is_finite_state(self.physics.get_state()):
                self.physics.reset()
                self.physics.forward()
            self.physics.clear_warnings()  # the counters belong to the finished episode
            self._needs_reset = True
            # The reward of the state handed back, as every step's is: a flat 0 would pay a
            # divergence more than any ordinary step (every term but success is <= 0).
            terms = self.task.reward_terms(self.physics)
            reward = float(sum(terms.values()))
            return self._observation(), reward, False, True, self._info(terms, diverged=True)
        self.task.after_step(self.physics)
        terms = self.task.reward_terms(self.physics)
        reward = float(sum(terms.values()))
        info = self._info(terms, diverged=False)
        terminated = bool(self.terminate_on_success and info["is_success"])
        # An ended episode, like a diverged one, takes no more steps: a loop that forgot to
        # reset kept collecting the success bonus past the episode's end.
        self._needs_reset = terminated
        return self._observation(), reward, terminated, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self._render_pixels()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # --- helpers -------------------------------------------------------------------------
    def expert_action(self) -> np.ndarray:
        """The task's scripted expert action for the current state, float32 in [-1, 1]."""
        if not self._has_reset:  # it would act on a state never set up, without a word
            raise RuntimeError(f"{type(self).__name__}: call reset() before expert_action()")
        action = np.asarray(self.task.expert_action(self.physics), dtype=np.float32)
        return np.clip(action, -1.0, 1.0)

    def _validate_action(self, action: Any) -> np.ndarray:
        name = type(self).__name__
        try:
            if np.asarray(action).dtype.kind not in "biuf":  # strings would parse as numbers
                raise TypeError
            array = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name}: action is not numeric: {action!r}") from error
        expected = self.action_space.shape
        if array.shape != expected:
            raise ValueError(f"{name}: action has shape {array.shape}, expected {expected}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name}: action contains NaN or inf: {array.tolist()}")
        return np.clip(array, -1.0, 1.0)  # documented: out-of-range actions are clipped

    def _render_pixels(self) -> np.ndarray:
        if self._renderer is None:
            self._renderer = Renderer(self.physics.model, self.image_size, self.image_size)
        return self._renderer.render(self.physics.data, self._camera_id)

    def _observation(self) -> Any:
        state = np.asarray(self.task.get_state(self.physics), dtype=np.float32)
        if self.obs_mode == "state":
            return state
        return {
            "pixels": self._render_pixels(),
            "proprio": np.asarray(self.task.get_proprio(self.physics), dtype=np.float32),
        }

    def _info(self, terms: dict[str, float], diverged: bool) -> dict[str, Any]:
        info: dict[str, Any] = {f"reward/{key}": float(value) for key, value in terms.items()}
        info["state"] = np.asarray(self.task.get_state(self.physics), dtype=np.float32)
        info["is_success"] = bool(self.task.is_success(self.physics))
        info["diverged"] = diverged
        return info
