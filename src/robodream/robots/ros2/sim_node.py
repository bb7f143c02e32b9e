"""`robodream sim-arm`: the PyBullet Panda as a ROS 2 node that behaves like a real arm's drivers.

    robodream sim-arm robot=configs/robot/panda_sim.yaml task=push_cube
    robodream sim-arm robot=configs/robot/panda_sim.yaml faults.latency_ms=30 faults.drop_rate=0.05

Like a ros2_control stack plus a camera driver, on the topics of the robot config:

- sensor_msgs/JointState at ``joint_state_hz`` (100 Hz): the 7 arm joints and both fingers, stamped;
- sensor_msgs/Image (rgb8) of the front camera at ``camera_hz`` (10-30 Hz);
- a joint_trajectory_controller: trajectory_msgs/JointTrajectory, interpolated linearly from the current
  setpoint through the points over their ``time_from_start`` (zero stamp = start now), or a
  forward_position_controller: std_msgs/Float64MultiArray, applied at once; the gripper through
  Float64MultiArray / JointTrajectory finger positions.

Physics runs at 240 Hz paced to the wall clock (catching up after a render, never running ahead).
Sim-only extras, clearly apart from what a real arm offers: ``/sim/environment_state`` (privileged cube and
goal, for the scripted expert), ``/sim/success`` (the task's success test) and ``/sim/reset`` (Int64 seed,
confirmed on ``/sim/reset_done``) so a deployment can run the same seeded episodes as direct evaluation.

Fault injection (``faults.*``): latency added to sensor messages and to commands, a drop rate on sensor
messages, joint states that freeze (the last message republished with its old stamp, as a hung driver does)
and a hard crash, the last two a given time after the first command. Events are printed on stdout.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import os
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from robodream.errors import RobodreamError
from robodream.robots.ros2 import messages as m
from robodream.robots.ros2.config import RobotConfig
from robodream.robots.ros2.sim_camera import CameraProcess, snapshot
from robodream.robots.sim.env import EnvConfig

PHYSICS_DT = 1.0 / 240


@dataclass
class FaultConfig:
    """Faults to inject (all off by default)."""

    latency_ms: float = 0.0  # added to every sensor message and to every command (each direction)
    drop_rate: float = 0.0  # probability that a joint-state or camera message is not published
    freeze_joint_states_after_s: float | None = None  # after the first command, joint states stop changing
    crash_after_s: float | None = None  # after the first command, the process dies (no cleanup, exit 3)
    seed: int = 0  # of the drop generator

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or not 0 <= self.drop_rate < 1:
            raise RobodreamError("faults.latency_ms must be >= 0 and faults.drop_rate in [0, 1)")


@dataclass
class SimArmConfig:
    """The simulated arm served over ROS 2."""

    robot: RobotConfig = field(default_factory=RobotConfig)  # robot=configs/robot/panda_sim.yaml
    task: str | None = None  # shorthand for env.task
    env: EnvConfig = field(default_factory=EnvConfig)
    seed: int = 0  # the scene at start-up (before any /sim/reset)
    joint_state_hz: float = 100.0
    camera_hz: float = 15.0
    duration_s: float | None = None  # stop after this long (default: until Ctrl-C / SIGTERM)
    tracking_gain: float | None = None  # joint position gain; default 0.15 (forward_position), 1.0 (trajectory)
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        self.robot.require()
        if self.task is not None and self.task != self.env.task:
            self.env = replace(self.env, task=self.task)
        self.env = replace(self.env, image_size=self.robot.image_size)
        if not 1 <= self.joint_state_hz <= 1000 or not 0.5 <= self.camera_hz <= 60:
            raise RobodreamError("joint_state_hz must be in [1, 1000] and camera_hz in [0.5, 60]")
        if self.robot.command.interface not in ("joint_trajectory", "forward_position"):
            raise RobodreamError("robot.command.interface must be joint_trajectory or forward_position")


class _Trajectory:
    """Piecewise-linear joint setpoints over (time, positions) knots; holds the last knot afterwards."""

    def __init__(self, t0: float, q0: np.ndarray, knots: list[tuple[float, np.ndarray]]):
        self.times = [t0] + [t for t, _ in knots]
        self.points = [q0] + [q for _, q in knots]

    def at(self, t: float) -> np.ndarray:
        i = bisect.bisect_right(self.times, t)
        if i >= len(self.times):
            return self.points[-1]
        if i == 0:
            return self.points[0]
        t0, t1 = self.times[i - 1], self.times[i]
        w = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
        return self.points[i - 1] + w * (self.points[i] - self.points[i - 1])

    def done(self, t: float) -> bool:
        return t >= self.times[-1]


class SimArmNode:
    """The node; `run` drives physics, publishing and faults until ``stop()`` is true."""

    def __init__(self, cfg: SimArmConfig, log=sys.stdout):
        from robodream.robots.ros2.node import RosNode
        from robodream.robots.sim.arm import ARM_JOINTS, FINGER_JOINTS, FINGER_OPEN
        from robodream.robots.sim.bullet import p
        from robodream.robots.sim.env import make_env

        self.cfg, self.log = cfg, log
        self.env = make_env(cfg.env)
        self.env.reset(seed=cfg.seed)
        self.p, self.finger_open = p, FINGER_OPEN
        scene = self.env.scene
        self.joint_ids = ARM_JOINTS + FINGER_JOINTS
        self.joint_names = [p.getJointInfo(scene.panda, j, physicsClientId=scene.client)[1].decode()
                            for j in self.joint_ids]
        missing = [j for j in cfg.robot.joints if j not in self.joint_names[:7]]
        if missing:
            raise RobodreamError(f"robot.joints {missing} are not the simulated Panda's arm joints "
                                 f"{self.joint_names[:7]}; use configs/robot/panda_sim.yaml")
        self.order = [self.joint_names.index(j) for j in cfg.robot.joints]  # controller order -> arm index
        self.rng = np.random.default_rng(cfg.faults.seed)
        self.camera = CameraProcess(cfg) if cfg.robot.cameras else None
        self.ros = RosNode("robodream_sim_arm")
        self._setup_ros()
        self._trajectory: _Trajectory | None = None
        self._setpoint = self._measured()[:7]
        self._gripper = 0.0
        # a jumping setpoint (forward_position) is tracked with the direct simulation's gain, so the arm moves
        # exactly as in `robodream eval`; an interpolated trajectory is tracked tightly, as a real arm's joint
        # controller follows joint_trajectory_controller's setpoints (0.15 would lag a whole period behind)
        self._gain = cfg.tracking_gain or (0.15 if cfg.robot.command.interface == "forward_position" else 1.0)
        self._pending: list = []  # (due time, sequence, callable) for latency injection
        self._sequence = itertools.count()
        self._first_command: float | None = None
        self._frozen_msg = self._last_js = None
        self._reset_seed: int | None = None
        self.clock0 = time.monotonic()

    # ---- ROS endpoints -------------------------------------------------------------------------------------
    def _setup_ros(self) -> None:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Float64MultiArray, Int64
        from trajectory_msgs.msg import JointTrajectory

        from robodream.robots.ros2.config import QosConfig
        from robodream.robots.ros2.node import qos_profile

        r, node = self.cfg.robot, self.ros.node
        reliable = qos_profile(QosConfig(depth=10))
        # drivers publish sensors reliably; best-effort subscribers (robodream's default) match them too
        self.pub_joints = node.create_publisher(JointState, r.joint_states.topic, reliable)
        self.pub_env = self.pub_success = None
        if r.topics.environment_state:
            self.pub_env = node.create_publisher(Float64MultiArray, r.topics.environment_state, reliable)
        if r.topics.success:
            self.pub_success = node.create_publisher(Bool, r.topics.success, reliable)
        self.pub_reset_done = node.create_publisher(Int64, r.reset.done_topic, reliable)
        node.create_subscription(Int64, r.reset.topic, self._on_reset, reliable)
        command_type = JointTrajectory if r.command.interface == "joint_trajectory" else Float64MultiArray
        node.create_subscription(command_type, r.command.topic, self._delayed(self._on_command), reliable)
        if r.gripper.interface != "none":
            gripper_type = JointTrajectory if r.gripper.interface == "joint_trajectory" else Float64MultiArray
            node.create_subscription(gripper_type, r.gripper.topic, self._delayed(self._on_gripper), reliable)

    def _delayed(self, handler):
        latency = self.cfg.faults.latency_ms / 1000

        def callback(msg):
            if latency > 0:
                heapq.heappush(self._pending, (self.now() + latency, next(self._sequence), lambda: handler(msg)))
            else:
                handler(msg)

        return callback

    def _on_command(self, msg) -> None:
        now = self.now()
        if self._first_command is None:
            self._first_command = now
            self._say(f"first command at t={now:.3f}")
        r = self.cfg.robot
        if r.command.interface == "forward_position":
            if len(msg.data) != len(r.joints):
                self._say(f"rejected a command with {len(msg.data)} values (expected {len(r.joints)})")
                return
            target = self._setpoint.copy()
            target[self.order] = msg.data
            self._trajectory, self._setpoint = None, target
            return
        lookup = {n: i for i, n in enumerate(msg.joint_names)}
        if not msg.points or any(j not in lookup for j in r.joints):
            self._say("rejected a trajectory without points or without all controller joints")
            return
        knots = []
        for point in msg.points:
            q = self._setpoint.copy()
            q[self.order] = [point.positions[lookup[j]] for j in r.joints]
            knots.append((now + m.stamp_to_s(point.time_from_start), q))
        self._trajectory = _Trajectory(now, self._current_setpoint(now), knots)

    def _on_gripper(self, msg) -> None:
        g = self.cfg.robot.gripper
        if g.interface == "joint_trajectory":
            values = [p for p in msg.points[-1].positions] if msg.points else []
        else:
            values = list(msg.data)
        if values:  # finger position (m) -> 0 = open .. 1 = closed, as SimPandaArm takes it
            self._gripper = float(np.clip(1.0 - values[0] / self.finger_open, 0.0, 1.0))

    def _on_reset(self, msg) -> None:
        self._reset_seed = int(msg.data)

    # ---- loop ------------------------------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.clock0

    def _say(self, text: str) -> None:
        print(f"sim-arm: {text}", file=self.log, flush=True)

    def _measured(self) -> np.ndarray:
        s = self.env.scene
        return np.array([js[0] for js in self.p.getJointStates(s.panda, self.joint_ids, physicsClientId=s.client)])

    def _current_setpoint(self, t: float) -> np.ndarray:
        return self._trajectory.at(t) if self._trajectory is not None else self._setpoint

    def _do_reset(self, seed: int) -> None:
        from std_msgs.msg import Int64

        self.env.reset(seed=seed)
        self._trajectory, self._setpoint, self._gripper = None, self._measured()[:7], 0.0
        if self.camera is not None:
            self.camera.reset(seed)  # every frame of the old scene is out before the reset is confirmed
        self._publish_sensors(self.now(), camera=False)
        self._publish_sensors(self.now(), camera=True)

        self.pub_reset_done.publish(Int64(data=seed))
        self._say(f"reset to seed {seed}")

    def run(self, stop=lambda: False) -> None:
        """Run until ``stop()`` (or duration_s / a crash fault)."""
        cfg, faults = self.cfg, self.cfg.faults
        sim_t, next_js, next_cam = self.now(), 0.0, 0.0
        self._say(f"ready: {cfg.env.task}, joint states {cfg.joint_state_hz:g} Hz, camera {cfg.camera_hz:g} Hz, "
                  f"ROS_DOMAIN_ID={self.ros.domain_id}")
        while not stop():
            now = self.now()
            if cfg.duration_s is not None and now > cfg.duration_s:
                return
            if self._first_command is not None and faults.crash_after_s is not None \
                    and now - self._first_command > faults.crash_after_s:
                self._say("crashing now (fault injection)")
                os._exit(3)  # no cleanup at all, like a segfault in a driver
            if self._reset_seed is not None:
                seed, self._reset_seed = self._reset_seed, None
                self._do_reset(seed)
                sim_t = now = self.now()
            steps = 0
            while sim_t + PHYSICS_DT <= now and steps < 48:  # catch up, at most 0.2 s at once
                self._physics_step(sim_t)
                sim_t += PHYSICS_DT
                steps += 1
            if steps == 48:
                sim_t = now  # far behind (CPU starved): drop the time rather than spiral
            if now >= next_js:
                self._publish_sensors(now, camera=False)
                next_js = max(next_js + 1 / cfg.joint_state_hz, now)
            if now >= next_cam:
                self._publish_sensors(now, camera=True)
                next_cam = max(next_cam + 1 / cfg.camera_hz, now)
            while self._pending and self._pending[0][0] <= now:
                heapq.heappop(self._pending)[2]()
            due = min(sim_t + PHYSICS_DT, next_js, next_cam, self._pending[0][0] if self._pending else np.inf)
            self.ros.spin_once(min(due - self.now(), 0.01))

    def _physics_step(self, t: float) -> None:
        if self._trajectory is not None:
            self._setpoint = self._trajectory.at(t)
            if self._trajectory.done(t):
                self._trajectory = None
        self.env.arm.command_joints(self._setpoint.tolist(), self._gripper, self._gain)
        self.env.scene.step(1)

    def _publish_sensors(self, now: float, camera: bool) -> None:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool

        faults, stamp = self.cfg.faults, time.time()
        if camera:
            if self.camera is not None and not (faults.drop_rate and self.rng.random() < faults.drop_rate):
                self.camera.frame(stamp, snapshot(self.env))  # latency is added by the camera process
            return
        frozen = (faults.freeze_joint_states_after_s is not None and self._first_command is not None
                  and now - self._first_command > faults.freeze_joint_states_after_s)
        if frozen:
            if self._frozen_msg is None:
                self._say(f"joint states frozen at t={now:.3f} (fault injection)")
            msg = self._frozen_msg = self._frozen_msg or self._last_js
        elif not (faults.drop_rate and self.rng.random() < faults.drop_rate):
            s = self.env.scene
            states = self.p.getJointStates(s.panda, self.joint_ids, physicsClientId=s.client)
            msg = JointState()
            msg.header.stamp = m.s_to_stamp(stamp)
            msg.name = self.joint_names
            msg.position = [js[0] for js in states]
            msg.velocity = [js[1] for js in states]
            msg.effort = [js[3] for js in states]
            self._last_js = msg
        else:
            msg = None
        if msg is not None:
            self._emit(self.pub_joints, msg)
        if self.pub_env is not None:
            self._emit(self.pub_env, m.float_array(self.env.task.env_state()))
        if self.pub_success is not None:
            self._emit(self.pub_success, Bool(data=bool(self.env.task.success())))

    def _emit(self, pub, msg) -> None:
        latency = self.cfg.faults.latency_ms / 1000
        if latency > 0:
            heapq.heappush(self._pending, (self.now() + latency, next(self._sequence), lambda: pub.publish(msg)))
        else:
            pub.publish(msg)

    def close(self) -> None:
        if self.camera is not None:
            self.camera.close()
        self.ros.close()
        self.env.close()


def run_sim_arm(cfg: SimArmConfig) -> int:
    """CLI entry: serve the simulated arm until Ctrl-C / SIGTERM (or ``duration_s``)."""
    import signal
    import threading

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    node = SimArmNode(cfg)
    try:
        node.run(stop.is_set)
    finally:
        node.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    node._say("stopped")
    return 0
