"""Online RL on frozen features with Stable-Baselines3 (SAC by default, PPO on request).

Why SAC: every environment step here costs a MuJoCo render plus an encoder forward on the CPU,
so sample efficiency decides the wall-clock time; off-policy SAC reuses each transition many
times and is the standard learner for continuous control from (frozen) pixel features (DrQ,
DrQ-v2's DDPG relative, R3M/VC-1 RL evaluations), while PPO needs far more environment steps.
The replay buffer stores the encoded features, not the frames, so it costs ~1 KB per
transition instead of ~25 KB.

The encoder is applied outside SB3, in a ``VecEnvWrapper`` that encodes the frames of all
sub-environments in one batch per step; SB3 then sees a flat ``Box`` of normalised features and
proprio and keeps its standard MLP policies, logging (CSV, TensorBoard, stdout) and saving.
With ``rl_critic_input="state"`` the wrapper also appends the standardised privileged state,
which only SAC's critics read (``rl_critic``: an asymmetric actor-critic).
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from tqdm import tqdm

from sslrobot.policy.cache import FeatureCache
from sslrobot.policy.checkpoint import (
    CHECKPOINT_DIR,
    RESUME_STATE,
    ResumeError,
    clear_run_files,
    load_weights,
    prune_checkpoints,
    read_checkpoint_file,
    read_resume_state,
    resume_settings,
    save_weights,
    start_policy_dir,
    write_policy_config,
)
from sslrobot.policy.config import DEFAULT_RL_STEPS, PPO_MIN_ROLLOUT, PolicyConfig
from sslrobot.policy.demos import (
    check_demo_shapes,
    demos_visual_preset,
    episode_seeds,
    load_transitions,
    select_demo_ids,
)
from sslrobot.policy.environment import EnvShapes, StateInObservation, env_shapes, make_env
from sslrobot.policy.network import ObservationEncoder, policy_inputs
from sslrobot.policy.normalizer import CLIP, Normalizer
from sslrobot.policy.rl_continuation import FILE as CONTINUATION_FILE
from sslrobot.policy.rl_continuation import (
    EpisodeRecorder,
    continue_episodes,
    read_continuation,
    save_continuation,
    set_random_state,
)
from sslrobot.policy.setup import (
    base_record,
    check_fits,
    open_demos,
    resolve_policy_encoder,
)
from sslrobot.policy.validation import (
    OnlineValidator,
    refuse_validation_on_demo_seeds,
    validation_seeds,
)
from sslrobot.utils.device import preserved_cudnn_flags, resolve_device
from sslrobot.utils.io import atomic_write, atomic_write_json, atomic_write_to_name

SB3_FILE = "{checkpoint}_sb3.zip"
#: The critics' state statistics (``rl_critic_input="state"``), beside the policy's.
CRITIC_STATE_FILE = "critic_state_statistics.safetensors"


def _import_sb3() -> Any:
    try:
        import stable_baselines3
    except ImportError as error:
        raise ImportError(
            "algo='rl' needs Stable-Baselines3: pip install 'sslrobot[rl]' "
            "(or pip install stable-baselines3)"
        ) from error
    return stable_baselines3


def make_feature_vec_env(
    venv: Any,
    obs_encoder: ObservationEncoder,
    obs_mode: str,
    device: torch.device,
    state_norm: Normalizer | None = None,
) -> Any:
    """Wrap an SB3 ``VecEnv`` so that it returns encoded policy inputs instead of raw observations.

    All sub-environments' frames are encoded in one batch per step; terminal observations in
    ``infos`` (which SAC bootstraps from on time-limit truncation) are encoded too.

    Args:
        state_norm: For critics on the state (``rl_critic``): the observations' ``state``
            (``StateInObservation``), standardised by it, is appended to the policy inputs.
    """
    from stable_baselines3.common.vec_env import VecEnvWrapper

    critic_dim = 0 if state_norm is None else state_norm.dim
    if state_norm is not None:  # once here, not at every step
        from sslrobot.policy.rl_critic import with_critic_state

    class FeatureVecEnv(VecEnvWrapper):
        """Raw (Dict or state) observations -> flat Box of normalised features + proprio
        (+ the critics' standardised state)."""

        def __init__(self) -> None:
            width = obs_encoder.output_dim + critic_dim
            space = spaces.Box(-CLIP, CLIP, shape=(width,), dtype=np.float32)
            super().__init__(venv, observation_space=space)

        def encode(self, observations: Any) -> np.ndarray:
            """Raw observations of every sub-env, stacked -> the policy's inputs."""
            inputs = policy_inputs(obs_encoder, observations, obs_mode, device)
            inputs = inputs.cpu().numpy().astype(np.float32)
            if state_norm is None:
                return inputs
            return with_critic_state(inputs, observations["state"], state_norm)

        def reset(self) -> np.ndarray:
            return self.encode(self.venv.reset())

        def seed(self, seed: int | None = None) -> Any:
            # SB3 seeds the env with the run's seed when it builds or loads a model.
            return self.venv.seed(None if seed is None else first_reset_seed(seed, self.num_envs))

        def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
            observations, rewards, dones, infos = self.venv.step_wait()
            ended = [i for i, info in enumerate(infos) if "terminal_observation" in info]
            if ended:
                terminal = [infos[i]["terminal_observation"] for i in ended]
                if obs_mode == "state":
                    batch: Any = np.stack(terminal)
                else:
                    batch = {key: np.stack([t[key] for t in terminal]) for key in terminal[0]}
                for i, encoded in zip(ended, self.encode(batch), strict=True):
                    infos[i]["terminal_observation"] = encoded
            return self.encode(observations), rewards, dones, infos

    return FeatureVecEnv()


def first_reset_seed(seed: int, num_envs: int) -> int:
    """Reset seed of sub-env 0 of training seed ``seed`` (sub-env i takes it + i): seeds'
    blocks of ``num_envs`` never overlap. ``seed + i``, SB3's own, gave training seed s's
    sub-env i + 1 the start states of seed s + 1's sub-env i, so neighbouring seeds shared
    (n - 1) / n of them, and the bootstrap over seeds treated them as independent."""
    return seed * num_envs


#: Random-action steps per episode of the normalisation rollouts, then a reset: what an
#: episode fixes (Reach's target, Navigate's landmarks) is drawn once per episode, and whole
#: 250-step episodes gave it 2-3 draws in 500 steps; Navigate-v1's landmark y then sat at the
#: clip (10 standard deviations) in 44-48% of an expert's steps.
NORM_EPISODE_STEPS = 25


def _random_observations(venv: Any, num_steps: int, seed: int) -> list[Any]:
    """Observations of random-action rollouts, for normalisation statistics without demos:
    episodes of at most ``NORM_EPISODE_STEPS`` steps."""
    rng = np.random.default_rng(seed)
    venv.seed(first_reset_seed(seed, venv.num_envs))
    observations = [venv.reset()]
    low, high = venv.action_space.low, venv.action_space.high
    for step in range(1, max(1, num_steps // venv.num_envs) + 1):
        actions = rng.uniform(low, high, size=(venv.num_envs, *venv.action_space.shape))
        obs, _, _, _ = venv.step(actions.astype(np.float32))
        observations.append(obs)
        if step % NORM_EPISODE_STEPS == 0:
            observations.append(venv.reset())  # the next seeds of each env's own generator
    return observations


def _open_demo_ids(config: PolicyConfig) -> tuple[Any, str, list[int]]:
    """The demonstrations' dataset, its cache key and the episodes this run uses."""
    dataset, dataset_key = open_demos(config)
    ids, _ = select_demo_ids(
        list(dataset.episode_ids), config.num_demos, 0, config.demos, config.demo_offset
    )
    return dataset, dataset_key, ids


def _fit_normalizers(
    config: PolicyConfig,
    obs_encoder: ObservationEncoder,
    resolved: Any,
    venv: Any,
    shapes: EnvShapes,
    state_norm: Normalizer | None = None,
) -> tuple[str, list[int]]:
    """Fit the feature/proprio statistics (and ``state_norm``'s, the critics' state's) from
    demonstrations, else from random rollouts.

    Returns:
        Where the statistics came from, for the record, and the reset seeds of the
        demonstrations used (so evaluation can flag seeds it shares with them).
    """
    obs_mode = shapes.obs_mode
    if config.demos is not None:
        dataset, dataset_key, ids = _open_demo_ids(config)
        seeds = episode_seeds(dataset, ids)
        # Before any frame is encoded.
        refuse_validation_on_demo_seeds(seeds, validation_seeds(config.val_episodes), config.demos)
        transitions = load_transitions(
            dataset, ids, pixels=obs_mode == "pixels",
            state=obs_mode == "state" or state_norm is not None,
        )  # fmt: skip
        if state_norm is not None:  # the critics' state: as wide as the env's
            shapes = dataclasses.replace(shapes, state_dim=state_norm.dim)
        check_demo_shapes(transitions, shapes, config)
        if state_norm is not None:
            state_norm.fit(transitions.state)
        if obs_mode == "state":
            features = transitions.state
        else:
            cache = FeatureCache(
                config.cache_dir, resolved.module, dataset_key, config.feature_batch_size
            )
            features = cache.features(
                transitions.episode_ids, transitions.episode_lengths, transitions.pixels
            )
            obs_encoder.proprio_norm.fit(transitions.proprio)
        obs_encoder.feature_norm.fit(features)
        return f"demonstrations {config.demos} ({len(ids)} episodes)", seeds
    batches = _random_observations(venv, config.rl_norm_steps, config.seed)
    num_steps = max(1, config.rl_norm_steps // venv.num_envs) * venv.num_envs  # whole steps
    if obs_mode == "state":
        obs_encoder.feature_norm.fit(np.concatenate(batches))
    else:
        pixels = np.concatenate([b["pixels"] for b in batches])
        from sslrobot.models.features import extract_features

        features = extract_features(resolved.module, pixels, config.feature_batch_size)
        obs_encoder.feature_norm.fit(features)
        obs_encoder.proprio_norm.fit(np.concatenate([b["proprio"] for b in batches]))
        if state_norm is not None:
            state_norm.fit(np.concatenate([b["state"] for b in batches]))
    return (
        f"{num_steps} random-action steps ({venv.num_envs} envs, a reset every "
        f"{NORM_EPISODE_STEPS})",
        [],
    )


def make_sb3_model(
    config: PolicyConfig,
    env: Any,
    device: torch.device,
    num_steps: int,
    demo: Any = None,
    policy_kwargs: dict[str, Any] | None = None,
    policy: Any = "MlpPolicy",
) -> Any:
    """The SB3 learner with the shared head widths, sized for ``num_steps`` env steps.

    Args:
        demo: SAC only: a ``rl_demos.DemoReplay`` that ``config.rl_demo_share`` of every batch
            is drawn from.
        policy_kwargs: Added to the SB3 policy's keyword arguments (a features extractor that
            benchmarks put between the inputs and the head widths).
        policy: The SB3 policy class (or name) in place of ``"MlpPolicy"``, for benchmarks.
    """
    sb3 = _import_sb3()
    net_arch = list(config.hidden_dims)
    common = {
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "device": device,
        "verbose": 1 if config.progress else 0,
    }
    if config.rl_algorithm == "sac":
        if demo is not None:
            from sslrobot.policy.rl_demos import DemoReplayBuffer

            common["replay_buffer_class"] = DemoReplayBuffer
            common["replay_buffer_kwargs"] = {"demo": demo, "demo_share": config.rl_demo_share}
        return sb3.SAC(
            policy,
            env,
            batch_size=config.batch_size,
            buffer_size=max(num_steps, 1),
            learning_starts=min(1000, max(num_steps // 10, 1)),
            gradient_steps=-1,  # one gradient step per environment step, whatever num_envs
            policy_kwargs={"net_arch": net_arch, **(policy_kwargs or {})},
            **common,
        )
    # Rollouts per env a multiple of 64 and, where the budget holds one, of what makes
    # rollout * num_envs a multiple of the batch: SB3's minibatches stay whole (1,000 steps at
    # batch 256 gave 960-step rollouts, a 192-sample last minibatch and SB3's warning).
    whole = config.batch_size // math.gcd(config.batch_size, config.num_envs)
    step = math.lcm(PPO_MIN_ROLLOUT, whole)
    # Not past the 2,048-step cap (batch 1,000 asked for 8,000-step rollouts) nor the budget
    # (no whole rollout, no update at all): then 64-step multiples, as before.
    if step > min(2048, num_steps // config.num_envs):
        step = PPO_MIN_ROLLOUT
    rollout = max(step, min(2048, num_steps // config.num_envs) // step * step)
    return sb3.PPO(
        policy,
        env,
        n_steps=rollout,
        batch_size=min(config.batch_size, rollout * config.num_envs),
        policy_kwargs={"net_arch": {"pi": net_arch, "vf": net_arch}, **(policy_kwargs or {})},
        **common,
    )


def train_rl(config: PolicyConfig) -> Path:
    """Train an SB3 policy on frozen features (or the state) and write it to ``config.out``.

    Returns:
        The policy directory.
    """
    _import_sb3()
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import DummyVecEnv

    start_time = time.perf_counter()
    device = resolve_device(config.device)
    manifest = open_demos(config)[0].manifest if config.demos is not None else None
    resolved, image_size = resolve_policy_encoder(config, manifest)
    obs_mode = "state" if resolved.kind == "state" else "pixels"
    # Train in the look the demonstrations were recorded under, since they set the feature
    # statistics (as BC validates in it); the default look without demonstrations.
    visual_preset = "train" if manifest is None else demos_visual_preset(manifest)

    critics_on_state = config.rl_critic_input == "state"

    def make_one() -> Any:
        env = make_env(config.env_id, image_size, obs_mode, visual_preset=visual_preset)
        if critics_on_state:
            env = StateInObservation(env)
        # Recorded so that a resume replays the episodes in progress (rl_continuation).
        return EpisodeRecorder(env)

    out = config.out
    first = first_reset_seed(config.seed, config.num_envs)
    shared = sorted(
        set(range(first, first + config.num_envs)) & set(validation_seeds(config.val_episodes))
    )
    if shared:
        warnings.warn(
            f"training seed {config.seed} with num_envs={config.num_envs} first resets its "
            f"sub-envs with the online validation seeds {shared}: the best checkpoint is chosen "
            "partly on episodes training started from; take a smaller --seed",
            stacklevel=2,
        )
    venv = make_vec_env(make_one, n_envs=config.num_envs, seed=first, vec_env_cls=DummyVecEnv)
    try:
        probe_env = venv.envs[0]
        shapes = env_shapes(probe_env, config.env_id)
        check_fits(resolved, shapes, config.env_id)
        feature_dim = shapes.state_dim if resolved.module is None else resolved.module.feature_dim
        obs_encoder = ObservationEncoder(
            resolved.module, feature_dim=feature_dim, proprio_dim=shapes.proprio_dim, frozen=True
        ).to(device)
        # The critics' state statistics (rl_critic), fitted and saved beside the features'.
        state_norm = None
        if critics_on_state:
            state_norm = Normalizer(int(probe_env.observation_space["state"].shape[0]))
        fingerprint = resolved.describe()["weights_fingerprint"]
        resumed = read_resume_state(out, config, fingerprint) if config.resume else None
        if resumed is not None and resumed.get("observation_encoder"):
            # The statistics the actor, critic and replay buffer were trained on, not a refit
            # (the demonstrations may have grown, or the device changed, since).
            norm_source, norm_seeds = restore_observation_encoder(
                out, resumed, obs_encoder, state_norm
            )
        else:
            norm_source, norm_seeds = _fit_normalizers(
                config, obs_encoder, resolved, venv, shapes, state_norm
            )
        env = make_feature_vec_env(venv, obs_encoder, obs_mode, device, state_norm)
        num_steps = config.steps or DEFAULT_RL_STEPS
        continuation = None
        if resumed is None:
            demo = None
            if config.rl_demo_share:
                from sslrobot.policy.rl_demos import load_demo_replay

                dataset, _, ids = _open_demo_ids(config)
                demo = load_demo_replay(
                    dataset, ids, obs_encoder, obs_mode, venv.action_space, device, state_norm
                )
            policy: Any = "MlpPolicy"
            policy_kwargs = None
            if state_norm is not None:
                from sslrobot.policy.rl_critic import AsymmetricSACPolicy

                policy = AsymmetricSACPolicy
                policy_kwargs = {"actor_width": obs_encoder.output_dim}
            model = make_sb3_model(config, env, device, num_steps, demo, policy_kwargs, policy)
            start_policy_dir(out)
        else:
            continuation = read_saved_continuation(out, resumed)
            model = load_resume_checkpoint(out, resumed, config, env, device, continuation)
            if continuation is not None:
                try:
                    continue_episodes(continuation, model, venv, env.encode)
                except (KeyError, TypeError, ValueError) as error:  # a damaged file's content
                    raise ResumeError(
                        f"cannot resume from {out / CHECKPOINT_DIR / resumed['continuation']}: "
                        f"its episodes do not replay ({error!r})"
                    ) from error
            restore_best_model(out, resumed)
        done = int(model.num_timesteps)
        resumed_at = [] if resumed is None else [*resumed.get("resumed_at_steps", []), done]
        formats = ["csv"] + (["stdout"] if config.progress else [])
        if _has_tensorboard():
            formats.append("tensorboard")
        logs = out / "logs" if resumed is None else out / "logs" / f"resumed_at_{done}"
        model.set_logger(configure(str(logs), formats))
        record = base_record(config, resolved, shapes, image_size, device)
        critic_dim = 0 if state_norm is None else state_norm.dim
        record["val_seeds"] = validation_seeds(config.val_episodes)
        checks = None
        try:  # from here on the logger (TensorBoard's writer thread) and validator are closed
            if config.val_episodes:
                head = _sb3_head(model, critic_dim)
                validator = OnlineValidator(
                    record, obs_encoder, head, device, visual_preset=visual_preset
                )
                checks = _ValidationChecks(
                    validator, num_steps, config.num_val_checks, out,
                    steps_trained=lambda model: _steps_trained(model, config),
                )  # fmt: skip
                if resumed is not None:
                    checks.restore(resumed, done)
            saver = _ResumeCheckpoints(
                out, num_steps, config, checks, done, resumed_at, fingerprint, obs_encoder,
                {"normalization": norm_source, "demo_seeds": norm_seeds}, venv, state_norm,
            )  # fmt: skip
            bar = _progress_callback(f"rl {config.rl_algorithm}", num_steps, done, config.progress)
            if continuation is not None:  # last, so that nothing set up here draws from them
                set_random_state(model, continuation["random_state"])
            model.learn(
                total_timesteps=num_steps - done,
                progress_bar=False,  # SB3's needs rich; ours is tqdm, like the other stages'
                # The check first: at a point both share, the checkpoint then holds its row.
                callback=([] if checks is None else [checks.callback])
                + [saver.callback, bar]
                + ([_budget_callback(num_steps)] if config.rl_algorithm == "ppo" else []),
                reset_num_timesteps=resumed is None,
            )
            if checks is not None:
                checks.check(model)  # the final model, scored as the last check
        finally:
            if checks is not None:
                checks.validator.close()
            model.logger.close()  # TensorBoard's writer thread would outlive the run
    finally:
        venv.close()
    save_weights(out / "final.safetensors", obs_encoder)
    if state_norm is not None:  # training's alone: acting never reads the state
        save_weights(out / CRITIC_STATE_FILE, state_norm)
    _save_sb3(model, out / SB3_FILE.format(checkpoint="final"))
    checkpoints = {"final": "final.safetensors"}
    sb3_models = {"final": SB3_FILE.format(checkpoint="final")}
    if checks is not None and checks.best is not None:
        # The encoder is frozen in RL: the best checkpoint differs in its SB3 model alone.
        checkpoints["best"] = "final.safetensors"
        sb3_models["best"] = SB3_FILE.format(checkpoint="best")
    record.update(
        {
            "rl_algorithm": config.rl_algorithm,
            # Demonstrations trained on (sampled into SAC's batches), not only normalised by.
            "num_demos": len(norm_seeds) if config.rl_demo_share else 0,
            "demos": None if config.demos is None else str(Path(config.demos).resolve()),
            "demo_seeds": norm_seeds,  # demonstrations that set the normalisation, if any
            "train_visual_preset": visual_preset,
            # The critics read the standardised state (its statistics in the file), the actor
            # the policy inputs: acting pads them with this many NaN columns (rl_critic).
            "rl_critic_state_dim": critic_dim,
            "rl_critic_state_statistics": CRITIC_STATE_FILE if critic_dim else None,
            # Sub-env i is first reset with seed * num_envs + i (make_vec_env, SB3's seeding
            # through the wrapper, the random-action normalisation rollouts): evaluation
            # flags the seeds it shares with them.
            "train_reset_seeds": [first + i for i in range(config.num_envs)],
            "normalization": norm_source,
            "env_steps": int(model.num_timesteps),
            # What the updates saw: PPO trains whole rollouts, and the one the budget cuts
            # short is collected but not trained on.
            "env_steps_trained": _steps_trained(model, config),
            "resumed_at_steps": resumed_at,  # steps the training continued from
            "checkpoints": checkpoints,
            "sb3_models": sb3_models,
            "best": None if checks is None else checks.best,
            "validation": [] if checks is None else checks.rows,
            "wall_time_s": time.perf_counter() - start_time,
        }
    )
    write_policy_config(out, record)
    clear_run_files(out, logs=False)  # finished: nothing to resume
    return out


#: Resume checkpoints per run, evenly spread over its steps.
NUM_RESUME_CHECKPOINTS = 10


def read_saved_continuation(out: Path, state: dict[str, Any]) -> dict[str, Any] | None:
    """The episodes in progress and generators the checkpoint ``state`` names (None for a
    checkpoint written before they were kept: its episodes restart from their reset seeds).

    Raises:
        ResumeError: the file is missing or damaged.
    """
    if not state.get("continuation"):
        return None
    path = out / CHECKPOINT_DIR / state["continuation"]
    try:
        return read_continuation(path)
    except (OSError, ValueError) as error:  # json's errors are ValueErrors
        raise ResumeError(f"cannot resume from {path} ({error!r})") from error


def load_resume_checkpoint(
    out: Path,
    state: dict[str, Any],
    config: PolicyConfig,
    env: Any,
    device: torch.device,
    continuation: dict[str, Any] | None = None,
) -> Any:
    """The SB3 model (and SAC's replay buffer) of the checkpoint ``state`` names, on ``env``.

    With a ``continuation`` the model keeps the observations it saved (SB3 would reset the
    envs), which ``continue_episodes`` then checks against the replayed episodes.

    Raises:
        ResumeError: a file is missing or damaged, or the model's step count is not the
            checkpoint's (``sslrobot run`` then trains the stage anew, as for BC).
    """
    sb3 = _import_sb3()
    algorithm = {"sac": sb3.SAC, "ppo": sb3.PPO}[config.rl_algorithm]
    folder = out / CHECKPOINT_DIR
    try:
        model = algorithm.load(
            str(folder / state["model"]), env=env, device=device, force_reset=continuation is None
        )
        if state.get("replay_buffer"):
            model.load_replay_buffer(str(folder / state["replay_buffer"]))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, pickle.PickleError) as e:
        raise ResumeError(f"{folder}: cannot resume from its checkpoint ({e!r})") from e
    if int(model.num_timesteps) != int(state["num_timesteps"]):
        raise ResumeError(f"{folder}: the model and {RESUME_STATE} disagree on the step count")
    return model


def restore_observation_encoder(
    out: Path,
    state: dict[str, Any],
    obs_encoder: ObservationEncoder,
    state_norm: Normalizer | None = None,
) -> tuple[str, list[int]]:
    """Load the frozen encoder and feature/proprio statistics the checkpoint ``state`` saved
    (and, into ``state_norm``, the critics' state statistics).

    Returns:
        Where the statistics came from and the demonstrations' reset seeds, as the
        interrupted run recorded them.

    Raises:
        ResumeError: the file is missing or does not fit this policy's inputs.
    """
    path = out / CHECKPOINT_DIR / state["observation_encoder"]
    try:
        load_weights(path, obs_encoder)
        if state_norm is not None:
            path = out / CHECKPOINT_DIR / state["critic_state_statistics"]
            load_weights(path, state_norm)
        return str(state["normalization"]), [int(s) for s in state["demo_seeds"]]
    except (OSError, ValueError, KeyError, TypeError) as error:  # a damaged file: ValueError
        raise ResumeError(f"cannot resume from {path} ({error!r})") from error


def restore_best_model(out: Path, state: dict[str, Any]) -> None:
    """Put back the best model as the checkpoint ``state`` knew it: a check made after that
    checkpoint, before the interruption, may have replaced it with a model of the abandoned
    steps, which the resumed run's record would then name as the best of its own checks."""
    best = out / SB3_FILE.format(checkpoint="best")
    if "best_model" not in state:  # a checkpoint written before they kept it: leave it be
        return
    if state["best_model"]:
        saved = read_checkpoint_file(out / CHECKPOINT_DIR / state["best_model"])
        atomic_write(best, lambda file: file.write(saved))
    else:
        best.unlink(missing_ok=True)


def _progress_callback(label: str, total: int, done: int, enabled: bool) -> Any:
    """An SB3 callback showing environment steps against ``total`` with rate and ETA (SB3's
    own tables come only every few episodes and say neither)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(
                total=total, initial=done, desc=label, unit="step", disable=not enabled,
                dynamic_ncols=True,
            )  # fmt: skip

        def _on_step(self) -> bool:
            self.bar.update(self.num_timesteps - self.bar.n)  # every sub-env's steps
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return Progress()


def _steps_trained(model: Any, config: PolicyConfig) -> int:
    """Environment steps the updates learned from: SAC every one, PPO its whole rollouts."""
    if config.rl_algorithm != "ppo":
        return int(model.num_timesteps)
    per_rollout = model.n_steps * config.num_envs
    return int(model.num_timesteps) // per_rollout * per_rollout


def _budget_callback(total: int) -> Any:
    """An SB3 callback ending PPO's learning once ``total`` environment steps are taken: PPO
    collects whole rollouts, and ran up to one rollout past the budget (130 steps took 256;
    50,000 with 8 envs 65,536), which skewed comparisons of budgets and learners. The rollout
    cut short is not trained on; one that ends at the budget is. SAC's loop already stops at
    the budget (to within one step of every sub-env)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Budget(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps < total:
                return True
            # The step that reaches the budget may be a rollout's last: stopping there threw
            # the whole rollout away untrained (a budget of one rollout trained nothing).
            return self.locals["n_steps"] + 1 == self.locals["n_rollout_steps"]

    return Budget()


def _callback_at_points(owner: Any, act: Callable[[Any], None]) -> Any:
    """An SB3 callback calling ``act(model)`` when a rollout starts past one or more of
    ``owner.points`` (which it drops; once however many were passed): there the weights are
    those after every update so far (PPO updates only between rollouts, SAC after each
    rollout's steps)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Callback(BaseCallback):
        def _on_rollout_start(self) -> None:
            passed = [point for point in owner.points if self.num_timesteps >= point]
            if passed:
                owner.points = owner.points[len(passed) :]
                act(self.model)

        def _on_step(self) -> bool:
            return True

    return Callback()


class _ResumeCheckpoints:
    """SB3 callback: at every ``1 / NUM_RESUME_CHECKPOINTS`` of the steps, the model, SAC's
    replay buffer, the feature and proprio statistics (with the frozen encoder), the
    validation so far, the best model, and the episodes in progress with the random
    generators (``rl_continuation``) under ``out/checkpoints/``, each file written whole
    before ``resume.json`` names it, so that an interrupted run continues from there
    (``train-policy --resume``) instead of from step 0, step for step the uninterrupted run
    on CPU."""

    def __init__(
        self,
        out: Path,
        num_steps: int,
        config: PolicyConfig,
        checks: _ValidationChecks | None,
        done: int,
        resumed_at: list[int],
        encoder_fingerprint: str | None,
        obs_encoder: ObservationEncoder,
        normalization: dict[str, Any],
        venv: Any,
        state_norm: Normalizer | None = None,
    ) -> None:
        self.folder, self.checks, self.venv = out / CHECKPOINT_DIR, checks, venv
        self.obs_encoder, self.normalization = obs_encoder, normalization
        self.state_norm = state_norm
        self.settings = resume_settings(config, encoder_fingerprint)
        self.resumed = resumed_at
        count = NUM_RESUME_CHECKPOINTS
        self.points = [p for k in range(1, count) if (p := math.ceil(num_steps * k / count)) > done]
        self.callback = _callback_at_points(self, self.save)

    def save(self, model: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        step = int(model.num_timesteps)
        name = f"model_{step}.zip"
        _save_sb3(model, self.folder / name)
        buffer = None
        if getattr(model, "replay_buffer", None) is not None:
            buffer = f"replay_buffer_{step}.pkl"
            atomic_write_to_name(
                self.folder / buffer, lambda tmp: model.save_replay_buffer(str(tmp))
            )
        best = None
        best_file = self.folder.parent / SB3_FILE.format(checkpoint="best")
        if self.checks is not None and self.checks.best is not None and best_file.is_file():
            best = f"best_sb3_{step}.zip"  # as it is now: a later check may replace it
            data = best_file.read_bytes()
            atomic_write(self.folder / best, lambda file: file.write(data))
        # The statistics the model trains on (and the frozen encoder): restored on resume.
        observation_encoder = f"observation_encoder_{step}.safetensors"
        save_weights(self.folder / observation_encoder, self.obs_encoder)
        critic_state = None
        if self.state_norm is not None:
            critic_state = f"critic_state_statistics_{step}.safetensors"
            save_weights(self.folder / critic_state, self.state_norm)
        continuation = CONTINUATION_FILE.format(step=step)
        save_continuation(self.folder / continuation, model, self.venv)
        state = {
            "num_timesteps": step,
            "model": name,
            "replay_buffer": buffer,
            "best_model": best,
            "observation_encoder": observation_encoder,
            "critic_state_statistics": critic_state,
            "continuation": continuation,
            **self.normalization,
            "settings": self.settings,
            "resumed_at_steps": self.resumed,
            "cpu_threads": torch.get_num_threads(),  # a resume with others is not bit-exact
            "validation": [] if self.checks is None else self.checks.rows,
            "best": None if self.checks is None else self.checks.best,
        }
        atomic_write_json(self.folder / RESUME_STATE, state, sync_dir=True)  # before the prune
        kept = (name, buffer, best, observation_encoder, critic_state, continuation, RESUME_STATE)
        prune_checkpoints(self.folder, keep=kept)  # the checkpoints before this one


def _sb3_head(model: Any, critic_state_dim: int = 0) -> Callable[[torch.Tensor], np.ndarray]:
    """An SB3 model (being trained, or loaded) as ``inputs (B, D) -> deterministic actions
    (B, A)``.

    Args:
        critic_state_dim: Width of the critics' state (``rl_critic``): the inputs are padded
            with as many NaN columns, and a non-finite action (an actor that read them) raises.
    """

    if critic_state_dim:  # once here, not at every step
        from sslrobot.policy.rl_critic import hide_critic_state

    def head(inputs: torch.Tensor) -> np.ndarray:
        observations = inputs.cpu().numpy()
        if critic_state_dim:
            observations = hide_critic_state(observations, critic_state_dim)
        actions, _ = model.predict(observations, deterministic=True)
        actions = np.asarray(actions, dtype=np.float32)
        if critic_state_dim and not np.isfinite(actions).all():
            raise RuntimeError(
                "a non-finite action: the actor read the critics' state columns, which acting "
                "leaves NaN"
            )
        return actions

    return head


class _ValidationChecks:
    """SB3 callback: online validations spread over training, the last on the final model
    (``check`` after ``learn``), each saving the SB3 model as ``best`` when its success is the
    highest so far (ties go to the later, longer-trained one), as BC does.

    A check runs when a rollout starts, once training has passed its point: there the weights
    are those after every update so far (PPO updates only between rollouts, SAC after each
    rollout's steps), and a vector step past several points runs one check, not several.
    PPO trains whole rollouts, so its checks fall where its updates do: a run of one rollout
    has only the final check.
    """

    def __init__(
        self,
        validator: OnlineValidator,
        num_steps: int,
        num_checks: int,
        out: Path,
        steps_trained: Callable[[Any], int] = lambda model: int(model.num_timesteps),
    ) -> None:
        self.validator, self.out = validator, out
        #: A row's step: what the weights learned from. PPO's budget can end mid-rollout,
        #: untrained on: its final check then named steps its weights never saw (and, as
        #: the later of two ties, the best row did).
        self.steps_trained = steps_trained
        self.rows: list[dict[str, float]] = []
        self.best: dict[str, float] | None = None
        # Points of the checks inside training; the last check is the final model's.
        self.points = [math.ceil(num_steps * k / num_checks) for k in range(1, num_checks)]
        self.callback = _callback_at_points(self, self.check)

    def restore(self, state: dict[str, Any], done: int) -> None:
        """Continue the checks of an interrupted run (its resume checkpoint at step ``done``):
        its rows and best so far, and only the points still ahead."""
        self.rows = list(state.get("validation", []))
        self.best = state.get("best")
        self.points = [point for point in self.points if point > done]

    def check(self, model: Any) -> None:
        success = self.validator.success_rate()
        row = {"check": len(self.rows), "step": self.steps_trained(model),
               "eval/val_success": success}  # fmt: skip
        self.rows.append(row)
        if self.best is None or success >= self.best["eval/val_success"]:
            self.best = row
            _save_sb3(model, self.out / SB3_FILE.format(checkpoint="best"))


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401 - SB3's TensorBoard output needs it
    except ImportError:
        return False
    return True


def _save_sb3(model: Any, path: Path) -> None:
    """``model.save`` to a temp file in the same directory, then an atomic rename."""
    atomic_write_to_name(path, lambda tmp: model.save(str(tmp)))


def load_rl_head(
    policy_dir: Path, record: dict[str, Any], checkpoint: str, device: torch.device
) -> Callable[[torch.Tensor], np.ndarray]:
    """The SB3 model of a policy directory as ``inputs (B, D) -> deterministic actions (B, A)``."""
    sb3 = _import_sb3()
    name = record.get("sb3_models", {}).get(checkpoint)
    if name is None or not (policy_dir / name).is_file():
        raise ValueError(f"policy {policy_dir} has no SB3 model for checkpoint {checkpoint!r}")
    algorithm = {"sac": sb3.SAC, "ppo": sb3.PPO}[record["rl_algorithm"]]
    # seed=None: SB3's load otherwise reseeds torch, numpy and random (and, on a GPU, cuDNN's
    # flags) to the training seed, resetting the caller's generators; a one-transition
    # replay buffer instead of SAC's whole run's, which acting never reads.
    extra = {"buffer_size": 1} if record["rl_algorithm"] == "sac" else {}
    with preserved_cudnn_flags():
        model = algorithm.load(str(policy_dir / name), device=device, seed=None, **extra)
    return _sb3_head(model, int(record.get("rl_critic_state_dim", 0)))
