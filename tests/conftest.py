"""Shared test settings: small thread counts, headless rendering, seeded global generators."""

import os
import random

# Tests run on 2-core CI machines beside other work; one thread each keeps timings predictable.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# After the settings above, which the libraries read when they are imported.
import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_global_generators() -> None:
    """Each test draws from the global generators (torch's, NumPy's, Python's) as if it ran
    alone: a learning threshold met with the draws one test order left was not asked of
    another order's, as a ``-k`` selection or a skipped test makes."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
