"""`Ros2Arm`: the Robot interface over ROS 2 — the topics a ros2_control arm and a camera driver expose.

    arm = Ros2Arm(robot_cfg)          # robot_cfg: RobotConfig from configs/robot/<arm>.yaml
    arm.connect()                     # subscribe, wait for the first joint states and frames
    obs = arm.get_observation()       # {"observation.images.<cam>", "observation.state" (+ env state in sim)}
    sent = arm.send_action(action)    # [ee_dx, ee_dy, ee_dz, gripper] -> safety -> IK -> safety -> controller
    arm.disconnect()                  # a final hold command, then the node goes away

Inputs: sensor_msgs/JointState (the arm joints and the gripper joints, by name), one sensor_msgs/Image or
CompressedImage per camera (centre-cropped and resized to ``image_size`` in the callback, off the control
path), and optionally the e-stop (std_msgs/Bool, latched), e-stop reset (std_msgs/Empty), task success
(std_msgs/Bool) and, in simulation only, the privileged environment state (std_msgs/Float64MultiArray).
Outputs: trajectory_msgs/JointTrajectory (joint_trajectory_controller; one point, ``time_from_start`` one
control period, zero stamp = start now) or std_msgs/Float64MultiArray (forward_position_controller), and the
gripper command on its own topic.

``observation.state`` is ``[ee_x, ee_y, ee_z, gripper_opening_m, q1..qN]``, the end effector from FK of the
URDF, exactly the layout of the simulated Panda, so policies trained in simulation read real states as-is.
With ``listen=True`` the arm only listens (no publisher is created) and also records the commands someone
else sends — how `robodream record-ros` records teleoperation.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from robodream.errors import RobodreamError
from robodream.features import ACTION, ENV_STATE, IMAGE_PREFIX, STATE, Feature, image_feature, vector_feature
from robodream.robots.robot import Robot
from robodream.robots.ros2 import messages as m
from robodream.robots.ros2.config import QosConfig, RobotConfig
from robodream.robots.ros2.node import Latest, RosNode, qos_profile
from robodream.robots.safety import SafetyLayer

ACTION_NAMES = ["ee_dx", "ee_dy", "ee_dz", "gripper"]
ENV_STATE_NAMES = [*("cube_x", "cube_y", "cube_z"), *("cube_qx", "cube_qy", "cube_qz", "cube_qw"),
                   *("goal_x", "goal_y", "goal_z")]


class RobotConnectionLost(RobodreamError):
    """The robot stopped sending joint states for longer than safety.disconnect_timeout_s."""


class Ros2Arm(Robot):
    """An arm reached over ROS 2; see the module docstring."""

    def __init__(self, cfg: RobotConfig, *, listen: bool = False, node_name: str = "robodream_arm"):
        self.cfg = cfg
        self.robot_type = cfg.name
        self.listen = listen
        self.node_name = node_name
        self.ros: RosNode | None = None
        self.kin = None
        self.safety: SafetyLayer | None = None
        self._arm = m.JointIndex(cfg.joints)
        self._grip = m.JointIndex(cfg.gripper.joints) if cfg.gripper.joints else None
        self.state = Latest()  # (q, gripper joint positions)
        self.images = {name: Latest() for name in cfg.cameras}
        self.env_state = Latest()
        self.success = Latest()
        self.command = Latest()  # listen mode: the last arm joint target someone sent
        self.gripper_command = Latest()  # listen mode: the last gripper command, as 0..1
        self.reset_done = Latest()
        self.last_gripper = 0.0
        self.last_hold: str | None = None  # why the last send_action held instead of moving
        self.messages_error: str | None = None
        self._publish_lock = threading.Lock()

    # ---- Robot interface -------------------------------------------------------------------------------
    @property
    def observation_features(self) -> dict[str, Feature]:
        size = self.cfg.image_size
        state_names = ["ee_x", "ee_y", "ee_z", "gripper_opening_m"] + [f"q{i + 1}" for i in range(len(self.cfg.joints))]
        features = {IMAGE_PREFIX + name: image_feature(size, size) for name in self.cfg.cameras}
        features[STATE] = vector_feature(state_names)
        if self.cfg.topics.environment_state:
            features[ENV_STATE] = vector_feature(ENV_STATE_NAMES)
        return features

    @property
    def action_features(self) -> dict[str, Feature]:
        return {ACTION: vector_feature(ACTION_NAMES)}

    @property
    def is_connected(self) -> bool:
        return self.ros is not None

    def connect(self, wait: bool = True) -> None:
        """Load the kinematics, subscribe and advertise, and (``wait``) wait for the first data."""
        from robodream.robots.kinematics import Kinematics

        cfg = self.cfg
        k = cfg.kinematics
        self.kin = Kinematics(cfg.urdf, cfg.joints, k.ee_link, k.rest_pose, tuple(k.tool_rpy) if k.tool_rpy else None,
                              k.ik_iterations)
        s = cfg.safety
        streams = {"joint_states": s.state_timeout_s, **{f"camera {n}": s.image_timeout_s for n in cfg.cameras}}
        if cfg.topics.environment_state:
            streams["environment_state"] = s.image_timeout_s
        lim = self.kin.limits
        self.safety = SafetyLayer(s, cfg.period_s, lim.lower, lim.upper, lim.velocity, streams)
        try:
            self.ros = RosNode(self.node_name)
            self._create_endpoints()
            self.ros.start()
            if wait:
                self.wait_for_data(cfg.connect_timeout_s)
                self._check_controllers(cfg.connect_timeout_s)
        except BaseException:
            self.disconnect()
            raise

    def _create_endpoints(self) -> None:
        from sensor_msgs.msg import CompressedImage, Image, JointState
        from std_msgs.msg import Bool, Empty, Float64MultiArray, Int64
        from trajectory_msgs.msg import JointTrajectory

        cfg, node = self.cfg, self.ros.node
        sub = node.create_subscription
        sub(JointState, cfg.joint_states.topic, self._on_joint_state, qos_profile(cfg.joint_states.qos))
        for name, cam in cfg.cameras.items():
            sub(CompressedImage if cam.compressed else Image, cam.topic,
                lambda msg, n=name, c=cam.compressed: self._on_image(n, c, msg), qos_profile(cam.qos))
        t = cfg.topics
        reliable = qos_profile(QosConfig(depth=10))
        sub(Bool, t.estop, self._on_estop, reliable)
        sub(Empty, t.estop_reset, lambda _msg: self.reset_estop(), reliable)
        if t.success:
            sub(Bool, t.success, lambda msg: self.success.put(bool(msg.data)), reliable)
        if t.environment_state:
            sub(Float64MultiArray, t.environment_state,
                lambda msg: self.env_state.put(np.asarray(msg.data, dtype=np.float32)),
                qos_profile(cfg.joint_states.qos))
        command_type = JointTrajectory if cfg.command.interface == "joint_trajectory" else Float64MultiArray
        gripper_type = JointTrajectory if cfg.gripper.interface == "joint_trajectory" else Float64MultiArray
        self._command_pub = self._gripper_pub = self._reset_pub = None
        if self.listen:
            sub(command_type, cfg.command.topic, self._on_command, qos_profile(cfg.command.qos))
            if cfg.gripper.interface != "none":
                sub(gripper_type, cfg.gripper.topic, self._on_gripper_command, qos_profile(cfg.gripper.qos))
            return
        self._command_pub = node.create_publisher(command_type, cfg.command.topic, qos_profile(cfg.command.qos))
        if cfg.gripper.interface != "none":
            self._gripper_pub = node.create_publisher(gripper_type, cfg.gripper.topic, qos_profile(cfg.gripper.qos))
        if cfg.reset.mode == "topic":
            self._reset_pub = node.create_publisher(Int64, cfg.reset.topic, reliable)
            sub(Int64, cfg.reset.done_topic, lambda msg: self.reset_done.put(int(msg.data)), reliable)

    def _check_controllers(self, timeout_s: float) -> None:
        """Commands to a topic nobody subscribes to are silently lost: refuse to start instead."""
        for pub, what in ((self._command_pub, self.cfg.command), (self._gripper_pub, self.cfg.gripper)):
            if pub is not None and not self.ros.wait_for_subscribers(pub, timeout_s):
                raise RobodreamError(f"nothing subscribes to {what.topic} (after {timeout_s:.0f} s): is the controller "
                                     "loaded and active (`ros2 control list_controllers`), and is the topic right?")

    # ---- callbacks (executor thread) -----------------------------------------------------------------------
    def _on_joint_state(self, msg) -> None:
        q = self._arm.positions(msg)
        if q is None:
            return  # another joint group on the same topic
        fingers = self._grip.positions(msg) if self._grip is not None else None
        self.state.put((q, fingers), m.stamp_to_s(msg.header.stamp))

    def _on_image(self, name: str, compressed: bool, msg) -> None:
        try:
            rgb = (m.compressed_to_rgb if compressed else m.image_to_rgb)(msg, self.cfg.image_size)
        except RobodreamError as exc:
            self.messages_error = f"camera {name} ({self.cfg.cameras[name].topic}): {exc}"
            return
        self.images[name].put(rgb, m.stamp_to_s(msg.header.stamp))

    def _on_estop(self, msg) -> None:
        if msg.data:
            self.trip_estop(f"topic {self.cfg.topics.estop}")

    def _on_command(self, msg) -> None:
        if self.cfg.command.interface == "joint_trajectory":
            target = m.trajectory_target(msg, self.cfg.joints)
        else:
            target = np.asarray(msg.data, dtype=np.float64) if len(msg.data) == len(self.cfg.joints) else None
        if target is not None:
            self.command.put(target)

    def _on_gripper_command(self, msg) -> None:
        g = self.cfg.gripper
        if g.interface == "joint_trajectory":
            values = m.trajectory_target(msg, g.command_joints)
        else:
            values = np.asarray(msg.data, dtype=np.float64) if len(msg.data) else None
        if values is not None and g.closed_position != g.open_position:
            closed = (float(values[0]) - g.open_position) / (g.closed_position - g.open_position)
            self.gripper_command.put(float(np.clip(closed, 0.0, 1.0)))

    # ---- observation -----------------------------------------------------------------------------------
    def ages(self) -> dict[str, float]:
        """Age (s) of every stream the watchdog checks (inf when nothing arrived yet)."""
        check = self.cfg.safety.check_stamps
        ages = {"joint_states": self.state.age(check)}
        ages.update({f"camera {n}": img.age(check) for n, img in self.images.items()})
        if self.cfg.topics.environment_state:
            ages["environment_state"] = self.env_state.age(False)
        return ages

    def wait_for_data(self, timeout_s: float, after: float | None = None) -> None:
        """Block until every stream delivered a message (received after monotonic time ``after``)."""
        deadline = time.monotonic() + timeout_s
        streams = {self.cfg.joint_states.topic: self.state,
                   **{cam.topic: self.images[n] for n, cam in self.cfg.cameras.items()}}
        if self.cfg.topics.environment_state:
            streams[self.cfg.topics.environment_state] = self.env_state
        since = float("-inf") if after is None else after
        while True:
            self._raise_callback_errors()
            missing = [topic for topic, latest in streams.items() if latest.received <= since]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RobodreamError(
                    f"no messages on {', '.join(missing)} after {timeout_s:.0f} s (ROS_DOMAIN_ID="
                    f"{self.ros.domain_id if self.ros else '?'}): is the arm's driver (or `robodream sim-arm`) "
                    "running, and do the topic and joint names in the robot config match `ros2 topic list`?")
            time.sleep(0.005)

    def _raise_callback_errors(self) -> None:
        if self.messages_error:
            raise RobodreamError(self.messages_error)
        if self.ros is not None and self.ros.callback_error is not None:
            raise self.ros.callback_error

    def measured(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The latest arm joint positions and gripper joint positions."""
        value = self.state.value
        if value is None:
            raise RobodreamError(f"no joint states received on {self.cfg.joint_states.topic} yet")
        return value

    def get_observation(self) -> dict[str, np.ndarray]:
        """Camera frames and ``[ee_xyz, gripper_opening_m, q...]`` from the newest messages."""
        self._raise_callback_errors()
        q, fingers = self.measured()
        opening = float(np.sum(fingers)) * self.cfg.gripper.state_scale if fingers is not None else 0.0
        obs = {STATE: np.concatenate([self.kin.fk(q), [opening], q]).astype(np.float32)}
        for name, latest in self.images.items():
            if latest.value is None:
                raise RobodreamError(f"no frames received from camera {name} ({self.cfg.cameras[name].topic}) yet")
            obs[IMAGE_PREFIX + name] = latest.value
        if self.cfg.topics.environment_state:
            obs[ENV_STATE] = self.env_state.value if self.env_state.value is not None else np.zeros(10, np.float32)
        return obs

    # ---- commands ----------------------------------------------------------------------------------------
    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Safety (e-stop, watchdog, end-effector limits) -> IK -> safety (joint limits) -> the controller.
        Returns the action actually sent (a hold while the e-stop is latched or a stream is stale)."""
        self._require_commanding()
        self.last_hold = self.safety.must_hold(self.ages())
        if self.last_hold:
            self.hold()
            return self.safety.hold_action(self.last_gripper).astype(np.float32)
        q_now, fingers = self.measured()
        ee = self.kin.fk(q_now)
        sent, target = self.safety.clamp_ee(ee, action)
        others = dict(zip(self.cfg.gripper.joints, fingers, strict=True)) if fingers is not None else None
        q_ik = self.kin.ik(target, q_now, others)
        q_safe = self.safety.clamp_joints(q_now, q_ik)
        corrected = not np.array_equal(q_safe, q_ik)
        ee_command = self.kin.fk(q_safe)
        if not self.safety.ee_allowed(ee, ee_command):
            # IK missed (or a joint clamp bent the path): shorten the move until its FK is allowed; q_now
            # itself (zero move) always is, so the bisection keeps a valid command
            self.safety.counts["ik_check"] += 1
            move, keep = q_safe - q_now, 0.0
            for fraction in (0.5 ** k for k in range(1, 9)):
                if self.safety.ee_allowed(ee, self.kin.fk(q_now + (keep + fraction) * move)):
                    keep += fraction
            q_safe, corrected = q_now + keep * move, True
            ee_command = self.kin.fk(q_safe)
        if corrected:  # report where the arm is really going (within the action range: FK tolerance is 1 mm)
            step = self.cfg.safety.max_ee_step
            sent[:3] = np.clip(ee_command - ee, -step, step)
        self.publish_joints(q_safe, float(sent[3]))
        return sent.astype(np.float32)

    def publish_joints(self, q: np.ndarray, gripper: float, time_from_start_s: float | None = None) -> None:
        """Send joint targets (already checked) and the gripper command (0 = open .. 1 = closed)."""
        cfg = self.cfg
        tfs = cfg.command.time_from_start_s if time_from_start_s is None else time_from_start_s
        msg = (m.joint_trajectory(cfg.joints, q, tfs) if cfg.command.interface == "joint_trajectory"
               else m.float_array(q))
        with self._publish_lock:  # the e-stop callback may publish a hold from the executor thread
            self._command_pub.publish(msg)
            if self._gripper_pub is not None:
                g = cfg.gripper
                pos = [g.open_position + gripper * (g.closed_position - g.open_position)] * len(g.command_joints)
                self._gripper_pub.publish(m.joint_trajectory(g.command_joints, pos, tfs)
                                          if g.interface == "joint_trajectory" else m.float_array(pos))
        self.last_gripper = gripper

    def hold(self) -> None:
        """Command the latest measured joint positions (joint_trajectory_controller rejects empty
        trajectories, so a hold is an explicit point); the gripper keeps its last command, so nothing held
        is dropped."""
        if self._command_pub is None or self.state.value is None or not self.ros or not self.ros.context.ok():
            return
        self.publish_joints(self.measured()[0], self.last_gripper)

    def trip_estop(self, reason: str) -> None:
        """Latch the e-stop and hold at once (from any thread)."""
        if self.safety is not None:
            self.safety.estop.trip(reason)
        self.hold()

    def reset_estop(self) -> bool:
        return bool(self.safety and self.safety.estop.reset())

    def move_to(self, q_target: np.ndarray, duration_s: float) -> None:
        """Move to joint positions over ``duration_s`` (e.g. home before an episode): clipped to the joint
        limits, and slowed down so no joint exceeds its velocity limit; blocks until the time has passed."""
        self._require_commanding()
        q_now, _ = self.measured()
        s = self.safety
        q = np.clip(np.asarray(q_target, float), s.q_low, s.q_high)
        speed = np.asarray(self.kin.limits.velocity) * self.cfg.safety.velocity_scale
        duration_s = max(duration_s, float(np.max(np.abs(q - q_now) / speed)))
        self.publish_joints(q, self.last_gripper, duration_s)
        time.sleep(duration_s)

    def request_reset(self, seed: int) -> float:
        """Sim only (reset.mode=topic): ask the simulator to reset to ``seed``; returns when it confirmed."""
        cfg = self.cfg.reset
        self._require_commanding()
        if self._reset_pub is None:
            raise RobodreamError("robot.reset.mode is not 'topic': this arm cannot be reset over ROS")
        from std_msgs.msg import Int64

        deadline = time.monotonic() + cfg.timeout_s
        self.ros.wait_for_subscribers(self._reset_pub, cfg.timeout_s)
        while True:  # re-ask every second: a reset request published before discovery completed is lost
            self._reset_pub.publish(Int64(data=int(seed)))
            resend = time.monotonic() + 1.0
            while time.monotonic() < min(resend, deadline):
                if self.reset_done.value == seed and self.reset_done.received > resend - 1.0:
                    return self.reset_done.received
                time.sleep(0.002)
            if time.monotonic() >= deadline:
                raise RobotConnectionLost(f"the simulator did not confirm the reset to seed {seed} on "
                                          f"{cfg.done_topic} within {cfg.timeout_s:.0f} s: is sim-arm running?")

    def _require_commanding(self) -> None:
        if self.ros is None:
            raise RobodreamError("Ros2Arm is not connected: call connect() first")
        if self.listen:
            raise RobodreamError("this Ros2Arm only listens (listen=True): it cannot command the arm")

    def disconnect(self) -> None:
        """A final hold command (when commanding), then release the node and the kinematics."""
        if self.ros is not None:
            try:
                if not self.listen:
                    self.hold()
                    time.sleep(0.05)  # let DDS deliver the hold before the participant goes away
            finally:
                self.ros.close()
                self.ros = None
        if self.kin is not None:
            self.kin.close()
            self.kin = None
