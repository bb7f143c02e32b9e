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
            "viz.episodes=2", "viz.scale=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for store in ("push_cube", "pick_place"):
        path = tmp_path / "run" / "data" / f"{store}.zarr"
        assert EpisodeStore.open(path).num_episodes == 2
        assert (tmp_path / "run" / "viz" / f"{store}_ep0-1.mp4").exists()
        assert (tmp_path / "run" / "viz" / f"{store}_ep0-1.gif").exists()
        assert str(path) in out
    assert (tmp_path / "run" / "config.yaml").exists()
    assert main(args) == 0
    assert capsys.readouterr().out.count("already complete, skipped") == 2


@pytest.mark.parametrize("path", sorted((CONFIGS / "pipeline").glob("*.yaml")), ids=lambda p: p.name)
def test_pipeline_configs_parse(path):
    assert build_config(PipelineConfig, [], [path]).collect


@pytest.mark.parametrize("path", sorted((CONFIGS / "collect").glob("*.yaml")), ids=lambda p: p.name)
def test_collect_configs_parse(path):
    assert build_config(CollectConfig, [], [path]).episodes >= 1


@pytest.mark.parametrize("path", sorted((CONFIGS / "task").glob("*.yaml")), ids=lambda p: p.name)
def test_task_configs_parse(path):
    assert build_config(EnvConfig, [], [path]).task == path.stem
