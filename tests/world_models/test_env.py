"""WorldModelEnv: batched imagination with the task-env interface."""

from __future__ import annotations

import numpy as np
import pytest

from robodream.errors import RobodreamError
from robodream.world_models.env import WorldModelEnv


def _context(store, model, num_envs):
    k = model.config.context_frames
    episode = store.episode(1)
    frames = np.repeat(episode["observation.images.front"][None, :k], num_envs, axis=0)
    states = np.repeat(episode["observation.state"][None, :k], num_envs, axis=0)
    actions = np.repeat(episode["action"][None, :k], num_envs, axis=0)
    return frames, actions, states


def test_batched_reset_and_step_shapes(store, model):
    env = WorldModelEnv(model, num_envs=3, max_steps=2, seed=0)
    obs = env.reset_from(*_context(store, model, 3))
    assert obs["observation.images.front"].shape == (3, 16, 16, 3) and obs["observation.state"].shape == (3, 3)
    obs, reward, terminated, truncated, info = env.step(np.zeros((3, 2), np.float32))
    assert obs["observation.images.front"].dtype == np.uint8
    assert obs["observation.images.front"].shape == (3, 16, 16, 3) and obs["observation.state"].shape == (3, 3)
    assert reward.shape == terminated.shape == truncated.shape == info["success"].shape == (3,)
    assert not truncated.any()
    *_, truncated, _ = env.step(np.zeros((3, 2), np.float32))
    assert truncated.all()


def test_rollouts_in_a_batch_are_independent_samples(store, model):
    env = WorldModelEnv(model, num_envs=4, seed=1)
    env.reset_from(*_context(store, model, 4))
    obs, *_ = env.step(np.zeros((4, 2), np.float32))
    frames = obs["observation.images.front"].astype(int)
    assert np.abs(frames[0] - frames[1]).sum() > 0  # same context, different noise


def test_reset_from_an_initial_observation_gives_a_single_env(store, model):
    first = {k: v[0] for k, v in store.episode(0).items()}
    successes = []
    env = WorldModelEnv(model, num_envs=1, initial_observation=lambda seed: first,
                        success_fn=lambda obs: successes.append(obs) or np.array([True]))
    obs, info = env.reset(seed=5)
    assert obs["observation.images.front"].shape == (16, 16, 3)
    obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert obs["observation.state"].shape == (3,) and bool(info["success"]) and reward == 1.0 and terminated
    assert successes[-1]["observation.images.front"].shape == (1, 16, 16, 3)  # the probe sees the batch


def test_bad_env_input_is_a_clear_error(store, model):
    env = WorldModelEnv(model, num_envs=2)
    with pytest.raises(RobodreamError, match="before reset"):
        env.step(np.zeros((2, 2), np.float32))
    frames, actions, states = _context(store, model, 2)
    with pytest.raises(RobodreamError, match="got 1 context frames; this model needs 2"):
        env.reset_from(frames[:, :1], actions[:, :1], states[:, :1])
    env.reset_from(frames, actions, states)
    with pytest.raises(RobodreamError, match=r"action has shape \(2, 3\)"):
        env.step(np.zeros((2, 3), np.float32))
    with pytest.raises(RobodreamError, match="NaN"):
        env.step(np.full((2, 2), np.nan, np.float32))
    with pytest.raises(RobodreamError, match="no initial_observation"):
        env.reset(seed=0)
