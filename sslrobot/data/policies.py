"""Data-collection policies: random, scripted expert, noisy expert, and per-episode mixtures.

Each policy draws its randomness from the episode seed only (never from the worker it runs in),
so an episode's actions are the same whichever process collects it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

ExpertFn = Callable[[gym.Env], np.ndarray]

POLICY_NAMES: tuple[str, ...] = ("random", "expert", "noisy-expert", "mixture")
#: Policies a mixture may combine.
BASE_POLICY_NAMES: tuple[str, ...] = ("random", "expert", "noisy-expert")
# Independent random streams per episode, derived as SeedSequence([episode_seed, stream]).
_STREAM_RANDOM = 1
_STREAM_NOISE = 2
_STREAM_MIXTURE = 3


class Policy(Protocol):
    """What the collector needs from a policy."""

    name: str

    def params(self) -> dict[str, Any]:
        """Parameters that, with the name, reproduce the policy (recorded in the manifest)."""

    def reset(self, env: gym.Env, seed: int) -> None:
        """Start an episode; ``seed`` is the episode seed."""

    def act(self, env: gym.Env) -> np.ndarray:
        """Action for the env's current state, float32 (A,) inside the action box."""

    def episode_record(self) -> dict[str, Any]:
        """Name and params of what acted in the current episode (recorded per episode)."""


def _stream_seed(seed: int, stream: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, stream])


def default_expert() -> ExpertFn:
    """``sslrobot.envs.expert_action`` (imported late so that policies import no env code)."""
    from sslrobot.envs import expert_action

    return expert_action


class RandomPolicy:
    """Uniform samples from the env's action space, seeded per episode."""

    name = "random"

    def params(self) -> dict[str, Any]:
        return {}

    def reset(self, env: gym.Env, seed: int) -> None:
        env.action_space.seed(int(_stream_seed(seed, _STREAM_RANDOM).generate_state(1)[0]))

    def act(self, env: gym.Env) -> np.ndarray:
        return np.asarray(env.action_space.sample(), dtype=np.float32)

    def episode_record(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params()}


