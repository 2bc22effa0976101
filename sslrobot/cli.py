"""``sslrobot <command>``: thin entry point; each area's module adds its own subcommands."""

from __future__ import annotations

import argparse
import ctypes
import importlib
import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from sslrobot.commands.arguments import given_options, underscored_options

# Each module exposes ``register(subparsers)``; imported at parse time, so none may import torch
# at module top (``sslrobot envs`` must stay fast).
_COMMAND_MODULES = (
    "sslrobot.commands.envs",
    "sslrobot.commands.data",
    "sslrobot.commands.pretrain",
    "sslrobot.commands.probe",
    "sslrobot.commands.policy",
    "sslrobot.commands.run",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sslrobot",
        description="Self-supervised visual pretraining for simulated robots, end to end.",
    )
    from sslrobot import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    from_console = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command as given (a caller of main(argv) is not the console's)
    if getattr(args, "resume", False):  # what to take from the run being resumed
        args.given_options = given_options(parser, argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            if from_console:  # callers of main(argv), tests among them, keep their own display
                warnings.showwarning = warning_printer(args.command, warnings.showwarning)
            return int(args.func(args) or 0)
    except (ValueError, OSError, ImportError) as error:
        # Bad input, unwritable directories, full disks and a missing optional extra are the
        # user's to fix: one clear line naming the problem, no traceback.
        options = {**underscored_options(parser, args.func), **getattr(args, "field_options", {})}
        message = in_option_names(_message(error), options)
        print(f"sslrobot {_command_name(args)}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args)
    except ctypes.ArgumentError as error:
        # A Ctrl-C that lands while ctypes converts a call's arguments (MuJoCo's EGL context
        # being made current) comes wrapped: "argument 1: KeyboardInterrupt".
        if "KeyboardInterrupt" not in str(error):
            raise
        return _interrupted(args)


def _interrupted(args: argparse.Namespace) -> int:
    """Say how to go on after a Ctrl-C, once (under torchrun every rank is interrupted)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"interrupted; {_how_to_continue(args)}", file=sys.stderr)
    return 130


def _command_name(args: argparse.Namespace) -> str:
    """The command as typed, its subcommand included (``data info``, not ``data``)."""
    sub = getattr(args, "data_command", None)
    return args.command if sub is None else f"{args.command} {sub}"


def warning_printer(
    command: str, fallback: Callable[..., None], quiet: bool = False
) -> Callable[..., None]:
    """``warnings.showwarning`` for a command: the package's own warnings (advice to the user:
    a changed setting, a demo count that runs nowhere) as one ``sslrobot CMD: warning: ...``
    line, like its errors; other libraries' warnings as Python shows them, with their source
    line, which is what their reader needs. ``quiet`` drops the package's own (a pretraining
    rank other than 0, whose advice rank 0 gives once)."""
    envs = importlib.util.find_spec("sslrobot.envs")  # found, not imported (no mujoco here)
    roots = [Path(__file__).resolve().parent]  # in a source checkout envs/ lies outside it
    if envs is not None and envs.origin is not None:
        roots.append(Path(envs.origin).resolve().parent)

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not any(Path(filename).resolve().is_relative_to(root) for root in roots):
            fallback(message, category, filename, lineno, file, line)
            return
        if not quiet:
            print(f"sslrobot {command}: warning: {message}", file=file or sys.stderr)

    return show


def _message(error: Exception) -> str:
    """The error's text; for an OSError built from our own sentence (no file name), that
    sentence without Python's ``[Errno 11]`` prefix. Notes added on the way up (a second
    failure met while handling it) follow, which a traceback would show and one line must
    not drop."""
    if isinstance(error, OSError) and error.strerror and error.filename is None:
        text = error.strerror
    else:
        text = str(error)
    return "; ".join([text, *getattr(error, "__notes__", ())])


def in_option_names(message: str, field_options: dict[str, str]) -> str:
    """``message`` with the config fields a command sets from options of other names written
    as those options: ``collect --episodes 0`` is refused as ``--episodes must be ...``, not
    as ``num_episodes must be ...``, which the user never typed. A field inside a path, a
    quoted key or a recorded value (``/data/out_json/r.json``, ``{'num_episodes': 5}``,
    ``num_episodes=100``) is left as it is."""
    for field_name, option in field_options.items():
        pattern = rf"(?<![\w\-/.'\"]){re.escape(field_name)}(?![\w=/.'\"])"
        message = re.sub(pattern, option, message)
    return message


def _how_to_continue(args: argparse.Namespace) -> str:
    """What an interrupted command leaves, and how to go on: only some commands resume."""
    if args.command == "train-policy":
        return "rerun with --resume to continue from its last checkpoint (BC and RL)"
    if hasattr(args, "resume"):  # collect, pretrain
        return "finished artifacts are kept; rerun the same command with --resume to continue"
    if args.command == "run":
        return (
            "finished stages are kept, and an interrupted collection, pretraining or policy "
            "continues where it stopped; rerun the same command to continue"
        )
    return "files are written whole or not at all; rerun the command"


if __name__ == "__main__":
    sys.exit(main())
