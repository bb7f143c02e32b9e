"""Gates: commands that print imagined figures refuse a noise world model and a blind probe unless forced, and a
forced run says so wherever its figures are shown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from robodream.pipeline.cli import main
from robodream.pipeline.world_model.gates import (
    FIDELITY,
    check_gates,
    fidelity_problems,
    model_problems,
    probe_problems,
)
from robodream.stats import bootstrap_interval, mean_absolute_error, spearman


def _metrics(model: list[float], shuffled: list[float], copy_last: list[float], trained=()) -> dict:
    ssim = [0.5] * len(model)
    return {"horizons": list(range(1, len(model) + 1)), "episodes": [0, 1, 2],
            "training_episodes": list(trained), "model": {"psnr": model, "ssim": ssim},
            "shuffled_actions": {"psnr": shuffled, "ssim": ssim}, "copy_last_frame": {"psnr": copy_last, "ssim": ssim}}


def test_a_noise_model_fails_and_a_model_that_reads_its_actions_passes():
    noise = _metrics([15.0] * 8, [15.0] * 8, [20.0] * 8)
    assert fidelity_problems(noise) == ["model below copy-last-frame at every horizon",
                                        "model ignores actions (only +0.0 dB over shuffled actions at horizon 8)"]
    good = _metrics([27.0, 26.7, 26.5, 26.3, 25.9, 25.6, 25.4, 25.2], [27.0, 21.8, 21.0, 20.9, 20.8, 20.8, 20.8, 20.8],
                    [21.0, 20.4, 20.3, 20.2, 20.2, 20.1, 20.1, 20.1])
    assert fidelity_problems(good) == []
    assert fidelity_problems(_metrics([27.0, 26.0], [27.0, 22.0], [21.0, 20.0], trained=[1])) == [
        "fidelity measured on 1 training episodes of 3"]
    one_episode = _metrics([27.0, 26.0], [None, None], [21.0, 20.0])
    assert "action sensitivity unmeasured" in fidelity_problems(one_episode)[0]


def _probe_dir(root: Path, detected: int, successes: int, alarms: int, failures: int) -> Path:
    root.mkdir()
    per_episode = {"episodes": successes + failures, "successful_episodes": successes, "detected": detected,
                   "failed_episodes": failures, "false_alarms": alarms,
                   "episode_recall": detected / successes if successes else 0.0,
                   "episode_false_alarm_rate": alarms / failures if failures else 0.0}
    (root / "metrics.json").write_text(json.dumps({"per_episode": per_episode, "held_out_episodes": [1, 2]}))
    return root


def test_a_blind_probe_and_an_alarmist_probe_fail_and_a_good_one_passes(tmp_path):
    assert probe_problems(str(_probe_dir(tmp_path / "blind", 0, 6, 0, 6))) == [
        "probe success recall 0/6 held-out episodes (below 50%)"]
    assert probe_problems(str(_probe_dir(tmp_path / "alarmist", 6, 6, 5, 6))) == [
        "probe false alarms 5/6 held-out failures (above 30%)"]
    good = _probe_dir(tmp_path / "good", 5, 6, 1, 6)
    assert probe_problems(str(good)) == [] and probe_problems(str(good / "model")) == []
    assert "no held-out accuracy" in probe_problems(str(tmp_path / "missing"))[0]


@pytest.fixture
def noise_model(models, tmp_path):
    """A copy of the session's 3-step world model (noise) with its eval-wm fidelity record."""
    store, wm, probe = models
    copy = tmp_path / "wm"
    shutil.copytree(wm, copy)
    assert main(["eval-wm", f"ckpt={copy}", f"data={store}", "horizon=4", "episodes=0,1,2,3"]) == 0
    return store, copy, probe


def test_eval_wm_records_the_verdict_beside_the_model_and_a_retrained_model_invalidates_it(noise_model, capsys):
    store, wm, _ = noise_model
    record = json.loads((wm / FIDELITY).read_text())
    assert record["problems"] == model_problems(str(wm)) == model_problems(str(wm / "model"))
    assert "training episodes" in " ".join(record["problems"])  # episodes 0..3 include the ones it trained on
    assert main(["eval-wm", f"ckpt={wm}", f"data={store}", "horizon=4"]) == 0  # its held-out episode only
    assert "\nverdict model below copy-last-frame at every horizon; action sensitivity unmeasured" in \
        capsys.readouterr().out
    assert not any("training episodes" in p for p in model_problems(str(wm)))
    weights = wm / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # other weights than the record's
    assert model_problems(str(wm)) == [f"the fidelity record in {wm} is of other weights (re-run robodream eval-wm "
                                       f"ckpt={wm})"]


