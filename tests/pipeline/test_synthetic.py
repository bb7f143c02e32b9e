"""train-probe -> generate -> eval env=world_model, end to end on real PyBullet episodes at 16x16.

The models are trained for a handful of steps only: these tests check the plumbing (files, labels, metadata,
filters, the harness in imagination, clear errors), not quality, which lives in benchmarks/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robodream.datasets.reader import EpisodeStore
from robodream.pipeline.cli import main


def test_the_probe_reports_position_error_and_success_precision_recall(models):
    _, _, probe = models
    metrics = json.loads((probe / "metrics.json").read_text())
    assert (probe / "model" / "config.json").is_file() and (probe / "model" / "model.safetensors").is_file()
    for name in ("ee", "cube", "goal"):
        assert np.isfinite(metrics["position_error_cm"][name]) and metrics["position_error_cm"][name] > 0
    assert 0 <= metrics["success_precision"] <= 1 and 0 <= metrics["success_recall"] <= 1
    # per episode, as imagination reads it: the held-out episode's recorded outcome against "any frame > 0.5"
    episodes = metrics["per_episode"]
    assert episodes["episodes"] == len(metrics["held_out_episodes"]) >= 1
    assert episodes["successful_episodes"] + episodes["failed_episodes"] == episodes["episodes"]
    assert 0 <= episodes["detected"] <= episodes["successful_episodes"]


def test_generate_labels_every_synthetic_episode_and_filters_by_success(models, tmp_path, capsys):
    store, wm, probe = models
    out = tmp_path / "synth.zarr"
    assert main(["generate", f"wm={wm}", f"probe={probe}", f"data={store}", "rollouts=5", "horizon=6",
                 "source=demo-actions", "noise=0.1", "batch_size=4", f"out={out}", "progress=false",
                 "accelerator=cpu", "force=true"]) == 0  # a 3-step model fails the gates (test_gates.py)
    synth = EpisodeStore.open(out)
    real = EpisodeStore.open(store)
    assert synth.num_episodes == 5
    assert {synth.episode_meta(i)["source"] for i in range(5)} == {"synthetic"}
    assert synth.features["observation.state"]["shape"] == real.features["observation.state"]["shape"]
    first = synth.episode(0)
    origin = json.loads(synth.episode_meta(0)["origin"])
    k = origin["context_frames"]
    # K real context frames, then the imagined ones (stopped early at a success), every frame labelled
    assert len(first["action"]) == k + origin["imagined_frames"] and 1 <= origin["imagined_frames"] <= 6
    assert first["observation.images.front"].shape[1:] == (16, 16, 3)
    assert np.isfinite(first["observation.environment_state"]).all()
    assert set(np.unique(first["reward"][k:])) <= {0.0, 1.0}
    assert {"seed", "start_episode", "rollout", "spread"} <= set(origin)
    assert "already exists" in _run_error(["generate", f"wm={wm}", f"probe={probe}", f"data={store}", "rollouts=2",
                                            "horizon=4", f"out={out}", "progress=false"], capsys)
    kept = tmp_path / "kept.zarr"
    assert main(["generate", f"wm={wm}", f"probe={probe}", f"data={store}", "rollouts=4", "horizon=4",
                 "filter.success_only=true", f"out={kept}", "progress=false", "accelerator=cpu", "force=true"]) == 0
    if kept.exists():  # an untrained probe may call nothing a success: then nothing is kept
        filtered = EpisodeStore.open(kept)
        assert all(filtered.episode_meta(i)["success"] for i in range(filtered.num_episodes))


def test_eval_in_imagination_runs_the_harness_in_the_world_model(models, tmp_path):
    store, wm, probe = models
    out = tmp_path / "imagined"
    assert main(["eval", "policy=expert", "task=push_cube", "env=world_model", f"imagination.wm={wm}",
                 f"imagination.probe={probe}", "env.image_size=16", "episodes=2", "workers=0", "max_steps=5",
                 "videos=1", f"out={out}", "progress=false", "imagination.force=true"]) == 0
    info = json.loads((out / "eval_info.json").read_text())
    assert info["info"]["env"] == "world_model" and info["info"]["world_model"] == str(wm)
    assert info["info"]["success_from"] == "imagined, probe-labelled" and info["info"]["forced_past_gates"]
    assert [e["seed"] for e in info["per_episode"]] == [1000, 1001]
    assert (out / "eval_episode_0.mp4").is_file()


def test_imagined_env_gives_agents_the_true_goal_and_the_probe_cube(models):
    from robodream.pipeline.policy.imagination import ImaginationConfig, ImaginedTaskEnv
    from robodream.robots.sim.env import EnvConfig, make_env

    _, wm, probe = models
    env = ImaginedTaskEnv(EnvConfig(task="push_cube", image_size=16), ImaginationConfig(wm=str(wm), probe=str(probe)))
    sim = make_env(EnvConfig(task="push_cube", image_size=16))
    try:
        true_state = sim.reset(seed=1003)[0]["observation.environment_state"]
        obs, _ = env.reset(seed=1003)
        for _ in range(2):
            np.testing.assert_allclose(obs["observation.environment_state"][7:10], true_state[7:10], atol=1e-6)
            obs = env.step(np.zeros(4, np.float32))[0]
        cube = env.probe.predict(obs["observation.images.front"][None])["cube"][0]
        np.testing.assert_allclose(obs["observation.environment_state"][:3], cube, atol=1e-5)
    finally:
        env.close()
        sim.close()


def test_imagined_success_can_also_be_the_probe_cube_within_a_radius_of_the_goal(models):
    from robodream.errors import RobodreamError
    from robodream.pipeline.policy.imagination import ImaginationConfig, ImaginedTaskEnv
    from robodream.robots.sim.env import EnvConfig

    _, wm, probe = models
    env_cfg = EnvConfig(task="push_cube", image_size=16)

    def success_at_reset(radius: float) -> tuple[bool, float]:
        # threshold 0.999: the (barely trained) probe's success probability never decides here
        env = ImaginedTaskEnv(env_cfg, ImaginationConfig(wm=str(wm), probe=str(probe), success_threshold=0.999,
                                                         success_radius=radius))
        try:
            obs, info = env.reset(seed=1003)
            labels = env.probe.predict(obs["observation.images.front"][None])
            assert labels["success_prob"][0] < 0.999
            distance = float(np.linalg.norm(labels["cube"][0, :2] - obs["observation.environment_state"][7:9]))
            return bool(info["success"]), distance
        finally:
            env.close()

    _, distance = success_at_reset(10.0)
    assert success_at_reset(distance + 1e-3)[0] and not success_at_reset(max(distance - 1e-3, 1e-6))[0]
    with pytest.raises(RobodreamError, match="success_radius must be > 0"):
        ImaginationConfig(wm=str(wm), probe=str(probe), success_radius=0.0)


def test_eval_in_imagination_without_its_models_is_one_clear_error(models, capsys):
    _, wm, _ = models
    message = _run_error(["eval", "policy=expert", "env=world_model", f"imagination.wm={wm}", "episodes=1"], capsys)
    assert "imagination.probe=<dir>" in message


def _run_error(argv: list[str], capsys) -> str:
    assert main(argv) != 0
    return capsys.readouterr().err


def test_generate_with_ddp_on_two_cpu_processes_stores_every_rollout_once(models, tmp_path):
    store, wm, probe = models
    out = tmp_path / "synth.zarr"
    # Lightning's DDP launcher re-runs this command line for rank 1, so it must be a real command, not pytest.
    # 5 rollouts in batches of 2: rank 0 imagines batches 0 and 2 (rollouts 0, 1, 4), rank 1 batch 1 (2, 3).
    command = [sys.executable, "-m", "robodream.pipeline.cli", "generate", f"wm={wm}", f"probe={probe}",
               f"data={store}", "rollouts=5", "horizon=3", "batch_size=2", f"out={out}", "progress=false",
               "accelerator=cpu", "devices=2", "strategy=ddp", "force=true"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "distributed_backend=gloo" in output and "Starting with 2 processes" in output
    assert result.stdout.count("rollouts    5 imagined, 5 kept") == 1  # rank 0 alone reports, with every count
    synth = EpisodeStore.open(out)
    rollouts = [json.loads(synth.episode_meta(i)["origin"])["rollout"] for i in range(synth.num_episodes)]
    assert sorted(rollouts) == [0, 1, 2, 3, 4]  # every rollout exactly once: shards merged, none repeated
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no shard or count file left


def test_verify_synthetic_replays_the_stored_actions_in_pybullet_from_the_real_start(models, tmp_path, capsys):
    """Noise-free demo actions over the whole demo: the replay is the recorded demo, so it must succeed in
    PyBullet as the demo did; the report names the precision of the probe's labels with its interval."""
    store, wm, probe = models
    out = tmp_path / "replayable.zarr"
    assert main(["generate", f"wm={wm}", f"probe={probe}", f"data={store}", "rollouts=2", "horizon=45", "noise=0",
                 "batch_size=2", "stop_at_success=false", f"out={out}", "progress=false", "accelerator=cpu",
                 "force=true"]) == 0
    capsys.readouterr()
    assert main(["verify-synthetic", f"store={out}", "progress=false"]) == 0
    printed = capsys.readouterr().out
    assert "replayed    2/2 episodes in PyBullet from their real start" in printed
    report = json.loads(Path(str(out) + ".verify.json").read_text())
    assert [r["replayed"] for r in report["rows"]] == [True, True]
    labelled = sum(r["labelled"] for r in report["rows"])
    assert report["labelled_success"] == labelled and "precision   of the probe's success label: " in printed
    synth = EpisodeStore.open(out)
    real_frames = [json.loads(synth.episode_meta(i)["origin"])["context_frames"] for i in range(2)]
    called = [bool((synth.episode(i, ["reward"])["reward"][k:] > 0).any()) for i, k in enumerate(real_frames)]
    assert [r["probe_called"] for r in report["rows"]] == called
    assert report["probe_called_replayed_success"] == sum(called) and report["replayed_success_all"] == 2
    assert f"probe       calls {sum(called)}/2" in printed
    assert main(["verify-synthetic", f"store={store}", "progress=false"]) == 2  # a recorded store: refused


