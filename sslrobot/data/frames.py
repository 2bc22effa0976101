"""Getting camera frames out of any gymnasium env, and refusing broken (black/constant) streams."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np

BLACK_FRAME_HINT = (
    "This is usually a broken renderer, not the scene: Gymnasium 1.4's MuJoCo renderer silently "
    "returns all-black frames once another MuJoCo env in the same process has been closed, "
    "because it makes its GL context current only when an env has more than one viewer. Keep "
    "one env open per process (the collector does), make the GL context current before each "
    "render or render with mujoco.Renderer, and check MUJOCO_GL (egl or osmesa when headless)."
)


class DegenerateFramesError(ValueError):
    """The env produced an all-black or constant frame stream; nothing was written for it."""


def has_pixel_observation(space: gym.Space) -> bool:
    """Whether observations are a Dict with a ``pixels`` entry (else frames come from render)."""
    return isinstance(space, gym.spaces.Dict) and "pixels" in space.spaces


def _make_gl_context_current(env: gym.Env) -> None:
    """Make a Gymnasium MuJoCo env's offscreen GL context current before it renders.

    Gymnasium 1.4's ``MujocoRenderer`` makes its context current only when it has more than
    one viewer; once any other GL context became current in the process (another env, an
    sslrobot env), its frames come out black. Envs without that renderer are left alone.
    """
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    viewer = getattr(renderer, "viewer", None)
    make_current = getattr(viewer, "make_context_current", None)
    if callable(make_current):
        make_current()


def get_frame(env: gym.Env, obs: object, from_obs: bool) -> np.ndarray:
    """The current camera frame, uint8 (H, W, 3), not copied: valid until the next step.

    Args:
        env: The env (rendered when ``from_obs`` is False; needs ``render_mode="rgb_array"``).
        obs: The latest observation.
        from_obs: Take ``obs["pixels"]`` instead of calling ``env.render()``.

    Raises:
        ValueError: the frame is not a uint8 (H, W, 3) array (names the env and the source).
    """
    if from_obs:
        frame = obs["pixels"]  # type: ignore[index]
    else:
        if getattr(env.unwrapped, "mujoco_renderer", None) is not None:  # Gymnasium's MuJoCo
            # (imported here: it loads MuJoCo, which commands that never render do without)
            from sslrobot.envs.core.render import choose_backend_for_other_renderers

            choose_backend_for_other_renderers()  # once set, a lookup per frame
        _make_gl_context_current(env)
        frame = env.render()
    source = 'obs["pixels"]' if from_obs else "env.render()"
    if (
        not isinstance(frame, np.ndarray)
        or frame.dtype != np.uint8
        or frame.ndim != 3
        or frame.shape[-1] != 3
    ):
        desc = (
            f"{frame.dtype} {frame.shape}"
            if isinstance(frame, np.ndarray)
            else type(frame).__name__
        )
        env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        raise ValueError(f"{env_id}: {source} gave {desc}; expected a uint8 (H, W, 3) RGB image")
    return frame


def check_frame(frame: np.ndarray, env_id: str, episode_id: int, step: int) -> None:
    """Refuse a frame of one single colour (all black, all white...) as soon as it appears.

    Raises:
        DegenerateFramesError: with the value and the black-frame hint.
    """
    low, high = int(frame.min()), int(frame.max())
    if low == high:
        colour = "all black" if low == 0 else f"every pixel value {low}"
        raise DegenerateFramesError(
            f"{env_id}: frame {step} of episode {episode_id} is a single constant colour "
            f"({colour}, shape {frame.shape}); refusing to record it. {BLACK_FRAME_HINT}"
        )


#: Frames an episode needs before identical ones count as a frozen renderer: a short episode
#: at a small size renders identical frames legitimately (8 px, 3 frames: the arm moves less
#: than a pixel, which aborted a collection), and a frozen renderer freezes every episode, so
#: the longer ones still catch it.
FROZEN_MIN_FRAMES = 10

#: ``check_frame_stream`` warns of a one-colour frame after an episode's first once per process
#: (a collection's workers are processes of their own) and per in-process collection.
_warned_of_constant_frames = False


def warn_of_constant_frames_again() -> None:
    """Let the next one-colour frame be warned of: a collection starts (a script or a run that
    collects several datasets in one process heard of the first one's alone)."""
    global _warned_of_constant_frames
    _warned_of_constant_frames = False


def check_frame_stream(pixels: np.ndarray, env_id: str, episode_id: int) -> None:
    """Refuse an episode whose first frame is one colour or whose frames never change; warn,
    once per collection (and process), of a later frame of one colour, and record it.

    A broken renderer shows from an episode's first frame (Gymnasium's black frames follow a
    closed env, between episodes), and a scene can give one colour later: an ego camera
    against a wall sees nothing else (Navigate, in a noisy-expert stream), and refusing that
    frame stopped the collection for good, since its seed gives it again.

    One vectorised pass per episode (cheaper than a check per step).

    Args:
        pixels: uint8 (L+1, H, W, 3).

    Raises:
        DegenerateFramesError: the first frame is one constant colour, or all L+1 >=
            ``FROZEN_MIN_FRAMES`` frames are identical (a frozen camera or renderer).
    """
    check_frame(pixels[0], env_id, episode_id, 0)
    flat = pixels.reshape(len(pixels), -1)
    constant = flat.min(axis=1) == flat.max(axis=1)
    global _warned_of_constant_frames
    if constant.any() and not _warned_of_constant_frames:
        _warned_of_constant_frames = True
        step = int(np.argmax(constant))
        warnings.warn(
            f"{env_id}: frame {step} of episode {episode_id} is one constant colour (every "
            f"pixel value {int(flat[step, 0])}); recorded, as a camera against a wall renders "
            "so (said once per collecting process). A renderer that failed mid-episode is "
            "refused at the next episode's first frame.",
            stacklevel=2,
        )
    frozen = len(pixels) >= FROZEN_MIN_FRAMES and np.array_equal(pixels[-1], pixels[0])
    if frozen and bool(np.all(pixels == pixels[0])):
        raise DegenerateFramesError(
            f"{env_id}: all {len(pixels)} frames of episode {episode_id} are identical; the "
            f"camera or renderer is frozen, refusing to record it. {BLACK_FRAME_HINT}"
        )
