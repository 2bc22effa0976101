"""``sslrobot run``: the whole loop in one command."""

from __future__ import annotations

import argparse
import shlex
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from sslrobot.envs import ENV_IDS

    parser = subparsers.add_parser(
        "run",
        help="collect, pretrain, probe, train and evaluate policies, write a report",
        description="Run every stage for the preset and write DIR/report.md and report.html. "
        "Rerunning skips stages that finished with the same settings.",
    )
    parser.add_argument(
        "--preset", default="default", help="quick (smoke), default (~36 min CPU), full (GPU)"
    )
    parser.add_argument("--tasks", nargs="+", metavar="ID", help=f"subset of {', '.join(ENV_IDS)}")
    parser.add_argument("--out", default="runs/sslrobot", help="run directory (resumable)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, ...")
    parser.add_argument("--seed", type=int, help="base seed of the run (preset's by default)")
    parser.add_argument(
        "--transfer-objective",
        metavar="OBJ",
        help="also pretrain OBJ on the mixed streams of all tasks and evaluate it on each "
        "(encoder OBJ-mixed; the full preset does this with fdm+future)",
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from sslrobot.pipeline.presets import make_run_config, parse_overrides
    from sslrobot.pipeline.run import run_pipeline

    overrides = {
        **parse_overrides(args.assignments),
        "tasks": tuple(args.tasks) if args.tasks else None,
        "seed": args.seed,
        "transfer_objective": args.transfer_objective,
    }
    config = make_run_config(args.preset, **overrides)
    command = "sslrobot " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    html = run_pipeline(
        config, args.out, device=args.device, progress=not args.no_progress, command=command
    )
    print(f"report: {html} (and {html.with_suffix('.md')})")
    return 0
