"""The evaluation harness: one loop for every task env and every agent (design.md §3).

Any env with the gymnasium-style task interface plugs in — the PyBullet task env, the world model's
imagination, the ROS 2 arm:

    env.reset(seed=...) -> (obs, info)
    env.step(action)    -> (obs, reward, terminated, truncated, info)   with info["success"]

and any agent with ``reset(seed)`` and ``act(obs) -> action``: a `PolicyRunner` (policies/runner.py) or a
scripted expert. This module imports no simulator and no model; parallel evaluation hands picklable
factories (``make_env()``, ``make_agent()``) to `WorkerPool`, which builds them inside each worker process.

Output follows LeRobot's eval_info.json: per_episode [episode_ix, sum_reward, max_reward, success, seed]
and aggregated {avg_sum_reward, avg_max_reward, pc_success, eval_s, eval_ep_s}.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from robodream.pipeline.runtime.workers import make_pool
from robodream.stats import wilson_interval


class Agent(Protocol):
    """What the harness drives: a policy runner, a scripted expert, a teleoperator."""

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...


@dataclass
class EpisodeResult:
    """The outcome of one evaluation episode (frames only when a video was asked for)."""

    seed: int
    sum_reward: float
    max_reward: float
    success: bool
    steps: int
    frames: np.ndarray | None = None
    #: what the agent reports about the episode (`agent.episode_report(with_frames)`, when it has one): the
    #: planner's cost figures, and with frames what it imagined for each executed step
    extra: dict | None = None


def run_episode(env, agent: Agent, seed: int, max_steps: int | None = None,
                video_key: str | None = None) -> EpisodeResult:
    """Run `agent` in `env` from ``env.reset(seed=seed)`` until terminated or truncated (or `max_steps`).

    Success is LeRobot's: the env reported info["success"] at any step (so rates compare with LeRobot's; recording,
    robots/rollout.py, labels an episode by its last step instead, and says why). With `video_key`, the frames of that
    observation key (initial one included) come back in `frames`.
    """
    obs, info = env.reset(seed=seed)
    agent.reset(seed)
    frames = [np.asarray(obs[video_key])] if video_key else None
    rewards: list[float] = []
    success = bool(info.get("success", False))
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs))
        rewards.append(float(reward))
        success = success or bool(info.get("success", False))
        steps += 1
        if frames is not None:
            frames.append(np.asarray(obs[video_key]))
        done = terminated or truncated or (max_steps is not None and steps >= max_steps)
    report = getattr(agent, "episode_report", None)
    return EpisodeResult(seed=int(seed), sum_reward=float(np.sum(rewards)), max_reward=float(max(rewards, default=0.0)),
                         success=success, steps=steps, frames=np.stack(frames) if frames is not None else None,
                         extra=report(frames is not None) if report is not None else None)


@dataclass
class EvalJobs:
    """Job factory for `WorkerPool`: called once per worker, it builds the env; the job for index i runs
    episode ``i % len(seeds)`` of agent ``i // len(seeds)`` (several agents = a checkpoint sweep; each worker
    builds an agent when it first needs it and drops the previous one)."""

    make_env: Callable[[], Any]
    make_agents: Sequence[Callable[[], Agent]]
    seeds: Sequence[int]
    video_episodes: int = 0  # return frames for the first N episodes of each agent
    video_key: str | None = None
    max_steps: int | None = None
    every_video: bool = False  # return frames for every episode (the caller keeps the ones it wants)

    def __call__(self) -> Callable[[int], EpisodeResult]:
        env = self.make_env()
        loaded: dict[int, Agent] = {}

        def job(index: int) -> EpisodeResult:
            agent_ix, episode_ix = divmod(index, len(self.seeds))
            if agent_ix not in loaded:
                loaded.clear()
                loaded[agent_ix] = self.make_agents[agent_ix]()
            video = self.video_key if episode_ix < self.video_episodes or self.every_video else None
            return run_episode(env, loaded[agent_ix], self.seeds[episode_ix], self.max_steps, video)

        return job


def evaluate(make_env: Callable[[], Any], make_agents: Sequence[Callable[[], Agent]], seeds: Sequence[int],
             workers: int = 0, video_episodes: int = 0, video_key: str | None = None, max_steps: int | None = None,
             should_stop: Callable[[], bool] = lambda: False,
             every_video: bool = False,
             done: Collection[tuple[int, int]] = ()) -> Iterator[tuple[int, int, EpisodeResult]]:
    """Yield (agent_ix, episode_ix, result) for every agent on every seed, in order, from `workers`
    processes (0 = this process), except the (agent_ix, episode_ix) pairs in `done` (finished by an earlier,
    interrupted sitting). The factories must be picklable when workers > 0. Frames of `video_key` come back for
    the first `video_episodes` episodes of each agent, or for all of them with `every_video`."""
    jobs = EvalJobs(make_env, list(make_agents), list(seeds), video_episodes, video_key, max_steps, every_video)
    skip = set(done)
    todo = [i for i in range(len(make_agents) * len(seeds)) if divmod(i, len(seeds)) not in skip]
    with make_pool(workers, jobs) as pool:
        for index, result in pool.imap(todo, should_stop=should_stop):
            agent_ix, episode_ix = divmod(index, len(seeds))
            yield agent_ix, episode_ix, result


def eval_info(results: Sequence[EpisodeResult], eval_s: float, video_paths: Sequence[str] = (),
              info: dict | None = None) -> dict[str, Any]:
    """LeRobot-shaped evaluation record (plus `info`: what was evaluated, on what), with the 95% Wilson interval of
    the success rate (`pc_success_ci95`, in percent)."""
    n = len(results)
    wins = sum(bool(r.success) for r in results)
    record: dict[str, Any] = {
        "per_episode": [
            {"episode_ix": i, "sum_reward": r.sum_reward, "max_reward": r.max_reward, "success": r.success,
             "seed": r.seed, **{k: v for k, v in (r.extra or {}).items() if not isinstance(v, np.ndarray)}}
            for i, r in enumerate(results)
        ],
        "aggregated": {
            "avg_sum_reward": float(np.mean([r.sum_reward for r in results])) if n else float("nan"),
            "avg_max_reward": float(np.mean([r.max_reward for r in results])) if n else float("nan"),
            "pc_success": 100.0 * float(np.mean([r.success for r in results])) if n else float("nan"),
            "pc_success_ci95": [100.0 * bound for bound in wilson_interval(wins, n)],
            "eval_s": float(eval_s),
            "eval_ep_s": float(eval_s) / n if n else float("nan"),
        },
        "video_paths": list(video_paths),
    }
    planning = [r.extra["planning"] for r in results if r.extra and "planning" in r.extra]
    if planning:
        record["aggregated"]["planning"] = planning_totals(planning)
    if info:
        record["info"] = info
    return record


def planning_totals(per_episode: Sequence[dict]) -> dict[str, float]:
    """A planner's cost over episodes: plans/s and model steps (imagined frames, or simulated steps) per second
    of planning."""
    plans = sum(e["plans"] for e in per_episode)
    steps = sum(e["model_steps"] for e in per_episode)
    seconds = sum(e["plan_s"] for e in per_episode)
    return {"plans": plans, "model_steps": steps, "plan_s": seconds, "plans_per_s": plans / max(seconds, 1e-9),
            "model_steps_per_s": steps / max(seconds, 1e-9)}
