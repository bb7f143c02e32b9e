"""Shared fixtures for the robot tests: real PyBullet envs, closed after each test."""

from __future__ import annotations

import pytest

from robodream.robots.sim.env import EnvConfig, TaskEnv, make_env


@pytest.fixture
def make_sim_env():
    """A factory for task envs that closes every env it made when the test ends."""
    made: list[TaskEnv] = []

    def factory(task: str = "push_cube", **kwargs) -> TaskEnv:
        env = make_env(EnvConfig(task=task, **kwargs))
        made.append(env)
        return env

    yield factory
    for env in made:
        env.close()
