"""Does SAC fail on frozen features for want of precision, or of format? A diagnostic.

``bench_readout.py`` asks this of 25-demonstration BC. Under SAC with the demonstrations in
half of every batch (``train-policy --algo rl --rl-demo-share 0.5``, the package's RL path),
session 45 found Push's frozen ``fdm+future`` features at 6.7% after 60,000 steps where the
privileged state reached 87%, and Reach's features at 96%. This script trains the same SAC
(``sslrobot.policy.rl.make_sb3_model``: the package's widths, batch, learning rate, buffer and
RLPD sampling; inputs standardised on the demonstrations as ``train-policy`` does) on one task
of a finished run with other inputs, each evaluated on the run's evaluation episodes:

- ``state``: the whole privileged state (the package's oracle, ``--encoder state``);
- ``state-readout``: the whole state as a linear probe reads it out of the frozen features
  (ridge, fitted on the unlabeled stream; privileged labels for the probe only): what the
  features hold, put in the oracle's format;
- ``true``: proprio + the task objects' true positions (privileged: the oracle without its
  derived quantities, fingertip and offsets, which SAC must then work out from the joints);
- ``readout``: proprio + those positions as the probe reads them out of the features;
- ``features``: frozen features + proprio, the package's pixel policy input;
- ``whitened``: the features PCA-whitened (``bench_heads.py --heads whiten``'s whitener, fitted
  on ``--probe-episodes`` unlabeled episodes, no labels) + proprio: a label-free way to give
  SAC the features' low-variance directions at the scale of the others;
- ``map``: the frozen trunk's last feature map (the encoder without its keypoint readout) +
  proprio, read by a trainable DrQ-v2 trunk (Yarats et al., 2021: a linear layer on the
  flattened map, LayerNorm, tanh; ``--map-dim`` wide) in front of SAC's actor and critic,
  each its own, trained by their losses: the features SAC's own gradients pick out of the
  frozen map, where the package's input is the readout pretraining chose;
- with ``--critic-state``, SAC's critics read the privileged state and only its actor reads the
  mode's input (the asymmetric actor-critic of Pinto et al., 2018, common in simulated robot
  learning: the state is a training signal, as the reward already is, and never a policy
  input; results under MODE+critic-state; evaluated with the state's columns set to NaN, so
  an actor that read them would act NaN);
- with ``--with-fingertip``, the modes with proprio get the fingertip's true x, y beside it, as a
  proprio holding the arm's forward kinematics would (``true+tip``, ``features+tip``, ...).

``state`` -> ``state-readout`` is what the features' precision costs SAC when it is told where
to look; ``state-readout`` -> ``features`` is what finding it in the features costs. If the
read-out state does about as well as the state, the features hold what Push needs and the
policy side should change; if it does about as badly as the features, pretraining must.
``--position-noise`` (``true`` with fresh Gaussian noise on the objects' positions) measures how
precise SAC needs them.

Usage (modes and seeds run one after another, one thread; finished ones are skipped, so two
invocations with different ``--modes`` or ``--seeds`` share the cores and a killed one resumes):

    python scripts/bench_rl_readout.py --run runs/s43/push --task Push-v0 --steps 30000 \
        --modes state-readout readout --out runs/bench_rl_readout
    python scripts/bench_rl_readout.py --run runs/s43/push --task Push-v0 --steps 500 \
        --seeds 0 --episodes 3 --out /tmp/rl_readout_quick     # every code path, a minute

Prints its settings, the probe's median error on the demonstrations, and success per mode
(mean over seeds, two-level bootstrap 95% interval) with the wall time per run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from bench_heads import encode_with_maps, pca_whitener
from bench_readout import (
    OBJECT_VARIABLES,
    add_run_arguments,
    check_demos_and_seeds,
    demos_look,
    encode,
    fit_readout,
    labelled_frames,
    open_run,
)
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sslrobot.data import open_dataset
from sslrobot.evaluation.rollouts import run_episodes
from sslrobot.evaluation.statistics import stratified_bootstrap_ci
from sslrobot.policy.config import PolicyConfig
from sslrobot.policy.encoders import resolve_encoder
from sslrobot.policy.environment import StateInObservation, make_env
from sslrobot.policy.network import ObservationEncoder, policy_inputs
from sslrobot.policy.rl import first_reset_seed, make_feature_vec_env, make_sb3_model
from sslrobot.policy.rl_critic import AsymmetricSACPolicy
from sslrobot.policy.rl_demos import DemoReplay
from sslrobot.utils.io import atomic_write_json

MODES = ("state", "state-readout", "true", "readout", "features", "whitened", "map")
#: bench_heads.py's default eigenvalue floor (a share of the largest).
WHITEN_FLOOR = 1e-3
#: What each observation holds here: the frame, proprio, and the state (``StateInObservation``).
OBSERVED = ("pixels", "proprio", "state")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--steps", type=int, default=30_000, help="environment steps per run")
    parser.add_argument("--demo-share", type=float, default=0.5)
    parser.add_argument("--probe-episodes", type=int, default=300, help="unlabeled episodes")
    parser.add_argument(
        "--position-noise",
        type=float,
        default=0.0,
        help="true: Gaussian noise (m, standard deviation) on the objects' true positions, drawn "
        "afresh at every step: how precise SAC needs them (results under true-noiseM)",
    )
    parser.add_argument(
        "--map-dim", type=int, default=50, help="map: the trainable trunk's width (DrQ-v2's 50)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench_rl_readout"))
    parser.add_argument(
        "--with-fingertip",
        action="store_true",
        help="the fingertip's true x, y appended to proprio, as a proprio holding the arm's "
        "forward kinematics would (modes with proprio; results under MODE+tip)",
    )
    parser.add_argument(
        "--critic-state",
        action="store_true",
        help="the critics read the privileged state, the actor the mode's input (asymmetric "
        "actor-critic; results under MODE+critic-state)",
    )
    args = parser.parse_args()
    if args.critic_state and {"state", "map"} & set(args.modes):
        parser.error("--critic-state takes neither state (whose actor reads the state already) "
                     "nor map (whose trunk is the extractor)")  # fmt: skip
    if args.position_noise and args.modes != ["true"]:
        parser.error("--position-noise applies to --modes true alone")
    if args.with_fingertip and {"state", "state-readout"} & set(args.modes):
        parser.error("--with-fingertip: the state and its readout hold the fingertip already")
    return args


def label(args: argparse.Namespace, mode: str) -> str:
    """Where a mode's runs lie under ``--out``: the mode, with the noise for noisy ``true``,
    ``+tip`` with the fingertip and ``+critic-state`` with the state for the critics."""
    name = f"true-noise{args.position_noise:g}" if mode == "true" and args.position_noise else mode
    name = f"{name}+tip" if args.with_fingertip else name
    return f"{name}+critic-state" if args.critic_state else name


class RawInput(gym.ObservationWrapper):
    """Observations (pixels, proprio, state) -> one mode's raw policy input, before
    standardisation (the package's state-oracle path then standardises it)."""

    def __init__(self, env: gym.Env, make_input: Any, width: int) -> None:
        super().__init__(env)
        self.make_input = make_input
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(width,), dtype=np.float32)

    def observation(self, observation: dict) -> np.ndarray:
        return self.make_input(
            {key: np.asarray(value)[None] for key, value in observation.items()}
        )[0]


