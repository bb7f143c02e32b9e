"""The safety layer between every policy and every robot (the ROS 2 arm, the PyBullet arm).

A policy's action ``[ee_dx, ee_dy, ee_dz, gripper]`` passes through, in order:

1. **finite check** — NaN/inf anywhere: the whole action becomes a hold (zero motion);
2. **end-effector step** — each axis clipped to ``max_ee_step`` metres per control step;
3. **workspace box** — the end-effector target ``ee + delta`` clipped into ``workspace_low/high`` (an arm
   that contact pushed outside the box comes back at most ``max_ee_step`` per step);
4. then IK turns the target into joint targets, and those pass through:
5. **joint position limits** — the URDF's limits, ``joint_limit_margin`` inside them;
6. **max change per step** — ``max_joint_step`` rad from the measured position, like LeRobot's
   ``max_relative_target``;
7. **joint velocity limits** — the URDF velocity limits x ``velocity_scale`` x the control period;
8. **FK check** (`ee_allowed`, where FK is available) — the end effector the joint targets really lead to
   must satisfy 2-3 too (IK can miss near the workspace edges); otherwise the move is shortened.

Steps 6 and 7 scale the whole joint move down uniformly (rather than clipping each joint) so the end
effector keeps its direction and only slows down. Besides clamping actions, the layer owns a latched e-stop
(`EStop`: tripped by a topic, a key or a fault; cleared only by an explicit reset) and a `Watchdog` on the age
of the joint states and camera frames. Every clamp and trip is counted in `SafetyLayer.counts` and reported.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from robodream.errors import RobodreamError


@dataclass
class SafetyConfig:
    """Limits between the policy and the robot (base frame, metres / radians, per control step)."""

    workspace_low: list[float] = field(default_factory=lambda: [0.25, -0.35, 0.012])
    workspace_high: list[float] = field(default_factory=lambda: [0.80, 0.35, 0.40])
    max_ee_step: float = 0.04  # m per control step on each axis (0.4 m/s at 10 Hz)
    max_joint_step: float = 0.3  # rad per control step from the measured position (max_relative_target)
    velocity_scale: float = 1.0  # fraction of the URDF joint velocity limits allowed
    joint_limit_margin: float = 0.01  # rad kept inside the URDF position limits
    state_timeout_s: float = 0.1  # hold when the newest joint state is older than this
    image_timeout_s: float = 0.3  # hold when the newest camera frame is older than this
    disconnect_timeout_s: float = 2.0  # give up (stop the deployment) after this long without joint states
    check_stamps: bool = True  # also judge age by header.stamp (needs synchronised clocks on a real arm)

    def __post_init__(self) -> None:
        low, high = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        if low.shape != (3,) or high.shape != (3,) or np.any(low >= high):
            raise RobodreamError("safety.workspace_low/high must be 3 values each, low < high on every axis")
        if not 0 < self.max_ee_step <= 0.2:
            raise RobodreamError(f"safety.max_ee_step={self.max_ee_step}: choose a value in (0, 0.2] m per step")
        if not 0 < self.max_joint_step <= 1.0:
            raise RobodreamError(f"safety.max_joint_step={self.max_joint_step}: choose a value in (0, 1] rad per step")
        if not 0 < self.velocity_scale <= 1.0:
            raise RobodreamError(f"safety.velocity_scale={self.velocity_scale}: choose a fraction in (0, 1]")
        if self.joint_limit_margin < 0:
            raise RobodreamError("safety.joint_limit_margin must be >= 0")
        if not 0 < self.state_timeout_s < self.disconnect_timeout_s:
            raise RobodreamError("safety.state_timeout_s must be > 0 and below safety.disconnect_timeout_s")
        if self.image_timeout_s <= 0:
            raise RobodreamError("safety.image_timeout_s must be > 0")


class EStop:
    """A latched emergency stop. `trip` from any thread; only `reset` clears it (a "false" on the e-stop
    topic does not), so a flickering button or a restarted publisher can never release the arm."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latched = False
        self.reason = ""
        self.trips = 0
        self.tripped_at: float | None = None

    def trip(self, reason: str) -> None:
        with self._lock:
            if not self.latched:
                self.latched, self.reason, self.tripped_at = True, reason, time.monotonic()
                self.trips += 1

    def reset(self) -> bool:
        """Clear the latch; True if it was latched."""
        with self._lock:
            was, self.latched, self.reason = self.latched, False, ""
            return was


class Watchdog:
    """Holds the arm when a stream is older than its limit; counts trips (ok -> stale transitions)."""

    def __init__(self, limits: dict[str, float]):
        self.limits = dict(limits)
        self.stale: list[str] = []
        self.trips = 0

    def check(self, ages: dict[str, float]) -> list[str]:
        """Update with the current ages (s) of the streams; returns the stale ones (empty = all fresh)."""
        stale = [f"{name} {ages[name]:.2f} s old" for name, limit in self.limits.items()
                 if name in ages and not ages[name] <= limit]  # `not <=` also catches NaN / never received
        if stale and not self.stale:
            self.trips += 1
        self.stale = stale
        return stale

    @property
    def state(self) -> str:
        return "ok" if not self.stale else "HOLD (" + ", ".join(self.stale) + ")"


