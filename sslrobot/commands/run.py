"""``sslrobot run``: the whole loop in one command."""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the pipeline (torch) is imported only when a run starts
    from sslrobot.pipeline.presets import RunConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    from sslrobot.envs import ENV_IDS, LATEST_ENV_IDS

    parser = subparsers.add_parser(
        "run",
        help="collect, pretrain, probe, train and evaluate policies, write a report",
        description="Run every stage for the preset and write DIR/report.md and report.html. "
        "Rerunning skips stages that finished with the same settings.",
    )
    parser.add_argument(
        "--preset",
        default="default",
        help="quick (smoke), default (the default: ~1.5 h on 2 CPU cores), full (GPU)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        metavar="ID",
        help=f"subset of {', '.join(ENV_IDS)} (default: the preset's; default and full run "
        f"the newest version of each task, {', '.join(LATEST_ENV_IDS)}, quick Reach alone)",
    )
    parser.add_argument(
        "--out", default="runs/sslrobot", help="run directory, resumable (default: runs/sslrobot)"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, ...")
    parser.add_argument("--seed", type=int, help="base seed of the run (preset's by default)")
    parser.add_argument(
        "--transfer-objective",
        metavar="OBJ",
        help="also pretrain OBJ on the mixed streams of all tasks and evaluate it on each "
        "(encoder OBJ-mixed; the full preset does this with fdm+future; off (or None) turns "
        "it off)",
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one preset field, e.g. --set num_unlabeled_episodes=2000 "
        "--set num_demos=5,10,25 (repeatable; fields as in the run's config.json)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="rerun a run directory made with other settings, making again (and deleting) "
        "the stages they change; without it such a rerun is refused",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    """The preset with the ``--set`` assignments and the ``--tasks``/``--seed``/
    ``--transfer-objective`` flags applied; a flag and a ``--set`` of the same field that
    disagree are refused rather than one silently winning."""
    from sslrobot.pipeline.presets import (
        TRANSFER_OFF,
        inert_settings,
        make_run_config,
        parse_overrides,
        why_inert,
    )

    overrides = parse_overrides(args.assignments)
    flags = {
        "tasks": tuple(args.tasks) if args.tasks else None,
        "seed": args.seed,
        "transfer_objective": args.transfer_objective,
    }
    for key, value in flags.items():
        if value is None:  # flag not given: the --set value or the preset's
            continue
        typed = value
        if key == "transfer_objective" and value in TRANSFER_OFF:
            value = None  # given, as off: as --set transfer_objective=off
        if key in overrides and overrides[key] != value:
            raise ValueError(
                f"--{key.replace('_', '-')} {typed!r} and --set {key}={overrides[key]!r} "
                "disagree; give one of them"
            )
        overrides[key] = value
    config = make_run_config(args.preset, **overrides)
    values = config.to_dict()
    for key in sorted(inert_settings(values) & set(overrides)):
        warnings.warn(
            f"--set {key}={overrides[key]!r} has no effect: {why_inert(key)}",
            stacklevel=2,
        )
    return config


def _run(args: argparse.Namespace) -> int:
    from sslrobot.pipeline.run import run_pipeline

    config = run_config_from_args(args)
    given = getattr(args, "argv", None)
    command = "sslrobot " + " ".join(shlex.quote(a) for a in (given or sys.argv[1:]))
    html = run_pipeline(
        config,
        args.out,
        device=args.device,
        progress=not args.no_progress,
        command=command,
        replace=args.replace,
    )
    print(f"report: {html} (and {html.with_suffix('.md')})")
    return 0
