"""The evaluation harness: any env/agent, LeRobot eval_info.json, policies and the expert, sweeps, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robodream.datasets.video import read_video
from robodream.pipeline.cli import main
from robodream.pipeline.config import build_config
from robodream.pipeline.data.collect import CollectConfig, collect
from robodream.pipeline.policy.evaluate import EvalConfig, run_evaluation
from robodream.pipeline.policy.harness import eval_info, evaluate, run_episode

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "policy" / "tiny.yaml"
EPISODE_KEYS = {"episode_ix", "sum_reward", "max_reward", "success", "seed"}
AGGREGATED_KEYS = {"avg_sum_reward", "avg_max_reward", "pc_success", "pc_success_ci95", "eval_s", "eval_ep_s"}


class LineEnv:
    """A task env without any simulator: walk from the seed's position to 0 on a line."""

    def reset(self, seed=None, options=None):
        self.x, self.t = float(seed % 5), 0
        return {"x": np.array([self.x], np.float32)}, {"success": self.x == 0}

    def step(self, action):
        self.x, self.t = self.x - float(action[0]), self.t + 1
        success = abs(self.x) < 1e-6
        return {"x": np.array([self.x], np.float32)}, float(success), success, self.t >= 10, {"success": success}


class StepDown:
    def reset(self, seed=None):
        pass

    def act(self, obs):
        return np.array([1.0 if obs["x"][0] > 0 else 0.0], np.float32)


class Stuck(StepDown):
    def act(self, obs):
        return np.zeros(1, np.float32)


def test_the_harness_runs_any_env_and_agent_and_imports_no_simulator():
    result = run_episode(LineEnv(), StepDown(), seed=3)
    assert result.success and result.steps == 3 and result.sum_reward == 1.0 and result.max_reward == 1.0
    results = [r for _, _, r in evaluate(LineEnv, [StepDown, Stuck], seeds=[1, 2], workers=0)]
    assert [r.success for r in results] == [True, True, False, False]
    info = eval_info(results[2:], eval_s=2.0)
    assert info["aggregated"]["pc_success"] == 0.0 and info["aggregated"]["eval_ep_s"] == 1.0
    low, high = info["aggregated"]["pc_success_ci95"]  # Wilson: 0 of 2 is not "certainly 0%"
    assert low == 0.0 and 60 < high < 70
    assert [e["seed"] for e in info["per_episode"]] == [1, 2]
    code = ("import sys, robodream.pipeline.policy.harness; "
            "assert 'pybullet' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def policy_run(tmp_path_factory):
    """A tiny policy trained 4 steps (checkpoints at 2 and 4) on 2 push_cube demos with 32x32 images."""
    root = tmp_path_factory.mktemp("policy")
    store = root / "push.zarr"
    collect(build_config(CollectConfig, ["task=push_cube", "episodes=2", "workers=0", f"out={store}",
                                         "env.image_size=32"]), progress=False)
    assert main(["train-policy", f"data={store}", f"out={root / 'run'}", f"policy={TINY}", "trainer.max_steps=4",
                 "trainer.checkpoint_every_steps=2", "trainer.batch_size=16", "trainer.progress_bar=false"]) == 0
    return root / "run"


def _check_eval_info(path: Path, episodes: int, seed: int) -> dict:
    info = json.loads(path.read_text())
    assert [set(e) for e in info["per_episode"]] == [EPISODE_KEYS] * episodes
    assert [e["episode_ix"] for e in info["per_episode"]] == list(range(episodes))
    assert [e["seed"] for e in info["per_episode"]] == list(range(seed, seed + episodes))
    assert set(info["aggregated"]) == AGGREGATED_KEYS
    assert info["aggregated"]["eval_s"] > 0 and 0 <= info["aggregated"]["pc_success"] <= 100
    return info


def test_eval_a_policy_in_parallel_workers(policy_run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", f"policy={policy_run}", "episodes=2", "seed=1000", "workers=2", "videos=1",
                 "env.image_size=32", "env.max_steps=6", f"out={out}", "progress=false"]) == 0
    info = _check_eval_info(out / "eval_info.json", 2, 1000)
    assert info["info"]["policy"].endswith("step_4") and info["info"]["task"] == "push_cube"
    assert info["video_paths"] == [str(out / "eval_episode_0.mp4")]
    assert len(read_video(out / "eval_episode_0.mp4")) == 7  # initial frame + 6 steps
    assert (out / "config.yaml").exists()
    assert "step_4" in capsys.readouterr().out


def test_eval_the_scripted_expert_through_the_same_harness(tmp_path):
    cfg = build_config(EvalConfig, ["policy=expert", "task=push_cube", "episodes=2", "workers=0", "videos=0",
                                    "env.image_size=32", f"out={tmp_path / 'expert'}", "progress=false"])
    [result] = run_evaluation(cfg)
    info = _check_eval_info(tmp_path / "expert" / "eval_info.json", 2, 1000)
    assert result.pc_success == 100.0 and info["aggregated"]["avg_max_reward"] == 1.0
    assert result.success_text == "2/2 = 100% (95% CI 34-100%)"