class MapTrunk(BaseFeaturesExtractor):
    """``map``'s input (B, C*h*w + P: the standardised frozen map, then proprio) -> DrQ-v2's
    trunk of the map (linear, LayerNorm, tanh) beside proprio, (B, ``width`` + P)."""

    def __init__(self, observation_space: spaces.Box, map_size: int, width: int) -> None:
        proprio = int(observation_space.shape[0]) - map_size
        super().__init__(observation_space, features_dim=width + proprio)
        self.map_size = map_size
        self.trunk = nn.Sequential(nn.Linear(map_size, width), nn.LayerNorm(width), nn.Tanh())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        maps, proprio = observations[:, : self.map_size], observations[:, self.map_size :]
        return torch.cat([self.trunk(maps), proprio], dim=1)


def with_state(make_input: Any, hide: bool = False) -> Any:
    """``make_input`` with the raw privileged state appended (``--critic-state``); ``hide``:
    as NaN, for evaluation, where only the actor acts."""

    def make(batch: dict) -> np.ndarray:
        state = np.asarray(batch["state"], dtype=np.float32)
        return np.c_[make_input(batch), np.full_like(state, np.nan) if hide else state]

    return make


def input_maker(
    mode: str,
    encoder: torch.nn.Module,
    readout: Any,
    columns: list[int],
    whiten: Any = None,
    noise: tuple[float, np.random.Generator] | None = None,
    errors: list[np.ndarray] | None = None,
    tip_columns: list[int] | None = None,
) -> Any:
    """Batched observations (dict of (B, ...) arrays) -> (B, D) float32 raw inputs.

    Args:
        readout: Features -> the whole state (``state-readout``, ``readout``).
        columns: The state's columns of the task's objects (``true``, ``readout``).
        whiten: Features -> whitened features (``whitened``).
        noise: ``true``: the standard deviation (m) of Gaussian noise drawn afresh for the
            objects' positions at every call, and its generator.
        errors: Where the read-out objects' errors (B, len(columns)) are appended, call by
            call (``state-readout``, ``readout``): their size on the policy's own frames.
        tip_columns: The state's fingertip columns, appended to proprio (``--with-fingertip``).
    """

    def make_input(batch: dict) -> np.ndarray:
        state = np.asarray(batch["state"], dtype=np.float64)
        proprio = np.asarray(batch["proprio"], dtype=np.float64)
        if tip_columns:
            proprio = np.c_[proprio, state[:, tip_columns]]
        if mode == "state":
            out = state
        elif mode == "true":
            objects = state[:, columns]
            if noise is not None:
                objects = objects + noise[1].normal(0.0, noise[0], size=objects.shape)
            out = np.c_[proprio, objects]
        else:
            features = encode(encoder, np.asarray(batch["pixels"]))
            if mode == "features":
                out = np.c_[features, proprio]
            elif mode == "map":
                maps = encode_with_maps(encoder, np.asarray(batch["pixels"]))[1]
                out = np.c_[maps.reshape(len(maps), -1), proprio]
            elif mode == "whitened":
                out = np.c_[whiten(features), proprio]
            else:
                read = readout(features)
                if errors is not None:
                    errors.append(read[:, columns] - state[:, columns])
                out = read if mode == "state-readout" else np.c_[proprio, read[:, columns]]
        return out.astype(np.float32)

    return make_input


