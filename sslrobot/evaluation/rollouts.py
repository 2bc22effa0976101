"""Seeded evaluation episodes of a policy, and rollout videos with success marked on the frames."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sslrobot.utils.io import atomic_write_to_name

#: Border colours of video frames: before success, from the success step on, failed at the end.
RUNNING_RGB = (128, 128, 128)
SUCCESS_RGB = (0, 200, 0)
FAILURE_RGB = (220, 0, 0)
#: Seconds the last frame is held (with its final border) so the outcome is readable.
HOLD_SECONDS = 1.0


@dataclass(frozen=True)
class EpisodeResult:
    """Outcome of one evaluation episode.

    Attributes:
        seed: Seed passed to ``env.reset``.
        success: Whether ``info["is_success"]`` was true at any step (or at reset).
        episode_return: Sum of rewards.
        length: Steps taken.
        success_step: First step (1-based; 0 = at reset) at which the task was solved, or None.
        diverged: Whether the episode ended by a physics divergence.
    """

    seed: int
    success: bool
    episode_return: float
    length: int
    success_step: int | None
    diverged: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "success": self.success,
            "return": self.episode_return,
            "length": self.length,
            "success_step": self.success_step,
            "diverged": self.diverged,
        }


def run_episode(
    env: gym.Env,
    act: Callable[[Any], np.ndarray],
    seed: int,
    record: bool = False,
) -> tuple[EpisodeResult, list[np.ndarray]]:
    """Roll out ``act`` for one episode from ``env.reset(seed=seed)``.

    Args:
        env: The environment (with its time limit).
        act: Maps one observation to one action, deterministically for evaluation; its
            ``reset()``, if it has one, is called before the episode's first observation.
        seed: Reset seed; the same seed, env and policy give the same episode.
        record: Keep the frames (``obs["pixels"]``, else ``env.render()``) for a video.

    Returns:
        The result, and the frames (L+1 of them, (H, W, 3) uint8) when ``record`` else [].
    """
    obs, info = env.reset(seed=seed)
    start_episode = getattr(act, "reset", None)  # a policy with episode context (Policy)
    if callable(start_episode):
        start_episode()
    if "is_success" not in info:  # every episode would count as failed, without a word
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        raise ValueError(
            f"{name} reports no 'is_success' in its info, so success cannot be scored; "
            "evaluate on an env that does (every sslrobot id), or wrap it to add one"
        )
    frames = [_frame(env, obs)] if record else []
    success_step = 0 if info["is_success"] else None
    total, length, diverged = 0.0, 0, False
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(act(obs))
        total += float(reward)
        length += 1
        if success_step is None and info.get("is_success", False):
            success_step = length
        diverged = diverged or bool(info.get("diverged", False))
        if record:
            frames.append(_frame(env, obs))
        done = terminated or truncated
    result = EpisodeResult(
        seed=int(seed),
        success=success_step is not None,
        episode_return=total,
        length=length,
        success_step=success_step,
        diverged=diverged,
    )
    return result, frames


def run_episodes(
    env: gym.Env,
    act: Callable[[Any], np.ndarray],
    seeds: Sequence[int],
    num_videos: int = 0,
    video_dir: Path | None = None,
    video_prefix: str = "episode",
    progress: bool = False,
) -> tuple[list[EpisodeResult], list[Path]]:
    """Run one episode per seed, writing videos of the first ``num_videos`` episodes.

    Args:
        progress: A bar on stderr (episodes, rate, ETA, success so far).

    Returns:
        Results in seed order, and the video paths written.
    """
    from tqdm import tqdm

    if num_videos and video_dir is None:
        raise ValueError(f"num_videos={num_videos} needs a video_dir")
    fps = int(env.metadata.get("render_fps") or 20)  # some envs declare None
    results, videos = [], []
    bar = tqdm(total=len(seeds), desc="evaluate", unit="ep", disable=not progress)
    for index, seed in enumerate(seeds):
        record = index < num_videos
        result, frames = run_episode(env, act, seed, record=record)
        results.append(result)
        bar.update(1)
        bar.set_postfix_str(f"success {sum(r.success for r in results)}/{len(results)}")
        if record:
            marked = mark_outcome(frames, result.success_step, fps=fps)
            videos.append(
                write_video(Path(video_dir) / f"{video_prefix}_seed{seed}.mp4", marked, fps)
            )
    bar.close()
    return results, videos


def _frame(env: gym.Env, obs: Any) -> np.ndarray:
    if isinstance(obs, dict) and "pixels" in obs:
        return np.array(obs["pixels"], dtype=np.uint8, copy=True)
    frame = env.render()
    if frame is None:
        raise ValueError(
            "cannot record a video: the observation has no 'pixels' and env.render() returned "
            "None (make the env with render_mode='rgb_array')"
        )
    return np.asarray(frame, dtype=np.uint8)


def mark_outcome(
    frames: Sequence[np.ndarray], success_step: int | None, fps: int, min_size: int = 256
) -> list[np.ndarray]:
    """Upscale frames and draw the outcome as a border, then hold the last frame.

    Frames get a grey border while the task is unsolved and a green one from ``success_step``
    on; a failed episode's held last frame is bordered red. Upscaling is nearest-neighbour to
    at least ``min_size`` pixels, so 64x64 observations stay crisp in a player.

    Args:
        frames: (H, W, 3) uint8 frames of one episode, L+1 of them.
        success_step: First solved step (index into ``frames``), or None for a failure.
        fps: Frame rate, to hold the last frame for ``HOLD_SECONDS``.
        min_size: Smallest side of the output frames.

    Returns:
        The marked frames, each (H*s, W*s, 3) uint8 with s = ceil(min_size / min(H, W)).
    """
    if not frames:
        raise ValueError("mark_outcome: no frames")
    height, width = frames[0].shape[:2]
    scale = max(1, -(-min_size // min(height, width)))
    border = max(2, scale * min(height, width) // 32)
    marked = []
    for index, frame in enumerate(frames):
        solved = success_step is not None and index >= success_step
        marked.append(_bordered(frame, scale, border, SUCCESS_RGB if solved else RUNNING_RGB))
    final = SUCCESS_RGB if success_step is not None else FAILURE_RGB
    held = _bordered(frames[-1], scale, border, final)
    marked.extend(held for _ in range(max(1, round(HOLD_SECONDS * fps))))
    return marked


def _bordered(frame: np.ndarray, scale: int, border: int, rgb: tuple[int, int, int]) -> np.ndarray:
    big = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)
    big[:border], big[-border:], big[:, :border], big[:, -border:] = rgb, rgb, rgb, rgb
    return big


def _ffmpeg_available() -> bool:
    """Whether imageio can find an ffmpeg program (its package can be there without one)."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError, OSError):
        return False
    return (Path(exe).is_file() and os.access(exe, os.X_OK)) or shutil.which(exe) is not None


