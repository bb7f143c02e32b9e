"""Helpers for the ROS 2 bridge tests: an isolated ROS graph per test (own ROS_DOMAIN_ID, localhost only),
`robodream sim-arm` / `deploy` / `record-ros` as real subprocesses with timeouts, and a probe node in the
test process that listens to and publishes on the same graph."""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SIM_CONFIG = REPO / "configs" / "robot" / "panda_sim.yaml"
_domains = itertools.count()


def ros_environment() -> dict[str, str]:
    """Environment variables of an isolated ROS 2 graph: a domain id unique to this test (and, across
    concurrent test runs, to this process), discovery on localhost only."""
    domain = 1 + (os.getpid() * 13 + next(_domains)) % 100  # 1..100: valid DDS domain ids on Linux
    return {"ROS_DOMAIN_ID": str(domain), "ROS_LOCALHOST_ONLY": "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


class Proc:
    """A robodream CLI subprocess whose stdout+stderr lines are collected by a thread (so a chatty process
    never blocks on a full pipe), with waits that time out instead of hanging the suite."""

    def __init__(self, env: dict[str, str], *args: str, stdin: bool = False):
        self.args = args
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "robodream.pipeline.cli", *args], cwd=REPO, env={**os.environ, **env},
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """Block until a line containing ``text`` appears (AssertionError on timeout or exit)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if text in line:
                    return line
            seen = len(self.lines)
            if self.popen.poll() is not None and self._queue.empty():
                time.sleep(0.1)  # let the reader thread drain the pipe
                if not any(text in line for line in self.lines[seen:]):
                    raise AssertionError(f"{self.args[0]} exited ({self.popen.returncode}) before {text!r}:\n"
                                         f"{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} from {self.args[0]} within {timeout} s:\n{self.output}")

    def send(self, text: str) -> None:
        self.popen.stdin.write(text)
        self.popen.stdin.flush()

    def wait(self, timeout: float = 120.0) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.args[0]} did not finish within {timeout} s:\n{self.output}") from None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a few seconds; the process group goes too (camera process)."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def start_sim_arm(env: dict[str, str], *overrides: str) -> Proc:
    """`robodream sim-arm` on the sim config, returned once it is publishing."""
    proc = Proc(env, "sim-arm", f"robot={SIM_CONFIG}", *overrides)
    proc.wait_for("sim-arm: ready", timeout=90)
    return proc


class Probe:
    """A node in the test process: records joint states and arm commands, publishes e-stop messages."""

    def __init__(self):
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Empty
        from trajectory_msgs.msg import JointTrajectory

        from robodream.robots.ros2.config import QosConfig
        from robodream.robots.ros2.node import RosNode, qos_profile

        self.ros = RosNode("robodream_test_probe")
        node, reliable = self.ros.node, qos_profile(QosConfig(depth=50))
        self.joint_states: list[tuple[float, np.ndarray]] = []
        self.commands: list[tuple[float, np.ndarray]] = []
        node.create_subscription(JointState, "/joint_states", lambda msg: self.joint_states.append(
            (time.monotonic(), np.asarray(msg.position[:7]))), reliable)
        node.create_subscription(
            JointTrajectory, "/panda_arm_controller/joint_trajectory",
            lambda msg: self.commands.append((time.monotonic(), np.asarray(msg.points[0].positions))), reliable)
        self.estop = node.create_publisher(Bool, "/robodream/estop", reliable)
        self.estop_reset = node.create_publisher(Empty, "/robodream/estop_reset", reliable)
        self.ros.start()

    def publish_estop(self, value: bool) -> None:
        from std_msgs.msg import Bool

        self.ros.wait_for_subscribers(self.estop, 10)
        self.estop.publish(Bool(data=value))

    def positions_between(self, start: float, end: float) -> np.ndarray:
        return np.array([q for t, q in list(self.joint_states) if start <= t <= end])

    def close(self) -> None:
        self.ros.close()
