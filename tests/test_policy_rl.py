"""RL on frozen features with Stable-Baselines3: the batched encoding wrapper and a tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors

pytest.importorskip("stable_baselines3")

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from sslrobot.evaluation.evaluate import evaluate
from sslrobot.policy import PolicyConfig, load_policy, train_policy
from sslrobot.policy.checkpoint import ResumeError
from sslrobot.policy.encoders import resolve_encoder
from sslrobot.policy.environment import make_env
from sslrobot.policy.network import ObservationEncoder, policy_inputs
from sslrobot.policy.rl import make_feature_vec_env

torch.set_num_threads(1)

ENV_ID = "sslrobot/Reach-v0"
IMAGE_SIZE = 32


def test_feature_vec_env_encodes_batches_and_terminal_observations():
    encoder = resolve_encoder("none", IMAGE_SIZE, seed=0).module
    obs_encoder = ObservationEncoder(encoder, encoder.feature_dim, proprio_dim=9, frozen=True)
    venv = make_vec_env(
        lambda: make_env(ENV_ID, IMAGE_SIZE, "pixels", max_episode_steps=3),
        n_envs=2,
        seed=0,
        vec_env_cls=DummyVecEnv,
    )
    raw = make_vec_env(
        lambda: make_env(ENV_ID, IMAGE_SIZE, "pixels", max_episode_steps=3),
        n_envs=2,
        seed=0,
        vec_env_cls=DummyVecEnv,
    )
    env = make_feature_vec_env(venv, obs_encoder, "pixels", torch.device("cpu"))
    try:
        assert env.observation_space.shape == (encoder.feature_dim + 9,)
        obs = env.reset()
        raw_obs = raw.reset()
        expected = policy_inputs(obs_encoder, raw_obs, "pixels", torch.device("cpu")).numpy()
        np.testing.assert_array_equal(obs, expected)
        actions = np.zeros((2, *env.action_space.shape), np.float32)
        for _ in range(3):  # the 3-step time limit ends both episodes on the last step
            obs, _, dones, infos = env.step(actions)
            _, _, _, raw_infos = raw.step(actions)
        assert dones.all()
        for info, raw_info in zip(infos, raw_infos, strict=True):
            terminal = info["terminal_observation"]
            assert terminal.shape == (encoder.feature_dim + 9,) and terminal.dtype == np.float32
            single = {k: v[None] for k, v in raw_info["terminal_observation"].items()}
            reference = policy_inputs(obs_encoder, single, "pixels", torch.device("cpu"))[0]
            np.testing.assert_allclose(terminal, reference.numpy(), rtol=0, atol=1e-6)
    finally:
        env.close()
        raw.close()


def test_tiny_sac_run_on_frozen_features(tmp_path):
    out = train_policy(
        PolicyConfig(
            env_id=ENV_ID,
            encoder="none",
            algo="rl",
            out=tmp_path / "sac",
            device="cpu",
            steps=200,
            batch_size=32,
            image_size=IMAGE_SIZE,
            num_envs=2,
            rl_norm_steps=40,
            progress=False,
        )
    )
    record = json.loads((out / "policy_config.json").read_text())
    assert record["rl_algorithm"] == "sac" and record["env_steps"] >= 200
    assert (out / "final_sb3.zip").is_file() and (out / "logs" / "progress.csv").is_file()
    initial = resolve_encoder("none", IMAGE_SIZE, seed=0).module.state_dict()
    saved = load_policy(out).obs_encoder.encoder.state_dict()
    assert all(torch.equal(saved[k], v) for k, v in initial.items())  # still frozen
    result = evaluate(out, num_episodes=2, seed=10, out_json=tmp_path / "sac.json")
    assert result["algo"] == "rl-sac" and len(result["episodes"]) == 2
    # Deterministic for a seed: SAC acts on its mean action (a sampled one passed every test).
    again = evaluate(out, num_episodes=2, seed=10)
    assert again["episodes"] == result["episodes"]
    assert result["seeds_shared_with_training"] == []
    # Sub-env i first reset with seed * num_envs + i: evaluation from those seeds is flagged.
    assert record["train_reset_seeds"] == [0, 1]
    with pytest.warns(UserWarning, match="2 evaluation seeds are seeds .* was trained from"):
        result = evaluate(out, num_episodes=2, seed=0, out_json=tmp_path / "sac0.json")
    assert result["seeds_shared_with_training"] == [0, 1]


def test_a_pretrained_encoder_stays_bit_identical_through_rl(tmp_path):
    """Only the random encoder's freezing was checked under RL."""
    from test_policy import write_encoder_dir

    from sslrobot.models.encoder import EncoderConfig

    encoder_dir = write_encoder_dir(tmp_path / "enc", EncoderConfig(image_size=IMAGE_SIZE), seed=3)
    out = train_policy(
        PolicyConfig(env_id=ENV_ID, encoder=str(encoder_dir), algo="rl", out=tmp_path / "sac",
                     steps=120, batch_size=16, image_size=IMAGE_SIZE, rl_norm_steps=20,
                     progress=False)
    )  # fmt: skip
    given = load_safetensors((encoder_dir / "encoder.safetensors").read_bytes())
    saved = load_policy(out).obs_encoder.encoder.state_dict()
    assert given.keys() == saved.keys()
    assert all(torch.equal(saved[name], tensor) for name, tensor in given.items())


