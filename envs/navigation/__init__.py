"""Navigation (a mobile robot with an egocentric camera) tasks of sslrobot."""

import sslrobot.envs.core  # noqa: F401 - MuJoCo imported there first, its failures named
