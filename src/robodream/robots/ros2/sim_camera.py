"""The sim-arm's camera driver: a separate process that renders and publishes the camera topics.

PyBullet's TinyRenderer holds the GIL for the whole frame (~20-30 ms for the Panda at 64x64 on the 2-core
machine), so rendering in the node's own process stalled physics and the 100 Hz joint states by that much
on every frame — a real arm's joint-state broadcaster does not wait for the camera. Here, as on a real robot,
the camera is its own process and ROS node: it builds the same scene (same task, same seeds, so the same
bodies, colours, light and camera), and for every frame the node sends it the pose of every body and the
arm's joint positions; it copies them into its scene, renders and publishes (stamped with the capture time).

Back-pressure: a frame is only sent when the previous one is done, so an overloaded machine lowers the
camera rate (as an overloaded camera does) instead of queueing stale frames.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

from robodream.errors import RobodreamError

READY_TIMEOUT_S = 60.0
MOVABLE = [0, 1, 2, 3, 4, 5, 6, 9, 10]  # the Panda's arm and finger joints (robots/sim/arm.py)


def _die_with_parent() -> None:
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: a crashed sim-arm takes us along
    except OSError:
        pass


def snapshot(env) -> tuple:
    """Everything the camera needs from the physics scene: every body's base pose and the arm's joints."""
    from robodream.robots.sim.bullet import p

    c, scene = env.scene.client, env.scene
    poses = [(b, *p.getBasePositionAndOrientation(b, physicsClientId=c))
             for b in (p.getBodyUniqueId(i, physicsClientId=c) for i in range(p.getNumBodies(physicsClientId=c)))]
    joints = [js[0] for js in p.getJointStates(scene.panda, MOVABLE, physicsClientId=c)]
    return poses, joints


def _camera_main(cfg, conn, parent_pid: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node stops us; Ctrl-C goes to the node
    _die_with_parent()
    from sensor_msgs.msg import Image

    from robodream.robots.ros2 import messages as m
    from robodream.robots.ros2.config import QosConfig
    from robodream.robots.ros2.node import RosNode, qos_profile
    from robodream.robots.sim.bullet import p
    from robodream.robots.sim.env import make_env

    env = make_env(cfg.env)
    env.reset(seed=cfg.seed)
    ros = RosNode("robodream_sim_camera")
    cameras = list(cfg.robot.cameras.items())
    pubs = [ros.node.create_publisher(Image, cam.topic, qos_profile(QosConfig(depth=10))) for _, cam in cameras]
    latency = cfg.faults.latency_ms / 1000
    conn.send(("ready",))
    c = env.scene.client
    try:
        while os.getppid() == parent_pid:
            if not conn.poll(0.5):
                continue
            message = conn.recv()
            if message[0] == "stop":
                return
            if message[0] == "reset":
                env.reset(seed=message[1])
                conn.send(("reset_ok",))
                continue
            _, stamp, (poses, joints) = message
            for body, pos, orn in poses:
                p.resetBasePositionAndOrientation(body, pos, orn, physicsClientId=c)
            for j, q in zip(MOVABLE, joints, strict=True):
                p.resetJointState(env.scene.panda, j, q, physicsClientId=c)
            rgb = env.scene.render()
            delay = stamp + latency - time.time()
            if delay > 0:
                time.sleep(delay)  # fault injection: frames reach the network this much after capture
            for pub, (name, _) in zip(pubs, cameras, strict=True):
                pub.publish(m.rgb_to_image(rgb, stamp, f"{name}_camera_optical_frame"))
            conn.send(("done",))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return
    finally:
        ros.close()
        env.close()


class CameraProcess:
    """Handle on the camera process: `frame` (non-blocking), `reset` (waits), `close`."""

    def __init__(self, cfg):
        context = mp.get_context("spawn")  # never fork a process holding rclpy and pybullet state
        self.conn, child = context.Pipe()
        self.proc = context.Process(target=_camera_main, args=(cfg, child, os.getpid()), daemon=True,
                                    name="robodream-sim-camera")
        self.proc.start()
        self.busy = False
        self.skipped = 0
        self._expect("ready", READY_TIMEOUT_S)

    def _expect(self, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.conn.poll(0.05):
                message = self.conn.recv()
                if message[0] == "done":
                    self.busy = False
                if message[0] == what:
                    return
            elif not self.proc.is_alive():
                raise RobodreamError(f"the sim-arm camera process died (exit code {self.proc.exitcode})")
        raise RobodreamError(f"the sim-arm camera process did not answer ({what}) within {timeout_s:.0f} s")

    def frame(self, stamp: float, state: tuple) -> bool:
        """Send a frame to render unless the previous one is still being rendered (then it is skipped)."""
        while self.conn.poll():
            if self.conn.recv()[0] == "done":
                self.busy = False
        if self.busy:
            self.skipped += 1
            return False
        self.conn.send(("frame", stamp, state))
        self.busy = True
        return True

    def reset(self, seed: int) -> None:
        """Reset the camera's scene; returns once every earlier frame is published and the reset is done."""
        self.conn.send(("reset", seed))
        self._expect("reset_ok", 30.0)

    def close(self) -> None:
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=3.0)
        if self.proc.is_alive():
            self.proc.kill()
