"""Picklable job factories for worker processes: they build the simulator inside the worker.

Kept apart from the pipeline so that a worker process imports only what simulation needs (no zarr,
omegaconf or tqdm), which keeps worker start-up short.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from robodream.robots.rollout import EpisodeRecord, record_episode
from robodream.robots.sim.env import EnvConfig, make_env
from robodream.robots.sim.experts import ExpertConfig, make_expert


@dataclass
class ExpertEpisodes:
    """Called once per worker: builds one env + scripted expert, returns `job(seed) -> EpisodeRecord`."""

    env: EnvConfig
    expert: ExpertConfig

    def __call__(self) -> Callable[[int], EpisodeRecord]:
        env = make_env(self.env)
        expert = make_expert(self.env.task, self.expert)

        def job(seed: int) -> EpisodeRecord:
            expert.reset(seed)
            label = (lambda: expert.clean_action) if self.expert.label == "clean" else None
            return record_episode(env, expert.act, seed, label=label)

        return job
