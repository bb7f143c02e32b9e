"""The Robot interface (design.md §3): what every arm — PyBullet, ROS 2, a test double — provides."""

from __future__ import annotations

import abc

import numpy as np

from robodream.features import Feature


class Robot(abc.ABC):
    """A robot arm with cameras.

    ``send_action`` returns the action that was actually sent, after any safety clipping, so that callers
    record what the robot really did rather than what was asked.
    """

    #: short type name stored as ``robot_type`` in episode stores, e.g. "panda_sim"
    robot_type: str = "robot"

    @property
    @abc.abstractmethod
    def observation_features(self) -> dict[str, Feature]:
        """Keys, dtypes, shapes and names of what `get_observation` returns."""

    @property
    @abc.abstractmethod
    def action_features(self) -> dict[str, Feature]:
        """Keys, dtypes, shapes and names of what `send_action` accepts (normally just "action")."""

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the connection (start the simulator, subscribe to topics, ...)."""

    @abc.abstractmethod
    def get_observation(self) -> dict[str, np.ndarray]:
        """The current observation, keyed as in `observation_features`."""

    @abc.abstractmethod
    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Command the robot; returns the action actually sent (after clipping)."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Stop the robot safely and release the connection."""

    def __enter__(self) -> Robot:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