def test_rl_normalisation_demos_must_match_the_environment(tmp_path):
    from sslrobot.data import CollectConfig, collect

    demos = collect(
        CollectConfig(env_id=ENV_ID, out=tmp_path / "demos", num_episodes=1, policy="expert",
                      image_size=16, env_kwargs={"image_size": 16}),
        progress=False,
    )  # fmt: skip
    config = PolicyConfig(env_id=ENV_ID, encoder="none", algo="rl", out=tmp_path / "rl",
                          demos=demos, num_demos=1, steps=10, image_size=IMAGE_SIZE,
                          progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"demonstrations .* hold frames of shape \(16, 16, 3\)"):
        train_policy(config)


def test_rl_validation_seeds_must_not_be_its_normalisation_demos_seeds(tmp_path):
    """BC refused this and RL took it: the best checkpoint was chosen on the start states the
    feature statistics came from."""
    from sslrobot.data import CollectConfig, collect
    from sslrobot.policy.config import VALIDATION_SEED_BASE

    demos = collect(
        CollectConfig(env_id=ENV_ID, out=tmp_path / "demos", num_episodes=1, policy="expert",
                      image_size=IMAGE_SIZE, seed=VALIDATION_SEED_BASE),
        progress=False,
    )  # fmt: skip
    config = PolicyConfig(env_id=ENV_ID, encoder="none", algo="rl", out=tmp_path / "rl",
                          demos=demos, num_demos=1, steps=10, image_size=IMAGE_SIZE,
                          val_episodes=1, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"start from seeds \[1000000\] that online validation"):
        train_policy(config)


def train_tiny_ppo_on_state(out, **settings):
    """A 128-step PPO run on the privileged state (seconds), with ``settings`` on top."""
    tiny = {"steps": 128, "batch_size": 64, "rl_norm_steps": 20, "progress": False,
            "device": "cpu"}  # fmt: skip
    config = PolicyConfig(env_id=ENV_ID, encoder="state", algo="rl", rl_algorithm="ppo", out=out,
                          **{**tiny, **settings})  # fmt: skip
    return train_policy(config)


