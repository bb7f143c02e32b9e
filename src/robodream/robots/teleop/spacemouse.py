"""3Dconnexion SpaceMouse teleoperation (optional: `pip install 'robodream[teleop]'`, which brings pyspacemouse;
on Linux it also needs libhidapi and read access to /dev/hidraw*).

Translations are proportional: full deflection moves the end effector by the arm's per-tick limit. Axes are
mapped as seen in the front camera (like the keyboard): push away = away from the camera (robot -x), right =
robot +y, lift = up. Left button toggles the gripper, right button starts/saves an episode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robodream.errors import RobodreamError
from robodream.robots.teleop.base import TeleopCommand, TeleopDevice, clip_delta, rising

DEADZONE = 0.08  # the puck never rests at exactly zero


def spacemouse_command(x: float, y: float, z: float, buttons: Sequence[bool], previous: Sequence[bool],
                       max_delta: float) -> TeleopCommand:
    """Pure mapping from one SpaceMouse reading (axes in [-1, 1]) to a command."""
    axes = np.asarray([-y, x, z], dtype=np.float64)
    axes[np.abs(axes) < DEADZONE] = 0.0
    command = TeleopCommand(delta=clip_delta(axes * max_delta, max_delta))
    for button in rising(buttons, previous):
        if button == 0:
            command.toggle_gripper = True
        elif button == 1:
            command.events.append("record")
    return command


class SpaceMouseDevice(TeleopDevice):
    name = "spacemouse"

    def __init__(self, max_delta: float = 0.04):
        self.max_delta = max_delta
        self._previous: list[bool] = []
        self._device = None

    def connect(self) -> None:
        try:
            import pyspacemouse
        except ImportError:
            raise RobodreamError("device=spacemouse needs pyspacemouse: pip install 'robodream[teleop]'") from None
        self._device = pyspacemouse.open()
        if not self._device:
            raise RobodreamError("no SpaceMouse found: plug it in and check read access to /dev/hidraw* "
                                 "(or use device=keyboard)")

    def read(self, keys: Sequence[int]) -> TeleopCommand:
        import pyspacemouse

        state = pyspacemouse.read()
        buttons = [bool(b) for b in getattr(state, "buttons", [])]
        command = spacemouse_command(state.x, state.y, state.z, buttons, self._previous, self.max_delta)
        self._previous = buttons
        return command

    def help_lines(self) -> list[str]:
        return ["SpaceMouse: push to move", "  left btn  gripper", "  right btn start / save"]

    def close(self) -> None:
        if self._device:
            import pyspacemouse

            pyspacemouse.close()
            self._device = None