def demo_replay(
    demos: Any, ids: list[int], make_input: Any, obs_encoder: ObservationEncoder, env: gym.Env
) -> DemoReplay:
    """The demonstrations as SAC's buffer stores them (``rl_demos.load_demo_replay`` with this
    mode's inputs), after fitting the input statistics on their frames before each action (as
    ``train-policy`` fits them on ``load_transitions``' frames)."""
    low, high = env.action_space.low, env.action_space.high
    parts: dict[str, list[np.ndarray]] = {key: [] for key in DemoReplay.__dataclass_fields__}
    raw_frames, raw_all = [], []
    for episode_id in ids:
        episode = demos.load_episode(episode_id, include_state=True, in_memory=True)
        length = int(np.asarray(episode["action"]).shape[0])
        batch = {key: np.asarray(episode[key][: length + 1]) for key in OBSERVED}
        raw = make_input(batch)
        raw_all.append(raw)
        raw_frames.append(raw[:length])
        action = np.asarray(episode["action"], dtype=np.float32)
        parts["actions"].append(np.clip(2.0 * (action - low) / (high - low) - 1.0, -1.0, 1.0))
        parts["rewards"].append(np.asarray(episode["reward"], dtype=np.float32))
        parts["dones"].append(np.asarray(episode["terminated"], dtype=np.float32))
    obs_encoder.feature_norm.fit(np.concatenate(raw_frames))
    for raw in raw_all:
        inputs = policy_inputs(obs_encoder, raw, "state", torch.device("cpu")).numpy()
        parts["observations"].append(inputs[:-1])
        parts["next_observations"].append(inputs[1:])
    return DemoReplay(**{k: np.concatenate(v).astype(np.float32) for k, v in parts.items()})


