"""`robodream run`: the stages in order, outputs where promised, unchanged stages skipped, changed ones re-run."""

from __future__ import annotations

import json

import pytest

from robodream.datasets.reader import EpisodeStore
from robodream.pipeline.cli import main
from robodream.pipeline.config import build_config
from robodream.pipeline.data.collect import CollectConfig
from robodream.pipeline.run import PipelineConfig, plan
from robodream.robots.sim.env import EnvConfig
from tests.pipeline.pipeline_util import CONFIGS, tiny_pipeline_args

SKIPPED = "skipped: inputs and config unchanged"


# The stages' progress names, by prefix; the longest prefix a line starts with names its stage.
STAGE_PREFIXES = {"collect push_cube": "collect-push_cube", "collect pick_place": "collect-pick_place", "viz": "viz",
                  "collect push_cube-play": "collect-push_cube-play",
                  "collect push_cube-executed": "collect-push_cube-executed", "merge push_cube": "merge-push_cube+play",
                  "train-wm": "train-wm", "dream + eval-wm": "eval-wm", "train-policy": "train-policy",
                  "eval step": "eval-policy", "train-probe": "train-probe", "generate": "generate",
                  "train-policy augmented": "train-policy-augmented", "eval augmented": "eval-policy-augmented",
                  "eval in imagination step": "eval-imagined",
                  "eval in imagination augmented": "eval-imagined-augmented", "rank": "rank", "report": "report",
                  "train-policy synthetic": "train-policy-synthetic", "eval synthetic": "eval-policy-synthetic"}


def _ran(out: str) -> list[str]:
    """Slugs of the stages a `robodream run` printed as run (not skipped), from its progress lines."""
    lines = out.splitlines()
    ran = []
    for i, line in enumerate(lines):
        if line.startswith("[") and "] " in line:
            stage = line.split("] ", 1)[1]
            following = next((x for x in lines[i + 1:] if x.startswith("      ")), "")
            matches = [prefix for prefix in STAGE_PREFIXES if stage.startswith(prefix)]
            if SKIPPED not in following and matches:
                ran.append(STAGE_PREFIXES[max(matches, key=len)])
    return ran


