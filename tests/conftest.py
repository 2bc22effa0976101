"""Shared test settings: small thread counts, headless rendering."""

import os

# Tests run on 2-core CI machines beside other work; one thread each keeps timings predictable.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")
