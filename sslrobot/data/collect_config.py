"""Validated configuration of a collection run, and the env construction it implies."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from sslrobot.data.policies import POLICY_NAMES, parse_mixture
from sslrobot.envs import ENV_IDS
from sslrobot.utils.config import check_bool_fields

SSLROBOT_NAMESPACE = "sslrobot/"


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"I/N"`` (shard I of N, 0-based) into ``(I, N)``.

    Raises:
        ValueError: not two integers with ``0 <= I < N``.
    """
    index, sep, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        raise ValueError(f"shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if not sep or not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard must be I/N with 0 <= I < N, got {text!r}")
    return shard


def is_sslrobot_env(env_id: str) -> bool:
    """Whether ``env_id`` is one of ours (takes ``image_size``/``visual_preset`` kwargs)."""
    return env_id.startswith(SSLROBOT_NAMESPACE)


def find_env_spec(env_id: str, own_envs: bool = True) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id`` (``"module:Id"`` imports ``module`` first).

    Args:
        own_envs: Whether the command takes envs of the user's own (``collect``, ``pretrain``,
            ``probe``); the error for an unknown id says how to give one only then.

    Raises:
        ValueError: the id is not registered; lists close matches and the known ids.
    """
    name = env_id
    if ":" in env_id:
        module, name = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as error:
            # The `sslrobot` script does not look in the working directory, where a user's
            # module most often is.
            top = module.split(".")[0]
            here = isinstance(error, ModuleNotFoundError) and error.name == top
            hint = (
                " (a module beside you: the `sslrobot` script does not import from the working "
                "directory; run with PYTHONPATH=. or as python -m sslrobot)"
                if here and (Path(f"{top}.py").is_file() or Path(top).is_dir())
                else ""
            )
            raise ValueError(
                f"env id {env_id!r}: cannot import module {module!r}: {error}{hint}"
            ) from error
    if name in gym.registry:
        return gym.registry[name]
    known = sorted(gym.registry)
    scores = {k: difflib.SequenceMatcher(None, name, k).ratio() for k in known}
    close = [k for k in sorted(known, key=scores.get, reverse=True)[:3] if scores[k] >= 0.6]
    close = [k for k in close if scores[k] >= scores[close[0]] - 0.05]  # the clear best only
    if SSLROBOT_NAMESPACE + name in gym.registry:  # ``Push-v0`` for ``sslrobot/Push-v0``
        close = [SSLROBOT_NAMESPACE + name]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    if ":" in env_id:  # the module imported: say what it does register
        module = env_id.split(":", 1)[0]
        own = [k for k in known if _in_module(gym.registry[k].entry_point, module)]
        hint += f" Module {module!r} registers {', '.join(own) if own else 'no env'}."
    others = sum(not is_sslrobot_env(k) for k in known)
    if own_envs:
        tail = (
            f"; {others} other registered ids (`python -c 'import gymnasium; "
            "gymnasium.pprint_registry()'` lists them). An env of your own can be given as "
            "'module:EnvId' (the module registers it)."
        )
    else:
        tail = " (policies train and evaluate on these tasks only)."
    raise ValueError(f"unknown env id {env_id!r}.{hint} sslrobot ids: {', '.join(ENV_IDS)}{tail}")


def _in_module(entry_point: Any, module: str) -> bool:
    """Whether an env's entry point (``"pkg.envs:MyEnv"`` or the class itself) lives in
    ``module`` or a module under it."""
    if isinstance(entry_point, str):
        where = entry_point.split(":", 1)[0]
    else:
        where = getattr(entry_point, "__module__", None) or ""
    return where == module or where.startswith(module + ".")


def env_accepts_kwarg(
    spec: gym.envs.registration.EnvSpec, name: str, unreadable: bool = False
) -> bool:
    """Whether the env's constructor takes ``name`` (``unreadable`` when its signature
    cannot be read)."""
    creator = _creator(spec)
    try:
        params = inspect.signature(creator).parameters
    except (TypeError, ValueError):
        return unreadable
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _creator(spec: gym.envs.registration.EnvSpec) -> Any:
    creator = spec.entry_point
    return load_env_creator(creator) if isinstance(creator, str) else creator


def _renders_rgb_array(spec: gym.envs.registration.EnvSpec) -> bool:
    """Whether to ask the env for ``render_mode="rgb_array"``: not when its constructor does
    not take the argument (a pixel-Dict env of a user's, which then could not be made at all)
    nor when its metadata lists render modes without it (gymnasium warned on every make)."""
    if not env_accepts_kwarg(spec, "render_mode", unreadable=True):
        return False
    metadata = getattr(_creator(spec), "metadata", None)
    if not isinstance(metadata, dict) or metadata is gym.Env.metadata:
        return True  # gymnasium's own default, or none: the instance may set its own
    modes = metadata.get("render_modes")
    return modes is None or "rgb_array" in modes


@dataclass(frozen=True)
class CollectConfig:
    """Everything that defines a collection run; saved (in resolved form) in the manifest."""

    env_id: str
    """Gymnasium id: ``sslrobot/Push-v0``, any registered id (``Reacher-v5``), or ``module:Id``."""
    out: Path
    """Dataset directory (created if missing)."""
    policy: str = "random"
    """One of ``random``, ``expert``, ``noisy-expert``, ``mixture``."""
    num_episodes: int = 100
    """Episodes in the dataset (ids 0..N-1; episode i is reset with seed ``seed + i``)."""
    num_envs: int = 1
    """Worker processes, each running its own env and writing whole episodes."""
    seed: int = 0
    """Base seed."""
    resume: bool = False
    """Continue an interrupted run: collect only the missing episode ids (no duplicates)."""
    image_size: int = 64
    """Square frame size passed to the env (``image_size`` for ours, ``width``/``height``)."""
    visual_preset: str | None = None
    """sslrobot envs only: ``train`` (default), ``heldout`` or ``none``."""
    noise: float = 0.3
    """``noisy-expert`` noise scale, as a fraction of the action half-range."""
    noise_correlation: float = 0.9
    """AR(1) coefficient of the ``noisy-expert`` noise (0 = white noise)."""
    mixture: str | None = None
    """For ``policy="mixture"``: fractions like ``random=0.3,noisy-expert=0.7``."""
    max_episode_steps: int | None = None
    """Time limit; defaults to the env's registered limit."""
    shard: tuple[int, int] = (0, 1)
    """``(I, N)``: collect only episodes ``i`` with ``i % N == I`` (several machines, one dir)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for ``gymnasium.make`` (override the ones derived above)."""
    fsync: bool = False
    """Flush every episode to the disk before committing it: survives power loss, not only
    SIGKILL, at a cost that can exceed the env loop's on slow disks (see bench_data.py)."""

    def __post_init__(self) -> None:
        check_bool_fields(self)
        if not isinstance(self.out, str | os.PathLike) or not os.fspath(self.out):
            raise ValueError(f"out must be a directory path, got {self.out!r}")
        object.__setattr__(self, "out", Path(self.out))
        for name in ("num_episodes", "num_envs", "image_size", "seed", "max_episode_steps"):
            value = getattr(self, name)  # NumPy's integers are integers (gymnasium takes them)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool | int):
                object.__setattr__(self, name, int(value))
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ValueError(f"env_id must be a non-empty string, got {self.env_id!r}")
        find_env_spec(self.env_id)
        if self.policy not in POLICY_NAMES:
            raise ValueError(f"unknown policy {self.policy!r}; choose from {list(POLICY_NAMES)}")
        if isinstance(self.mixture, dict):  # {name: fraction}, as parse_mixture returns
            spec = ",".join(f"{name}={fraction}" for name, fraction in self.mixture.items())
            object.__setattr__(self, "mixture", spec)
        if self.mixture is not None and not isinstance(self.mixture, str):
            raise ValueError(
                f"mixture must be 'NAME=FRACTION,...' or a dict of them, got {self.mixture!r}"
            )
        if self.policy == "mixture":
            if not self.mixture:
                raise ValueError(
                    "policy 'mixture' needs mixture fractions, e.g. random=0.3,noisy-expert=0.7"
                )
            parse_mixture(self.mixture)
        elif self.mixture:
            raise ValueError(
                f"mixture={self.mixture!r} is only used with policy 'mixture', not {self.policy!r}"
            )
        for name in ("num_episodes", "num_envs", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.max_episode_steps is not None and (
            not isinstance(self.max_episode_steps, int) or self.max_episode_steps < 1
        ):
            raise ValueError(
                f"max_episode_steps must be an integer >= 1, got {self.max_episode_steps!r}"
            )
        if not (
            isinstance(self.noise, int | float) and math.isfinite(self.noise) and self.noise >= 0
        ):
            raise ValueError(f"noise must be a finite number >= 0, got {self.noise!r}")
        correlation = self.noise_correlation
        if not (isinstance(correlation, int | float) and 0.0 <= correlation < 1.0):
            raise ValueError(f"noise_correlation must be in [0, 1), got {self.noise_correlation!r}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        changed = [
            f"{name}={getattr(self, name)!r}"
            for name in ("noise", "noise_correlation")
            if getattr(self, name) != defaults[name]
        ]
        noisy = self.policy == "noisy-expert" or (
            self.policy == "mixture" and "noisy-expert" in parse_mixture(self.mixture or "")
        )
        if changed and not noisy:
            what = f"mixture {self.mixture!r}" if self.mixture else f"policy {self.policy!r}"
            raise ValueError(
                f"{', '.join(changed)}: the noise is noisy-expert's (also inside a mixture); "
                f"{what} would ignore it"
            )
        if isinstance(self.shard, str):  # the command's "I/N"
            object.__setattr__(self, "shard", parse_shard(self.shard))
        if not (isinstance(self.shard, tuple | list) and len(self.shard) == 2):
            raise ValueError(f"shard must be (I, N) or 'I/N' with 0 <= I < N, got {self.shard!r}")
        object.__setattr__(self, "shard", tuple(self.shard))
        index, count = self.shard
        if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
            raise ValueError(f"shard must be (I, N) with 0 <= I < N, got {self.shard!r}")
        if self.visual_preset is not None:
            if not is_sslrobot_env(self.env_id):
                raise ValueError(
                    f"visual_preset applies to sslrobot/* envs only, not {self.env_id!r}; "
                    "pass other env options with env_kwargs"
                )
            # The envs' own table, so a preset registered in-process (bench_nuisance's
            # only-FACTOR ones) is accepted here as the envs accept it; imported here, as
            # it brings mujoco, which `import sslrobot.data` need not.
            from sslrobot.envs.core.variation import PRESETS as VISUAL_PRESETS

            if self.visual_preset not in VISUAL_PRESETS:
                raise ValueError(
                    f"visual_preset must be one of {sorted(VISUAL_PRESETS)}, "
                    f"got {self.visual_preset!r}"
                )
        if not isinstance(self.env_kwargs, dict):
            raise ValueError(f"env_kwargs must be a dict, got {type(self.env_kwargs).__name__}")
        if self.env_kwargs.get("obs_mode", "pixels") != "pixels":
            raise ValueError(
                f"env_kwargs obs_mode={self.env_kwargs['obs_mode']!r}: a dataset records pixels "
                "and proprio (the privileged state is stored apart, for evaluation only); "
                "leave obs_mode out"
            )
        try:
            json.dumps(self.env_kwargs)
        except TypeError as error:
            raise ValueError(
                f"env_kwargs must be JSON-serialisable (saved in the manifest): {error}"
            ) from error

    @property
    def mixture_fractions(self) -> dict[str, float] | None:
        """Parsed ``mixture`` (``None`` unless the policy is a mixture)."""
        return parse_mixture(self.mixture) if self.mixture else None

    def make_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``gymnasium.make`` (without ``max_episode_steps``).

        Ours get ``image_size``, ``obs_mode="pixels"`` and ``visual_preset``; other envs get
        ``render_mode="rgb_array"`` where their constructor takes it and their metadata does
        not leave it out, and ``width``/``height`` where the constructor takes them.
        ``env_kwargs`` override both; ``"render_mode": None`` there passes none.
        """
        if is_sslrobot_env(self.env_id):
            kwargs: dict[str, Any] = {
                "image_size": self.image_size,
                "obs_mode": "pixels",
                "visual_preset": self.visual_preset or "train",
            }
        else:
            spec = find_env_spec(self.env_id)
            kwargs = {"render_mode": "rgb_array"} if _renders_rgb_array(spec) else {}
            if env_accepts_kwarg(spec, "width") and env_accepts_kwarg(spec, "height"):
                kwargs.update(width=self.image_size, height=self.image_size)
        kwargs.update(self.env_kwargs)
        if kwargs.get("render_mode", "") is None and not is_sslrobot_env(self.env_id):
            del kwargs["render_mode"]
        return kwargs

    def episode_ids(self) -> list[int]:
        """Episode ids this run is responsible for (its shard of ``0..num_episodes-1``)."""
        index, count = self.shard
        return list(range(index, self.num_episodes, count))
