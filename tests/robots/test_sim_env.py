"""The PyBullet task env: interface, determinism, randomisation, bad input (real PyBullet, no mocks)."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pybullet as p
import pytest

from robodream.errors import RobodreamError
from robodream.features import ACTION, ENV_STATE, STATE, image_keys
from robodream.robots.sim.env import EnvConfig, RandomizationConfig, make_env

FRONT = "observation.images.front"
TASKS = ["push_cube", "pick_place"]
ALL_RANDOM = {"object_color": True, "light": True, "camera_jitter": True}


def trace(task: str, seed: int, steps: int = 12, randomization: dict | None = None, env=None) -> dict:
    """Images, states and env states of a short episode driven by seeded random actions. Module-level so a
    spawned subprocess can run it."""
    own = env is None
    if own:
        env = make_env(EnvConfig(task=task, randomization=RandomizationConfig(**(randomization or {}))))
    try:
        rng = np.random.default_rng(1000 + seed)
        obs, _ = env.reset(seed=seed)
        frames = [obs]
        for _ in range(steps):
            action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
            obs, *_ = env.step(action)
            frames.append(obs)
        return {k: np.stack([f[k] for f in frames]) for k in frames[0]}
    finally:
        if own:
            env.close()


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype
        assert np.array_equal(a[k], b[k]), f"{k} differs"


# ---- interface -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_observation_action_and_features(make_sim_env, task):
    env = make_sim_env(task)
    obs, info = env.reset(seed=0)
    assert set(obs) == set(env.features) - {ACTION}
    assert image_keys(env.features) == [FRONT]
    assert obs[FRONT].shape == (64, 64, 3) and obs[FRONT].dtype == np.uint8
    assert obs[STATE].shape == (11,) and obs[STATE].dtype == np.float32
    assert obs[ENV_STATE].shape == (10,) and obs[ENV_STATE].dtype == np.float32
    for key, feat in env.features.items():
        assert np.dtype(feat["dtype"]).name == feat["dtype"]
        if key != ACTION:
            assert list(obs[key].shape) == feat["shape"], key
            assert str(obs[key].dtype) == feat["dtype"], key
    assert env.features[STATE]["names"][:4] == ["ee_x", "ee_y", "ee_z", "gripper_opening_m"]
    assert env.features[STATE]["names"][4:] == [f"q{i}" for i in range(1, 8)]
    assert env.features[ENV_STATE]["names"][-3:] == ["goal_x", "goal_y", "goal_z"]
    assert env.features[ACTION] == {"dtype": "float32", "shape": [4], "names": ["ee_dx", "ee_dy", "ee_dz", "gripper"]}
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (4,) and env.action_space.dtype == np.float32
    assert env.action_space.low[3] == 0 and env.action_space.high[3] == 1
    assert 0.03 <= env.action_space.high[0] <= 0.05
    assert env.fps == 10 and env.robot_type == "panda_sim" and env.task_name == task
    assert info["seed"] == 0 and info["success"] is False

    obs, reward, terminated, truncated, info = env.step(np.zeros(4, np.float32))
    assert env.observation_space.contains(obs)
    assert isinstance(reward, float) and reward in (0.0, 1.0)
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    assert isinstance(info["success"], bool)
    assert info["action"].dtype == np.float32 and info["action"].shape == (4,)


@pytest.mark.filterwarnings("ignore:.*Box observation space m..imum value is .*infinity")  # unbounded states
def test_passes_the_gymnasium_env_checker(make_sim_env):
    from gymnasium.utils.env_checker import check_env

    check_env(make_sim_env("pick_place", image_size=16), skip_render_check=True)


def test_cameras_are_json_serialisable(make_sim_env):
    env = make_sim_env("pick_place", image_size=32)
    cams = json.loads(json.dumps(env.cameras))
    front = cams["front"]
    assert (front["width"], front["height"]) == (32, 32)
    assert len(front["view"]) == 16 and len(front["projection"]) == 16
    assert 10 < front["fov"] < 120
    assert env.reset(seed=0)[0][FRONT].shape == (32, 32, 3)


def test_goal_and_cube_start_on_the_table(make_sim_env):
    env = make_sim_env("push_cube")
    state = env.reset(seed=3)[0][ENV_STATE]
    assert state[2] == pytest.approx(0.025, abs=2e-3)  # 5 cm cube resting on the table top (z = 0)
    assert np.linalg.norm(state[3:7]) == pytest.approx(1.0, abs=1e-5)
    assert state[9] == pytest.approx(0.0, abs=1e-6)


# ---- determinism ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_episode_fresh_and_after_other_episodes(make_sim_env, task):
    first = trace(task, seed=7)
    env = make_sim_env(task)
    trace(task, seed=8, env=env)  # a different episode first
    assert_identical(first, trace(task, seed=7, env=env))
    assert_identical(first, trace(task, seed=7))  # a brand-new env (and PyBullet client)


@pytest.mark.parametrize("task", TASKS)
def test_without_camera_the_episode_is_the_same_and_the_camera_comes_back(make_sim_env, task):
    """Replays that need only the outcome step without rendering: the physics must not notice."""
    with_camera = trace(task, seed=3, steps=20)
    env = make_sim_env(task)
    with env.without_camera():
        blind = trace(task, seed=3, steps=20, env=env)
    assert FRONT not in blind
    assert_identical({k: with_camera[k] for k in blind}, blind)  # state and environment state, bit for bit
    assert_identical(with_camera, trace(task, seed=3, steps=20, env=env))  # frames again after the block


def test_envs_in_one_process_do_not_interfere(make_sim_env):
    solo = trace("pick_place", seed=2, steps=6)
    a, b = make_sim_env("pick_place"), make_sim_env("push_cube")
    rng = np.random.default_rng(1002)
    frames = [a.reset(seed=2)[0]]
    b.reset(seed=5)
    for _ in range(6):
        action = rng.uniform(a.action_space.low, a.action_space.high).astype(np.float32)
        frames.append(a.step(action)[0])
        b.step(np.array([0.04, 0.04, -0.04, 1.0], np.float32))  # interleaved steps in another client
    assert_identical(solo, {k: np.stack([f[k] for f in frames]) for k in frames[0]})


def test_same_seed_same_episode_in_a_spawned_process():
    here = trace("pick_place", seed=11, randomization=ALL_RANDOM)
    with mp.get_context("spawn").Pool(1) as pool:
        there = pool.apply(trace, ("pick_place", 11), {"randomization": ALL_RANDOM})
    assert_identical(here, there)


def test_different_seeds_give_different_initial_states(make_sim_env):
    env = make_sim_env("push_cube")
    starts = [env.reset(seed=s)[0] for s in range(5)]
    states = np.stack([o[ENV_STATE] for o in starts])
    assert len({tuple(s) for s in states[:, :2].round(4)}) == 5  # cube xy
    assert len({tuple(s) for s in states[:, 7:9].round(4)}) == 5  # target xy
    assert not np.array_equal(starts[0][FRONT], starts[1][FRONT])
    # the robot always starts at home
    assert np.allclose(np.stack([o[STATE] for o in starts]), starts[0][STATE], atol=1e-6)


def test_reset_without_seed_reports_a_replayable_seed(make_sim_env):
    env = make_sim_env("push_cube")
    obs, info = env.reset()
    again, _ = env.reset(seed=info["seed"])
    assert np.array_equal(obs[FRONT], again[FRONT])


# ---- randomisation -------------------------------------------------------------------------------------------
def _colors(env) -> tuple:
    c = env.scene.client
    target = env.task.target if env.task_name == "push_cube" else env.task.tray
    return tuple(p.getVisualShapeData(b, physicsClientId=c)[0][7] for b in (env.task.cube, target))


def test_colours_fixed_by_default_and_randomised_when_asked(make_sim_env):
    plain = make_sim_env("push_cube")
    fixed = [(plain.reset(seed=s), _colors(plain))[1] for s in range(3)]
    assert fixed[0] == fixed[1] == fixed[2]
    rand = make_sim_env("push_cube", randomization=RandomizationConfig(object_color=True))
    varied = [(rand.reset(seed=s), _colors(rand))[1] for s in range(3)]
    assert len(set(varied)) == 3


@pytest.mark.parametrize("option", ["object_color", "light", "camera_jitter"])
def test_each_randomisation_changes_the_image_not_the_state(make_sim_env, option):
    plain = make_sim_env("pick_place").reset(seed=4)[0]
    cfg = RandomizationConfig(**{option: True})
    env = make_sim_env("pick_place", randomization=cfg)
    obs, info = env.reset(seed=4)
    assert not np.array_equal(obs[FRONT], plain[FRONT])
    # randomisation draws from its own stream: the physical episode is unchanged
    assert np.array_equal(obs[ENV_STATE], plain[ENV_STATE])
    assert np.array_equal(obs[STATE], plain[STATE])
    if option == "camera_jitter":
        assert info["cameras"]["front"]["view"] != env.cameras["front"]["view"]


# ---- episode limits and bad input ----------------------------------------------------------------------------
def test_truncated_at_max_steps(make_sim_env):
    env = make_sim_env("push_cube", max_steps=3)
    env.reset(seed=0)
    flags = [env.step(np.zeros(4, np.float32))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    assert make_sim_env("pick_place").max_steps == 100 and make_sim_env("push_cube").max_steps == 80


def test_unknown_task_is_a_clear_error():
    with pytest.raises(RobodreamError, match="unknown task 'x': choose one of push_cube, pick_place"):
        EnvConfig(task="x")


@pytest.mark.parametrize(
    "kwargs, match",
    [({"image_size": 8}, "image_size"), ({"image_size": 1024}, "image_size"), ({"max_steps": 0}, "max_steps")],
)
def test_bad_config_values(kwargs, match):
    with pytest.raises(RobodreamError, match=match):
        EnvConfig(**kwargs)


def test_randomization_from_a_plain_mapping():
    cfg = EnvConfig(randomization={"light": True})
    assert cfg.randomization.light and not cfg.randomization.object_color


def test_step_before_reset_and_reset_after_close(make_sim_env):
    env = make_sim_env()
    with pytest.raises(RobodreamError, match="before reset"):
        env.step(np.zeros(4, np.float32))
    env.close()
    with pytest.raises(RobodreamError, match="closed"):
        env.reset(seed=0)


@pytest.mark.parametrize("bad", [[0.0, np.nan, 0.0, 0.0], [0.0, 0.0, np.inf, 1.0]])
def test_non_finite_action(make_sim_env, bad):
    env = make_sim_env()
    env.reset(seed=0)
    with pytest.raises(RobodreamError, match=r"action .*NaN or inf"):
        env.step(np.array(bad, np.float32))


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros(5), np.zeros((2, 4))])
def test_wrong_action_shape(make_sim_env, bad):
    env = make_sim_env()
    env.reset(seed=0)
    with pytest.raises(RobodreamError, match=r"action has shape .*expected \(4,\)"):
        env.step(bad)