def test_tiny_pipeline_runs_and_a_second_run_skips_every_stage(tmp_path, capsys):
    run = tmp_path / "run"
    args = tiny_pipeline_args(run)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[1/17] collect push_cube" in out and "[17/17] report" in out
    for store in ("push_cube", "pick_place"):
        path = run / "data" / f"{store}.zarr"
        assert EpisodeStore.open(path).num_episodes == 2
        assert (run / "viz" / f"{store}_ep0-1.mp4").exists()
        assert (run / "viz" / f"{store}_ep0-1.gif").exists()
        assert str(path) in out
    assert (run / "config.yaml").exists() and (run / "run.json").exists()
    # Play data (the expert with a decoy, failures kept) joins the demos for the world model and the probe only.
    play = EpisodeStore.open(run / "data" / "push_cube_play.zarr")
    assert play.num_episodes == 2 and EpisodeStore.open(run / "data" / "push_cube+play.zarr").num_episodes == 4
    for stamp in (run / "world_model" / "train-wm.stage.json", run / "probe" / "train-probe.stage.json"):
        assert json.loads(stamp.read_text())["inputs"]["store"]["path"].endswith("push_cube+play.zarr")
    world_model = run / "world_model"
    assert (world_model / "model" / "config.json").exists() and (world_model / "eval_wm" / "metrics.json").exists()
    assert len(list((world_model / "dream").glob("dream_ep*.gif"))) == 1
    policy = run / "policy"
    assert sorted(p.name for p in (policy / "checkpoints").iterdir()) == ["last.ckpt", "step_2", "step_4"]
    eval_info = policy / "eval" / "step_4_push_cube_seed1000" / "eval_info.json"
    assert eval_info.exists() and (eval_info.parent / "eval_episode_0.mp4").exists() and str(eval_info) in out
    # The synthetic-data stages: probe, synthetic store, augmented policy, evaluations in sim and imagination.
    assert (run / "probe" / "model" / "config.json").exists() and (run / "probe" / "metrics.json").exists()
    synth = EpisodeStore.open(run / "data" / "synthetic.zarr")
    assert synth.num_episodes == 2 and {synth.episode_meta(i)["source"] for i in range(2)} == {"synthetic"}
    augmented = run / "policy_augmented"
    assert (augmented / "checkpoints" / "step_4" / "config.json").exists()
    assert (augmented / "eval" / "step_4_push_cube_seed1000" / "eval_info.json").exists()
    for trained in (policy, augmented):
        imagined = json.loads((trained / "eval" / "step_4_push_cube_imagined_seed1000" / "eval_info.json").read_text())
        assert imagined["info"]["env"] == "world_model" and imagined["info"]["seeds"] == [1000, 1000]
    # The rank stage: both checkpoints of the real-only run, the augmented policy and the expert, in both worlds.
    rank = json.loads((run / "rank" / "rank.json").read_text())
    assert [r["agent"] for r in rank["rows"]] == ["policy/step_2", "policy/step_4", "policy_augmented/step_4",
                                                 "expert noise=0"]
    assert rank["agents"] == 4 and rank["seeds"] == [1000, 1000] and (run / "rank" / "rank_scatter.png").exists()
    # The report compares real-only with augmented, in sim and in imagination, and shows the rank stage's agents.
    report = (run / "report" / "report.md").read_text()
    assert "| expert noise=0 |" in report and "over 4 agents" in report and "rank_scatter.png" in report
    assert "rank/expert_noise_0" not in report  # the rank stage's evaluations are summarised, not listed
    assert "success in sim" in report and "success in imagination" in report
    assert "real 50% + synthetic 50%" in report and "| policy/checkpoints/step_4 | real |" in report
    # Every stage's output directory holds its resolved config and its input hash.
    for stamp in (run / "data" / "collect-push_cube.stage.json", world_model / "train-wm.stage.json",
                  eval_info.parent / "eval-policy.stage.json", run / "data" / "generate.stage.json",
                  run / "probe" / "train-probe.stage.json", augmented / "train-policy-augmented.stage.json",
                  run / "report" / "report.stage.json"):
        assert stamp.exists() and stamp.with_suffix(".yaml").exists()
    assert (run / "report" / "report.html").exists() and (run / "report" / "report.md").exists()

    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count(SKIPPED) == 17 and _ran(out) == []
    assert "ETA" in out  # the durations of the first run are known now

    # A changed world-model config re-runs train-wm and everything downstream of it, nothing upstream (the
    # probe and the real-only policy learn from the recorded store alone).
    changed = ["world_model.trainer.learning_rate=5e-4"]
    assert main(tiny_pipeline_args(run, *changed)) == 0
    assert _ran(capsys.readouterr().out) == ["train-wm", "eval-wm", "generate", "train-policy-augmented",
                                             "eval-policy-augmented", "eval-imagined", "eval-imagined-augmented",
                                             "rank", "report"]
    # A changed generate config re-runs generate and what reads the synthetic store only.
    changed.append("generate.noise=0.2")
    assert main(tiny_pipeline_args(run, *changed)) == 0
    assert _ran(capsys.readouterr().out) == ["generate", "train-policy-augmented", "eval-policy-augmented",
                                             "eval-imagined-augmented", "rank", "report"]
    # A changed policy eval config re-runs only the evaluations on those seeds (and the report).
    assert main(tiny_pipeline_args(run, *changed, "policy.eval.seed=2000")) == 0
    assert _ran(capsys.readouterr().out) == ["eval-policy", "eval-policy-augmented", "eval-imagined",
                                             "eval-imagined-augmented", "rank", "report"]
    # The third arm: a policy trained on the synthetic store's imagined frames only, evaluated in PyBullet; the
    # report's comparison then shows real only, real + synthetic and synthetic only side by side.
    changed.append("policy.eval.seed=2000")
    assert main(tiny_pipeline_args(run, *changed, "synthetic_only.enabled=true")) == 0
    assert _ran(capsys.readouterr().out) == ["train-policy-synthetic", "eval-policy-synthetic", "report"]
    assert (run / "policy_synthetic" / "eval" / "step_4_push_cube_seed2000" / "eval_info.json").exists()
    report = (run / "report" / "report.md").read_text()
    assert "| policy_synthetic/checkpoints/step_4 | synthetic, imagined frames only |" in report
    assert "real 50% + synthetic 50%" in report and "| policy/checkpoints/step_4 | real |" in report


