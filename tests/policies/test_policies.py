"""Policies: training lowers the loss, checkpoints round-trip exactly, the runner keeps its queues."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.windows import WindowDataset, make_loader
from robodream.errors import RobodreamError
from robodream.pipeline.config import build_config
from robodream.pipeline.policy.train import TrainPolicyConfig, train_policy
from robodream.policies.base import select_features
from robodream.policies.configuration import PolicyConfig
from robodream.policies.pretrained import load_pretrained, make_policy, read_checkpoint_info
from robodream.policies.runner import PolicyRunner

from .conftest import REPO, tiny_config, train_args

DIFFUSION = REPO / "configs" / "policy" / "diffusion.yaml"


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
    path = policy.save_pretrained(tmp_path / "ckpt", training={"step": 7, "task": store.task})
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
        build_config(TrainPolicyConfig, ["data=x.zarr", "policy.horizon=16", "policy.n_action_steps=20"])
    grown = build_config(PolicyConfig, ["n_action_steps=20"]).for_task("pick_place")  # the chunk grows to fit
    assert (grown.horizon, grown.n_action_steps) == (20, 20)
    with pytest.raises(RobodreamError, match=r"horizon=10 must be divisible by 4"):
        build_config(TrainPolicyConfig, ["data=x.zarr", f"policy={DIFFUSION}", "policy.horizon=10"])
    with pytest.raises(RobodreamError, match=r"needs policy.normalization.action=min_max"):
        build_config(TrainPolicyConfig, ["data=x.zarr", "policy.type=diffusion"])  # z-scored actions, clipped at 1
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
    args = train_args(tiny_store, tmp_path / "run", "bc", 4, "trainer.checkpoint_every_steps=2",
                      "trainer.ema_decay=0.999")
    first = train_policy(build_config(TrainPolicyConfig, args))
    assert [p.name for p in first.checkpoints] == ["step_2", "step_4"]
    with pytest.raises(RobodreamError, match="already holds a training run: pass resume=true"):
        train_policy(build_config(TrainPolicyConfig, args))
    resumed = train_policy(build_config(TrainPolicyConfig, [*args, "trainer.max_steps=6", "resume=true"]))
    assert resumed.start_step == 4 and resumed.steps == 6
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == ["last.ckpt", "step_2", "step_4", "step_6"]  # one resumable Lightning checkpoint, 3 policies
    assert read_checkpoint_info(tmp_path / "run" / "checkpoints" / "step_6")["training"]["step"] == 6
    with pytest.raises(RobodreamError, match="different policy config"):
        train_policy(build_config(TrainPolicyConfig, [*args, "policy.horizon=8", "resume=true"]))


def test_old_policy_trainer_keys_still_load(tmp_path, capsys):
    # The policy trainer's keys before it became robodream's one TrainerConfig, in a YAML file and on the command
    # line, inside train-policy and inside a pipeline config: each is translated with one "deprecated:" line.
    old = tmp_path / "old.yaml"
    old.write_text("trainer: {lr: 0.002, checkpoint_every: 50, progress: false, ema: false}\n")
    cfg = build_config(TrainPolicyConfig, ["data=x.zarr", "trainer.ema_max_decay=0.99"], [old])
    t = cfg.trainer
    assert (t.learning_rate, t.checkpoint_every_steps, t.progress_bar, t.ema_decay) == (0.002, 50, False, 0.99)
    err = capsys.readouterr().err
    assert "deprecated: trainer.lr=0.002" in err and "is now trainer.learning_rate=0.002" in err
    assert err.count("deprecated:") == 5
    assert build_config(TrainPolicyConfig, ["data=x.zarr", "trainer.ema=false"]).trainer.ema_decay == 0.0

    from robodream.pipeline.run import PipelineConfig

    pipeline = build_config(PipelineConfig, ["policy.trainer.lr=0.005"])
    assert pipeline.policy.trainer.learning_rate == 0.005
    with pytest.raises(RobodreamError, match="unknown config key 'trainer.lrr'"):
        build_config(TrainPolicyConfig, ["data=x.zarr", "trainer.lrr=1"])


def _learnable_store(path, episodes: int = 24, length: int = 12):
    """Episodes whose action is a fixed function of the state (and the state is drawn on the image), so a policy
    that learns anything carries it over to episodes it has not seen."""
    from robodream.datasets.writer import create_store
    from tests.conftest import TINY_FEATURES

    rng = np.random.default_rng(0)
    writer = create_store(path, fps=10, features=TINY_FEATURES, robot_type="test", task="tiny")
    for episode in range(episodes):
        state = rng.uniform(-1, 1, (length, 3)).astype(np.float32)
        action = np.stack([state[:, 0] - state[:, 1], 0.5 * state[:, 2]], axis=1).astype(np.float32)
        images = np.zeros((length, 16, 16, 3), np.uint8)
        images[..., 0] = ((state[:, 0] + 1) * 120).astype(np.uint8)[:, None, None]
        writer.append_episode({"observation.images.front": images, "observation.state": state, "action": action},
                              source="sim", success=True, seed=episode, origin="test")
    writer.close()
    return path


def test_a_policy_trained_a_few_hundred_steps_beats_the_untrained_one_on_held_out_episodes(tmp_path):
    train_store = _learnable_store(tmp_path / "train.zarr")
    held_out = EpisodeStore.open(_learnable_store(tmp_path / "held_out.zarr", episodes=4))
    # the default recipe (type bc, z-scored, LayerNorm MLP, one observation) with a small encoder for speed
    args = [f"data={train_store}", f"out={tmp_path / 'run'}", "policy.encoder.channels=[8,16]",
            "policy.encoder.num_keypoints=8", "policy.encoder.feature_dim=16", "policy.encoder.num_groups=4",
            "policy.encoder.random_shift=1", "trainer.max_steps=300", "trainer.warmup_steps=20",
            "trainer.progress_bar=false", "trainer.batch_size=32"]
    summary = train_policy(build_config(TrainPolicyConfig, args))
    trained = load_pretrained(summary.checkpoints[-1])
    untrained = make_policy(trained.config, trained.features, EpisodeStore.open(train_store).stats()["features"])
    batch = next(iter(make_loader(WindowDataset(held_out, trained.delta_indices()), 64, shuffle=False)))
    window = {key: batch[key] for key in trained.observation_keys}
    truth = batch["action"][:, trained.config.first_executed]

    def error(policy) -> float:
        return float((policy.eval().predict_action(window)[:, 0] - truth).abs().mean())

    assert trained.config.horizon == 16 and trained.config.n_action_steps == 8  # task "tiny": the general layout
    assert error(trained) < 0.5 * error(untrained), (error(trained), error(untrained))


@pytest.mark.parametrize(("task", "n_action_steps", "inferences"), [
    ("push_cube", None, 12),  # a feedback task: re-plan every step
    ("pick_place", None, 2),  # 8 of a 16-step chunk between inferences
    ("pick_place", 4, 3),  # the setting overridden (as `robodream eval n_action_steps=4` does)
])
def test_the_execution_horizon_sets_how_many_actions_run_between_inferences(tiny_store, task, n_action_steps,
                                                                              inferences):
    from robodream.policies.runner import override_n_action_steps

    store = EpisodeStore.open(tiny_store)
    config = build_config(PolicyConfig, ["encoder.channels=[8]", "encoder.num_groups=4"]).for_task(task)
    if n_action_steps is not None:
        config = override_n_action_steps(config, n_action_steps)
    policy = make_policy(config, select_features(config, store.features, "tiny"), store.stats()["features"]).eval()
    calls = []
    original = policy.predict_action
    policy.predict_action = lambda window, generator=None: calls.append(1) or original(window, generator)
    runner = PolicyRunner(policy)
    runner.reset(seed=0)
    episode = store.episode(1)
    for t in range(12):
        runner.act({key: episode[key][t % len(episode["action"])] for key in store.keys})
    assert len(calls) == inferences


def test_a_checkpoint_written_before_the_default_recipe_still_loads(tiny_store, tmp_path):
    # Checkpoints of robodream before the default policy changed have no bc.layer_norm (they had none): they load
    # as they were trained, and act exactly as before.
    import json

    policy, store = _policy(tiny_store, "bc", "bc.layer_norm=false")
    path = policy.save_pretrained(tmp_path / "old", training={"step": 1})
    info = json.loads((path / "config.json").read_text())
    del info["policy"]["bc"]["layer_norm"]
    (path / "config.json").write_text(json.dumps(info))
    loaded = load_pretrained(path)
    assert loaded.config.bc.layer_norm is False
    window = {key: store.episode(1)[key][2:4] for key in policy.observation_keys}
    torch.testing.assert_close(loaded.predict_action(window), policy.eval().predict_action(window), rtol=0, atol=0)
