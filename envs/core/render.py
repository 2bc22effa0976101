"""Headless offscreen renderer, built for llvmpipe speed and correctness across many envs.

Why not ``mujoco.Renderer``: it needs ``MUJOCO_GL`` set before ``import mujoco`` to pick a
headless backend, and a library must not set process-wide variables at import. Here the backend
is chosen when the first renderer is made: ``MUJOCO_GL`` if the user set it, else EGL if
libEGL is installed, else OSMesa if libOSMesa is (a backend that loads and then fails leaves
PyOpenGL bound to it, so no other can take over in that process). The GL context is made
current before every frame, so several environments in one process never read each other's
(or a closed context's) framebuffer; Gymnasium 1.4's renderer returns black frames in that
situation.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import functools
import os
import sys
import threading
from typing import Any

import mujoco
import numpy as np

_HEADLESS_BACKENDS = ("egl", "osmesa")


class RenderingUnavailableError(OSError, RuntimeError):
    """No GL context for MuJoCo could be made here: a missing library or display, which the
    user fixes by installing one or choosing another ``MUJOCO_GL`` (an OSError, so that the
    command line prints it as one line; a RuntimeError, as it was raised before)."""


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


#: Whether this process made a GL context that Mesa's software rasteriser (llvmpipe) draws,
#: with the ``LP_NUM_THREADS`` it started with (Mesa reads it once per process), and whether
#: it was forked from a process that had (set in the child at each fork).
_software_context_made = False
_software_context_threads: str | None = None
_forked_after_software_rendering = False


def _note_fork_in_child() -> None:
    global _forked_after_software_rendering
    _forked_after_software_rendering = _software_context_made


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_note_fork_in_child)


def _is_software_renderer(context: Any) -> bool:
    """Whether ``context`` is drawn by Mesa's llvmpipe or softpipe (its ``GL_RENDERER``);
    False when that cannot be read."""
    try:
        from OpenGL import GL

        context.make_current()
        name = GL.glGetString(GL.GL_RENDERER) or b""
    except Exception:  # an unknown renderer is not refused
        return False
    return b"llvmpipe" in name or b"softpipe" in name


def _refuse_rendering_after_fork() -> None:
    """A process forked from one that had rendered with llvmpipe, whose worker threads do not
    survive a fork, hung for good at its first frame (``LP_NUM_THREADS`` >= 1; Gymnasium's
    async vector envs fork by default on Linux): an error instead of a silent hang."""
    threads = _software_context_threads or ""  # the parent's: the child's own came too late
    if _forked_after_software_rendering and threads != "0":
        raise RenderingUnavailableError(
            "this process was forked from one that had rendered with Mesa's llvmpipe, whose "
            f"worker threads (LP_NUM_THREADS={threads or 'unset'}) do not survive a fork: "
            "rendering here would hang. Start worker processes with spawn or forkserver "
            "(gym.make_vec(..., vectorization_mode='async', vector_kwargs={'context': "
            "'spawn'})), make them before the parent renders, or set LP_NUM_THREADS=0 "
            "before Python starts"
        )


def make_gl_context(width: int, height: int) -> tuple[Any, str]:
    """Create an offscreen GL context; returns it with the backend name that worked.

    Sets ``LP_NUM_THREADS=0`` unless the user set it, before the first context is made (Mesa's
    llvmpipe reads it once per process, when it starts): at 64x64 llvmpipe's worker threads
    cost more than they save, and with one environment per core they oversubscribe it.
    Measured with scripts/bench_envs.py on a shared 2-core machine (provisional), pixel steps
    per CPU-second at 64x64: Push-v0 about 3,800 with 0, 3,000 with 1, 2,700 with 2 (Mesa's
    default here, one thread per core); Reach-v0 4,800 / 4,300 / 4,200. Child processes
    (vector environments) inherit it. GPU drivers ignore it.
    """
    os.environ.setdefault("LP_NUM_THREADS", "0")
    _refuse_rendering_after_fork()
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    candidates = (requested,) if requested else _HEADLESS_BACKENDS
    platform = os.environ.get("PYOPENGL_PLATFORM")  # the user's, if any
    errors = []
    for backend in candidates:
        if not requested and not _library_found(backend):
            errors.append(f"{backend}: lib{_LIBRARIES[backend]} not found")
            continue  # not imported: a failed import would bind PyOpenGL to it for good
        try:
            context = _import_context_class(backend)(width, height)
        except Exception as error:  # each backend fails in its own way (ImportError, GL errors)
            errors.append(f"{backend}: {type(error).__name__}: {error}")
            # mujoco.egl sets PYOPENGL_PLATFORM=egl on import, and mujoco.osmesa refuses to
            # load under it: undo it so that the next backend gets its chance.
            if platform is None:
                os.environ.pop("PYOPENGL_PLATFORM", None)
            else:
                os.environ["PYOPENGL_PLATFORM"] = platform
            continue
        global _software_context_made, _software_context_threads
        if not _software_context_made:
            _software_context_made = _is_software_renderer(context)
            _software_context_threads = os.environ.get("LP_NUM_THREADS")
        return context, backend
    raise RenderingUnavailableError(
        "could not create a headless OpenGL context for MuJoCo rendering ("
        + "; ".join(errors)
        + "). On Linux install Mesa's EGL (apt-get install libegl1 libgl1-mesa-dri) or "
        "OSMesa (libosmesa6), or set MUJOCO_GL to a backend that works here (before Python "
        "starts: once one backend has loaded, PyOpenGL stays bound to it in that process)."
    )


def choose_backend_for_other_renderers() -> None:
    """Set ``MUJOCO_GL`` to the headless backend this module's contexts work with (EGL, else
    OSMesa), on Linux with neither ``MUJOCO_GL`` nor a display set; otherwise leave
    everything as it is. Tried once per process.

    For renderers other than this module's: Gymnasium's MuJoCo envs (``Reacher-v5``), with
    ``MUJOCO_GL`` unset, try GLFW first, and without a display that failed in
    ``mjr_makeContext`` ("an OpenGL platform library has not been loaded") on every headless
    machine, where sslrobot's own envs chose EGL by themselves. Call it before such an env
    first renders (Gymnasium reads the variable then).

    Raises:
        RenderingUnavailableError: no headless backend works here (names what to install).
    """
    global _other_renderers_set_up
    if _other_renderers_set_up or os.environ.get("MUJOCO_GL"):
        return
    _other_renderers_set_up = True
    if not sys.platform.startswith("linux"):
        return
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return  # a desktop: GLFW works, and windows (render_mode="human") need it
    # A backend that works, not one that loads. When none does, this error says why and what
    # to install; the env's own attempt (GLFW, without a display) would only fail in
    # mjr_makeContext, naming no cause.
    context, backend = make_gl_context(1, 1)
    context.free()
    os.environ["MUJOCO_GL"] = backend


#: Whether ``choose_backend_for_other_renderers`` has run in this process.
_other_renderers_set_up = False


#: The shared library each headless backend loads, and the sonames to try opening.
_LIBRARIES = {"egl": "EGL", "osmesa": "OSMesa"}
_SONAMES = {
    "egl": ("libEGL.so.1", "libEGL.so"),
    "osmesa": ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"),
}


@functools.cache
def _library_found(backend: str) -> bool:
    """Whether the backend's library loads, checked before importing its module: opened the
    way the dynamic loader finds it (``LD_LIBRARY_PATH``, RPATH), which binds nothing, then
    ``find_library`` (which misses those paths without a compiler installed)."""
    for soname in _SONAMES[backend]:
        try:
            ctypes.CDLL(soname)
        except OSError:
            continue
        return True
    return ctypes.util.find_library(_LIBRARIES[backend]) is not None


class Renderer:
    """Renders RGB frames of one model from its fixed cameras.

    Its GL context is made in the thread that creates the renderer (an env makes it lazily,
    at its first pixel observation or render) and stays bound to that thread (it is made
    current before every frame, never released), so an env renders from that thread only;
    another thread's render is refused with a RuntimeError that says so (EGL's own
    ``EGL_BAD_ACCESS`` named neither thread nor remedy). Use an env per thread, close it
    before another thread uses it (the next frame makes a new context there), or processes.
    A process forked after its parent rendered with llvmpipe would hang at its first frame
    with ``LP_NUM_THREADS`` >= 1 (Mesa's worker threads do not survive a fork), and is refused
    with a RenderingUnavailableError that says so: vector envs should start their workers
    with ``spawn`` or ``forkserver``, as ``sslrobot collect`` does.

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
        try:
            self._context.make_current()
            self._scene = mujoco.MjvScene(model, maxgeom=max(256, 4 * model.ngeom))
            self._option = mujoco.MjvOption()
            self._perturb = mujoco.MjvPerturb()
            self._camera = mujoco.MjvCamera()
            self._mjr_context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        except BaseException as error:  # the context is freed whatever failed after it
            self._context.free()
            self._context = None
            if not isinstance(error, mujoco.FatalError):
                raise
            # e.g. MUJOCO_GL=glfw without a display
            raise RenderingUnavailableError(
                f"MuJoCo could not render with the {self.backend} backend ({error}); unset "
                "MUJOCO_GL to let sslrobot choose a headless one (EGL, OSMesa), or set it to "
                "one that works here"
            ) from error
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._mjr_context)
        self._viewport = mujoco.MjrRect(0, 0, width, height)
        self._buffer = np.empty((height, width, 3), dtype=np.uint8)
        self._thread = threading.get_ident()  # where the context is current

    def _check_thread(self) -> None:
        """Refuse another thread than the one the context is current in (even once that one
        has ended: EGL keeps the context bound to it)."""
        if threading.get_ident() == self._thread:
            return
        owner = next((t for t in threading.enumerate() if t.ident == self._thread), None)
        where = f"thread {owner.name!r}" if owner is not None else "a thread that has ended"
        raise RuntimeError(
            f"this env's renderer was made in {where} (at its first frame), and MuJoCo's GL "
            f"context cannot be made current in another ({threading.current_thread().name!r}); "
            "reset, step and render the env in one thread, close() it before another thread "
            "uses it (the next frame makes a new context there), or use processes"
        )

    def render(self, data: mujoco.MjData, camera_id: int) -> np.ndarray:
        """Returns a fresh (H, W, 3) uint8 frame from a model camera."""
        if self._context is None:
            raise RuntimeError("render() called on a closed Renderer")
        self._check_thread()
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
        """Free the GL context; from another thread than the one it is bound to as well (a
        close there used to fail with EGL_BAD_ACCESS): its GL objects then go with the
        context, which EGL destroys once no thread has it current."""
        if self._context is None:
            return
        if threading.get_ident() == self._thread:
            self._context.make_current()
            self._mjr_context.free()
        self._context.free()
        self._context = None

    def __del__(self) -> None:
        # At interpreter shutdown GL may already be gone; nothing is left to free then.
        with contextlib.suppress(Exception):
            self.close()
