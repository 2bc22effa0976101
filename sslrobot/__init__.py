"""sslrobot: self-supervised visual pretraining for simulated robots, end to end.

Importing the package registers the environments (``sslrobot/Reach-v0`` ...) but does not
import torch, so that environment-only users start fast.
"""

from sslrobot import envs as envs  # registers the gymnasium ids

__version__ = "0.1.0"
