"""Counterfactual action fidelity: the actions an agent executed in PyBullet, replayed in the world model."""

from __future__ import annotations

import json

import numpy as np

from robodream.pipeline.cli import main
from robodream.pipeline.world_model.counterfactual import CounterfactualConfig, record_in_sim, replay_in_imagination
from robodream.world_models.env import WorldModelEnv
from robodream.world_models.model import WorldModel
from robodream.world_models.probe import StateSuccessProbe


def test_the_replay_feeds_the_world_model_exactly_the_actions_pybullet_executed(models, monkeypatch):
    from robodream.robots.sim.env import EnvConfig, make_env

    _, wm, probe_dir = models
    model, probe = WorldModel.from_pretrained(wm), StateSuccessProbe.from_pretrained(probe_dir)
    cfg = CounterfactualConfig(probe=str(probe_dir), episodes=3, max_steps=6)
    recorded = record_in_sim(cfg, model.config.image_key, 16, "noisy", None)  # None: random actions
    assert recorded.valid.any(axis=1).all() and recorded.actions.std() > 0
    # What was recorded is what PyBullet executed: the same actions from the same seed reproduce the cube.
    env = make_env(EnvConfig(task="push_cube", image_size=16))
    env.reset(seed=cfg.seed + 1)
    for step in np.flatnonzero(recorded.valid[1]):
        obs = env.step(recorded.actions[1, step])[0]
        np.testing.assert_allclose(obs["observation.environment_state"][:3], recorded.cube[1, step], atol=1e-6)
    env.close()

    fed = []
    original = WorldModelEnv.step
    monkeypatch.setattr(WorldModelEnv, "step",
                        lambda self, action: fed.append(np.array(action)) or original(self, action))
    imagined = replay_in_imagination(model, probe, recorded, batch_size=2)
    np.testing.assert_array_equal(np.concatenate([np.stack(fed[:6], 1), np.stack(fed[6:], 1)]), recorded.actions)
    assert imagined["cube"].shape == (3, 6, 3) and imagined["success_prob"].shape == (3, 6)


def test_eval_wm_reports_counterfactual_fidelity_per_agent_with_intervals(models, tmp_path, capsys):
    store, wm, probe = models
    out = tmp_path / "eval"
    assert main(["eval-wm", f"ckpt={wm}", f"data={store}", "horizon=2", f"out={out}", f"counterfactual.probe={probe}",
                 "counterfactual.episodes=2", "counterfactual.max_steps=4", "counterfactual.expert_noise=[0.0]"]) == 0
    printed = capsys.readouterr().out
    assert "counterfactual replay: the same actions from the same start, PyBullet vs imagined" in printed
    report = json.loads((out / "counterfactual.json").read_text())
    assert [r["agent"] for r in report["agents"]] == ["expert noise=0", "random"]
    for row in report["agents"]:
        assert "95% CI" in row["sim_success_text"] and "95% CI" in row["imagined_success_text"]
        assert row["imagined"]["horizons"] == [1, 4] and len(row["probe_on_sim_frames"]["cube_error_cm"]) == 2
    assert (out / "counterfactual.png").stat().st_size > 0
