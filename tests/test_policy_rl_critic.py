"""SAC with its critics on the privileged state (``train-policy --rl-critic-input state``):
what the critics and the actor read, in training and in acting, and what is saved."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from sslrobot.evaluation.evaluate import evaluate, train_settings
from sslrobot.policy import PolicyConfig, train_policy
from sslrobot.policy.encoders import resolve_encoder
from sslrobot.policy.environment import StateInObservation, make_env
from sslrobot.policy.network import ObservationEncoder, policy_inputs
from sslrobot.policy.normalizer import Normalizer
from sslrobot.policy.rl import _sb3_head, make_feature_vec_env

torch.set_num_threads(1)

ENV_ID = "sslrobot/Reach-v0"
IMAGE_SIZE = 32
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    from sslrobot.data import CollectConfig, collect

    out = tmp_path_factory.mktemp("critic") / "demos"
    config = CollectConfig(env_id=ENV_ID, out=out, num_episodes=2, policy="expert",
                           image_size=IMAGE_SIZE, seed=200_000)  # fmt: skip
    return collect(config, progress=False)


def test_the_feature_env_appends_the_standardised_state_for_the_critics():
    """Every observation SAC stores, terminal ones included, is ``[policy inputs, (state -
    mean) / std]``: the actor's part as without the state, the critics' part the env's state."""
    encoder = resolve_encoder("none", IMAGE_SIZE, seed=0).module
    obs_encoder = ObservationEncoder(encoder, encoder.feature_dim, proprio_dim=9, frozen=True)

    def make():
        return StateInObservation(make_env(ENV_ID, IMAGE_SIZE, "pixels", max_episode_steps=2))

    venv = make_vec_env(make, n_envs=2, seed=0, vec_env_cls=DummyVecEnv)
    raw = make_vec_env(make, n_envs=2, seed=0, vec_env_cls=DummyVecEnv)
    state_dim = raw.observation_space["state"].shape[0]
    state_norm = Normalizer(state_dim)
    state_norm.mean.fill_(0.5)
    state_norm.std.fill_(2.0)
    env = make_feature_vec_env(venv, obs_encoder, "pixels", CPU, state_norm)
    width = obs_encoder.output_dim
    try:
        assert env.observation_space.shape == (width + state_dim,)
        obs, raw_obs = env.reset(), raw.reset()
        expected = policy_inputs(obs_encoder, raw_obs, "pixels", CPU).numpy()
        np.testing.assert_array_equal(obs[:, :width], expected)
        np.testing.assert_allclose(obs[:, width:], (raw_obs["state"] - 0.5) / 2.0, atol=1e-6)
        actions = np.zeros((2, *env.action_space.shape), np.float32)
        for _ in range(2):  # the time limit ends both episodes on the second step
            obs, _, dones, infos = env.step(actions)
            _, _, _, raw_infos = raw.step(actions)
        assert dones.all()
        for info, raw_info in zip(infos, raw_infos, strict=True):
            terminal = info["terminal_observation"]
            state = raw_info["terminal_observation"]["state"]
            assert terminal.shape == (width + state_dim,)
            np.testing.assert_allclose(terminal[width:], (state - 0.5) / 2.0, atol=1e-6)
    finally:
        env.close()
        raw.close()