class SafetyLayer:
    """Clamps actions and joint targets, and owns the e-stop and the watchdog; see the module docstring.

    ``joint_lower/upper/velocity`` come from the URDF (`Kinematics.limits`); without them only the
    end-effector checks apply (e.g. for an arm whose IK runs elsewhere).
    """

    def __init__(self, cfg: SafetyConfig, period_s: float, joint_lower: np.ndarray | None = None,
                 joint_upper: np.ndarray | None = None, joint_velocity: np.ndarray | None = None,
                 streams: dict[str, float] | None = None):
        self.cfg = cfg
        self.period_s = float(period_s)
        self.low = np.asarray(cfg.workspace_low, dtype=np.float64)
        self.high = np.asarray(cfg.workspace_high, dtype=np.float64)
        self.q_low = None if joint_lower is None else np.asarray(joint_lower, float) + cfg.joint_limit_margin
        self.q_high = None if joint_upper is None else np.asarray(joint_upper, float) - cfg.joint_limit_margin
        self.q_step = None
        if joint_velocity is not None:
            velocity_step = np.asarray(joint_velocity, float) * cfg.velocity_scale * self.period_s
            self.q_step = np.minimum(velocity_step, cfg.max_joint_step)
            self._velocity_bound = velocity_step < cfg.max_joint_step  # which limit binds, for the counters
        self.counts: Counter[str] = Counter()
        self.estop = EStop()
        self.watchdog = Watchdog(streams or {})
        self.hold_ticks = 0  # control ticks answered with a hold (e-stop or watchdog)

    # ---- end-effector stage ----------------------------------------------------------------------------
    def clamp_ee(self, ee_now: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The action after steps 1-3 and the end-effector target it implies (float64)."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        ee = np.asarray(ee_now, dtype=np.float64)
        if a.shape != (4,):
            raise RobodreamError(f"action has shape {a.shape}; expected (4,) = [ee_dx, ee_dy, ee_dz, gripper]")
        if not np.all(np.isfinite(a)):
            self.counts["nonfinite_action"] += 1
            gripper = a[3] if np.isfinite(a[3]) else 0.0
            return np.array([0.0, 0.0, 0.0, np.clip(gripper, 0.0, 1.0)]), ee.copy()
        step = self.cfg.max_ee_step
        delta = np.clip(a[:3], -step, step)
        if np.any(delta != a[:3]):
            self.counts["ee_step"] += 1
        target = np.clip(ee + delta, self.low, self.high)
        if np.any(target != ee + delta):
            self.counts["workspace"] += 1
        target = np.clip(target, ee - step, ee + step)  # back into the box at most one step per tick
        gripper = float(np.clip(a[3], 0.0, 1.0))
        if gripper != a[3]:
            self.counts["gripper_range"] += 1
        return np.array([*(target - ee), gripper]), target

    # ---- joint stage -------------------------------------------------------------------------------------
    def clamp_joints(self, q_now: np.ndarray, q_target: np.ndarray) -> np.ndarray:
        """Joint targets after steps 5-7 (position limits, max change per step, velocity limits)."""
        q_now = np.asarray(q_now, dtype=np.float64)
        q = np.asarray(q_target, dtype=np.float64).copy()
        if not np.all(np.isfinite(q)):  # IK never returns NaN in practice; never send one anyway
            self.counts["nonfinite_joint_target"] += 1
            return q_now.copy()
        if self.q_low is not None:
            clipped = np.clip(q, self.q_low, self.q_high)
            if np.any(clipped != q):
                self.counts["joint_limit"] += 1
            q = clipped
        if self.q_step is not None:
            move = q - q_now
            ratio = np.abs(move) / self.q_step
            worst = int(np.argmax(ratio))
            if ratio[worst] > 1.0:
                self.counts["joint_velocity" if self._velocity_bound[worst] else "joint_step"] += 1
                q = q_now + move / ratio[worst]
        return q

    def ee_allowed(self, ee_now: np.ndarray, ee_command: np.ndarray, tol: float = 1e-3) -> bool:
        """Whether the end effector of a joint command (its FK) is within the step and the workspace box —
        the box grown only to where the arm already is, so an arm outside may come back but never go further.
        Checked after IK because IK does not always converge (near the workspace edges it can miss by a cm)."""
        low = np.minimum(self.low, ee_now) - tol
        high = np.maximum(self.high, ee_now) + tol
        step = np.all(np.abs(np.asarray(ee_command) - ee_now) <= self.cfg.max_ee_step + tol)
        return bool(step and np.all(ee_command >= low) and np.all(ee_command <= high))

    def hold_action(self, gripper: float) -> np.ndarray:
        """The action that holds the arm still (zero motion, gripper kept)."""
        return np.array([0.0, 0.0, 0.0, gripper])

    # ---- watchdog / e-stop -------------------------------------------------------------------------------
    def must_hold(self, ages: dict[str, float]) -> str | None:
        """Why the arm must hold right now (e-stop, stale streams), or None when it may move."""
        stale = self.watchdog.check(ages)
        reason = None
        if self.estop.latched:
            reason = f"E-STOP ({self.estop.reason})"
        elif stale:
            reason = "watchdog: " + ", ".join(stale)
        self.hold_ticks += reason is not None
        return reason

    @property
    def clamps(self) -> int:
        return sum(self.counts.values())

    def report(self) -> dict:
        """Every clamp and trip, for the deployment summary and eval_info.json."""
        return {
            "clamps": dict(sorted(self.counts.items())), "clamps_total": self.clamps,
            "watchdog_trips": self.watchdog.trips, "hold_ticks": self.hold_ticks,
            "estop_trips": self.estop.trips, "estop_latched": self.estop.latched,
            "limits": {"workspace_low": self.low.tolist(), "workspace_high": self.high.tolist(),
                       "max_ee_step": self.cfg.max_ee_step,
                       "joint_step": None if self.q_step is None else self.q_step.round(4).tolist()},
        }
