"""Planning in imagination: model-predictive control by the cross-entropy method (CEM), behind the harness.

    robodream eval policy=planner planner=cem planner.wm=runs/wm planner.probe=runs/probe task=push_cube
    robodream eval policy=planner planner=cem planner.dynamics=sim task=push_cube      # the oracle planner

Every `execute` control steps the agent plans: it samples `samples` action sequences of `horizon` steps from a
Gaussian, rolls all of them out at once in its dynamics, keeps the `elites` cheapest, refits the Gaussian to
them and repeats `iterations` times; then it executes the first `execute` actions of the cheapest sequence
seen and plans again, warm-started from the rest of the previous plan (the mean shifted by what was executed).
The dynamics are either the world model (`dynamics=world_model`: K imagined rollouts per forward through
`WorldModelEnv`, the cube read from imagined frames by the probe, the end effector from the imagined state)
or PyBullet itself (`dynamics=sim`: the oracle; a mirror of the task env restored from a saved state for each
sequence, the cost from the true state), so the two differ in their model alone (planning_models.py).

The cost of push_cube (`push_cost`): per imagined step, the cube's distance to the goal plus a shaping term
that brings the pusher to the point behind the cube on the cube -> goal line (at travel height while it is
far from that point, so it does not sweep the cube away on the way, then at pushing height); a step on which
the cube is within the target radius costs nothing more. The goal is read from the first observation's
environment_state, as evaluation in imagination does (a deployed robot is given its target).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.features import ENV_STATE
from robodream.pipeline.policy.imagination import GOAL

PLANNER = "planner"
DYNAMICS = ("world_model", "sim")


@dataclass
class PushCostConfig:
    """push_cube's cost per imagined step (metres)."""

    goal_weight: float = 2.0  # x the cube's xy distance to the goal
    reach_weight: float = 1.0  # x the pusher's distance to the point behind the cube
    behind: float = 0.06  # that point: this far behind the cube centre, on the cube -> goal line
    push_z: float = 0.025  # pushing height of the end effector
    travel_z: float = 0.085  # height while moving to that point from further than `near`
    near: float = 0.02
    target_radius: float = 0.035  # the task's success radius: within it a step costs nothing


@dataclass
class PlannerConfig:
    """A sampling-based MPC agent; `dynamics` picks the world model or the PyBullet oracle."""

    dynamics: str = "world_model"  # or "sim": PyBullet as the model (the oracle planner)
    samples: int = 32  # K action sequences per iteration
    horizon: int = 8  # H control steps per sequence
    iterations: int = 3  # CEM refinements per plan
    elites: int = 6  # sequences the Gaussian is refitted to
    execute: int = 2  # actions executed before planning again
    init_std: float = 0.5  # initial standard deviation, in units of the arm's max step
    min_std: float = 0.05
    max_delta: float = 0.04  # the arm's largest end-effector step (m), ArmConfig.max_delta
    gripper: float = 1.0  # the gripper command held throughout (push: closed)
    seed: int = 0  # the sampler's seed (episode seed added)
    cost: PushCostConfig = field(default_factory=PushCostConfig)
    wm: str | None = runtime(None)  # world-model run directory (train-wm out=) or its model/ export
    probe: str | None = runtime(None)  # probe directory (train-probe out=)
    num_sampling_steps: int | None = None  # override the world model's denoising steps while planning
    threads: int = runtime(1)  # torch threads per evaluation worker

    def __post_init__(self) -> None:
        if self.dynamics not in DYNAMICS:
            raise RobodreamError(f"planner.dynamics={self.dynamics!r}: choose one of {', '.join(DYNAMICS)}")
        if min(self.samples, self.horizon, self.iterations, self.elites, self.execute) < 1:
            raise RobodreamError("planner.samples, horizon, iterations, elites and execute must all be >= 1")
        if self.elites > self.samples:
            raise RobodreamError(f"planner.elites={self.elites} > planner.samples={self.samples}")
        if self.execute > self.horizon:
            raise RobodreamError(f"planner.execute={self.execute} > planner.horizon={self.horizon}: it can "
                                 "only execute actions it planned")
        if not 0 < self.min_std <= self.init_std:
            raise RobodreamError("planner needs 0 < min_std <= init_std")

    def require_models(self) -> None:
        """One clear error when the world-model planner is asked for without its models."""
        missing = [name for name in ("wm", "probe") if getattr(self, name) is None]
        if self.dynamics == "world_model" and missing:
            raise RobodreamError(f"policy=planner with planner.dynamics=world_model needs "
                                 f"{' and '.join(f'planner.{m}=<dir>' for m in missing)} (a train-wm run and a "
                                 "train-probe run), or planner.dynamics=sim for the oracle")


