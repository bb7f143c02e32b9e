"""`robodream record-ros`: record teleoperated episodes of an arm from its live ROS 2 topics.

    robodream record-ros robot=configs/robot/panda.yaml out=data/arm_teleop.zarr task="pick the cube"
    robodream record-ros robot=configs/robot/panda.yaml start=topic episodes=20   # /robodream/record markers

Whatever moves the arm (a leader arm, a SpaceMouse node, MoveIt servo) publishes to the arm's controller;
this command only listens (`Ros2Arm(listen=True)`: it never publishes a command) to the joint states, the
cameras, and the controller and gripper command topics, and samples them at ``robot.fps`` into episodes:

- ``observation.state`` ``[ee_xyz (FK of the URDF), gripper_opening_m, q...]`` and the camera frames, as
  `robodream deploy` records them, so both kinds of real data mix with simulated stores;
- ``action`` ``[ee_dx, ee_dy, ee_dz, gripper]``: ``action=command`` (default) turns the joint command in force
  during frame t -> t+1 into the end-effector displacement it asks for (FK of the command minus the current
  end effector); ``action=next_state`` uses the next frame's end effector instead (for arms whose commands
  are not on a topic). The last frame gets a hold action, as every store does.

Episodes: Enter starts one and Enter saves it (``start=key``), or a std_msgs/Bool on ``marker_topic`` (true
starts, false saves: ``start=topic``), or recording starts at once (``start=now``); ``max_episode_s`` ends one;
x discards it, f marks it a failure (saved episodes are successes by default), q quits. Source "teleop".
A stream that goes stale is counted; joint states gone for safety.disconnect_timeout_s stop the recorder
(the episode in progress is discarded, saved ones are intact).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from robodream.errors import RobodreamError
from robodream.robots.ros2.config import RobotConfig

START_MODES = ("key", "topic", "now")
ACTION_SOURCES = ("command", "next_state")


@dataclass
class RecordRosConfig:
    robot: RobotConfig = field(default_factory=RobotConfig)  # robot=configs/robot/<arm>.yaml
    out: str | None = None  # store path; default data/ros_<robot>.zarr
    task: str = "teleop"
    episodes: int | None = None  # quit after saving this many
    max_episode_s: float = 120.0
    start: str = "key"
    marker_topic: str = "/robodream/record"
    action: str = "command"
    resume: bool = False  # add episodes to an existing store
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.robot.require()
        if self.start not in START_MODES:
            raise RobodreamError(f"start={self.start!r}: choose one of {', '.join(START_MODES)}")
        if self.action not in ACTION_SOURCES:
            raise RobodreamError(f"action={self.action!r}: choose one of {', '.join(ACTION_SOURCES)}")
        if self.episodes is not None and self.episodes < 1:
            raise RobodreamError("episodes must be >= 1 (or null: until q)")
        if self.max_episode_s <= 0:
            raise RobodreamError("max_episode_s must be > 0")
        if self.resume and self.overwrite:
            raise RobodreamError("resume=true and overwrite=true contradict each other: pick one")
        self.out = self.out or f"data/ros_{self.robot.name}.zarr"


class Recorder:
    """The sampling loop and the episode events (keys, markers) of one record-ros session."""

    def __init__(self, cfg: RecordRosConfig, log=sys.stderr):
        self.cfg, self.log = cfg, log
        self.events: list[str] = []  # "toggle", "discard", "failure", "quit" (key thread / marker callback)
        self._lock = threading.Lock()
        self.saved = self.discarded = self.stale_ticks = 0

    def push(self, event: str) -> None:
        with self._lock:
            self.events.append(event)

    def _pop_events(self) -> list[str]:
        with self._lock:
            events, self.events = self.events, []
        return events

    def on_key(self, key: str) -> None:
        event = {"\n": "toggle", "\r": "toggle", "x": "discard", "f": "failure", "q": "quit"}.get(key)
        if event:
            self.push(event)

    def run(self) -> list[str]:
        from robodream.pipeline.robot.operator_keys import KeyReader
        from robodream.robots.ros2.arm import Ros2Arm

        cfg = self.cfg
        self.arm = Ros2Arm(cfg.robot, listen=True, node_name="robodream_record")
        self.arm.connect()
        try:
            self.writer = self._open_store()
            if cfg.start == "topic":
                from std_msgs.msg import Bool

                from robodream.robots.ros2.config import QosConfig
                from robodream.robots.ros2.node import qos_profile

                self.arm.ros.node.create_subscription(
                    Bool, cfg.marker_topic, lambda msg: self.push("start" if msg.data else "save"),
                    qos_profile(QosConfig(depth=10)))
            how = {"key": "Enter starts / saves an episode", "topic": f"markers on {cfg.marker_topic}",
                   "now": "recording now"}[cfg.start]
            print(f"record-ros: ready ({how}; x discard, f failure, q quit) -> {cfg.out}", file=self.log, flush=True)
            with KeyReader(self.on_key):
                self._loop()
        finally:
            self.arm.disconnect()
            if getattr(self, "writer", None) is not None:
                self.writer.close()
        return [f"store      {cfg.out} ({self.writer.num_episodes} episodes)",
                f"recorded   {self.saved} saved, {self.discarded} discarded; {self.stale_ticks} stale ticks"]

    def _loop(self) -> None:
        cfg, arm = self.cfg, self.arm
        period = cfg.robot.period_s
        episode: list | None = [] if cfg.start == "now" else None
        failure, deadline = False, time.monotonic()
        heard_commands = cfg.action != "command"
        while True:
            if not heard_commands and self._commands_heard():
                heard_commands = True
                print("record-ros: hearing the command topics (actions come from the commands)",
                      file=self.log, flush=True)
            for event in self._pop_events():
                if event in ("toggle", "start") and episode is None:
                    episode, failure = [], False
                    print(f"record-ros: recording episode {self.writer.num_episodes}", file=self.log, flush=True)
                elif event in ("toggle", "save") and episode is not None:
                    self._save(episode, failure)
                    episode = None
                elif event == "discard" and episode is not None:
                    self.discarded += 1
                    episode = None
                    print("record-ros: episode discarded", file=self.log, flush=True)
                elif event == "failure":
                    failure = True
                elif event == "quit":
                    if episode:
                        self.discarded += 1
                        print("record-ros: quit while recording: episode discarded", file=self.log, flush=True)
                    return
            if cfg.episodes is not None and self.saved >= cfg.episodes:
                return
            ages = arm.ages()
            if ages["joint_states"] > cfg.robot.safety.disconnect_timeout_s:
                raise RobodreamError(f"lost the robot: no joint states on {cfg.robot.joint_states.topic} for "
                                     f"{ages['joint_states']:.1f} s; "
                                     f"{self.saved} episodes saved in {cfg.out} are intact")
            if episode is not None:
                stale = arm.safety.watchdog.check(ages)
                self.stale_ticks += bool(stale)
                episode.append((arm.get_observation(), arm.command.value, arm.gripper_command.value))
                if len(episode) * period >= cfg.max_episode_s:
                    self._save(episode, failure)
                    episode = None
            deadline = max(deadline + period, time.monotonic())
            time.sleep(max(0.0, deadline - time.monotonic()))

    def _commands_heard(self) -> bool:
        """Whether the arm command and (when the robot has one) the gripper command have arrived at least once.

        Until then ``action=command`` falls back to the measured motion, so operators (and tests) wait for this
        before starting an episode whose actions must be the commands."""
        gripper_heard = self.cfg.robot.gripper.interface == "none" or self.arm.gripper_command.value is not None
        return self.arm.command.value is not None and gripper_heard

    def _save(self, episode: list, failure: bool) -> None:
        if len(episode) < 2:
            print("record-ros: episode too short (< 2 frames), not saved", file=self.log, flush=True)
            self.discarded += 1
            return
        data = self.episode_data(episode)
        index = self.writer.append_episode(data, source="teleop", success=not failure,
                                           origin=f"record-ros:{self.cfg.robot.name}")
        self.saved += 1
        print(f"record-ros: saved episode {index}: {len(episode)} frames", file=self.log, flush=True)

    def episode_data(self, episode: list) -> dict[str, np.ndarray]:
        """Frames and actions in the store layout (see the module docstring for the action)."""
        from robodream.features import STATE

        frames = [obs for obs, _, _ in episode]
        states = np.stack([f[STATE] for f in frames]).astype(np.float64)
        g = self.cfg.robot.gripper
        full_open = 2 * g.open_position * g.state_scale if len(g.joints) > 1 else g.open_position * g.state_scale
        closedness = np.clip(1.0 - states[:, 3] / full_open, 0.0, 1.0) if full_open > 0 else np.zeros(len(frames))
        actions = np.zeros((len(frames), 4))
        for t in range(len(frames) - 1):
            _, command, gripper = episode[t + 1]  # the command in force while o_t became o_{t+1}
            if self.cfg.action == "command" and command is not None:
                actions[t, :3] = self.arm.kin.fk(command) - states[t, :3]
            else:
                actions[t, :3] = states[t + 1, :3] - states[t, :3]
            actions[t, 3] = gripper if (self.cfg.action == "command" and gripper is not None) else closedness[t + 1]
        actions[-1, 3] = actions[-2, 3]  # hold: no motion, same gripper command
        data = {key: np.stack([f[key] for f in frames]) for key in frames[0]}
        data["action"] = actions.astype(np.float32)
        data["timestamp"] = (np.arange(len(frames)) / self.cfg.robot.fps).astype(np.float32)
        return data

    def _open_store(self):
        from robodream.datasets.writer import open_recording

        cfg, arm = self.cfg, self.arm
        features = {**arm.observation_features, **arm.action_features}
        cameras = {n: {"width": cfg.robot.image_size, "height": cfg.robot.image_size, "topic": c.topic}
                   for n, c in cfg.robot.cameras.items()}
        writer, _ = open_recording(cfg.out, features, resume=cfg.resume, recorder=f"robot {cfg.robot.name}",
                                   fix="use another out=", fps=cfg.robot.fps, robot_type=cfg.robot.name,
                                   task=cfg.task, cameras=cameras, overwrite=cfg.overwrite,
                                   extra_attrs={"record_ros": {"robot": cfg.robot.name, "action": cfg.action}})
        return writer


def run_record_ros(cfg: RecordRosConfig) -> list[str]:
    """CLI entry: record until q / ``episodes`` saved; returns the summary lines."""
    return Recorder(cfg).run()