def train_and_evaluate(
    args: argparse.Namespace, config: dict, demos: Any, spec: str | None, mode: str, seed: int
) -> dict[str, Any]:
    """One SAC run of one mode and training seed, evaluated; returns its record."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import DummyVecEnv

    start = time.perf_counter()
    names = demos.manifest["state_names"]
    columns = [names.index(name) for name in OBJECT_VARIABLES[args.task]]
    encoder = resolve_encoder(spec, config["image_size"], seed, config["encoder_arch"]).module
    encoder.eval()
    readout = whiten = None
    if mode in ("state-readout", "readout", "whitened"):
        stream = open_dataset(args.run / args.task / "data" / "unlabeled" / "dataset")
    if mode in ("state-readout", "readout"):
        readout = fit_readout(encoder, stream, args.probe_episodes)
    if mode == "whitened":
        stream_ids = np.random.default_rng(0).permutation(list(stream.episode_ids))
        features = labelled_frames(encoder, stream, stream_ids[: args.probe_episodes])[0]
        whiten = pca_whitener(features, WHITEN_FLOOR)
    noise = None
    if mode == "true" and args.position_noise:
        noise = (args.position_noise, np.random.default_rng(seed))
    tips = [names.index("fingertip_x"), names.index("fingertip_y")] if args.with_fingertip else None
    make_input = input_maker(mode, encoder, readout, columns, whiten, noise, tip_columns=tips)
    env_id, look = f"sslrobot/{args.task}", demos_look(demos)
    ids = list(demos.episode_ids)[: args.num_demos]
    probe = demos.load_episode(ids[0], include_state=True, in_memory=True)
    actor_width = width = make_input({key: np.asarray(probe[key][:1]) for key in OBSERVED}).shape[1]
    if args.critic_state:
        make_input = with_state(make_input)
        width += int(np.asarray(probe["state"]).shape[1])

    def make_one(make_input: Any = make_input) -> gym.Env:
        env = StateInObservation(make_env(env_id, config["image_size"], "pixels", look))
        return RawInput(env, make_input, width)

    venv = make_vec_env(make_one, n_envs=1, seed=first_reset_seed(seed, 1), vec_env_cls=DummyVecEnv)
    obs_encoder = ObservationEncoder(None, feature_dim=width, proprio_dim=0, frozen=True)
    replay = demo_replay(demos, ids, make_input, obs_encoder, venv.envs[0])
    policy_config = PolicyConfig(
        env_id=env_id, encoder="state", algo="rl", out=args.out / label(args, mode) / f"seed{seed}",
        seed=seed, steps=args.steps, demos=args.run / args.task / "data" / "demos" / "dataset",
        num_demos=args.num_demos, rl_demo_share=args.demo_share, progress=False, device="cpu",
    )  # fmt: skip
    env = make_feature_vec_env(venv, obs_encoder, "state", torch.device("cpu"))
    policy: Any = "MlpPolicy"
    policy_kwargs = None
    if mode == "map":
        map_size = actor_width - int(np.asarray(probe["proprio"]).shape[1]) - len(tips or [])
        policy_kwargs = {
            "features_extractor_class": MapTrunk,
            "features_extractor_kwargs": {"map_size": map_size, "width": args.map_dim},
        }
    if args.critic_state:  # never with map (parse_args)
        policy, policy_kwargs = AsymmetricSACPolicy, {"actor_width": actor_width}
    model = make_sb3_model(
        policy_config, env, torch.device("cpu"), args.steps, replay, policy_kwargs, policy
    )
    model.set_logger(configure(str(policy_config.out / "logs"), ["csv"]))
    model.learn(total_timesteps=args.steps, progress_bar=False)
    train_seconds = time.perf_counter() - start
    venv.close()
    model.save(policy_config.out / "final_sb3.zip")
    norm = obs_encoder.feature_norm
    np.savez(policy_config.out / "input_statistics.npz", mean=norm.mean, std=norm.std)

    errors: list[np.ndarray] = []
    evaluation_input = input_maker(
        mode, encoder, readout, columns, whiten, noise, errors, tip_columns=tips
    )
    if args.critic_state:
        evaluation_input = with_state(evaluation_input, hide=True)
    eval_env = make_one(evaluation_input)
    try:

        def act(observation: np.ndarray) -> np.ndarray:
            inputs = policy_inputs(obs_encoder, observation[None], "state", torch.device("cpu"))
            action = model.predict(inputs.numpy(), deterministic=True)[0][0]
            if not np.isfinite(action).all():
                raise RuntimeError(f"{mode}: a non-finite action; with --critic-state the "
                                   "actor read the hidden state")  # fmt: skip
            return action

        seeds = [args.eval_seed + i for i in range(args.episodes)]
        episodes, _ = run_episodes(eval_env, act, seeds)
    finally:
        eval_env.close()
    record = {
        "mode": mode,
        "encoder": args.encoder,
        "seed": seed,
        "steps": args.steps,
        "input_width": width,
        "success": [bool(e.success) for e in episodes],
        "return": [float(e.episode_return) for e in episodes],
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - start,
    }
    if readout is not None:
        error = np.abs(readout(encode(encoder, load_pixels(demos, ids)))[:, columns]
                       - load_state(demos, ids)[:, columns])  # fmt: skip
        record["readout_median_error"] = np.median(error, axis=0).round(4).tolist()
        policy_error = np.abs(np.concatenate(errors))
        record["readout_error_on_policy_frames"] = {
            "median": np.median(policy_error, axis=0).round(4).tolist(),
            "p90": np.percentile(policy_error, 90, axis=0).round(4).tolist(),
        }
    if noise is not None:
        record["position_noise"] = args.position_noise
    if mode == "map":
        record["map_dim"] = args.map_dim
    record["critic_state"] = args.critic_state
    return record


def load_pixels(demos: Any, ids: list[int]) -> np.ndarray:
    """Every stored frame of the episodes ``ids``, concatenated (N, H, W, 3)."""
    return np.concatenate(
        [np.asarray(demos.load_episode(i, in_memory=True)["pixels"]) for i in ids]
    )


def load_state(demos: Any, ids: list[int]) -> np.ndarray:
    """The privileged state of the same frames as ``load_pixels``' (N, S), float64."""
    episodes = [demos.load_episode(i, include_state=True, in_memory=True) for i in ids]
    return np.concatenate([np.asarray(e["state"], dtype=np.float64) for e in episodes])