def test_tiny_ppo_run_on_state(tmp_path, monkeypatch):
    """Also: SB3 seeds its models, made and loaded, by setting cuDNN's flags for the process on
    a GPU (here made to on the CPU); training and loading put them back as they were."""
    from stable_baselines3.common import base_class, utils

    def seed_as_on_a_gpu(seed, using_cuda=False):
        utils.set_random_seed(seed, using_cuda=True)

    monkeypatch.setattr(base_class, "set_random_seed", seed_as_on_a_gpu)
    cudnn = torch.backends.cudnn
    monkeypatch.setattr(cudnn, "deterministic", False)
    monkeypatch.setattr(cudnn, "benchmark", True)
    out = train_tiny_ppo_on_state(tmp_path / "ppo")
    assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    # One rollout (128 steps) ends at the budget: it was thrown away untrained.
    from stable_baselines3 import PPO

    record = json.loads((out / "policy_config.json").read_text())
    trained = PPO.load(str(out / record["sb3_models"]["final"]), device="cpu", seed=None)
    assert trained._n_updates == trained.n_epochs and record["env_steps_trained"] == 128
    draws = []
    for seed in (1, 2):  # loading reseeded torch and numpy to the training seed
        torch.manual_seed(seed)
        np.random.seed(seed)
        policy = load_policy(out)
        draws.append((torch.rand(1).item(), np.random.rand()))
    assert draws[0][0] != draws[1][0] and draws[0][1] != draws[1][1]
    assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    state = np.zeros(policy.record["feature_dim"], np.float32)
    action = policy(state)
    assert action.shape == (policy.record["action_dim"],) and np.all(np.abs(action) <= 1)
    # PPO collects whole rollouts (here 128 steps): a budget of 130 used to take 256.
    record = json.loads(
        (train_tiny_ppo_on_state(tmp_path / "b", steps=130) / "policy_config.json").read_text()
    )
    assert record["env_steps"] == 130 and record["env_steps_trained"] == 128
    with pytest.warns(UserWarning, match=r"online validation seeds \[1000000\]"):
        train_tiny_ppo_on_state(tmp_path / "d", seed=1_000_000, val_episodes=1)
    # A budget below one rollout of every env would train nothing: refused before any work.
    with pytest.raises(ValueError, match=r"steps=100: PPO trains on whole rollouts .* 128 with"):
        train_tiny_ppo_on_state(tmp_path / "c", steps=100, num_envs=2)


def test_rl_trains_in_the_look_of_its_normalisation_demos(tmp_path, monkeypatch):
    """Demonstrations recorded under another visual preset set the feature statistics, so RL
    trains in that look (it used to train in ``train`` whatever the demonstrations showed)."""
    from sslrobot.data import CollectConfig, collect
    from sslrobot.policy import rl

    demos = collect(
        CollectConfig(env_id=ENV_ID, out=tmp_path / "demos", num_episodes=1, policy="expert",
                      image_size=IMAGE_SIZE, env_kwargs={"visual_preset": "heldout"}),
        progress=False,
    )  # fmt: skip
    presets = []

    def recording(*args, visual_preset="train", **kwargs):
        presets.append(visual_preset)
        return make_env(*args, visual_preset=visual_preset, **kwargs)

    monkeypatch.setattr(rl, "make_env", recording)
    out = train_policy(
        PolicyConfig(env_id=ENV_ID, encoder="none", algo="rl", rl_algorithm="ppo",
                     out=tmp_path / "rl", demos=demos, num_demos=1, steps=64, batch_size=32,
                     image_size=IMAGE_SIZE, num_envs=1, progress=False)
    )  # fmt: skip
    assert presets == ["heldout"]
    assert json.loads((out / "policy_config.json").read_text())["train_visual_preset"] == "heldout"