class _Mp4WriteError(Exception):
    """The ffmpeg program was found but did not write the MP4 (not this file's fault)."""


#: Set once an MP4 write failed in this process: later videos go straight to GIF.
_mp4_failure: str | None = None


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int) -> Path:
    """Write frames as an MP4 (H.264) atomically; falls back to GIF where ffmpeg cannot.

    An ffmpeg that is found is not always one that works: set through ``IMAGEIO_FFMPEG_EXE``
    it is not checked at all, and builds without x264 (conda-forge's LGPL one, Fedora's
    ffmpeg-free) pass imageio's ``-version`` check, then fail on the first frame, or write
    an empty file for short clips. The first failure is warned about once and every later
    video of the process is a GIF.

    Returns:
        The path written (``.gif`` instead of ``.mp4`` on the fallback).
    """
    global _mp4_failure
    path = Path(path)
    # The caller's mistakes first: met inside the MP4 writer they would pass for ffmpeg's.
    shapes = {np.shape(frame) for frame in frames}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
        described = sorted(shapes)[:3] if shapes else "no frames"
        raise ValueError(
            f"write_video {path}: frames must be (H, W, 3) of one size, got {described}"
        )
    if path.suffix.lower() != ".gif":
        if _mp4_failure is None and not _ffmpeg_available():
            _mp4_failure = "imageio finds no ffmpeg program"
        if _mp4_failure is None:
            try:
                return atomic_write_to_name(path, lambda tmp: _write_mp4(tmp, frames, fps))
            except _Mp4WriteError as error:
                _mp4_failure = str(error)
                warnings.warn(
                    f"cannot write MP4 videos with ffmpeg ({error}); writing GIFs instead",
                    stacklevel=2,
                )
        path = path.with_suffix(".gif")
    return atomic_write_to_name(path, lambda tmp: _write_gif(tmp, frames, fps))


def _write_mp4(tmp: Path, frames: Sequence[np.ndarray], fps: int) -> None:
    import imageio.v2 as imageio

    try:
        writer = imageio.get_writer(
            str(tmp), format="FFMPEG", fps=fps, codec="libx264", quality=8, macro_block_size=2
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
    except (OSError, RuntimeError, ValueError) as error:  # a broken pipe, ffmpeg's exit code
        if tmp.parent.is_dir() and os.access(tmp.parent, os.W_OK):
            raise _Mp4WriteError(f"{type(error).__name__}: {error}") from error
        raise  # the directory's own fault: named by the atomic writer
    if tmp.stat().st_size == 0:
        raise _Mp4WriteError("it wrote an empty file")


def _write_gif(tmp: Path, frames: Sequence[np.ndarray], fps: int) -> None:
    import imageio.v2 as imageio

    imageio.mimsave(str(tmp), list(frames), format="GIF", duration=1000 / fps, loop=0)