#: Where under ``--out`` each run's evaluation is also written in the format of
#: ``sslrobot evaluate`` that ``scripts/across_tasks.py`` reads (one directory per input).
ACROSS_TASKS = "across_tasks"


def across_tasks_label(encoder: str, mode_label: str) -> str:
    """How ``across_tasks.py`` names an input: the encoder for its features (``fdm+future``,
    ``none``), ``state`` for the state, else ``ENCODER:MODE``; ``+tip`` and ``+critic-state``
    kept (``none+critic-state``), so that protocols never share a row."""
    mode, plus, suffix = mode_label.partition("+")
    if mode == "state":
        name = "state"
    elif mode == "features":
        name = encoder
    else:
        name = f"{encoder}:{mode}"
    return f"{name}{plus}{suffix}"


def write_across_tasks_record(
    args: argparse.Namespace, look: str, mode_label: str, record: dict[str, Any]
) -> Path:
    """``record`` (one mode and training seed) as an evaluation record under ``--out``'s
    ``across_tasks/LABEL/seedS/result.json``, for ``scripts/across_tasks.py`` to put beside
    the package's and ``bench_rl.py``'s; returns its path."""
    # Records from before the field was kept are labelled by --encoder.
    label = across_tasks_label(record.get("encoder", args.encoder), mode_label)
    path = args.out / ACROSS_TASKS / label / f"seed{record['seed']}" / "result.json"
    episodes = [
        {"seed": args.eval_seed + i, "success": bool(success), "return": float(value)}
        for i, (success, value) in enumerate(zip(record["success"], record["return"], strict=True))
    ]
    atomic_write_json(path, {
        "encoder": label, "env_id": f"sslrobot/{args.task}", "algo": "rl-sac",
        "num_demos": args.num_demos, "visual_preset": look, "checkpoint": "final",
        "seed": record["seed"], "steps": record["steps"], "episodes": episodes,
        "success_rate": float(np.mean(record["success"])), "source": "bench_rl_readout.py",
    })  # fmt: skip
    return path