def test_rl_keeps_its_best_checkpoint_by_online_validation(tmp_path, monkeypatch):
    """Issue 5 asks for final and best checkpoints: RL validates on validation seeds when a
    rollout starts past each check's point (the weights after every update so far), once more
    on the final model, keeps the SB3 model of the best check and evaluate --checkpoint best
    loads it."""
    from sslrobot.policy import validation

    scripted = iter([0.0, 1.0, 0.0])  # the middle check is the best
    monkeypatch.setattr(validation.OnlineValidator, "success_rate", lambda self: next(scripted))
    config = PolicyConfig(env_id=ENV_ID, encoder="state", algo="rl", out=tmp_path / "sac",
                          steps=90, batch_size=16, rl_norm_steps=20, val_episodes=1,
                          num_val_checks=3, progress=False)  # fmt: skip
    out = train_policy(config)
    record = json.loads((out / "policy_config.json").read_text())
    assert [row["step"] for row in record["validation"]] == [30, 60, 90]
    assert record["best"] == record["validation"][1] and record["val_seeds"] == [1_000_000]
    best, final = (out / record["sb3_models"][name] for name in ("best", "final"))
    assert best.read_bytes() != final.read_bytes()  # saved at step 60, trained on since
    result = evaluate(out, num_episodes=1, seed=500, checkpoint="best")
    assert result["checkpoint"] == "best" and result["seeds_shared_with_validation"] == []
    with pytest.warns(UserWarning, match="online validation seeds"):
        evaluate(out, num_episodes=1, seed=1_000_000, checkpoint="final")

    # PPO trains whole rollouts: one rollout, no weights between, so only the final check.
    scripted = iter([0.5])
    out = train_tiny_ppo_on_state(tmp_path / "ppo", val_episodes=1, num_val_checks=3)
    record = json.loads((out / "policy_config.json").read_text())
    assert [row["step"] for row in record["validation"]] == [record["env_steps"]]


def stop_after_checkpoint(monkeypatch, step):
    """Make RL training raise KeyboardInterrupt right after its first resume checkpoint at or
    past ``step``, as a Ctrl-C there would."""
    from sslrobot.policy import rl

    save = rl._ResumeCheckpoints.save

    def save_then_stop(self, model):
        save(self, model)
        if model.num_timesteps >= step:
            raise KeyboardInterrupt

    monkeypatch.setattr(rl._ResumeCheckpoints, "save", save_then_stop)
    return save


