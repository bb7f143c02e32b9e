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


def test_replaying_the_recorded_actions_reproduces_the_episode_bit_for_bit(make_sim_env):
    """What a world model learns from and what the simulator replay filter checks: the recorded (applied) actions,
    replayed from the same seed, give the same frames, also where the limits clipped the commands. Contacts turn a
    float32 rounding of a clipped target into a cube centimetres elsewhere, so nothing less than exact will do."""
    env = make_sim_env("push_cube", image_size=16)
    expert = make_expert("push_cube", ExpertConfig(noise=0.01))
    expert.reset(3)
    commanded = []

    def act(obs):  # every 4th command also reaches for the floor, past the workspace box: clipped
        commanded.append(expert.act(obs) + np.float32([0, 0, -0.03 * (len(commanded) % 4 == 0), 0]))
        return commanded[-1]

    rec = record_episode(env, act, seed=3, max_steps=45)
    applied = rec.data["action"][:-1]
    assert len(applied) > 30 and np.sum(np.any(np.abs(applied - np.asarray(commanded)) > 1e-4, axis=1)) >= 5
    actions = iter(applied)
    replayed = record_episode(env, lambda obs: next(actions), seed=3, max_steps=len(applied))
    for key in ("observation.state", "observation.environment_state", "observation.images.front", "action"):
        assert np.array_equal(replayed.data[key], rec.data[key]), key
    assert replayed.success == rec.success


def test_rollout_does_not_import_pybullet():
    code = "import sys, robodream.robots.rollout; assert 'pybullet' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
