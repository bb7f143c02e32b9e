"""`Ros2TaskEnv`: a ROS 2 arm (behind its safety layer) as a task env, so deployment runs through the same
evaluation loop as simulation (pipeline/policy/harness.py): ``reset(seed)`` / ``step(action)`` with info["success"].

Timing. ``step`` publishes the command at once (the observation it answers was taken at the end of the
previous step; the policy's inference ran in between), then sleeps until the next tick, one control period
after the previous observation, and takes the next observation. So the loop runs at the robot's fps as long
as the agent answers within ``inference_budget`` (default 20%) of a period. A slower answer stretches that
tick (counted as late): its command still acts for (1 - budget) of a period before the next observation,
because a policy trained in simulation expects every action to act for a whole period — observed sooner,
the action would be overwritten by the next one before it moved the arm. (A diffusion policy pays this once
per action chunk.) `LoopStats` keeps, per tick, the control latency — from taking the observation
to publishing the command, *excluding* the time the agent spent between the two — and the loop period.

Success: the success topic (a sim, a probe), and/or the operator (`mark`: keys in the CLI), which also ends
the episode. Resets: ``robot.reset.mode`` topic (sim-arm reloads the seeded scene), operator (the CLI waits
for the operator, through ``wait_operator``) or none; ``reset.home`` moves the arm home first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from robodream.robots.ros2.arm import RobotConnectionLost, Ros2Arm

SUCCESS_SOURCES = ("topic", "operator", "none")


@dataclass
class LoopStats:
    """Per-tick control latency (s, inference excluded), loop periods (s) and late ticks."""

    period_s: float
    latency: list[float] = field(default_factory=list)
    periods: list[float] = field(default_factory=list)
    late: int = 0

    def summary(self) -> dict:
        lat = np.asarray(self.latency) * 1000
        per = np.asarray(self.periods)
        rate = 1.0 / per.mean() if len(per) else float("nan")
        return {
            "ticks": len(lat),
            "latency_ms": {q: float(np.percentile(lat, int(q[1:]))) if len(lat) else float("nan")
                           for q in ("p50", "p95", "p99")} | {"max": float(lat.max()) if len(lat) else float("nan")},
            "loop_hz": float(rate), "target_hz": 1.0 / self.period_s,
            "rate_error_pc": float(100 * abs(rate * self.period_s - 1)) if len(per) else float("nan"),
            "period_p95_ms": float(np.percentile(per, 95) * 1000) if len(per) else float("nan"),
            "late_ticks": self.late,
        }

    def recent(self, n: int = 50) -> tuple[float, float, float]:
        """(loop Hz, latency p50 ms, latency p95 ms) over the last ``n`` ticks, for the status line."""
        per, lat = self.periods[-n:], np.asarray(self.latency[-n:]) * 1000
        hz = 1.0 / float(np.mean(per)) if per else float("nan")
        if not len(lat):
            return hz, float("nan"), float("nan")
        return hz, float(np.percentile(lat, 50)), float(np.percentile(lat, 95))


class Ros2TaskEnv:
    """A connected `Ros2Arm` with the task-env interface; see the module docstring."""

    def __init__(self, arm: Ros2Arm, task: str, max_steps: int, success: str = "topic",
                 wait_operator: Callable[[str], None] | None = None, on_tick: Callable[[dict], None] | None = None,
                 inference_budget: float = 0.2):
        if success not in SUCCESS_SOURCES:
            raise ValueError(f"success={success!r}")
        self.arm, self.task_name, self.max_steps, self.success_source = arm, task, int(max_steps), success
        self.fps = arm.cfg.fps
        self.period = arm.cfg.period_s
        self.robot_type = arm.robot_type
        self.features = {**arm.observation_features, **arm.action_features}
        self.cameras = {name: {"width": arm.cfg.image_size, "height": arm.cfg.image_size, "topic": cam.topic}
                        for name, cam in arm.cfg.cameras.items()}
        self.wait_operator = wait_operator or (lambda message: None)
        self.on_tick = on_tick
        self.inference_budget = float(inference_budget)  # fraction of a period the agent may take per step
        self.stats = LoopStats(self.period)
        self.operator_mark: bool | None = None  # set by the operator's keys (any thread)
        self.hold_reason: str | None = None
        self._steps = 0
        self._obs_cost = 0.0

    # ---- task-env interface --------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start an episode: hold, reset the scene (sim topic / operator), go home, wait for fresh data."""
        arm, cfg = self.arm, self.arm.cfg
        seed = -1 if seed is None else int(seed)
        if cfg.reset.mode != "topic":
            # a real arm stops while the operator resets the scene; a simulator teleports instead, and a hold
            # sent just before the reset request could be applied after it (another topic: no ordering) and
            # drag the freshly reset arm back to where the last episode ended
            arm.hold()
        if cfg.reset.mode == "topic":
            confirmed = arm.request_reset(seed)
            # messages published before the reset may still be in flight: use only those received after it
            arm.wait_for_data(cfg.reset.timeout_s, after=confirmed + 0.03)
        elif cfg.reset.mode == "operator":
            self.wait_operator(f"reset the scene for episode seed {seed}, then press Enter")
        if cfg.reset.home is not None:
            arm.move_to(np.asarray(cfg.reset.home), cfg.reset.home_time_s)
        if cfg.reset.mode != "topic":
            arm.wait_for_data(cfg.connect_timeout_s, after=time.monotonic())
        self.operator_mark, self._steps = None, 0
        t_obs = time.monotonic()
        obs = self._observe()
        self._last_obs_t, self._deadline = t_obs, t_obs + self.period
        return obs, {"success": self._success(), "seed": seed}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        """Publish the (safety-checked) command now, wait for the next tick, observe."""
        t_call = time.monotonic()
        sent = self.arm.send_action(np.asarray(action))
        t_pub = time.monotonic()
        self.hold_reason = self.arm.last_hold
        latency = self._obs_cost + (t_pub - t_call)
        # the command acts for at least (1 - inference_budget) of a period before the next observation:
        # a policy trained in simulation expects each action to act for a whole period, and one observed too
        # soon would be overwritten by the next before it moved the arm (its displacement lost)
        observe_at = max(self._deadline, t_pub + self.period * (1.0 - self.inference_budget))
        if observe_at > self._deadline + 1e-4:  # inference overran its budget: this tick is stretched
            self.stats.late += 1
        time.sleep(max(0.0, observe_at - time.monotonic()))
        self._deadline = observe_at + self.period
        t_obs = time.monotonic()
        obs = self._observe()
        self._obs_cost = time.monotonic() - t_obs
        self.stats.latency.append(latency)
        self.stats.periods.append(t_obs - self._last_obs_t)
        self._last_obs_t = t_obs
        self._steps += 1
        success = self._success()
        terminated = success or self.operator_mark is False
        truncated = not terminated and self._steps >= self.max_steps
        info = {"success": success, "action": sent, "steps": self._steps, "hold": self.hold_reason}
        if self.on_tick is not None:
            self.on_tick(self._tick_record(latency, t_obs, sent))
        return obs, float(success), terminated, truncated, info

    def close(self) -> None:
        self.arm.disconnect()

    # ---- helpers -------------------------------------------------------------------------------------------
    def _observe(self) -> dict:
        ages = self.arm.ages()
        if ages["joint_states"] > self.arm.cfg.safety.disconnect_timeout_s:
            raise RobotConnectionLost(
                f"lost the robot: no joint states on {self.arm.cfg.joint_states.topic} for "
                f"{ages['joint_states']:.1f} s (> safety.disconnect_timeout_s="
                f"{self.arm.cfg.safety.disconnect_timeout_s:g}); the arm was told to hold. Is the driver "
                "(or sim-arm) still running?")
        self.arm.safety.watchdog.check(ages)  # keep the watchdog state current for the status line
        return self.arm.get_observation()

    def _success(self) -> bool:
        if self.operator_mark is not None:
            return bool(self.operator_mark)
        if self.success_source == "topic" and self.arm.success.value is not None:
            return bool(self.arm.success.value)
        return False

    def _tick_record(self, latency: float, t_obs: float, sent: np.ndarray) -> dict:
        s = self.arm.safety
        _, stamp, _ = self.arm.state.snapshot
        return {"t": round(t_obs, 4), "step": self._steps, "latency_ms": round(latency * 1000, 3),
                "state_stamp": stamp, "state_age_ms": round(self.arm.state.age() * 1000, 1),
                "hold": self.hold_reason, "estop": s.estop.latched, "clamps": s.clamps,
                "action": [round(float(v), 5) for v in sent]}