def test_an_interrupted_rl_run_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    """SAC on the state, 100 steps, validated at 50 and 100: interrupted after its checkpoint
    at step 50, where a check falls too, `resume` continues from there (the model's step
    count, its replay buffer, the validation so far with that check's row, and the best model
    as it was then) to the full 100 steps and finishes as one run would."""
    from sslrobot.policy import rl, validation

    successes = iter([0.5, 0.0])  # the check at 50 stays the best
    monkeypatch.setattr(validation.OnlineValidator, "success_rate", lambda self: next(successes))
    values = dict(env_id=ENV_ID, encoder="state", algo="rl", out=tmp_path / "sac", steps=100,
                  batch_size=16, rl_norm_steps=20, val_episodes=1, num_val_checks=2,
                  progress=False)  # fmt: skip
    save = stop_after_checkpoint(monkeypatch, 50)
    with pytest.raises(KeyboardInterrupt):
        train_policy(PolicyConfig(**values))
    state = json.loads((tmp_path / "sac" / "checkpoints" / "resume.json").read_text())
    assert state["num_timesteps"] == 50 and [r["step"] for r in state["validation"]] == [50]
    assert sorted(p.name for p in (tmp_path / "sac" / "checkpoints").iterdir()) == [
        "best_sb3_50.zip", "continuation_50.json", "model_50.zip",
        "observation_encoder_50.safetensors", "replay_buffer_50.pkl", "resume.json",
    ]  # fmt: skip
    assert not (tmp_path / "sac" / "policy_config.json").exists()
    best_at_50 = (tmp_path / "sac" / "checkpoints" / "best_sb3_50.zip").read_bytes()
    # As if a check after the checkpoint had saved a model of the steps the resume abandons.
    (tmp_path / "sac" / "best_sb3.zip").write_bytes(b"a model of abandoned steps")

    with pytest.raises(ValueError, match=r"other settings \(batch_size 16 -> 8\)"):
        train_policy(PolicyConfig(**{**values, "batch_size": 8, "resume": True}))
    model_file = tmp_path / "sac" / "checkpoints" / "model_50.zip"
    intact = model_file.read_bytes()
    model_file.write_bytes(b"not a zip")  # damaged: the error run's retry path knows
    with pytest.raises(ResumeError, match="cannot resume from its checkpoint"):
        train_policy(PolicyConfig(**{**values, "resume": True}))
    model_file.write_bytes(intact)
    statistics_file = tmp_path / "sac" / "checkpoints" / "observation_encoder_50.safetensors"
    intact = statistics_file.read_bytes()
    statistics_file.write_bytes(intact[:20])
    with pytest.raises(ResumeError, match=r"cannot resume from .*observation_encoder_50"):
        train_policy(PolicyConfig(**{**values, "resume": True}))
    statistics_file.write_bytes(intact)
    best_file = tmp_path / "sac" / "checkpoints" / "best_sb3_50.zip"
    best_file.unlink()  # a ResumeError (`sslrobot run` trains anew), not FileNotFoundError
    with pytest.raises(ResumeError, match=r"best_sb3_50\.zip, which the resume checkpoint"):
        train_policy(PolicyConfig(**{**values, "resume": True}))
    best_file.write_bytes(best_at_50)
    monkeypatch.setattr(rl._ResumeCheckpoints, "save", save)
    # The statistics the model trained on come back with it, never fitted anew.
    monkeypatch.setattr(rl, "_fit_normalizers", lambda *a: pytest.fail("refitted on resume"))
    saved_statistics = load_safetensors(
        (tmp_path / "sac" / "checkpoints" / "observation_encoder_50.safetensors").read_bytes()
    )
    load = rl.load_resume_checkpoint
    buffered = []

    def load_and_look(*args, **kwargs):
        model = load(*args, **kwargs)
        buffered.append(model.replay_buffer.size())
        return model

    monkeypatch.setattr(rl, "load_resume_checkpoint", load_and_look)
    out = train_policy(PolicyConfig(**{**values, "resume": True}))
    assert buffered == [50]  # the replay buffer came back with the model
    record = json.loads((out / "policy_config.json").read_text())
    assert record["env_steps"] == 100 and record["resumed_at_steps"] == [50]
    assert [row["step"] for row in record["validation"]] == [50, 100]
    assert record["best"]["step"] == 50 and (out / "best_sb3.zip").read_bytes() == best_at_50
    assert not (out / "checkpoints").exists()  # finished: nothing left to resume
    assert (out / "logs" / "resumed_at_50" / "progress.csv").is_file()
    final = load_safetensors((out / "final.safetensors").read_bytes())
    assert final.keys() == saved_statistics.keys()
    assert all(torch.equal(final[k], saved_statistics[k]) for k in final)
    with pytest.raises(ValueError, match=r"holds a finished policy .* nothing to resume"):
        train_policy(PolicyConfig(**{**values, "resume": True}))
    # A fresh run over it starts its logs afresh: no earlier run's curves mixed in.
    monkeypatch.undo()
    unvalidated = {k: v for k, v in values.items() if k not in ("val_episodes", "num_val_checks")}
    train_policy(PolicyConfig(**unvalidated, overwrite=True))
    assert sorted(p.name for p in (out / "logs").iterdir() if p.is_dir()) == []


def sb3_parameters(policy_dir):
    """The SB3 model's weights and optimiser states in ``policy_dir``'s final checkpoint."""
    import io
    import zipfile

    with zipfile.ZipFile(policy_dir / "final_sb3.zip") as archive:
        return torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)


#: SAC on frozen pixel features, two sub-envs (the resume test's).
SAC_PIXELS = dict(encoder="none", image_size=IMAGE_SIZE, steps=200, num_envs=2, batch_size=16)


