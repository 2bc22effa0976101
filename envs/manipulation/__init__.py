"""Manipulation (an arm that reaches and pushes) tasks of sslrobot."""

import sslrobot.envs.core  # noqa: F401 - MuJoCo imported there first, its failures named