def push_cost(ee: np.ndarray, cube: np.ndarray, goal: np.ndarray, cfg: PushCostConfig) -> np.ndarray:
    """Summed cost of K rollouts: ee and cube are (K, H, 3) positions after each step, goal (3,)."""
    to_goal = goal[None, None, :2] - cube[..., :2]
    dist = np.linalg.norm(to_goal, axis=-1)
    u = to_goal / np.maximum(dist, 1e-6)[..., None]
    pre = cube[..., :2] - cfg.behind * u
    flat = np.linalg.norm(ee[..., :2] - pre, axis=-1)
    height = np.where(flat > cfg.near, cfg.travel_z, cfg.push_z)
    reach = np.sqrt(flat**2 + (ee[..., 2] - height) ** 2)
    step = cfg.goal_weight * dist + cfg.reach_weight * reach
    solved = np.cumsum(dist <= cfg.target_radius, axis=1) > 0  # from the first step on target onwards
    return np.where(solved, 0.0, step).sum(axis=1)


@dataclass
class PlanStats:
    """What planning cost so far (an agent's whole life, across episodes)."""

    plans: int = 0
    rollouts: int = 0  # sequences rolled out (samples x iterations per plan)
    steps: int = 0  # model steps: rollouts x horizon
    seconds: float = 0.0
    first_costs: list[float] = field(default_factory=list)  # best cost after the first iteration, per plan
    final_costs: list[float] = field(default_factory=list)  # best cost after the last iteration, per plan


class CEMPlanner:
    """The optimiser alone: plan(rollout_cost) -> the cheapest sequence found; keeps the warm start."""

    def __init__(self, cfg: PlannerConfig, action_dim: int = 4):
        self.cfg = cfg
        self.action_dim = action_dim
        self.stats = PlanStats()
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(self.cfg.seed + (seed or 0))
        self.mean = np.zeros((self.cfg.horizon, 3))

    def actions(self, unit: np.ndarray) -> np.ndarray:
        """(K, H, 3) sequences in units of max_delta -> (K, H, action_dim) float32 actions."""
        out = np.empty((*unit.shape[:2], self.action_dim), np.float32)
        out[..., :3] = unit * self.cfg.max_delta
        out[..., 3:] = self.cfg.gripper
        return out

    def plan(self, rollout_cost) -> np.ndarray:
        """Run CEM with `rollout_cost((K, H, A) actions) -> (K,) costs`; returns the best (H, A) sequence and
        shifts the warm start by `execute` steps."""
        cfg, started = self.cfg, time.perf_counter()
        mean, std = self.mean.copy(), np.full((cfg.horizon, 3), cfg.init_std)
        best, best_cost = mean.copy(), np.inf
        for iteration in range(cfg.iterations):
            unit = np.clip(mean + std * self.rng.standard_normal((cfg.samples, cfg.horizon, 3)), -1.0, 1.0)
            unit[0] = np.clip(mean, -1.0, 1.0)  # the warm start itself competes too
            costs = np.asarray(rollout_cost(self.actions(unit)), dtype=np.float64)
            order = np.argsort(costs)
            if costs[order[0]] < best_cost:
                best, best_cost = unit[order[0]].copy(), float(costs[order[0]])
            elite = unit[order[: cfg.elites]]
            mean, std = elite.mean(axis=0), np.maximum(elite.std(axis=0), cfg.min_std)
            if iteration == 0:
                self.stats.first_costs.append(best_cost)
        self.stats.final_costs.append(best_cost)
        self.mean = np.concatenate([best[cfg.execute:], np.zeros((cfg.execute, 3))])
        s = self.stats
        s.plans, s.rollouts = s.plans + 1, s.rollouts + cfg.samples * cfg.iterations
        s.steps += cfg.samples * cfg.iterations * cfg.horizon
        s.seconds += time.perf_counter() - started
        return self.actions(best[None])[0]


