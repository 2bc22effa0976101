"""Headless offscreen renderer, built for llvmpipe speed and correctness across many envs.

Why not ``mujoco.Renderer``: it needs ``MUJOCO_GL`` set before ``import mujoco`` to pick a
headless backend, and a library must not set process-wide variables at import. Here the backend
is chosen when the first renderer is made: ``MUJOCO_GL`` if the user set it, else EGL, else
OSMesa. The GL context is made current before every frame, so several environments in one
process never read each other's (or a closed context's) framebuffer; Gymnasium 1.4's renderer
returns black frames in that situation.
"""

from __future__ import annotations

import os
from typing import Any

import mujoco
import numpy as np

_HEADLESS_BACKENDS = ("egl", "osmesa")


def _import_context_class(backend: str) -> type:
    if backend == "egl":
        from mujoco.egl import GLContext
    elif backend == "osmesa":
        from mujoco.osmesa import GLContext
    elif backend in ("glfw", "glx"):
        from mujoco.glfw import GLContext
    elif backend == "cgl":
        from mujoco.cgl import GLContext
    else:
        raise ValueError(
            f"unsupported MUJOCO_GL={backend!r}; use one of egl, osmesa, glfw (or unset it)"
        )
    return GLContext


def make_gl_context(width: int, height: int) -> tuple[Any, str]:
    """Create an offscreen GL context; returns it with the backend name that worked."""
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    candidates = (requested,) if requested else _HEADLESS_BACKENDS
    errors = []
    for backend in candidates:
        try:
            context = _import_context_class(backend)(width, height)
        except Exception as error:  # noqa: BLE001 - each backend fails in its own way
            errors.append(f"{backend}: {type(error).__name__}: {error}")
            continue
        return context, backend
    raise RuntimeError(
        "could not create a headless OpenGL context for MuJoCo rendering ("
        + "; ".join(errors)
        + "). On Linux install Mesa's EGL (apt-get install libegl1 libgl1-mesa-dri) or "
        "OSMesa (libosmesa6), or set MUJOCO_GL to a backend that works here."
    )


class Renderer:
    """Renders RGB frames of one model from its named or free cameras.

    Args:
        model: the MuJoCo model; its offscreen buffer is enlarged if smaller than the image.
        height, width: image size in pixels.
    """

    def __init__(self, model: mujoco.MjModel, height: int, width: int) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        self.height, self.width = height, width
        self._model = model
        self._context, self.backend = make_gl_context(width, height)
        self._context.make_current()
        self._scene = mujoco.MjvScene(model, maxgeom=max(256, 4 * model.ngeom))
        self._option = mujoco.MjvOption()
        self._perturb = mujoco.MjvPerturb()
        self._camera = mujoco.MjvCamera()
        self._mjr_context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._mjr_context)
        self._viewport = mujoco.MjrRect(0, 0, width, height)
        self._buffer = np.empty((height, width, 3), dtype=np.uint8)

    def render(self, data: mujoco.MjData, camera_id: int) -> np.ndarray:
        """Returns a fresh (H, W, 3) uint8 frame from a model camera."""
        if self._context is None:
            raise RuntimeError("render() called on a closed Renderer")
        self._context.make_current()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = camera_id
        mujoco.mjv_updateScene(
            self._model,
            data,
            self._option,
            self._perturb,
            self._camera,
            mujoco.mjtCatBit.mjCAT_ALL,
            self._scene,
        )
        mujoco.mjr_render(self._viewport, self._scene, self._mjr_context)
        mujoco.mjr_readPixels(self._buffer, None, self._viewport, self._mjr_context)
        return self._buffer[::-1].copy()  # OpenGL rows start at the bottom

    def close(self) -> None:
        if self._context is None:
            return
        self._context.make_current()
        self._mjr_context.free()
        self._context.free()
        self._context = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have freed GL already
            pass
