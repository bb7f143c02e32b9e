"""`robodream run`: the stages in order, outputs where promised, unchanged stages skipped, changed ones re-run."""

from __future__ import annotations

import pytest

from robodream.datasets.reader import EpisodeStore
from robodream.pipeline.cli import main
from robodream.pipeline.collect import CollectConfig
from robodream.pipeline.config import build_config
from robodream.pipeline.run import PipelineConfig
from robodream.robots.sim.env import EnvConfig
from tests.pipeline.pipeline_util import CONFIGS, tiny_pipeline_args

SKIPPED = "skipped: inputs and config unchanged"


def _ran(out: str) -> list[str]:
    """Slugs of the stages a `robodream run` printed as run (not skipped), from its progress lines."""
    lines = out.splitlines()
    names = {"collect push_cube": "collect-push_cube", "collect pick_place": "collect-pick_place", "viz": "viz",
             "train-wm": "train-wm", "dream + eval-wm": "eval-wm", "train-policy": "train-policy",
             "eval step": "eval-policy", "report": "report"}
    ran = []
    for i, line in enumerate(lines):
        if line.startswith("[") and "] " in line:
            stage = line.split("] ", 1)[1]
            following = next((x for x in lines[i + 1:] if x.startswith("      ")), "")
            if SKIPPED not in following:
                ran += [slug for prefix, slug in names.items() if stage.startswith(prefix)]
    return ran


def test_tiny_pipeline_runs_and_a_second_run_skips_every_stage(tmp_path, capsys):
    run = tmp_path / "run"
    args = tiny_pipeline_args(run)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[1/8] collect push_cube" in out and "[8/8] report" in out
    for store in ("push_cube", "pick_place"):
        path = run / "data" / f"{store}.zarr"
        assert EpisodeStore.open(path).num_episodes == 2
        assert (run / "viz" / f"{store}_ep0-1.mp4").exists()
        assert (run / "viz" / f"{store}_ep0-1.gif").exists()
        assert str(path) in out
    assert (run / "config.yaml").exists() and (run / "run.json").exists()
    world_model = run / "world_model"
    assert (world_model / "model" / "config.json").exists() and (world_model / "eval_wm" / "metrics.json").exists()
    assert len(list((world_model / "dream").glob("dream_ep*.gif"))) == 1
    policy = run / "policy"
    assert sorted(p.name for p in (policy / "checkpoints").iterdir()) == ["step_2", "step_4"]
    eval_info = policy / "eval" / "step_4_push_cube_seed1000" / "eval_info.json"
    assert eval_info.exists() and (eval_info.parent / "eval_episode_0.mp4").exists() and str(eval_info) in out
    # Every stage's output directory holds its resolved config and its input hash.
    for stamp in (run / "data" / "collect-push_cube.stage.json", world_model / "train-wm.stage.json",
                  eval_info.parent / "eval-policy.stage.json", run / "report" / "report.stage.json"):
        assert stamp.exists() and stamp.with_suffix(".yaml").exists()
    assert (run / "report" / "report.html").exists() and (run / "report" / "report.md").exists()

    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count(SKIPPED) == 8 and _ran(out) == []
    assert "ETA" in out  # the durations of the first run are known now

    # A changed world-model config re-runs train-wm and everything downstream of it, nothing upstream.
    assert main(tiny_pipeline_args(run, "world_model.trainer.learning_rate=5e-4")) == 0
    assert _ran(capsys.readouterr().out) == ["train-wm", "eval-wm", "report"]
    # A changed policy eval config re-runs only the evaluation (and the report).
    assert main(tiny_pipeline_args(run, "world_model.trainer.learning_rate=5e-4", "policy.eval.seed=2000")) == 0
    assert _ran(capsys.readouterr().out) == ["eval-policy", "report"]


@pytest.mark.parametrize("path", sorted((CONFIGS / "pipeline").glob("*.yaml")), ids=lambda p: p.name)
def test_pipeline_configs_parse(path):
    assert build_config(PipelineConfig, [], [path]).collect


@pytest.mark.parametrize("path", sorted((CONFIGS / "collect").glob("*.yaml")), ids=lambda p: p.name)
def test_collect_configs_parse(path):
    assert build_config(CollectConfig, [], [path]).episodes >= 1


@pytest.mark.parametrize("path", sorted((CONFIGS / "task").glob("*.yaml")), ids=lambda p: p.name)
def test_task_configs_parse(path):
    assert build_config(EnvConfig, [], [path]).task == path.stem
