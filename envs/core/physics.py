"""MuJoCo model and data with the named geometric queries that tasks ask."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

#: What ``get_state`` saves: all that the next integration step reads.
_INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION
#: Warnings after which MuJoCo has reset the data on its own (the step diverged).
_RESET_WARNINGS = tuple(
    int(kind)
    for kind in (
        mujoco.mjtWarning.mjWARN_BADQPOS,
        mujoco.mjtWarning.mjWARN_BADQVEL,
        mujoco.mjtWarning.mjWARN_BADQACC,
    )
)


class Physics:
    """Owns an ``MjModel``/``MjData`` pair and answers questions by name.

    Tasks never index ``data.qpos`` with magic numbers; they ask ``physics.body_position("cube")``
    so that a scene edit cannot silently change what a task measures.
    """

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.data = mujoco.MjData(model)

    @classmethod
    def from_xml_path(cls, path: str | Path) -> Physics:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"MJCF scene not found: {path}")
        return cls(mujoco.MjModel.from_xml_path(str(path)))

    # --- time stepping -------------------------------------------------------------------
    def reset(self) -> None:
        mujoco.mj_resetData(self.model, self.data)

    def forward(self) -> None:
        mujoco.mj_forward(self.model, self.data)

    def step(self, num_substeps: int) -> None:
        """Advance ``num_substeps`` physics steps, then recompute positions from the new state.

        ``mj_step`` leaves body/site/camera poses computed from the state *before* its last
        integration; without the final ``mj_forward`` the rendered frame and the site-based
        state would lag ``qpos`` (and the proprio) by one substep.
        """
        mujoco.mj_step(self.model, self.data, nstep=num_substeps)
        mujoco.mj_forward(self.model, self.data)

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    def get_state(self) -> np.ndarray:
        """Snapshot of everything integration reads (``mjSTATE_INTEGRATION``: qpos, qvel, act,
        controls, applied forces, mocap poses, ...) to restore after a divergence.

        Not qpos, qvel and act alone: MuJoCo's own reset on a bad state also moves the mocap
        bodies, where Reach's target, Push's goal and Navigate-v1's goal and pillars are
        placed each episode, back to their XML positions (a restored robot then looked at a
        goal somewhere else, and Navigate-v1 could score a success at it).
        """
        state = np.empty(mujoco.mj_stateSize(self.model, _INTEGRATION))
        mujoco.mj_getState(self.model, self.data, state, _INTEGRATION)
        return state

    def set_state(self, state: np.ndarray) -> None:
        mujoco.mj_setState(self.model, self.data, state, _INTEGRATION)
        self.forward()

    def clear_warnings(self) -> None:
        """Zero MuJoCo's warning counters (``is_diverged`` reads the bad qpos/qvel/qacc ones)."""
        for warning in self.data.warning:
            warning.number = 0
            warning.lastinfo = 0

    def is_diverged(self, max_abs_qvel: float = 1e4) -> bool:
        """True once the simulation state is non-finite or exploding.

        MuJoCo resets the data itself when it meets a bad position, velocity or acceleration
        (``mjWARN_BADQPOS``, ``mjWARN_BADQVEL``, ``mjWARN_BADQACC``), so those warning counters
        are checked too: a silent reset would otherwise look like a teleport to the learner.
        """
        # Written for speed (it runs every step): a NaN fails every comparison, and a sum is
        # finite only if every entry is.
        qvel = self.data.qvel
        if qvel.size and not float(np.max(np.abs(qvel))) <= max_abs_qvel:
            return True
        if not np.isfinite(np.sum(self.data.qpos)):
            return True
        warnings = self.data.warning
        return any(warnings[kind].number > 0 for kind in _RESET_WARNINGS)

    @staticmethod
    def is_finite_state(state: np.ndarray) -> bool:
        """Whether a ``get_state`` snapshot holds only finite numbers."""
        return bool(np.isfinite(state).all())

    # --- named queries -------------------------------------------------------------------
    def _id(self, kind: mujoco.mjtObj, name: str) -> int:
        index = mujoco.mj_name2id(self.model, kind, name)
        if index < 0:
            raise KeyError(f"no {kind.name.removeprefix('mjOBJ_').lower()} named {name!r} in model")
        return index

    def body_position(self, name: str) -> np.ndarray:
        return self.data.xpos[self._id(mujoco.mjtObj.mjOBJ_BODY, name)].copy()

    def body_rotation(self, name: str) -> np.ndarray:
        """(3, 3) world rotation matrix of a body."""
        return self.data.xmat[self._id(mujoco.mjtObj.mjOBJ_BODY, name)].reshape(3, 3).copy()

    def site_position(self, name: str) -> np.ndarray:
        return self.data.site_xpos[self._id(mujoco.mjtObj.mjOBJ_SITE, name)].copy()

    def geom_position(self, name: str) -> np.ndarray:
        return self.data.geom_xpos[self._id(mujoco.mjtObj.mjOBJ_GEOM, name)].copy()

    def set_mocap_position(self, body: str, position: tuple[float, ...] | np.ndarray) -> None:
        """Place a mocap body (a target, a goal, a landmark) at ``position`` (3,) in world
        coordinates; mocap bodies move without dynamics and collide where they are drawn."""
        mocap_id = int(self.model.body_mocapid[self._id(mujoco.mjtObj.mjOBJ_BODY, body)])
        if mocap_id < 0:
            raise KeyError(f"body {body!r} is not a mocap body")
        self.data.mocap_pos[mocap_id] = position

    def geom_id(self, name: str) -> int:
        return self._id(mujoco.mjtObj.mjOBJ_GEOM, name)

    def camera_id(self, name: str) -> int:
        return self._id(mujoco.mjtObj.mjOBJ_CAMERA, name)

    def joint_qpos_address(self, name: str) -> int:
        return int(self.model.jnt_qposadr[self._id(mujoco.mjtObj.mjOBJ_JOINT, name)])

    def joint_qvel_address(self, name: str) -> int:
        return int(self.model.jnt_dofadr[self._id(mujoco.mjtObj.mjOBJ_JOINT, name)])

    def joint_position(self, name: str) -> float:
        return float(self.data.qpos[self.joint_qpos_address(name)])

    def joint_velocity(self, name: str) -> float:
        return float(self.data.qvel[self.joint_qvel_address(name)])

    def set_joint_position(self, name: str, value: float | np.ndarray) -> None:
        """Set a joint's qpos; free joints take 7 values (xyz + wxyz quaternion)."""
        address = self.joint_qpos_address(name)
        values = np.atleast_1d(np.asarray(value, dtype=np.float64))
        self.data.qpos[address : address + values.size] = values

    def actuator_ctrl_range(self) -> np.ndarray:
        """(num_actuators, 2) control range of every actuator."""
        return self.model.actuator_ctrlrange.copy()
