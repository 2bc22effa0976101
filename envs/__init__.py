"""MuJoCo environments of sslrobot, registered with Gymnasium on import.

Imports only gymnasium here (entry points are strings), so ``import sslrobot.envs`` is fast; the
task modules load mujoco when an environment is made.
"""

from __future__ import annotations

import gymnasium as gym

from sslrobot.envs.experts import expert_action

__all__ = [
    "ENV_IDS",
    "LATEST_ENV_IDS",
    "MAX_EPISODE_STEPS",
    "expert_action",
    "registered_camera_moves",
    "registered_view_conditions",
    "registered_view_state_names",
]

#: id -> (entry point, step limit after which the episode is truncated)
_REGISTRY = {
    "sslrobot/Reach-v0": ("sslrobot.envs.manipulation.reach:ReachEnv", 50),
    "sslrobot/Push-v0": ("sslrobot.envs.manipulation.push:PushEnv", 150),
    "sslrobot/Navigate-v0": ("sslrobot.envs.navigation.navigate:NavigateEnv", 250),
    "sslrobot/Navigate-v1": ("sslrobot.envs.navigation.navigate:NavigateV1Env", 250),
}
ENV_IDS: tuple[str, ...] = tuple(_REGISTRY)


def _latest_versions(env_ids: tuple[str, ...]) -> tuple[str, ...]:
    """The newest ``-vN`` of each task in ``env_ids``, in the order tasks first appear."""
    latest: dict[tuple[str | None, str], tuple[int, str]] = {}
    for env_id in env_ids:
        namespace, name, version = gym.envs.registration.parse_env_id(env_id)
        task, version = (namespace, name), version or 0
        if task not in latest or version > latest[task][0]:
            latest[task] = (version, env_id)
    return tuple(env_id for _, env_id in latest.values())


#: The newest version of each task, what the pipeline runs by default; older versions stay
#: registered, unchanged, for the results published with them.
LATEST_ENV_IDS: tuple[str, ...] = _latest_versions(ENV_IDS)
MAX_EPISODE_STEPS: dict[str, int] = {env_id: steps for env_id, (_, steps) in _REGISTRY.items()}

for _env_id, (_entry_point, _max_steps) in _REGISTRY.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)


def _registered_task_class(env_id: str) -> type | None:
    """The task class of a registered sslrobot id (None for other ids). Imports the task's
    module (mujoco)."""
    if env_id not in _REGISTRY:
        return None
    import importlib

    module_name, class_name = _REGISTRY[env_id][0].split(":")
    return getattr(importlib.import_module(module_name), class_name).task_class


def registered_view_conditions(env_id: str) -> tuple[tuple[str, str, float], ...] | None:
    """The ``view_conditions`` of a registered sslrobot task (None for other ids).

    For datasets collected before manifests recorded them: the id pins the task's version, so
    its class still says which variables are in view when. Imports the task's module (mujoco).
    """
    task_class = _registered_task_class(env_id)
    return None if task_class is None else tuple(getattr(task_class, "view_conditions", ()))


def registered_camera_moves(env_id: str) -> bool | None:
    """Whether a registered sslrobot task's camera moves with its robot (``Task.camera_moves``);
    None for other ids. Imports the task's module (mujoco)."""
    task_class = _registered_task_class(env_id)
    return None if task_class is None else bool(task_class.camera_moves)


def registered_view_state_names(env_id: str) -> tuple[str, ...] | None:
    """The ``view_state_names`` of a registered sslrobot task, as its env reports them (its
    state names where the task sets none); None for other ids. For datasets collected before
    manifests recorded them, as ``registered_view_conditions``."""
    task_class = _registered_task_class(env_id)
    if task_class is None:
        return None
    return tuple(task_class.view_state_names or task_class.state_names)
