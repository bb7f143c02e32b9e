"""`robodream run`: the pipeline stages in order, outputs where promised, finished stages skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from robodream.datasets.reader import EpisodeStore
from robodream.pipeline.cli import main
from robodream.pipeline.collect import CollectConfig
from robodream.pipeline.config import build_config
from robodream.pipeline.run import PipelineConfig
from robodream.robots.sim.env import EnvConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_tiny_pipeline_runs_and_a_second_run_skips_collection(tmp_path, capsys):
    args = ["run", str(CONFIGS / "pipeline" / "quickstart.yaml"), f"out={tmp_path / 'run'}",
            "collect=[{task: push_cube, episodes: 2, workers: 2}, {task: pick_place, episodes: 2, workers: 0}]",
            "viz.episodes=2", "viz.scale=2", "policy.trainer.max_steps=4", "policy.trainer.checkpoint_every=2",
            "policy.trainer.batch_size=8", "policy.trainer.progress=false", "policy.eval.episodes=1",
            "policy.eval.workers=0", "policy.eval.videos=1",
            "world_model.trainer.max_steps=2", "world_model.trainer.val_every_steps=2",
            "world_model.trainer.checkpoint_every_steps=2", "world_model.trainer.batch_size=8",
            "world_model.val_fraction=0.5", "world_model.dream_episodes=1", "world_model.eval_horizon=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for store in ("push_cube", "pick_place"):
        path = tmp_path / "run" / "data" / f"{store}.zarr"
        assert EpisodeStore.open(path).num_episodes == 2
        assert (tmp_path / "run" / "viz" / f"{store}_ep0-1.mp4").exists()
        assert (tmp_path / "run" / "viz" / f"{store}_ep0-1.gif").exists()
        assert str(path) in out
    assert (tmp_path / "run" / "config.yaml").exists()
    world_model = tmp_path / "run" / "world_model"
    assert (world_model / "model" / "config.json").exists() and (world_model / "eval_wm" / "metrics.json").exists()
    assert len(list((world_model / "dream").glob("dream_ep*.gif"))) == 1
    policy = tmp_path / "run" / "policy"
    assert sorted(p.name for p in (policy / "checkpoints").iterdir()) == ["step_2", "step_4"]
    eval_info = policy / "eval" / "step_4_push_cube_seed1000" / "eval_info.json"
    assert eval_info.exists() and (eval_info.parent / "eval_episode_0.mp4").exists() and str(eval_info) in out
    assert main(args) == 0
    # 2 stores, world-model training, policy training, policy evaluation
    assert capsys.readouterr().out.count("already complete, skipped") == 5


@pytest.mark.parametrize("path", sorted((CONFIGS / "pipeline").glob("*.yaml")), ids=lambda p: p.name)
def test_pipeline_configs_parse(path):
    assert build_config(PipelineConfig, [], [path]).collect


@pytest.mark.parametrize("path", sorted((CONFIGS / "collect").glob("*.yaml")), ids=lambda p: p.name)
def test_collect_configs_parse(path):
    assert build_config(CollectConfig, [], [path]).episodes >= 1


@pytest.mark.parametrize("path", sorted((CONFIGS / "task").glob("*.yaml")), ids=lambda p: p.name)
def test_task_configs_parse(path):
    assert build_config(EnvConfig, [], [path]).task == path.stem