@pytest.mark.parametrize("path", sorted((CONFIGS / "pipeline").glob("*.yaml")), ids=lambda p: p.name)
def test_pipeline_configs_parse_and_plan(path, tmp_path):
    """Every documented size builds its config and its stages (nothing runs), the synthetic-data ones included."""
    cfg = build_config(PipelineConfig, [f"out={tmp_path}"], [path])
    stages = {stage.slug: stage for stage in plan(cfg, "robodream run")}
    slugs = list(stages)
    assert slugs[0].startswith("collect-") and slugs[-1] == "report"
    assert {"train-probe", "generate", "train-policy-augmented", "eval-imagined-augmented"} <= set(slugs)
    if path.name in ("standard.yaml", "full.yaml"):  # the three arms of the augmentation comparison
        assert {"train-policy-synthetic", "eval-policy-synthetic"} <= set(slugs)
    # The demos carry clean DART labels: the world model learns (and generation starts from) the same seeds recorded
    # with the executed actions, merged with the play data; the policies learn the clean labels.
    assert "collect-push_cube-executed" in stages
    executed = str(tmp_path / "data" / "push_cube_executed.zarr")
    wm_data = stages["merge-push_cube+play"].inputs["store 0"] if cfg.play.episodes else \
        stages["train-wm"].inputs["store"]
    assert wm_data == executed
    assert stages["generate"].inputs["store"] == executed
    assert stages["train-policy"].inputs["store"] == str(tmp_path / "data" / "push_cube.zarr")


@pytest.mark.parametrize("path", sorted((CONFIGS / "collect").glob("*.yaml")), ids=lambda p: p.name)
def test_collect_configs_parse(path):
    assert build_config(CollectConfig, [], [path]).episodes >= 1


@pytest.mark.parametrize("path", sorted((CONFIGS / "task").glob("*.yaml")), ids=lambda p: p.name)
def test_task_configs_parse(path):
    assert build_config(EnvConfig, [], [path]).task == path.stem


def test_pipeline_section_mismatches_are_clear_errors():
    from robodream.errors import RobodreamError

    quickstart = [CONFIGS / "pipeline" / "quickstart.yaml"]
    with pytest.raises(RobodreamError, match="play data is for the world model only"):
        plan(build_config(PipelineConfig, ["play.episodes=5", "world_model.enabled=false", "probe.enabled=false",
                                           "generate.enabled=false", "augmented.enabled=false",
                                           "imagination.enabled=false", "rank.enabled=false"], quickstart), "x")
    with pytest.raises(RobodreamError, match="world_model.task='stack' but the pipeline collects only"):
        plan(build_config(PipelineConfig, ["world_model.task=stack"], quickstart), "x")
    with pytest.raises(RobodreamError, match="play.episodes must be >= 0"):
        build_config(PipelineConfig, ["play.episodes=-1"], quickstart)
    for section, command in (("world_model", "train-wm"), ("policy", "train-policy"), ("probe", "train-probe")):
        one_device = f"inside `robodream run` training uses one device.*robodream {command}"
        with pytest.raises(RobodreamError, match=one_device):
            plan(build_config(PipelineConfig, [f"{section}.trainer.devices=2"], quickstart), "x")