def test_the_replay_filter_drops_rollouts_that_fail_in_pybullet_and_keeps_those_that_succeed(models, tmp_path,
                                                                                                capsys):
    """filter.replay_in_sim, in a tiny forced case: 3 imagined steps of a demo's actions cannot push the cube to
    its goal in PyBullet, so every such rollout is dropped, whatever the (untrained) probe says; the whole demo's
    actions succeed there, so those rollouts are kept, labelled with the simulator's outcome."""
    store, wm, probe = models
    common = ["generate", f"wm={wm}", f"probe={probe}", f"data={store}", "rollouts=2", "noise=0", "batch_size=2",
              "stop_at_success=false", "filter.replay_in_sim=true", "progress=false", "accelerator=cpu", "force=true"]
    short = tmp_path / "short.zarr"
    err = _run_error([*common, "horizon=3", f"out={short}"], capsys)
    assert "all 2 rollouts were filtered out" in err and "2 failing when replayed in PyBullet" in err
    assert not short.exists()
    whole = tmp_path / "whole.zarr"
    assert main([*common, "horizon=45", f"out={whole}"]) == 0
    assert "0 failing when replayed in PyBullet" in capsys.readouterr().out
    synth = EpisodeStore.open(whole)
    assert synth.num_episodes == 2
    for i in range(2):
        assert synth.episode_meta(i)["success"] is True
        assert json.loads(synth.episode_meta(i)["origin"])["replayed_in_sim"] is True


