"""Policies on frozen encoders: behaviour cloning, RL (Stable-Baselines3), saving and loading."""

from sslrobot.policy.checkpoint import Policy, load_policy
from sslrobot.policy.config import PolicyConfig
from sslrobot.policy.train import train_policy

__all__ = ["Policy", "PolicyConfig", "load_policy", "train_policy"]