def main() -> None:
    args = parse_args()
    config, demos, spec = open_run(args, "bench_rl_readout")
    check_demos_and_seeds(args, demos)
    for mode in args.modes:
        for seed in args.seeds:
            path = args.out / label(args, mode) / f"seed{seed}" / "result.json"
            if path.is_file():
                steps = json.loads(path.read_text())["steps"]
                if steps != args.steps:
                    raise SystemExit(f"{path} holds a run of {steps} steps, not --steps "
                                     f"{args.steps}: give another --out")  # fmt: skip
                continue
            record = train_and_evaluate(args, config, demos, spec, mode, seed)
            atomic_write_json(path, record)
            print(f"{mode} seed {seed}: {np.mean(record['success']):.1%} "
                  f"({record['seconds']:.0f} s)", flush=True)  # fmt: skip
    print(
        f"\n| input ({args.task}, SAC {args.steps:,} steps, {args.num_demos} demos in "
        f"{args.demo_share} of each batch) | success [95% CI] | per seed | s per run |"
    )
    print("| --- | ---: | --- | ---: |")
    for directory in sorted(path for path in args.out.glob("*") if path.is_dir()):
        mode = directory.name
        records = [json.loads(p.read_text()) for p in sorted(directory.glob("seed*/result.json"))]
        if not records or mode == ACROSS_TASKS:
            continue
        for record in records:
            write_across_tasks_record(args, demos_look(demos), mode, record)
        per_seed = [np.asarray(r["success"], dtype=float) for r in records]
        mean, low, high = stratified_bootstrap_ci(per_seed, shared_episodes=True)
        seeds = " / ".join(f"{100 * s.mean():.0f}" for s in per_seed)
        seconds = np.median([r["seconds"] for r in records])
        print(f"| {mode} | {100 * mean:.1f}% [{100 * low:.1f}, {100 * high:.1f}] | {seeds} "
              f"| {seconds:.0f} |")  # fmt: skip
        if "readout_median_error" in records[0]:
            print(f"  readout median error of {list(OBJECT_VARIABLES[args.task])} on the "
                  f"demonstrations (m): {records[0]['readout_median_error']}")  # fmt: skip
        for record in records:
            if "readout_error_on_policy_frames" in record:
                on_policy = record["readout_error_on_policy_frames"]
                print(f"  seed {record['seed']}, on the policy's evaluation frames (m): median "
                      f"{on_policy['median']}, 90th percentile {on_policy['p90']}")  # fmt: skip


if __name__ == "__main__":
    main()