def test_sac_with_critics_on_the_state_trains_an_actor_that_reads_only_the_features(
    tmp_path, demos
):
    """The saved model's actor reads the policy inputs' columns and its critics the state's;
    the demonstrations in SAC's batches carry their own states; the state's statistics are the
    demonstrations' and are saved; evaluation (with NaN where the state would be) is
    deterministic for a seed and names the protocol in its record."""
    from sslrobot.data import open_dataset
    from sslrobot.policy.rl_demos import load_demo_replay

    config = PolicyConfig(
        env_id=ENV_ID, encoder="none", algo="rl", out=tmp_path / "sac", demos=demos,
        num_demos=2, rl_demo_share=0.5, rl_critic_input="state", steps=150, batch_size=16,
        image_size=IMAGE_SIZE, val_episodes=1, num_val_checks=2, progress=False, device="cpu",
    )  # fmt: skip
    out = train_policy(config)
    record = json.loads((out / "policy_config.json").read_text())
    state_dim = record["rl_critic_state_dim"]
    assert state_dim == 12 and record["validation"]  # Reach's state; validated through NaN
    model = SAC.load(str(out / "final_sb3.zip"), device="cpu", buffer_size=1)
    width = model.observation_space.shape[0] - state_dim
    assert model.policy.actor_width == width
    actor, critic = model.policy.actor.features_extractor, model.policy.critic.features_extractor
    assert (actor.start, actor.stop, critic.start, critic.stop) == (0, width, width, width + 12)
    assert model.policy.critic_target.features_extractor.start == width

    dataset = open_dataset(demos)
    states = np.concatenate(
        [dataset.load_episode(i, include_state=True, in_memory=True)["state"][:-1] for i in (0, 1)]
    )
    state_norm = Normalizer(state_dim)
    from sslrobot.policy.checkpoint import load_weights

    load_weights(out / record["rl_critic_state_statistics"], state_norm)
    torch.testing.assert_close(state_norm.mean, torch.as_tensor(states.mean(0)), atol=1e-5, rtol=0)
    obs_encoder = ObservationEncoder(
        resolve_encoder("none", IMAGE_SIZE, seed=0).module, 64, proprio_dim=9, frozen=True
    )
    load_weights(out / "final.safetensors", obs_encoder)
    replay = load_demo_replay(
        dataset, [0, 1], obs_encoder, "pixels", model.action_space, CPU, state_norm
    )
    assert replay.observations.shape[1] == width + state_dim
    with torch.no_grad():
        expected = state_norm(torch.as_tensor(states, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(replay.observations[:, width:], expected, atol=1e-6)

    result = evaluate(out, num_episodes=2, seed=10)
    assert result["rl_critic_input"] == "state"
    assert evaluate(out, num_episodes=2, seed=10)["episodes"] == result["episodes"]


def test_acting_refuses_an_actor_that_reads_the_hidden_state():
    """Acting pads the policy inputs with NaN where the critics' state was: an actor that
    read those columns gives NaN actions, which stop the run instead of scoring it."""

    class ReadsEverything:
        def predict(self, observations, deterministic):
            return observations.sum(axis=1, keepdims=True), None

    class ReadsItsOwnColumns:
        def predict(self, observations, deterministic):
            return observations[:, :3].sum(axis=1, keepdims=True), None

    inputs = torch.ones(2, 3)
    np.testing.assert_array_equal(_sb3_head(ReadsItsOwnColumns(), 4)(inputs), [[3.0], [3.0]])
    with pytest.raises(RuntimeError, match="the actor read the critics' state columns"):
        _sb3_head(ReadsEverything(), 4)(inputs)
    np.testing.assert_array_equal(_sb3_head(ReadsEverything())(inputs), [[3.0], [3.0]])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rl_critic_input": "critic"}, r"rl_critic_input must be one of \('policy', 'state'\)"),
        ({"rl_algorithm": "ppo"}, "the critics on the state are SAC's; rl_algorithm 'ppo'"),
        ({"encoder": "state"}, "the state oracle's actor and critics read the state already"),
        ({"algo": "bc", "demos": "d"}, r"rl_critic_input='state'.*only algo='rl' uses these"),
    ],
)
def test_critics_on_the_state_are_refused_where_no_learner_reads_them(tmp_path, settings, message):
    values = dict(env_id=ENV_ID, encoder="none", algo="rl", out=tmp_path / "p",
                  rl_critic_input="state")  # fmt: skip
    with pytest.raises(ValueError, match=message):
        PolicyConfig(**{**values, **settings})


def test_state_in_observation_names_an_env_without_a_state():
    import gymnasium as gym

    with pytest.raises(ValueError, match="env 'CartPole-v1' reports no privileged state"):
        StateInObservation(gym.make("CartPole-v1"))


def test_train_settings_keep_earlier_records_of_the_default_critic_one_configuration():
    """Records written before ``rl_critic_input`` existed stay one configuration with new
    records of the symmetric default; the state makes another."""
    earlier = {"steps": 100, "algo": "rl"}
    assert train_settings({"train_config": earlier}) == train_settings(
        {"train_config": {**earlier, "rl_critic_input": "policy"}}
    )
    assert train_settings({"train_config": earlier}) != train_settings(
        {"train_config": {**earlier, "rl_critic_input": "state"}}
    )
