"""Dataclass configs to and from the JSON saved beside every artifact."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def config_to_dict(config: Any) -> dict[str, Any]:
    """``dataclasses.asdict`` with tuples as lists at any depth (nested configs included).

    Lists are what JSON gives back, so a config's dict compares equal to the one read from its
    saved file.
    """
    return _lists(dataclasses.asdict(config))


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_lists(item) for item in value]
    return value


def check_known_fields(cls: type, values: dict[str, Any]) -> None:
    """Refuse keys that are not fields of the dataclass ``cls`` (a typo, or a newer format).

    Raises:
        ValueError: naming the unknown keys and the known ones.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")


def check_bool_fields(config: Any) -> None:
    """Refuse a value other than true or false in a field annotated ``bool`` (said as JSON and
    ``--set`` spell them): ``"no"``, ``"false"`` and ``1`` are truthy, and
    ``PolicyConfig(overwrite="no")`` replaced a finished policy.

    Raises:
        ValueError: naming the field and the value.
    """
    for item in dataclasses.fields(config):
        if item.type in ("bool", bool):
            value = getattr(config, item.name)
            if type(value).__name__ not in ("bool", "bool_"):  # NumPy's bools are bools too
                raise ValueError(f"{item.name} must be true or false, got {value!r}")


def config_hash(values: Any) -> str:
    """A stable short hash (16 hex digits) of JSON-able ``values``, key order ignored.

    Names directories by what they hold (feature caches, pipeline stages), so the same settings
    find the same directory again in a later run.
    """
    text = json.dumps(values, sort_keys=True, default=_stable_json)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stable_json(value: Any) -> Any:
    """JSON stand-in for what ``json`` cannot write: sets sorted (their iteration order changes
    with ``PYTHONHASHSEED``), anything else as its ``str``."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)
