"""MJCF scenes and textures shipped with sslrobot."""