def test_the_expert_source_acts_in_the_dream_on_the_imagined_state(models, tmp_path):
    """source=expert: the scripted expert drives the rollout. Its first action is the one it takes on the real
    context's last state (exact); later ones follow the world model's predicted end effector and the probe's cube,
    so the imagined episode is the expert's own behaviour, not a replay of the demo's actions."""
    from robodream.features import ACTION, ENV_STATE, STATE
    from robodream.robots.sim.experts import make_expert

    store, wm, probe = models
    out = tmp_path / "expert.zarr"
    assert main(["generate", f"wm={wm}", f"probe={probe}", f"data={store}", "source=expert", "rollouts=2",
                 "horizon=5", "noise=0", "batch_size=2", "stop_at_success=false", f"out={out}", "progress=false",
                 "accelerator=cpu", "force=true"]) == 0
    synth, real = EpisodeStore.open(out), EpisodeStore.open(store)
    for i in range(2):
        origin = json.loads(synth.episode_meta(i)["origin"])
        k, start = origin["context_frames"], real.episode(origin["start_episode"], [STATE, ENV_STATE])
        expert = make_expert("push_cube")
        expert.reset(origin["seed"])
        first = expert.act({STATE: start[STATE][k - 1], ENV_STATE: start[ENV_STATE][k - 1]})
        actions = synth.episode(i, [ACTION])[ACTION]
        np.testing.assert_allclose(actions[k - 1], first, atol=1e-6)
        assert origin["source"] == "expert" and len(actions) == k + 5