class ExpertPolicy:
    """The env's scripted expert (``sslrobot.envs.expert_action`` by default)."""

    name = "expert"

    def __init__(self, expert_fn: ExpertFn | None = None) -> None:
        self._expert_fn = expert_fn

    def _expert(self, env: gym.Env) -> np.ndarray:
        if self._expert_fn is None:
            self._expert_fn = default_expert()
        return np.asarray(self._expert_fn(env), dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {}

    def reset(self, env: gym.Env, seed: int) -> None:
        del env, seed  # the scripted expert is deterministic given the state

    def act(self, env: gym.Env) -> np.ndarray:
        return self._expert(env)

    def episode_record(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params()}


class NoisyExpertPolicy(ExpertPolicy):
    """Expert plus temporally correlated Gaussian noise, clipped to the action box.

    The noise is a stationary AR(1) process (a discretised Ornstein-Uhlenbeck process, as used
    for exploration in DDPG): ``n_t = rho * n_{t-1} + sqrt(1 - rho^2) * eps_t`` with
    ``eps_t ~ N(0, I)``, so each component has unit variance and correlation time about
    ``1 / (1 - rho)`` steps. Correlated noise drifts the robot away from the expert's path for
    several steps, covering more of the state space than white noise of the same size. The
    action is ``clip(expert + noise * half_range * n_t, low, high)``.
    """

    name = "noisy-expert"

    def __init__(
        self, noise: float, correlation: float = 0.9, expert_fn: ExpertFn | None = None
    ) -> None:
        super().__init__(expert_fn)
        if not (math.isfinite(noise) and noise >= 0.0):
            raise ValueError(f"noise must be a finite number >= 0, got {noise}")
        if not 0.0 <= correlation < 1.0:
            raise ValueError(f"noise correlation must be in [0, 1), got {correlation}")
        self.noise = float(noise)
        self.correlation = float(correlation)
        self._rng: np.random.Generator | None = None
        self._state: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {"noise": self.noise, "correlation": self.correlation, "process": "ar1"}

    def reset(self, env: gym.Env, seed: int) -> None:
        self._rng = np.random.default_rng(_stream_seed(seed, _STREAM_NOISE))
        self._state = self._rng.standard_normal(env.action_space.shape)  # stationary start

    def act(self, env: gym.Env) -> np.ndarray:
        if self._rng is None or self._state is None:
            raise RuntimeError("NoisyExpertPolicy.act called before reset")
        space = env.action_space
        half_range = (space.high - space.low) / 2.0
        action = self._expert(env) + self.noise * half_range * self._state
        rho = self.correlation
        eps = self._rng.standard_normal(self._state.shape)
        self._state = rho * self._state + math.sqrt(1.0 - rho * rho) * eps
        return np.clip(action, space.low, space.high).astype(np.float32)


class MixturePolicy:
    """Picks one component policy per episode, with given probabilities, from the episode seed."""

    name = "mixture"

    def __init__(self, components: dict[str, tuple[float, Policy]]) -> None:
        if not components:
            raise ValueError("a mixture needs at least one component")
        self.components = components
        self._names = list(components)
        self._cumulative = np.cumsum([components[k][0] for k in self._names])
        self._current: Policy | None = None

    def params(self) -> dict[str, Any]:
        return {
            "components": {
                name: {"fraction": fraction, "params": policy.params()}
                for name, (fraction, policy) in self.components.items()
            },
            # Which component an episode gets depends on this order (the manifest sorts the
            # dict's keys): a resume spelled in another order would assign other episodes.
            "order": list(self._names),
        }

    def reset(self, env: gym.Env, seed: int) -> None:
        u = np.random.default_rng(_stream_seed(seed, _STREAM_MIXTURE)).random()
        index = min(int(np.searchsorted(self._cumulative, u, side="right")), len(self._names) - 1)
        self._current = self.components[self._names[index]][1]
        self._current.reset(env, seed)

    def act(self, env: gym.Env) -> np.ndarray:
        if self._current is None:
            raise RuntimeError("MixturePolicy.act called before reset")
        return self._current.act(env)

    def episode_record(self) -> dict[str, Any]:
        if self._current is None:
            raise RuntimeError("MixturePolicy.episode_record called before reset")
        return {**self._current.episode_record(), "via": "mixture"}


def parse_mixture(spec: str) -> dict[str, float]:
    """Parse ``"random=0.3,noisy-expert=0.7"`` into ``{name: fraction}``.

    Raises:
        ValueError: unknown or repeated policy, a fraction that is not a positive number, or
            fractions that do not sum to 1.
    """
    fractions: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.strip().partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"mixture entry {part!r} is not NAME=FRACTION (in {spec!r})")
        if name not in BASE_POLICY_NAMES:
            raise ValueError(
                f"mixture policy {name!r} is unknown; choose from {list(BASE_POLICY_NAMES)}"
            )
        if name in fractions:
            raise ValueError(f"mixture policy {name!r} is listed twice in {spec!r}")
        try:
            fraction = float(value)
        except ValueError:
            raise ValueError(f"mixture fraction {value!r} for {name!r} is not a number") from None
        if not (math.isfinite(fraction) and fraction > 0.0):
            raise ValueError(f"mixture fraction for {name!r} must be > 0, got {value!r}")
        fractions[name] = fraction
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"mixture fractions must sum to 1, got {total:g} in {spec!r}")
    return fractions


def make_policy(
    name: str,
    noise: float = 0.3,
    noise_correlation: float = 0.9,
    mixture: dict[str, float] | None = None,
    expert_fn: ExpertFn | None = None,
) -> Policy:
    """Build a policy by name.

    Args:
        name: One of ``POLICY_NAMES``.
        noise: Noise scale of ``noisy-expert``, as a fraction of the action half-range.
        noise_correlation: AR(1) coefficient of that noise, in [0, 1).
        mixture: ``{policy name: fraction}`` for ``name="mixture"`` (see ``parse_mixture``).
        expert_fn: Expert to use instead of ``sslrobot.envs.expert_action`` (tests, own envs).

    Raises:
        ValueError: unknown name, or a mixture given/missing where it is not/is needed.
    """
    if name not in POLICY_NAMES:
        raise ValueError(f"unknown policy {name!r}; choose from {list(POLICY_NAMES)}")
    if name != "mixture" and mixture:
        raise ValueError(f"--mixture is only used with --policy mixture, not {name!r}")
    if name == "random":
        return RandomPolicy()
    if name == "expert":
        return ExpertPolicy(expert_fn)
    if name == "noisy-expert":
        return NoisyExpertPolicy(noise, noise_correlation, expert_fn)
    if not mixture:
        raise ValueError(
            "policy 'mixture' needs fractions, e.g. --mixture random=0.3,noisy-expert=0.7"
        )
    return MixturePolicy(
        {
            component: (fraction, make_policy(component, noise, noise_correlation, None, expert_fn))
            for component, fraction in mixture.items()
        }
    )


def uses_expert(policy: Policy) -> bool:
    """Whether ``policy`` (or any mixture component) calls the scripted expert."""
    if isinstance(policy, MixturePolicy):
        return any(uses_expert(p) for _, p in policy.components.values())
    return isinstance(policy, ExpertPolicy)
