"""Policies: training lowers the loss, checkpoints round-trip exactly, the runner keeps its queues."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.windows import WindowDataset, make_loader
from robodream.errors import RobodreamError
from robodream.pipeline.config import build_config
from robodream.pipeline.train_policy import TrainPolicyConfig, train_policy
from robodream.policies.base import select_features
from robodream.policies.pretrained import load_pretrained, make_policy, read_checkpoint_info, save_pretrained
from robodream.policies.runner import PolicyRunner

from .conftest import tiny_config, train_args


def _policy(store_path, policy_type="diffusion", *overrides):
    store = EpisodeStore.open(store_path)
    config = tiny_config(policy_type, *overrides)
    features = select_features(config, store.features, str(store_path))
    return make_policy(config, features, store.stats()["features"]), store


def _loss(policy, batch, seed=0):
    torch.manual_seed(seed)  # same noise, diffusion steps and image shifts for both policies compared
    with torch.no_grad():
        return float(policy.compute_loss(batch))


def test_training_a_few_steps_lowers_the_loss(tiny_store, tmp_path, policy_type):
    summary = train_policy(build_config(TrainPolicyConfig, train_args(tiny_store, tmp_path / "run", policy_type,
                                                                       steps=100)))
    assert summary.steps == 100 and [p.name for p in summary.checkpoints] == ["step_100"]
    trained = load_pretrained(summary.checkpoints[0])
    untrained, store = _policy(tiny_store, policy_type)
    batch = next(iter(make_loader(WindowDataset(store, untrained.delta_indices()), 16, shuffle=False)))
    before = np.mean([_loss(untrained, batch, seed) for seed in range(4)])
    after = np.mean([_loss(trained, batch, seed) for seed in range(4)])
    assert after < 0.7 * before, (before, after)


def test_save_load_gives_identical_actions(tiny_store, tmp_path, policy_type):
    policy, store = _policy(tiny_store, policy_type)
    path = save_pretrained(policy, tmp_path / "ckpt", {"step": 7, "task": store.task})
    loaded = load_pretrained(path)
    info = read_checkpoint_info(path)
    assert info["type"] == policy_type and info["training"]["step"] == 7
    assert set(info["features"]) == {"observation.images.front", "observation.state", "action"}
    episode = store.episode(1)
    window = {key: episode[key][2:4] for key in policy.observation_keys}  # n_obs_steps = 2, unbatched
    a = policy.eval().predict_action(window, generator=torch.Generator().manual_seed(3))
    b = loaded.predict_action(window, generator=torch.Generator().manual_seed(3))
    assert a.shape == (2, 2)  # n_action_steps x action dim
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    batched = {key: torch.as_tensor(value)[None].repeat(3, *[1] * value.ndim) for key, value in window.items()}
    assert loaded.predict_action(batched).shape == (3, 2, 2)
    # the normaliser travelled with the weights
    torch.testing.assert_close(loaded.normalizer.state_dict(), policy.normalizer.state_dict())


def test_predicted_actions_are_in_action_units(tiny_store):
    policy, store = _policy(tiny_store, "diffusion")
    window = {key: store.episode(0)[key][:2] for key in policy.observation_keys}
    actions = policy.eval().predict_action_chunk(window, generator=torch.Generator().manual_seed(0))
    low, high = np.asarray(store.stats()["features"]["action"]["min"]), np.asarray(
        store.stats()["features"]["action"]["max"])
    # clip_sample keeps the normalised chunk in [-1, 1], i.e. inside the data's action range
    assert np.all(actions.numpy() >= low - 1e-4) and np.all(actions.numpy() <= high + 1e-4)


def test_runner_keeps_the_window_and_replans_every_n_action_steps(tiny_store):
    policy, store = _policy(tiny_store, "bc")
    calls = []
    original = policy.predict_action

    def spy(window, generator=None):
        calls.append({k: np.array(v) for k, v in window.items()})
        return original(window, generator)

    policy.predict_action = spy
    runner = PolicyRunner(policy.eval())
    runner.reset(seed=0)
    episode = store.episode(1)
    frames = [{key: episode[key][t] for key in store.keys} for t in range(5)]
    actions = [runner.act(frame) for frame in frames]
    assert len(calls) == 3  # steps 0, 2, 4 with n_action_steps = 2
    state = "observation.state"
    np.testing.assert_array_equal(calls[0][state], np.stack([episode[state][0]] * 2))  # padded with the first
    np.testing.assert_array_equal(calls[1][state], episode[state][1:3])  # the last two observations
    assert all(a.shape == (2,) and a.dtype == np.float32 for a in actions)
    with pytest.raises(RobodreamError, match="lacks 'observation.images.front'"):
        runner.reset(0)
        runner.act({state: episode[state][0]})


def test_bad_policy_configs_name_the_problem():
    with pytest.raises(RobodreamError, match=r"n_action_steps=20 > horizon=16"):
        build_config(TrainPolicyConfig, ["data=x.zarr", "policy.n_action_steps=20"])
    with pytest.raises(RobodreamError, match=r"horizon=10 must be divisible by 4"):
        build_config(TrainPolicyConfig, ["data=x.zarr", "policy.horizon=10"])
    with pytest.raises(RobodreamError, match="unknown policy type 'transformer'"):
        build_config(TrainPolicyConfig, ["data=x.zarr", "policy.type=transformer"])
    with pytest.raises(RobodreamError, match="no training data"):
        build_config(TrainPolicyConfig, [])


def test_store_without_the_keys_the_policy_needs(tiny_store, tmp_path):
    args = train_args(tiny_store, tmp_path / "run", "bc", 2, "policy.image_keys=[observation.images.wrist]")
    with pytest.raises(RobodreamError, match=r"lacks \['observation.images.wrist'\] which the policy needs"):
        train_policy(build_config(TrainPolicyConfig, args))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_checkpoints_are_kept_and_training_resumes(tiny_store, tmp_path):
    args = train_args(tiny_store, tmp_path / "run", "bc", 4, "trainer.checkpoint_every=2", "trainer.ema=true")
    first = train_policy(build_config(TrainPolicyConfig, args))
    assert [p.name for p in first.checkpoints] == ["step_2", "step_4"]
    with pytest.raises(RobodreamError, match="already holds a training run: pass resume=true"):
        train_policy(build_config(TrainPolicyConfig, args))
    resumed = train_policy(build_config(TrainPolicyConfig, [*args, "trainer.max_steps=6", "resume=true"]))
    assert resumed.start_step == 4 and resumed.steps == 6
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_2", "step_4", "step_6"]
    assert read_checkpoint_info(tmp_path / "run" / "checkpoints" / "step_6")["training"]["step"] == 6
    with pytest.raises(RobodreamError, match="different policy config"):
        train_policy(build_config(TrainPolicyConfig, [*args, "policy.horizon=8", "resume=true"]))