@pytest.mark.parametrize(
    "settings, stop_at",
    [
        # SAC on frozen pixel features: 30 steps into each sub-env's first episode.
        (SAC_PIXELS, 60),
        # The same with its critics on the state: their statistics saved and put back.
        ({**SAC_PIXELS, "rl_critic_input": "state"}, 60),
        # PPO on the state: its checkpoints fall between rollouts of 2,048 steps, and two
        # more are trained after the resume.
        (dict(encoder="state", rl_algorithm="ppo", steps=6200, num_envs=1, batch_size=512), 2048),
    ],
    ids=["sac-pixels", "sac-critic-state", "ppo-state"],
)
def test_a_resumed_rl_run_continues_step_for_step(tmp_path, monkeypatch, settings, stop_at):
    """Interrupted after its checkpoint at ``stop_at``, resumed, a run ends with the
    uninterrupted run's weights to the bit (the episodes in progress replayed, the generators
    put back). It restarted every episode from its first reset seed and reseeded every
    generator before the checkpoint kept them."""
    import warnings

    values = dict(env_id=ENV_ID, algo="rl", rl_norm_steps=20, progress=False, **settings)
    whole = train_policy(PolicyConfig(**values, out=tmp_path / "whole"))
    cut = tmp_path / "cut"
    stop_after_checkpoint(monkeypatch, stop_at)
    with pytest.raises(KeyboardInterrupt):
        train_policy(PolicyConfig(**values, out=cut))
    monkeypatch.undo()
    if settings.get("rl_critic_input") == "state":  # the critics' statistics, restored
        assert (cut / "checkpoints" / f"critic_state_statistics_{stop_at}.safetensors").is_file()
    continuation_file = cut / "checkpoints" / f"continuation_{stop_at}.json"
    saved = json.loads(continuation_file.read_text())
    assert any(episode["actions"] for episode in saved["episodes"])  # one in progress
    intact = continuation_file.read_text()
    continuation_file.write_text(intact[:30])
    with pytest.raises(ResumeError, match=rf"cannot resume from .*continuation_{stop_at}\.json"):
        train_policy(PolicyConfig(**values, out=cut, resume=True))
    continuation_file.write_text(json.dumps({**saved, "episodes": []}))
    with pytest.raises(ResumeError, match=r"its episodes do not replay .*holds 0 sub-env"):
        train_policy(PolicyConfig(**values, out=cut, resume=True))
    continuation_file.write_text(intact)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the replay reached the saved observations
        resumed = train_policy(PolicyConfig(**values, out=cut, resume=True))
    assert json.loads((resumed / "policy_config.json").read_text())["resumed_at_steps"] == [stop_at]
    expected, got = sb3_parameters(whole), sb3_parameters(resumed)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_a_replay_that_misses_the_saved_observations_is_said(tmp_path, monkeypatch):
    """An env that does not replay to the observations the checkpoint saved (one action
    changed here, as a nondeterministic or edited env would) continues from the replayed
    ones, with a warning that the run no longer follows the interrupted one."""

    values = dict(env_id=ENV_ID, encoder="state", algo="rl", out=tmp_path / "sac", steps=100,
                  batch_size=16, rl_norm_steps=20, num_envs=2, progress=False)  # fmt: skip
    stop_after_checkpoint(monkeypatch, 30)
    with pytest.raises(KeyboardInterrupt):
        train_policy(PolicyConfig(**values))
    monkeypatch.undo()
    path = tmp_path / "sac" / "checkpoints" / "continuation_30.json"
    saved = json.loads(path.read_text())
    episode = max(saved["episodes"], key=lambda e: len(e["actions"]))
    episode["actions"][0] = [-a for a in episode["actions"][0]]
    path.write_text(json.dumps(saved))
    with pytest.warns(UserWarning, match="did not replay to the observations"):
        out = train_policy(PolicyConfig(**values, resume=True))
    assert json.loads((out / "policy_config.json").read_text())["env_steps"] == 100


