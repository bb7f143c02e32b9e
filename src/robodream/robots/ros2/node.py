"""rclpy plumbing shared by the ROS 2 arm, the sim-arm node and the recorder.

Every robodream ROS process owns one rclpy context (not the global one), so an arm can be opened and closed
repeatedly in one process (tests, a notebook) and never interferes with other rclpy users. Signal handling
is left to Python (``SignalHandlerOptions.NO``): Ctrl-C reaches robodream's own handlers, which stop the loop
and send the final hold, instead of rclpy shutting the context down underneath them.

Callbacks run in one executor thread (`RosNode.start`), and store the newest message of each stream in a
`Latest` slot; the control loop reads the slots. Nothing in a callback blocks.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from robodream.errors import RobodreamError
from robodream.robots.ros2.config import QosConfig


def require_rclpy() -> None:
    """Import rclpy or stop with one line saying how to install it."""
    try:
        import rclpy  # noqa: F401
    except ImportError as exc:
        raise RobodreamError(f"ROS 2 (rclpy) is not available ({exc}): pip install 'robodream[ros]' (rclpy and the "
                             "message packages from pip), or source a ROS 2 installation") from None


def qos_profile(cfg: QosConfig):
    """rclpy QoSProfile of a `QosConfig` (keep-last history of `depth` messages)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=cfg.depth,
        reliability=ReliabilityPolicy.RELIABLE if cfg.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if cfg.durability == "transient_local"
                    else DurabilityPolicy.VOLATILE),
    )


class Latest:
    """The newest message of one stream as ``(value, stamp, received)``: the decoded value, its header stamp
    (wall-clock s, 0 if none) and when it was received (monotonic s). ``count`` counts messages received."""

    def __init__(self) -> None:
        self.snapshot: tuple[Any, float, float] = (None, 0.0, float("-inf"))
        self.count = 0

    def put(self, value: Any, stamp: float = 0.0) -> None:
        # one attribute assignment of a tuple is atomic under the GIL: a reader never sees a value paired with
        # another message's times
        self.snapshot = (value, stamp, time.monotonic())
        self.count += 1

    @property
    def value(self) -> Any:
        return self.snapshot[0]

    @property
    def received(self) -> float:
        return self.snapshot[2]

    def age(self, check_stamp: bool = True) -> float:
        """Seconds since the message was received, or since its stamp when that is older (a driver that keeps
        republishing an old message is as stale as a silent one); inf when nothing arrived yet."""
        _, stamp, received = self.snapshot
        age = time.monotonic() - received
        if check_stamp and stamp > 0:
            age = max(age, time.time() - stamp)
        return age


class RosNode:
    """One rclpy context + node + single-threaded executor, spun in a daemon thread after `start`."""

    def __init__(self, name: str):
        require_rclpy()
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self.context = rclpy.context.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.callback_error: BaseException | None = None

    @property
    def domain_id(self) -> int:
        return int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)

    def start(self) -> None:
        """Spin the executor in a daemon thread (callbacks run there)."""
        self._thread = threading.Thread(target=self._spin, name=f"rclpy-{self.node.get_name()}", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except (ExternalShutdownException, KeyboardInterrupt):
                return
            except Exception as exc:  # a callback raised: keep the first error for the control loop
                if self.context.ok():
                    self.callback_error = self.callback_error or exc
                else:
                    return

    def spin_once(self, timeout_s: float) -> None:
        """Run at most one ready callback in this thread (for nodes that drive their own loop)."""
        self.executor.spin_once(timeout_sec=max(0.0, timeout_s))

    def close(self) -> None:
        """Stop the spin thread, destroy the node, shut the context down (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self.context.ok():
            try:
                self.executor.shutdown(timeout_sec=1.0)
                self.node.destroy_node()
            finally:
                self.context.try_shutdown()

    def wait_for_subscribers(self, publisher, timeout_s: float) -> bool:
        """Wait until DDS discovery matched at least one subscription of ``publisher``."""
        deadline = time.monotonic() + timeout_s
        while publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True
