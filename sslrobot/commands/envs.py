"""CLI: ``sslrobot envs`` (list the environments and their spaces) and ``sslrobot demo``."""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Frames (after the episode ends) that the demo video holds the last frame, so the outcome can
#: be seen.
HOLD_FRAMES = 10


@dataclass(frozen=True)
class DemoResult:
    """What ``write_expert_demo`` wrote.

    Attributes:
        path: the video file (``.gif`` instead of ``.mp4`` where ffmpeg is missing).
        num_steps: environment steps of the episode.
        success: whether the expert solved the task.
    """

    path: Path
    num_steps: int
    success: bool


def describe_envs() -> list[dict[str, Any]]:
    """One dict per id in ``sslrobot.envs.ENV_IDS``: id, step limit, the newer version that
    supersedes it (or None), spaces and names, and the ``--encoder`` spec of its shipped
    encoder (``sslrobot.pretrained``) or None.

    Environments whose module is missing are listed with an ``error`` entry instead.
    Builds each environment without rendering (no GL context is made).
    """
    import gymnasium as gym

    import sslrobot.envs
    from sslrobot.pretrained import PRETRAINED_PREFIX, shipped_encoder_names

    rows = []
    for env_id in sslrobot.envs.ENV_IDS:
        row: dict[str, Any] = {
            "id": env_id,
            "max_episode_steps": gym.spec(env_id).max_episode_steps,
            # An older version kept for published results: the newest one's id, else None.
            "superseded_by": _newest_version(env_id, sslrobot.envs.LATEST_ENV_IDS),
        }
        try:
            with warnings.catch_warnings():  # listing an older version is not using it
                warnings.filterwarnings("ignore", ".*is out of date", DeprecationWarning)
                env = gym.make(env_id)
                state_env = gym.make(env_id, obs_mode="state")
        except ImportError as error:
            row["error"] = f"cannot be made: {error}"
            rows.append(row)
            continue
        base = env.unwrapped
        row["observation_space"] = str(env.observation_space)
        row["state_observation_space"] = str(state_env.observation_space)
        row["action_space"] = str(env.action_space)
        row["action_names"] = list(base.action_names)
        row["proprio_names"] = list(base.proprio_names)
        row["state_names"] = list(base.state_names)
        row["shipped_encoder"] = (
            PRETRAINED_PREFIX + env_id if env_id in shipped_encoder_names() else None
        )
        env.close()
        state_env.close()
        rows.append(row)
    return rows


def _newest_version(env_id: str, latest: tuple[str, ...]) -> str | None:
    """The id in ``latest`` of ``env_id``'s task when it is another version, else None."""
    task = env_id.rsplit("-v", 1)[0]
    newer = [i for i in latest if i.rsplit("-v", 1)[0] == task and i != env_id]
    return newer[0] if newer else None


def write_expert_demo(
    env_id: str,
    out: Path,
    seed: int = 0,
    image_size: int = 256,
    visual_preset: str = "train",
) -> DemoResult:
    """Roll out the scripted expert for one episode and write the camera frames as a video.

    Args:
        env_id: a registered sslrobot id, e.g. ``sslrobot/Push-v0``.
        out: the video file to write (atomically; parent directories are created).
        seed: the episode's reset seed.
        image_size: side of the rendered frames; the episode itself does not depend on it.
        visual_preset: ``train``, ``heldout`` or ``none``.

    Returns:
        The path written, the episode length and whether the expert succeeded.
    """
    import gymnasium as gym

    import sslrobot.envs
    from sslrobot.evaluation.rollouts import write_video
    from sslrobot.utils.artifacts import refuse_path_under_file

    if env_id not in sslrobot.envs.ENV_IDS:
        raise ValueError(f"unknown env {env_id!r}; choose one of {list(sslrobot.envs.ENV_IDS)}")
    # gymnasium refuses a negative seed only at reset, with a traceback of its own.
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    # Before the episode: ffmpeg refused another suffix, or a directory, only once it was run.
    if Path(out).is_dir() or Path(out).suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"--out must name a video file ending in .mp4 or .gif, got {out}")
    refuse_path_under_file(Path(out))  # "File exists", naming the video, after the episode
    env = gym.make(env_id, image_size=image_size, visual_preset=visual_preset)
    try:
        obs, info = env.reset(seed=seed)
        frames = [obs["pixels"]]
        num_steps = 0
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(sslrobot.envs.expert_action(env))
            frames.append(obs["pixels"])
            num_steps += 1
            done = terminated or truncated
        frames.extend([frames[-1]] * HOLD_FRAMES)
        fps = int(env.metadata["render_fps"])
    finally:
        env.close()
    path = write_video(Path(out), frames, fps=fps)
    return DemoResult(path=path, num_steps=num_steps, success=bool(info["is_success"]))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``envs`` and ``demo``."""
    envs = subparsers.add_parser(
        "envs",
        help="list the environment ids with their observation and action spaces",
        description="List every sslrobot environment id, its step limit, observation spaces "
        "(pixels and state modes) and action space with the names of their entries.",
    )
    envs.set_defaults(func=_envs)

    demo = subparsers.add_parser(
        "demo",
        help="write a video of one scripted-expert episode",
        description="Roll out the scripted expert of an environment for one episode and write "
        "its camera frames as an MP4 video (GIF where ffmpeg is missing).",
    )
    demo.add_argument("--env", required=True, help="env id, e.g. sslrobot/Push-v0")
    demo.add_argument("--out", type=Path, required=True, help="video file, e.g. push.mp4")
    demo.add_argument("--seed", type=int, default=0, help="episode seed (default: 0)")
    demo.add_argument(
        "--image-size", type=int, default=256, help="square frame size (default: 256)"
    )
    demo.add_argument(
        "--visual-preset",
        default="train",
        choices=("train", "heldout", "none"),
        help="look of the scene (default: train)",
    )
    demo.set_defaults(func=_demo)


def _envs(args: argparse.Namespace) -> int:
    for row in describe_envs():
        superseded = row.get("superseded_by")
        note = f"; out of date, kept for published results: use {superseded}" if superseded else ""
        print(f"{row['id']}  (truncated after {row['max_episode_steps']} steps{note})")
        if "error" in row:
            print(f"  {row['error']}")
            continue
        print(f"  observation (pixels): {row['observation_space']}")
        print(f"  observation (state):  {row['state_observation_space']}")
        print(f"  action: {row['action_space']}  {row['action_names']}")
        print(f"  proprio: {row['proprio_names']}")
        print(f"  state:   {row['state_names']}")
        if row["shipped_encoder"]:
            print(f"  shipped encoder: --encoder {row['shipped_encoder']} (fdm+future)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    result = write_expert_demo(
        args.env,
        args.out,
        seed=args.seed,
        image_size=args.image_size,
        visual_preset=args.visual_preset,
    )
    outcome = "solved" if result.success else "not solved"
    print(f"wrote {result.path} ({result.num_steps} steps, {outcome})")
    return 0