def test_neighbouring_training_seeds_never_share_start_states():
    """Sub-env i of seed s was reset with s + i (SB3's own seeding): seed 0's sub-env 1 drew
    seed 1's sub-env 0's start states, so neighbouring seeds shared (n - 1) / n of them."""
    from types import SimpleNamespace

    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sslrobot.policy.rl import first_reset_seed, make_feature_vec_env

    blocks = [
        set(range(first_reset_seed(seed, 4), first_reset_seed(seed, 4) + 4)) for seed in range(3)
    ]
    assert not (blocks[0] & blocks[1]) and not (blocks[1] & blocks[2])
    venv = DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2)
    env = make_feature_vec_env(venv, SimpleNamespace(output_dim=4), "state", torch.device("cpu"))
    env.seed(1)  # as SB3 does with the run's seed when it builds the model
    assert venv._seeds == [2, 3]


def test_random_normalisation_rollouts_draw_many_episodes() -> None:
    """Whole episodes gave what an episode fixes 2-3 draws in 500 steps of Navigate (250-step
    episodes), and its landmarks' y sat at the clip in 45% of an expert's steps: the rollouts
    reset every NORM_EPISODE_STEPS steps, each env from its own generator."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sslrobot.policy import rl

    class Counting(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.goal = self.np_random.uniform(-1, 1, 1).astype(np.float32)
            return self.goal, {}

        def step(self, action):
            return self.goal, 0.0, False, False, {}

    venv = DummyVecEnv([Counting, Counting])
    observations = rl._random_observations(venv, 200, seed=3)
    goals = np.unique(np.concatenate(observations))
    assert len(goals) == 2 * (1 + 100 // rl.NORM_EPISODE_STEPS)  # 5 episodes per env
    again = rl._random_observations(DummyVecEnv([Counting, Counting]), 200, seed=3)
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(observations))


def test_ppo_rollouts_keep_its_minibatches_whole(monkeypatch) -> None:
    """1,000 steps at batch 256 made 960-step rollouts: SB3 warned and trained a 192-sample
    last minibatch. A budget too small for a whole-batch rollout keeps 64-step ones (else it
    would make no update at all), and batch 1, which SB3 asserts against late, is refused."""
    from types import SimpleNamespace

    from sslrobot.policy import rl

    monkeypatch.setattr(rl, "_import_sb3", lambda: SimpleNamespace(PPO=lambda *a, **k: k))
    for steps, num_envs, expected in ((1000, 1, 768), (30_000, 1, 2048), (200, 1, 192),
                                      (1000, 3, 256)):  # fmt: skip
        config = PolicyConfig(env_id=ENV_ID, encoder="state", algo="rl", rl_algorithm="ppo",
                              out="unused", steps=steps, num_envs=num_envs)  # fmt: skip
        made = rl.make_sb3_model(config, None, torch.device("cpu"), steps)
        assert made["n_steps"] == expected, (steps, num_envs)
        assert made["n_steps"] * num_envs % made["batch_size"] == 0
    # A batch whose whole rollouts would pass the 2,048-step cap keeps the 64-step ones.
    config = PolicyConfig(env_id=ENV_ID, encoder="state", algo="rl", rl_algorithm="ppo",
                          out="unused", steps=15_000, batch_size=1000)  # fmt: skip
    assert rl.make_sb3_model(config, None, torch.device("cpu"), 15_000)["n_steps"] == 2048
    with pytest.raises(ValueError, match="batch_size=1: PPO normalises advantages"):
        PolicyConfig(env_id=ENV_ID, encoder="state", algo="rl", rl_algorithm="ppo",
                     out="unused", batch_size=1)  # fmt: skip


def test_ppo_validation_rows_name_the_steps_the_weights_learned_from(tmp_path) -> None:
    """A budget ending mid-rollout leaves that rollout untrained: the final check scored the
    weights of the rollout before and named the budget's step (as the later of two ties, the
    best row did too)."""
    from sslrobot.policy.checkpoint import read_policy_config

    out = train_tiny_ppo_on_state(tmp_path / "ppo", steps=200, val_episodes=1, num_val_checks=2)
    record = read_policy_config(out)
    assert record["env_steps_trained"] == 192  # three 64-step rollouts; the 8 past them unused
    assert record["validation"][-1]["step"] == 192
    assert record["best"]["step"] <= 192
