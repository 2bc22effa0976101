"""Argument types shared by the subcommands (argparse ``type=`` callables), and which options
a command line set."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence


def int_tuple(text: str) -> tuple[int, ...]:
    """``"16,32,64"`` -> ``(16, 32, 64)``; a clear argparse error otherwise."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}")
    return values


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> frozenset[str]:
    """The ``dest`` of every option ``argv`` sets itself, whatever its value (one that repeats a
    default counts), so that a command can tell "left alone" from "asked for"; ``resume``
    uses it to take everything else from the run being resumed."""
    quiet = copy.deepcopy(parser)
    for sub in _parsers(quiet):
        for action in sub._actions:  # argparse keeps no public list of a parser's actions
            action.default = argparse.SUPPRESS
        sub._defaults.clear()  # set_defaults (func, command) are not options
    return frozenset(vars(quiet.parse_args(list(argv))))


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and its subcommands' parsers, depth first."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                found += _parsers(sub)
    return found


def underscored_options(parser: argparse.ArgumentParser, func: object) -> dict[str, str]:
    """``{"num_envs": "--num-envs", ...}`` for the subcommand whose handler is ``func``: the
    config fields an error may name (``num_envs must be >= 1``) written as the option the
    user typed. Only names with an underscore, which no sentence uses as a word (``seed``
    is left alone: "episode seed 5" must not become "episode --seed 5")."""
    names: dict[str, str] = {}
    for sub in _parsers(parser):
        if sub._defaults.get("func") is not func:
            continue
        for action in sub._actions:
            longs = [o for o in action.option_strings if o.startswith("--")]
            if "_" in action.dest and longs:
                names[action.dest] = longs[0]
    return names
