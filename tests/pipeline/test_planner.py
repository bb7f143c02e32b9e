"""The CEM planner: it optimises, it runs behind the harness in PyBullet and in imagination, its oracle solves a
seed, and `experiment plan` reports the gap end to end. Tiny models (tests/pipeline/conftest.py): plumbing, not
quality; the figures live in docs/benchmarks.md."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robodream.pipeline.cli import main
from robodream.pipeline.experiments.plan import verdict
from robodream.pipeline.policy.planner import CEMPlanner, PlannerConfig, make_planner, push_cost
from robodream.robots.sim.env import EnvConfig, make_env
from robodream.stats import agresti_caffo_interval

TINY_PLANNER = ["planner.samples=4", "planner.horizon=2", "planner.iterations=1", "planner.elites=2",
                "planner.execute=1"]


def test_cem_finds_the_cheapest_sequence_and_warm_starts_from_it():
    cfg = PlannerConfig(dynamics="sim", samples=64, horizon=4, iterations=12, elites=8, execute=1)
    target = np.random.default_rng(0).uniform(-0.8, 0.8, (4, 3))
    planner = CEMPlanner(cfg)
    best = planner.plan(lambda actions: ((actions[..., :3] / cfg.max_delta - target) ** 2).sum(axis=(1, 2)))
    assert planner.stats.final_costs[0] < 0.2 * planner.stats.first_costs[0]
    np.testing.assert_allclose(best[:, :3] / cfg.max_delta, target, atol=0.25)
    assert (best[:, 3] == cfg.gripper).all() and best.dtype == np.float32
    np.testing.assert_allclose(planner.mean[:3], best[1:, :3] / cfg.max_delta, atol=1e-6)  # the rest of the plan
    assert planner.stats.steps == 64 * 12 * 4 and planner.stats.plans == 1


def test_push_cost_rewards_the_cube_on_the_goal_and_the_pusher_behind_it():
    goal = np.array([0.5, 0.0, 0.0])
    cube = np.array([[[0.3, 0.0, 0.02]]])
    behind = np.array([[[0.24, 0.0, 0.025]]])  # 6 cm behind the cube, at pushing height
    ahead = np.array([[[0.36, 0.0, 0.025]]])
    cfg = PlannerConfig().cost
    assert push_cost(behind, cube, goal, cfg) < push_cost(ahead, cube, goal, cfg)
    on_goal = np.array([[[0.49, 0.0, 0.02]]])
    assert push_cost(ahead, on_goal, goal, cfg)[0] == 0.0


def test_the_planner_improves_its_imagined_cost_over_iterations(models):
    _, wm, probe = models
    env_cfg = EnvConfig(task="push_cube", image_size=16)
    agent = make_planner(PlannerConfig(samples=12, horizon=3, iterations=4, elites=3, wm=str(wm), probe=str(probe)),
                         env_cfg)
    env = make_env(env_cfg)
    try:
        obs, _ = env.reset(seed=3)
        agent.reset(3)
        action = agent.act(obs)
    finally:
        env.close()
        agent.close()
    assert action.shape == (4,) and np.isfinite(action).all()
    stats = agent.stats
    assert stats.plans == 1 and stats.final_costs[0] < stats.first_costs[0]
    report = agent.episode_report(with_frames=True)
    assert report["planning"]["model_steps"] == 12 * 4 * 3
    assert report["imagined_frames"].shape == (agent.cfg.execute, 16, 16, 3)  # one per executed action


@pytest.mark.parametrize("world", ["pybullet", "world_model"])
def test_the_planner_runs_behind_the_harness_in_pybullet_and_in_imagination(models, tmp_path, world):
    _, wm, probe = models
    out = tmp_path / world
    imagination = [f"imagination.wm={wm}", f"imagination.probe={probe}", "imagination.force=true"] \
        if world == "world_model" else []
    assert main(["eval", "policy=planner", "planner=cem", f"planner.wm={wm}", f"planner.probe={probe}", *TINY_PLANNER,
                 "task=push_cube", "env.image_size=16", f"env={world}", *imagination, "episodes=2", "max_steps=3",
                 "workers=0", "videos=1", f"out={out}", "progress=false"]) == 0
    info = json.loads((out / "eval_info.json").read_text())
    assert info["info"]["policy"] == "planner_world_model" and info["info"]["env"] == world
    planning = info["aggregated"]["planning"]
    steps = round(info["info"]["mean_episode_steps"] * 2)  # execute=1: one plan per step (imagined success ends
    assert steps == 6 or world == "world_model"  # an episode early, where the tiny probe reads one)
    assert planning["plans"] == steps and planning["model_steps"] == steps * 4 * 2  # samples x horizon
    assert planning["plans_per_s"] > 0 and planning["model_steps_per_s"] > 0
    assert sum(e["planning"]["plans"] for e in info["per_episode"]) == steps
    assert (out / "eval_episode_0_sim_vs_imagined.mp4").stat().st_size > 0


def test_the_oracle_planner_solves_an_easy_seed(tmp_path):
    out = tmp_path / "oracle"
    assert main(["eval", "policy=planner", "planner=cem", "planner.dynamics=sim", "task=push_cube", "episodes=1",
                 "seed=2005", "max_steps=40", "workers=0", "videos=0", "examples=false", f"out={out}",
                 "progress=false"]) == 0
    info = json.loads((out / "eval_info.json").read_text())
    assert info["per_episode"][0]["success"] and info["info"]["policy"] == "planner_sim"
    assert not list(out.glob("*imagined*"))  # the oracle imagines nothing


def test_the_world_model_planner_without_its_models_is_one_clear_error(capsys):
    assert main(["eval", "policy=planner", "planner=cem", "task=push_cube", "episodes=1"]) == 2
    err = capsys.readouterr().err
    assert "planner.wm=<dir> and planner.probe=<dir>" in err and err.count("\n") == 1


def test_agresti_caffo_interval_and_the_verdicts():
    low, high = agresti_caffo_interval(27, 30, 15, 30)
    assert 0.15 < low < 0.4 < high < 0.6
    low, high = agresti_caffo_interval(10, 20, 10, 20)
    assert low == pytest.approx(-high)
    assert verdict(20, 30, 20, 30)[1].startswith("planner is the bottleneck")
    assert verdict(29, 30, 10, 30)[1].startswith("model is the bottleneck")
    assert verdict(29, 30, 29, 30)[1].startswith("as good as the oracle")
    assert verdict(27, 30, 21, 30)[1].startswith("inconclusive")


def test_experiment_plan_runs_end_to_end_and_skips_finished_evaluations(models, tmp_path, capsys):
    _, wm, probe = models
    args = ["experiment", "plan", "configs/experiment/plan.yaml", f"wm={wm}", f"probe={probe}", *TINY_PLANNER,
            "env.image_size=16", "episodes=2", "max_steps=2", "workers=0", "videos=1", f"out={tmp_path / 'plan'}",
            "progress=false"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert set(summary["planners"]) == {"oracle", "world_model"}
    assert summary["planners"]["oracle"]["n"] == summary["planners"]["world_model"]["n"] == 2
    low, high = summary["gap_ci95_points"]
    assert low <= summary["gap_points"] <= high
    assert summary["verdict"].split(":")[0] in ("planner is the bottleneck", "model is the bottleneck",
                                                "as good as the oracle", "inconclusive")
    cost = summary["cost"]
    assert cost["raw_frames_per_s"] > 0 and cost["efficiency"] > 0 and cost["batch"] == 4
    assert summary["side_by_side_videos"] and "verdict" in capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out.count("skipped") == 2