def test_eval_every_checkpoint_of_a_run(policy_run, tmp_path):
    out = tmp_path / "sweep"
    assert main(["eval", "--checkpoints", str(policy_run), "episodes=1", "workers=0", "videos=0",
                 "env.image_size=32", "env.max_steps=3", f"out={out}", "progress=false"]) == 0
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [(r["checkpoint"], r["step"]) for r in rows] == [("step_2", 2), ("step_4", 4)]
    assert (out / "sweep.csv").read_text().count("\n") == 3 and (out / "success_vs_step.png").stat().st_size > 0
    for name in ("step_2", "step_4"):
        _check_eval_info(out / name / "eval_info.json", 1, 1000)


def test_a_checkpoint_that_does_not_fit_the_task_is_refused(policy_run, tiny_store, tmp_path, capsys):
    assert main(["eval", f"policy={policy_run}", "episodes=1", "workers=0", f"out={tmp_path / 'a'}"]) == 2
    err = capsys.readouterr().err
    assert "expects observation.images.front of shape [32, 32, 3] but task push_cube (env.image_size=64) has " \
           "[64, 64, 3]; evaluate with env.image_size=32" in err and err.count("\n") == 1
    run = tmp_path / "tiny_run"
    assert main(["train-policy", f"data={tiny_store}", f"out={run}", f"policy={TINY}", "policy.horizon=4",
                 "policy.n_action_steps=2", "trainer.max_steps=1", "trainer.batch_size=4",
                 "trainer.progress_bar=false"]) == 0
    assert main(["eval", f"policy={run}/checkpoints/step_1", "task=push_cube", "env.image_size=16",
                 f"out={tmp_path / 'b'}"]) == 2
    assert "expects observation.state of shape [3] but task push_cube (env.image_size=16) has [11]" in \
        capsys.readouterr().err
    assert main(["eval", f"policy={tmp_path}", f"out={tmp_path / 'c'}"]) == 2
    assert f"no policy at {tmp_path}: it has no config.json" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _crash_after(monkeypatch, episodes: int) -> list:
    """Make the evaluation die (as a kill would) after `episodes` results; returns the `done` sets it was given."""
    from robodream.pipeline.policy import evaluate as evaluate_module

    calls: list = []

    def dying(*args, done=(), **kwargs):
        calls.append(set(done))
        for count, item in enumerate(evaluate(*args, done=done, **kwargs)):
            if count == episodes:
                raise RuntimeError("killed")
            yield item

    monkeypatch.setattr(evaluate_module, "evaluate", dying)
    return calls


def test_an_interrupted_evaluation_resumes_with_only_the_missing_episodes(tmp_path, monkeypatch):
    args = ["policy=expert", "task=push_cube", "episodes=4", "workers=0", "videos=1", "env.image_size=32",
            "env.max_steps=40", "progress=false"]
    [straight] = run_evaluation(build_config(EvalConfig, args + [f"out={tmp_path / 'straight'}"]))
    out = tmp_path / "resumed"
    calls = _crash_after(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="killed"):
        run_evaluation(build_config(EvalConfig, args + [f"out={out}"]))
    assert sorted(p.name for p in (out / "episodes.partial").glob("*.pkl")) == [
        "agent0_episode0.pkl", "agent0_episode1.pkl"]
    assert not (out / "eval_info.json").exists()
    calls.clear()
    monkeypatch.undo()
    calls = _crash_after(monkeypatch, 99)
    [resumed] = run_evaluation(build_config(EvalConfig, args + [f"out={out}"]))
    assert calls == [{(0, 0), (0, 1)}]  # the second sitting ran only episodes 2 and 3
    assert resumed.info["per_episode"] == straight.info["per_episode"]
    assert len(read_video(out / "eval_episode_0.mp4")) > 1  # the first episode's frames survived the crash
    assert not (out / "episodes.partial").exists()


def test_kept_episodes_of_a_different_evaluation_are_discarded(tmp_path, monkeypatch, capsys):
    args = ["policy=expert", "task=push_cube", "episodes=2", "workers=0", "videos=0", "env.image_size=32",
            "env.max_steps=30", "progress=false", f"out={tmp_path / 'e'}"]
    _crash_after(monkeypatch, 1)
    with pytest.raises(RuntimeError, match="killed"):
        run_evaluation(build_config(EvalConfig, args))
    monkeypatch.undo()
    calls = _crash_after(monkeypatch, 99)
    run_evaluation(build_config(EvalConfig, args + ["expert.noise=0.05"]))  # changes what the episodes are
    assert calls == [set()] and "discarding the kept episodes" in capsys.readouterr().err


def test_a_sweep_resumes_after_its_first_checkpoint(policy_run, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    args = ["--checkpoints", str(policy_run), "episodes=1", "workers=0", "videos=0", "env.image_size=32",
            "env.max_steps=3", f"out={out}", "progress=false"]
    _crash_after(monkeypatch, 1)
    with pytest.raises(RuntimeError, match="killed"):
        main(["eval", *args])
    assert (out / "step_2" / "eval_info.json").exists() and not (out / "sweep.json").exists()
    monkeypatch.undo()
    calls = _crash_after(monkeypatch, 99)
    assert main(["eval", *args]) == 0
    assert calls == [{(0, 0)}]
    assert [r["checkpoint"] for r in json.loads((out / "sweep.json").read_text())["rows"]] == ["step_2", "step_4"]
