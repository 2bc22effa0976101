"""Demonstrations in SAC's batches (``rl_demo_share``, ``sslrobot.policy.rl_demos``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces
from test_policy_rl import ENV_ID, IMAGE_SIZE, sb3_parameters, stop_after_checkpoint

from sslrobot.data import CollectConfig, collect, open_dataset
from sslrobot.policy import PolicyConfig, train_policy
from sslrobot.policy.encoders import resolve_encoder
from sslrobot.policy.network import ObservationEncoder, policy_inputs
from sslrobot.policy.rl_demos import DemoReplay, DemoReplayBuffer, load_demo_replay

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def expert_demos(tmp_path_factory):
    """Two expert Reach episodes at the tests' image size."""
    out = tmp_path_factory.mktemp("demos") / "demos"
    return collect(
        CollectConfig(env_id=ENV_ID, out=out, num_episodes=2, policy="expert",
                      image_size=IMAGE_SIZE, env_kwargs={"image_size": IMAGE_SIZE}),
        progress=False,
    )  # fmt: skip


def test_demo_transitions_pair_each_observation_with_the_next(expert_demos):
    encoder = resolve_encoder("none", IMAGE_SIZE, seed=0).module
    obs_encoder = ObservationEncoder(encoder, encoder.feature_dim, proprio_dim=9, frozen=True)
    dataset = open_dataset(expert_demos)
    ids = list(dataset.episode_ids)
    box = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    demo = load_demo_replay(dataset, ids, obs_encoder, "pixels", box, torch.device("cpu"))
    start = 0
    for episode_id in ids:
        episode = dataset.load_episode(episode_id, in_memory=True)
        length = len(episode["action"])
        observations = {"pixels": episode["pixels"], "proprio": episode["proprio"]}
        inputs = policy_inputs(obs_encoder, observations, "pixels", torch.device("cpu")).numpy()
        rows = slice(start, start + length)
        np.testing.assert_allclose(demo.observations[rows], inputs[:-1], atol=1e-6)
        np.testing.assert_allclose(demo.next_observations[rows], inputs[1:], atol=1e-6)
        np.testing.assert_allclose(demo.actions[rows], episode["action"], atol=1e-6)
        np.testing.assert_array_equal(demo.rewards[rows], episode["reward"])
        np.testing.assert_array_equal(demo.dones[rows], episode["terminated"])
        start += length
    assert len(demo) == start and demo.dones.sum() >= 1  # the expert reaches and terminates
    # Actions are stored as SB3 stores them: scaled from the action space to [-1, 1].
    wide = spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32)
    halved = load_demo_replay(dataset, ids[:1], obs_encoder, "pixels", wide, torch.device("cpu"))
    np.testing.assert_allclose(halved.actions, demo.actions[: len(halved)] / 2.0, atol=1e-6)


def _buffer(demo_share: float, demo_value: float = 1.0) -> DemoReplayBuffer:
    observation = spaces.Box(-10.0, 10.0, shape=(3,), dtype=np.float32)
    action = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    rows = 4
    demo = DemoReplay(
        observations=np.full((rows, 3), demo_value, np.float32),
        next_observations=np.full((rows, 3), demo_value, np.float32),
        actions=np.zeros((rows, 2), np.float32),
        rewards=np.full(rows, 7.0, np.float32),
        dones=np.ones(rows, np.float32),
    )
    return DemoReplayBuffer(100, observation, action, device="cpu", demo=demo,
                            demo_share=demo_share)  # fmt: skip


def test_the_buffer_draws_its_share_of_every_batch_from_the_demonstrations():
    buffer = _buffer(0.25)
    zeros = np.zeros((1, 3), np.float32)
    for _ in range(10):
        buffer.add(zeros, zeros, np.zeros((1, 2), np.float32), np.zeros(1), np.zeros(1), [{}])
    batch = buffer.sample(16)
    from_demos = batch.observations[:, 0] == 1.0
    assert batch.observations.shape == (16, 3) and int(from_demos.sum()) == 4
    assert torch.all(batch.rewards[from_demos] == 7.0) and torch.all(batch.dones[from_demos] == 1)
    assert torch.all(batch.rewards[~from_demos] == 0.0)
    # At least one online row, however large the share and small the batch.
    tiny = _buffer(0.9)
    tiny.add(zeros, zeros, np.zeros((1, 2), np.float32), np.zeros(1), np.zeros(1), [{}])
    assert int((tiny.sample(2).observations[:, 0] == 0.0).sum()) == 1
    with pytest.raises(ValueError, match="demo_share must be in"):
        _buffer(1.0)


def test_demo_share_needs_sac_and_demonstrations(tmp_path, expert_demos):
    values = dict(env_id=ENV_ID, encoder="state", algo="rl", out=tmp_path / "rl")
    with pytest.raises(ValueError, match=r"rl_demo_share=0\.5: .*give --demos"):
        PolicyConfig(**values, rl_demo_share=0.5)
    with pytest.raises(ValueError, match=r"rl_demo_share=0\.5: .*'ppo'"):
        PolicyConfig(**values, rl_demo_share=0.5, demos=expert_demos, rl_algorithm="ppo")
    with pytest.raises(ValueError, match=r"rl_demo_share must be in \[0, 1\), got 1.0"):
        PolicyConfig(**values, rl_demo_share=1.0, demos=expert_demos)
    with pytest.raises(ValueError, match="rl_demo_share"):  # a BC setting it would ignore
        PolicyConfig(**{**values, "algo": "bc"}, rl_demo_share=0.5, demos=expert_demos)


def test_sac_with_demonstrations_in_its_batches_records_them_and_resumes_to_the_bit(
    tmp_path, monkeypatch, expert_demos
):
    """The buffer, demonstrations included, goes into the resume checkpoint and back."""
    values = dict(env_id=ENV_ID, encoder="state", algo="rl", demos=expert_demos, num_demos=2,
                  rl_demo_share=0.5, steps=200, batch_size=16, progress=False,
                  device="cpu")  # fmt: skip
    whole = train_policy(PolicyConfig(**values, out=tmp_path / "whole"))
    record = json.loads((whole / "policy_config.json").read_text())
    assert record["num_demos"] == 2 and record["train_config"]["rl_demo_share"] == 0.5
    plain = train_policy(PolicyConfig(**{**values, "rl_demo_share": 0.0}, out=tmp_path / "plain"))
    assert json.loads((plain / "policy_config.json").read_text())["num_demos"] == 0
    differs = sb3_parameters(whole), sb3_parameters(plain)
    assert any(not torch.equal(differs[0][k], differs[1][k]) for k in differs[0])
    cut = tmp_path / "cut"
    stop_after_checkpoint(monkeypatch, 120)
    with pytest.raises(KeyboardInterrupt):
        train_policy(PolicyConfig(**values, out=cut))
    monkeypatch.undo()
    resumed = train_policy(PolicyConfig(**values, out=cut, resume=True))
    expected, got = sb3_parameters(whole), sb3_parameters(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
