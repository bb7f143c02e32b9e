"""record_episode on the real PyBullet env: frame layout, rewards, timestamps, applied actions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from robodream.robots.rollout import record_episode
from robodream.robots.sim.experts import ExpertConfig, make_expert


def test_successful_episode_layout(make_sim_env):
    env = make_sim_env("push_cube", image_size=16)
    expert = make_expert("push_cube", ExpertConfig())
    expert.reset(1)
    steps = []

    def act(obs):
        steps.append(1)
        return expert.act(obs)

    rec = record_episode(env, act, seed=1)
    n = len(steps) + 1  # every step's observation + the final observation
    assert rec.success and rec.seed == 1 and rec.num_frames == n
    for key in list(env.features) + ["reward", "timestamp"]:
        assert len(rec.data[key]) == n, key
    assert rec.data["observation.images.front"].shape == (n, 16, 16, 3)
    assert rec.data["action"].dtype == np.float32 and rec.data["reward"].dtype == np.float32
    assert rec.data["reward"][-1] == 1.0 and rec.data["reward"][:-1].sum() == 0.0
    assert np.array_equal(rec.data["timestamp"], (np.arange(n) / env.fps).astype(np.float32))
    # the final frame holds still with the last gripper command
    assert np.array_equal(rec.data["action"][-1], [0, 0, 0, rec.data["action"][-2][3]])


def test_records_the_clipped_action_and_stops_at_max_steps(make_sim_env):
    env = make_sim_env("pick_place", image_size=16)
    rec = record_episode(env, lambda obs: np.array([1.0, 0.0, 0.0, 5.0], np.float32), seed=0, max_steps=4)
    assert rec.num_frames == 5 and not rec.success
    assert np.allclose(rec.data["action"][:4], [0.04, 0.0, 0.0, 1.0], atol=1e-6)
    assert np.array_equal(rec.data["action"][4], [0.0, 0.0, 0.0, 1.0])
    # state t+1 follows from action t: the ee advanced in +x every step
    assert np.all(np.diff(rec.data["observation.state"][:, 0]) > 0.02)


def test_rollout_does_not_import_pybullet():
    code = "import sys, robodream.robots.rollout; assert 'pybullet' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
