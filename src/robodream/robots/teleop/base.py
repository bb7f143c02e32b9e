"""The teleop device interface: raw input -> `TeleopCommand`, read once per control tick.

The devices (keyboard.py, spacemouse.py, gamepad.py) implement it; device.py picks one by name."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: episode events a device can raise: start/save (one toggle, like a record button), discard, mark the
#: episode a success or a failure (overriding the task's own test), quit
EVENTS = ("record", "discard", "success", "failure", "quit")


@dataclass
class TeleopCommand:
    """What the operator asked for during one control tick."""

    delta: np.ndarray = field(default_factory=lambda: np.zeros(3))  # end-effector move (m), robot base frame
    gripper: float | None = None  # absolute gripper command 0 (open) .. 1 (closed); None = keep
    toggle_gripper: bool = False
    events: list[str] = field(default_factory=list)

    def merged(self, other: TeleopCommand) -> TeleopCommand:
        """This command plus another device's: displacements add, either can toggle, events are joined."""
        return TeleopCommand(self.delta + other.delta, other.gripper if other.gripper is not None else self.gripper,
                             self.toggle_gripper != other.toggle_gripper, self.events + other.events)


class TeleopDevice(abc.ABC):
    """An input device. `read` is called once per control tick with the keys the window saw in that tick
    (devices other than the keyboard ignore them)."""

    name: str = "device"

    def connect(self) -> None:  # noqa: B027  (optional hook: the keyboard needs none)
        """Open the device (no-op for the keyboard)."""

    @abc.abstractmethod
    def read(self, keys: Sequence[int]) -> TeleopCommand:
        """The command for this tick."""

    def help_lines(self) -> list[str]:
        """Short lines for the window's key help."""
        return []

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release the device."""


def clip_delta(delta: np.ndarray, max_delta: float) -> np.ndarray:
    return np.clip(np.asarray(delta, dtype=np.float64), -max_delta, max_delta)


def rising(buttons: Sequence[bool], previous: Sequence[bool]) -> list[int]:
    """Indices of buttons pressed now and not at the previous read (one event per press, not per tick)."""
    return [i for i, down in enumerate(buttons) if down and not (i < len(previous) and previous[i])]