def test_an_expert_that_dead_reckons_the_cube_never_reads_the_probe(models, tmp_path, capsys):
    """source=expert expert_cube=start: the expert takes the real start's recorded cube and dead-reckons it, so
    its actions are a function of the world model's predicted end effector alone; the probe's reading of the
    imagined cube (stored in the episode) steers nothing."""
    from robodream.features import ACTION, ENV_STATE, STATE
    from robodream.robots.sim.experts import ExpertConfig, make_expert

    store, wm, probe = models
    out = tmp_path / "reckoned.zarr"
    assert main(["generate", f"wm={wm}", f"probe={probe}", f"data={store}", "source=expert", "expert_cube=start",
                 "rollouts=2", "horizon=6", "noise=0", "batch_size=2", "stop_at_success=false", f"out={out}",
                 "progress=false", "accelerator=cpu", "force=true"]) == 0
    synth, real = EpisodeStore.open(out), EpisodeStore.open(store)
    for i in range(2):
        origin = json.loads(synth.episode_meta(i)["origin"])
        k, episode = origin["context_frames"], synth.episode(i, [STATE, ACTION])
        start = real.episode(origin["start_episode"], [ENV_STATE])[ENV_STATE][k - 1]
        expert = make_expert("push_cube", ExpertConfig(dead_reckon=True))
        expert.reset(origin["seed"])
        expected = [expert.act({STATE: state, ENV_STATE: start}) for state in episode[STATE][k - 1 : k + 5]]
        np.testing.assert_allclose(episode[ACTION][k - 1 : k + 5], np.stack(expected), atol=1e-6)
        assert origin["expert_cube"] == "start"
    assert "expert_cube must be probe or start" in _run_error(["generate", "expert_cube=oracle",
                                                              f"out={tmp_path / 'x.zarr'}"], capsys)


def test_with_the_replay_filter_an_episode_ends_where_pybullet_first_succeeds(models, tmp_path):
    """stop_at_success with filter.replay_in_sim: the episode ends at PyBullet's first success, not the probe's
    (the labels are the simulator's). A demo's own actions succeed where the demo did, so the kept episode is
    exactly as long as the recorded demo."""
    store, wm, probe = models
    out = tmp_path / "ends.zarr"
    assert main(["generate", f"wm={wm}", f"probe={probe}", f"data={store}", "rollouts=2", "horizon=60", "noise=0",
                 "batch_size=2", "filter.replay_in_sim=true", f"out={out}", "progress=false", "accelerator=cpu",
                 "force=true"]) == 0
    synth, real = EpisodeStore.open(out), EpisodeStore.open(store)
    for i in range(2):
        origin = json.loads(synth.episode_meta(i)["origin"])
        assert synth.episode_meta(i)["success"] is True and origin["replayed_in_sim"] is True
        assert origin["context_frames"] + origin["imagined_frames"] == real.episode_lengths[origin["start_episode"]]


def test_a_success_must_hold_for_success_frames_consecutive_frames():
    from robodream.errors import RobodreamError
    from robodream.pipeline.config import build_config
    from robodream.pipeline.synthetic.generate import GenerateConfig
    from robodream.world_models.probe import sustained

    flags = np.array([[1, 1, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0]], bool)
    np.testing.assert_array_equal(sustained(flags, 1), flags)
    np.testing.assert_array_equal(sustained(flags, 3), [[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]])
    with pytest.raises(RobodreamError, match="filter.success_frames must be >= 1"):
        build_config(GenerateConfig, ["filter.success_frames=0"])


@pytest.mark.parametrize("name", ["push_cube.yaml", "expert_dead_reckoning.yaml"])
def test_the_generate_config_examples_build(name):
    from robodream.pipeline.config import build_config
    from robodream.pipeline.synthetic.generate import GenerateConfig

    cfg = build_config(GenerateConfig, [], [Path(__file__).parents[2] / "configs" / "generate" / name])
    assert cfg.source in ("demo-actions", "expert") and cfg.rollouts >= 1


@pytest.mark.parametrize(("progress", "rank_zero", "opened"), [(True, True, True), (True, False, False),
                                                               (False, True, False)])
def test_the_generate_progress_bar_opens_before_the_first_batch(models, tmp_path, progress, rank_zero, opened):
    # Opened at the first batch's end, the bar's rate and ETA left out the first batch's time (a 300-rollout
    # generation showed 32 rollouts done in 0 s, "725501 rollout/s").
    from types import SimpleNamespace

    from robodream.pipeline.synthetic.distributed import ShardWriter

    store, _, _ = models
    writer = ShardWriter(tmp_path / "synth.zarr", EpisodeStore.open(store), "observation.images.front", total=8,
                         progress=progress)
    writer.on_predict_start(SimpleNamespace(is_global_zero=rank_zero), None)
    assert (writer.bar is not None) == opened
    if opened:
        assert writer.bar.n == 0 and writer.bar.total == 8
        writer.bar.close()
