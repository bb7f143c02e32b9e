"""Scripted experts succeed on seeded episodes, with and without action noise (real PyBullet).

The full figures over seeds 0..99 are measured outside the tests; here 20 seeds per case keep the run short.
"""

from __future__ import annotations

import numpy as np
import pytest

from robodream.errors import RobodreamError
from robodream.robots.rollout import record_episode
from robodream.robots.sim.experts import ExpertConfig, make_expert

SEEDS = range(20)


@pytest.mark.slow
@pytest.mark.parametrize("noise", [0.0, 0.005])
@pytest.mark.parametrize("task", ["push_cube", "pick_place"])
def test_expert_success_rate(make_sim_env, task, noise):
    env = make_sim_env(task, image_size=16)  # image size does not change the physics; 16 px renders faster
    expert = make_expert(task, ExpertConfig(noise=noise))
    results = []
    for seed in SEEDS:
        expert.reset(seed)
        results.append(record_episode(env, expert.act, seed))
    rate = np.mean([r.success for r in results])
    assert rate >= 0.9, f"{task} noise={noise}: success {rate:.0%} over seeds {list(SEEDS)}"
    lengths = [r.num_frames - 1 for r in results if r.success]
    assert 10 <= np.mean(lengths) < env.max_steps * 0.6  # demonstrations, not teleports, with headroom


def test_expert_noise_is_seeded(make_sim_env):
    env = make_sim_env("push_cube", image_size=16)
    obs, _ = env.reset(seed=0)
    expert = make_expert("push_cube", ExpertConfig(noise=0.005))
    expert.reset(3)
    a = expert.act(obs)
    expert.reset(3)
    assert np.array_equal(a, expert.act(obs))
    expert.reset(4)
    assert not np.array_equal(a, expert.act(obs))
    assert a.dtype == np.float32 and a.shape == (4,)


def test_clean_labels_record_the_expert_action_while_the_noisy_one_is_executed(make_sim_env):
    """DART-style demonstrations: the states come from noisy execution, the labels are the clean expert."""
    env = make_sim_env("push_cube", image_size=16)
    noisy, clean = (make_expert("push_cube", ExpertConfig(noise=0.01, label=label)) for label in ("executed", "clean"))
    noisy.reset(5)
    executed = record_episode(env, noisy.act, seed=5, max_steps=12)
    clean.reset(5)
    labelled = record_episode(env, clean.act, seed=5, max_steps=12, label=lambda: clean.clean_action)
    # same seeds: the same noisy actions were executed, so the same states were visited ...
    assert np.array_equal(executed.data["observation.state"], labelled.data["observation.state"])
    assert np.array_equal(labelled.data["observation.environment_state"],
                          executed.data["observation.environment_state"])
    # ... but the labels differ from the executed actions by the noise, and are the expert's clean actions
    deltas = labelled.data["action"][:-1, :3] - executed.data["action"][:-1, :3]
    assert 0.003 < np.abs(deltas).mean() < 0.02
    assert np.abs(labelled.data["action"][:-1, :3]).max() <= 0.03 + 1e-6  # the expert's speed limit, no noise
    with pytest.raises(RobodreamError, match="expert.label"):
        ExpertConfig(label="noisy")


def test_a_decoy_expert_pushes_beside_the_cube_all_the_way_to_the_goal(make_sim_env):
    """Play data for world models: with a decoy the arm makes the push to the goal but (mostly) misses the cube."""
    env = make_sim_env("push_cube", image_size=16)
    expert = make_expert("push_cube", ExpertConfig(decoy=0.08))
    arm_to_goal, cube_to_goal, successes = [], [], 0
    for seed in range(3):
        expert.reset(seed)
        result = record_episode(env, expert.act, seed)
        env_state, state = result.data["observation.environment_state"], result.data["observation.state"]
        goal = env_state[0, 7:9]
        arm_to_goal.append(np.linalg.norm(state[:, :2] - goal, axis=1).min())
        cube_to_goal.append(np.linalg.norm(env_state[-1, :2] - goal))
        successes += result.success
    assert successes == 0 and min(cube_to_goal) > 0.05  # the cube is not pushed onto the target ...
    assert max(arm_to_goal) < 0.1  # ... although the pusher travels to it
    expert.reset(7)
    offset = expert.decoy_offset.copy()
    expert.reset(7)
    assert np.array_equal(offset, expert.decoy_offset) and np.abs(offset[:2]).max() > 0  # seeded, per episode


def test_a_dead_reckoning_expert_pushes_the_cube_home_knowing_only_where_it_started(make_sim_env):
    """ExpertConfig.dead_reckon (acting in imagination, issue 19): the expert reads the cube once and then believes
    it slides ahead of the pusher. Fed the start's cube on every step it still succeeds in PyBullet, and what it is
    told about the cube after the first step changes none of its actions."""
    from robodream.features import ENV_STATE

    env = make_sim_env("push_cube", image_size=16)
    successes = 0
    for seed in range(3):
        expert = make_expert("push_cube", ExpertConfig(dead_reckon=True))
        expert.reset(seed)
        start = env.reset(seed=seed)[0][ENV_STATE].copy()
        commanded = []

        def act(obs, expert=expert, start=start, commanded=commanded):
            commanded.append(expert.act({**obs, ENV_STATE: start}))
            return commanded[-1]

        result = record_episode(env, act, seed)
        successes += result.success
        misled = make_expert("push_cube", ExpertConfig(dead_reckon=True))
        misled.reset(seed)
        wrong = start.copy()
        wrong[:2] += 0.1  # a reader that puts the cube 14 cm away after the first step
        actions = [misled.act({"observation.state": s, ENV_STATE: start if t == 0 else wrong})
                   for t, s in enumerate(result.data["observation.state"][: len(commanded)])]
        np.testing.assert_array_equal(np.stack(actions), np.stack(commanded))
    assert successes >= 2
    with pytest.raises(RobodreamError, match="dead_reckon is defined for push_cube only"):
        make_expert("pick_place", ExpertConfig(dead_reckon=True))


def test_expert_bad_input():
    with pytest.raises(RobodreamError, match="no scripted expert for task 'stack'"):
        make_expert("stack", ExpertConfig())
    with pytest.raises(RobodreamError, match="noise"):
        ExpertConfig(noise=-1.0)
    with pytest.raises(RobodreamError, match="decoy"):
        ExpertConfig(decoy=0.5)