def test_every_imagining_command_refuses_a_failing_model_in_one_line_unless_forced(noise_model, tmp_path, capsys):
    store, wm, probe = noise_model
    problems = model_problems(str(wm)) + probe_problems(str(probe))
    capsys.readouterr()
    imagine = ["eval", "policy=expert", "task=push_cube", "env=world_model", f"imagination.wm={wm}",
               f"imagination.probe={probe}", "env.image_size=16", "episodes=2", "workers=0", "max_steps=3",
               "videos=0", "progress=false"]
    commands = {
        "eval env=world_model": imagine + [f"out={tmp_path / 'eval'}"],
        "generate": ["generate", f"wm={wm}", f"probe={probe}", f"data={store}", "rollouts=2", "horizon=3",
                     f"out={tmp_path / 'synth.zarr'}", "progress=false", "accelerator=cpu"],
        "experiment rank": ["experiment", "rank", "expert_noise=[0.0,0.03]", f"imagination.wm={wm}",
                            f"imagination.probe={probe}", "env.image_size=16", "episodes=1", "workers=0",
                            f"out={tmp_path / 'rank'}", "progress=false"],
    }
    for command, args in commands.items():
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {command} refuses to trust this world model and probe: {problems[0]}")
        assert err.count("\n") == 1 and "force=true" in err
    assert not (tmp_path / "eval" / "eval_info.json").exists() and not (tmp_path / "rank").exists()

    # With the simulator-replay filter deciding the labels (no success_only, no stop_at_success), the probe's
    # success reading decides nothing: generate judges the world model alone.
    blind = tmp_path / "blind_probe"
    shutil.copytree(probe, blind)
    shutil.rmtree(blind / "metrics.json", ignore_errors=True)
    _probe_dir(tmp_path / "blind_metrics", 0, 1, 0, 10)
    shutil.copy(tmp_path / "blind_metrics" / "metrics.json", blind / "metrics.json")
    generate = [arg.replace(str(probe), str(blind)) for arg in commands["generate"]]
    assert main(generate) == 2
    assert "probe success recall 0/1" in capsys.readouterr().err
    assert main(generate + ["filter.replay_in_sim=true", "stop_at_success=false"]) == 2
    err = capsys.readouterr().err
    assert "; ".join(model_problems(str(wm))) + ". Fix them" in err and "probe" not in err.split(":", 2)[2]

    assert main(imagine + [f"out={tmp_path / 'forced'}", "imagination.force=true"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("FORCED past the gates: " + "; ".join(problems))
    assert "success imagined, probe-labelled" in out
    info = json.loads((tmp_path / "forced" / "eval_info.json").read_text())["info"]
    assert info["forced_past_gates"] == problems and info["success_from"] == "imagined, probe-labelled"
    assert check_gates(str(wm), str(probe), force=True, command="x") == problems


def test_the_report_says_first_what_its_figures_are_worth(noise_model, tmp_path):
    from robodream.pipeline.report.build import write_report

    store, wm, probe = noise_model
    run = tmp_path / "run"
    assert main(["eval", "policy=expert", "task=push_cube", "env=world_model", f"imagination.wm={wm}",
                 f"imagination.probe={probe}", "env.image_size=16", "episodes=2", "workers=0", "max_steps=3",
                 "videos=0", "progress=false", f"out={run / 'imagined'}", "imagination.force=true"]) == 0
    shutil.copytree(wm / "eval", run / "wm_eval")
    _, markdown = write_report(run)
    text = markdown.read_text()
    first = text.index("## Read this first")
    assert first < text.index("## Datasets")
    verdicts = text[first:text.index("## Datasets")]
    assert "World model (wm_eval/" in verdicts and "training episodes" in verdicts
    assert "was forced past the gates" in verdicts
    assert "Evaluations of 2 episodes: a 95% interval as wide as " in verdicts
    assert "% (demo size: plumbing, not results)" in verdicts


def test_rank_figures_come_with_bootstrap_intervals():
    sim, imagined = [0.0, 20.0, 40.0, 60.0, 80.0, 100.0], [10.0, 15.0, 50.0, 55.0, 90.0, 85.0]
    low, high = bootstrap_interval(spearman, sim, imagined)
    assert low <= spearman(sim, imagined) <= high <= 1.0 and low > 0
    mae = mean_absolute_error(sim, imagined)
    assert mae == pytest.approx(55 / 6)
    low, high = bootstrap_interval(mean_absolute_error, sim, imagined)
    assert 0 < low <= mae <= high
    assert bootstrap_interval(spearman, [50.0] * 4, [1.0, 2.0, 3.0, 4.0]) is None  # all tied: undefined


def test_a_world_model_trained_enough_passes_its_gates(tmp_path, capsys):
    """The fixture model (tests/fixtures/models/good_world_model_32px/README.md) on episodes it never saw."""
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "good_world_model_32px"
    wm = tmp_path / "wm"
    shutil.copytree(fixture, wm / "model")
    store = tmp_path / "held_out.zarr"
    assert main(["collect", "task=push_cube", "episodes=6", "seed=500", "workers=1", "env.image_size=32",
                 "expert.noise=0.02", "keep_failures=true", f"out={store}"]) == 0
    assert main(["eval-wm", f"ckpt={wm}", f"data={store}", "horizon=8"]) == 0
    assert "verdict passes the gates" in capsys.readouterr().out
    good_probe = _probe_dir(tmp_path / "probe", 5, 6, 1, 6)
    assert model_problems(str(wm)) == [] and check_gates(str(wm), str(good_probe), force=False, command="x") == []
