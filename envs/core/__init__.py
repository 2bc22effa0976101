"""The environments' shared core (physics, rendering, tasks).

MuJoCo is imported here first, so that a rendering backend it cannot load (``MUJOCO_GL`` set
to an unknown name, or to ``osmesa`` without libOSMesa, fails inside ``import mujoco`` with a
RuntimeError or an AttributeError from PyOpenGL) is reported as an ImportError naming the
variable and the fix, which the command line prints as one line instead of a traceback.
"""

from __future__ import annotations

import os

try:
    import mujoco  # noqa: F401 - imported for its failure, named below
except Exception as error:  # each backend fails at import in its own way
    _requested = os.environ.get("MUJOCO_GL")
    _setting = f" with MUJOCO_GL={_requested!r}" if _requested else ""
    raise ImportError(
        f"MuJoCo failed to import{_setting} ({type(error).__name__}: {error}); "
        + (
            "unset MUJOCO_GL to let sslrobot choose EGL or OSMesa, or install the library of "
            "the backend it names (apt-get install libegl1 libgl1-mesa-dri for egl, "
            "libosmesa6 for osmesa)"
            if _requested
            else "reinstall it (pip install mujoco)"
        )
    ) from error