class PlannerAgent:
    """The harness's Agent: plans with `dynamics` (planning_models.py), executes, plans again."""

    def __init__(self, cfg: PlannerConfig, dynamics):
        self.cfg = cfg
        self.dynamics = dynamics
        self.cem = CEMPlanner(cfg, dynamics.action_dim)
        self.queue: list[np.ndarray] = []
        self.goal: np.ndarray | None = None
        self.imagined: list[np.ndarray] = []  # per executed step, the frame the model predicted for it
        self._best: tuple[float, np.ndarray | None] = (np.inf, None)
        self._since = (0, 0, 0.0, 0)

    @property
    def stats(self) -> PlanStats:
        return self.cem.stats

    def reset(self, seed: int | None = None) -> None:
        self.cem.reset(seed)
        self.dynamics.reset(seed)
        self.queue, self.goal, self.imagined = [], None, []
        s = self.stats
        self._since = (s.plans, s.steps, s.seconds, len(s.final_costs))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self.goal is None:
            if ENV_STATE not in obs:
                raise RobodreamError(f"the planner reads the goal from {ENV_STATE}, which this env does not give")
            self.goal = np.asarray(obs[ENV_STATE][GOAL], np.float64)
        self.dynamics.observe(obs)
        if not self.queue:
            self._best = (np.inf, None)
            plan = self.cem.plan(self._cost)
            self.queue = list(plan[: self.cfg.execute])
            if self._best[1] is not None:
                self.imagined += list(self._best[1][: self.cfg.execute])
        action = self.queue.pop(0)
        self.dynamics.executed(action)
        return action

    def _cost(self, actions: np.ndarray) -> np.ndarray:
        ee, cube, frames = self.dynamics.rollout(actions)
        costs = push_cost(ee, cube, self.goal, self.cfg.cost)
        best = int(np.argmin(costs))
        if frames is not None and costs[best] < self._best[0]:
            self._best = (float(costs[best]), frames[best])
        return costs

    def episode_report(self, with_frames: bool = False) -> dict:
        """The planning figures of the episode since reset (and, with frames, what the model imagined)."""
        s, (plans, steps, seconds, first) = self.stats, self._since
        report: dict = {"planning": {
            "plans": s.plans - plans, "model_steps": s.steps - steps, "plan_s": s.seconds - seconds,
            "cost_first_iteration": float(np.mean(s.first_costs[first:])) if s.plans > plans else None,
            "cost_last_iteration": float(np.mean(s.final_costs[first:])) if s.plans > plans else None}}
        if with_frames and self.imagined:
            report["imagined_frames"] = np.stack(self.imagined)
        return report

    def close(self) -> None:
        self.dynamics.close()


def make_planner(cfg: PlannerConfig, env_cfg) -> PlannerAgent:
    """A planner agent (picklable entry point for evaluation workers: partial(make_planner, cfg, env_cfg))."""
    from robodream.pipeline.policy.planning_models import SimDynamics, WorldModelDynamics

    if cfg.dynamics == "sim":
        return PlannerAgent(cfg, SimDynamics(env_cfg))
    cfg.require_models()
    return PlannerAgent(cfg, WorldModelDynamics(cfg, env_cfg))
