"""CLI: `sslrobot collect` and `sslrobot data {info,verify,export-minari}`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object like '{{\"key\": 1}}', got {text!r}"
        )
    return value


def _shard(text: str) -> tuple[int, int]:
    from sslrobot.data.collect_config import parse_shard

    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``collect`` and ``data`` (``info``, ``verify``, ``export-minari``)."""
    collect = subparsers.add_parser(
        "collect",
        help="collect an unlabeled episode dataset (crash-safe, resumable, parallel)",
        description="Roll out a policy in a gymnasium env and write a dataset directory. "
        "Episode i uses seed SEED+i; kill at any time and rerun with --resume.",
    )
    collect.add_argument("--env", required=True, help="env id, e.g. sslrobot/Push-v0 or Reacher-v5")
    collect.add_argument(
        "--policy",
        default="random",
        help="random | expert | noisy-expert | mixture (default: random)",
    )
    collect.add_argument("--episodes", type=int, required=True, help="number of episodes N")
    collect.add_argument("--num-envs", type=int, default=1, help="worker processes (default: 1)")
    collect.add_argument("--out", type=Path, required=True, help="dataset directory")
    collect.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    collect.add_argument("--resume", action="store_true", help="collect only the missing episodes")
    collect.add_argument(
        "--image-size", type=int, default=64, help="square frame size (default: 64)"
    )
    collect.add_argument(
        "--visual-preset",
        default=None,
        help="the look of sslrobot envs: train (their default), heldout or none",
    )
    collect.add_argument(
        "--noise", type=float, default=0.3, help="noisy-expert noise scale (default: 0.3)"
    )
    collect.add_argument(
        "--noise-correlation",
        type=float,
        default=0.9,
        help="AR(1) coefficient of that noise (default: 0.9)",
    )
    collect.add_argument("--mixture", default=None, help="e.g. random=0.3,noisy-expert=0.7")
    collect.add_argument("--max-episode-steps", type=int, default=None, help="time limit override")
    collect.add_argument("--shard", type=_shard, default=(0, 1), help="I/N: this machine's shard")
    collect.add_argument(
        "--env-kwargs",
        type=_json_object,
        default={},
        help="JSON object of extra gymnasium.make kwargs",
    )
    collect.add_argument(
        "--fsync", action="store_true", help="flush each episode to disk (power-loss safe; slower)"
    )
    collect.add_argument("--no-progress", action="store_true", help="no progress bar")
    # Config fields the options set under other names, named as the options in errors.
    collect.set_defaults(
        func=_collect, field_options={"env_id": "--env", "num_episodes": "--episodes"}
    )

    data = subparsers.add_parser("data", help="inspect, verify or export a dataset directory")
    actions = data.add_subparsers(
        dest="data_command", required=True, metavar="{info,verify,export-minari}"
    )
    info = actions.add_parser("info", help="print the manifest and statistics")
    info.add_argument("dir", type=Path)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_info)
    verify = actions.add_parser("verify", help="check every episode (shapes, lengths, checksums)")
    verify.add_argument("dir", type=Path)
    verify.add_argument(
        "--no-checksums", action="store_true", help="skip re-hashing (structure only)"
    )
    verify.set_defaults(func=_verify)
    export = actions.add_parser("export-minari", help="export to a Minari dataset (extra: minari)")
    export.add_argument("dir", type=Path)
    export.add_argument(
        "--name", required=True, help="Minari dataset id, e.g. sslrobot/push/random-v0"
    )
    export.add_argument(
        "--jpeg", action="store_true", help="JPEG-encode frames (lossy; default lossless)"
    )
    export.add_argument(
        "--include-state", action="store_true", help="export the evaluation-only state in infos"
    )
    export.add_argument(
        "--data-format",
        default=None,
        choices=("hdf5", "arrow", "parquet"),  # minari_export.DATA_FORMATS (kept light here)
        help="Minari storage format (default: Minari's, hdf5)",
    )
    for field in ("author", "author-email", "code-permalink"):
        export.add_argument(f"--{field}", default=None, help=f"Minari's {field} (provenance)")
    export.set_defaults(func=_export_minari)


def _collect(args: argparse.Namespace) -> int:
    from sslrobot.data import CollectConfig, collect

    config = CollectConfig(
        env_id=args.env,
        out=args.out,
        policy=args.policy,
        num_episodes=args.episodes,
        num_envs=args.num_envs,
        seed=args.seed,
        resume=args.resume,
        image_size=args.image_size,
        visual_preset=args.visual_preset,
        noise=args.noise,
        noise_correlation=args.noise_correlation,
        mixture=args.mixture,
        max_episode_steps=args.max_episode_steps,
        shard=args.shard,
        env_kwargs=args.env_kwargs,
        fsync=args.fsync,
    )
    root = collect(config, progress=not args.no_progress)
    print(f"dataset: {root}")
    return 0


#: Ids listed per field in ``data info``'s text (as ``data verify`` does); ``--json`` has all.
MAX_LISTED = 20


def _format_info(summary: dict[str, Any]) -> str:
    manifest, stats = summary["manifest"], summary["stats"]
    lines = ["manifest:"]
    for key in sorted(manifest):
        if key == "arrays":
            continue
        note = ""
        if key == "counts":  # a killed run leaves them behind what is on disk
            note = f"  (at the manifest's last write, {manifest.get('updated')}; see statistics)"
        lines.append(f"  {key}: {json.dumps(manifest[key])}{note}")
    lines.append("statistics (of the episodes on disk now):")
    lines += [f"  {key}: {_listed(value)}" for key, value in stats.items()]
    return "\n".join(lines)


def _listed(value: Any) -> str:
    """JSON of ``value``, a long list cut to its first ``MAX_LISTED`` items and its length."""
    if isinstance(value, list) and len(value) > MAX_LISTED:
        shown = json.dumps(value[:MAX_LISTED])[:-1]
        return f"{shown}, ...] ({len(value)} in all; --json lists them)"
    return json.dumps(value)


def _info(args: argparse.Namespace) -> int:
    from sslrobot.data import dataset_summary

    summary = dataset_summary(args.dir)
    print(json.dumps(summary, indent=2) if args.json else _format_info(summary))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from sslrobot.data import verify_dataset

    report = verify_dataset(args.dir, checksums=not args.no_checksums)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def _export_minari(args: argparse.Namespace) -> int:
    from sslrobot.data.minari_export import export_minari

    path = export_minari(
        args.dir,
        args.name,
        jpeg=args.jpeg,
        include_state=args.include_state,
        data_format=args.data_format,
        author=args.author,
        author_email=args.author_email,
        code_permalink=args.code_permalink,
    )
    print(f"minari dataset {args.name}: {path}")
    return 0
