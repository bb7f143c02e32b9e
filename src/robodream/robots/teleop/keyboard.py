"""Keyboard teleoperation: key presses collected by the teleop window -> `TeleopCommand`.

OpenCV's highgui reports key presses, not releases, so a held key is seen through the OS auto-repeat
(typically ~30 presses/s after a short delay). Each press moves the end effector by `step` metres along its
axis in that control tick, capped at the arm's per-tick limit: tapping nudges by a centimetre, holding moves at
roughly step x repeat rate (0.3 m/s by default). Directions are as seen in the default front camera, which looks
at the robot from across the table: up/down on screen is away from/towards the camera (robot -x/+x), left/right
is robot -y/+y.

Key codes are those of ``cv2.waitKeyEx``: ASCII for letters and control keys, X11 keysyms for the arrows under
the Qt and GTK backends (65361-65364), and Windows virtual-key codes shifted by 16 bits there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robodream.robots.teleop.base import TeleopCommand, TeleopDevice, clip_delta

LEFT, UP, RIGHT, DOWN = 65361, 65362, 65363, 65364
WIN_LEFT, WIN_UP, WIN_RIGHT, WIN_DOWN = 2424832, 2490368, 2555904, 2621440
ENTER = (13, 10, 65293, 65421)  # Return / keypad Enter, as different backends report them
BACKSPACE = (8, 65288)
ESCAPE = 27

# key -> (axis, sign) in the robot base frame
MOVES: dict[int, tuple[int, int]] = {}
for codes, axis, sign in (
    ((ord("w"), UP, WIN_UP), 0, -1),        # away from the camera
    ((ord("s"), DOWN, WIN_DOWN), 0, +1),    # towards the camera
    ((ord("a"), LEFT, WIN_LEFT), 1, -1),
    ((ord("d"), RIGHT, WIN_RIGHT), 1, +1),
    ((ord("r"),), 2, +1),                   # up
    ((ord("f"),), 2, -1),                   # down
):
    for code in codes:
        MOVES[code] = (axis, sign)

EVENT_KEYS: dict[int, str] = {ESCAPE: "quit", ord("q"): "quit", ord("x"): "discard", ord("y"): "success",
                              ord("n"): "failure"}
EVENT_KEYS.update({code: "record" for code in ENTER})
EVENT_KEYS.update({code: "discard" for code in BACKSPACE})
GRIPPER_KEYS = (ord(" "), ord("g"))

HELP = [
    "Enter      start / save episode",
    "x, Bksp    discard episode",
    "y / n      mark success / failure",
    "w/s a/d    move away/near, left/right",
    "arrows     same as w/s a/d",
    "r / f      move up / down",
    "space, g   open / close gripper",
    "q, Esc     quit",
]


class KeyboardDevice(TeleopDevice):
    """Keys -> end-effector steps, gripper toggles and episode events (see the module docstring)."""

    name = "keyboard"

    def __init__(self, step: float = 0.01, max_delta: float = 0.04):
        self.step = float(step)
        self.max_delta = float(max_delta)

    def read(self, keys: Sequence[int]) -> TeleopCommand:
        """The command for the keys pressed during one control tick (in the order they were pressed)."""
        delta = np.zeros(3)
        command = TeleopCommand()
        for key in keys:
            if ord("A") <= key <= ord("Z"):
                key += 32  # shift / caps lock: same as the lower-case key
            if key in MOVES:
                axis, sign = MOVES[key]
                delta[axis] += sign * self.step
            elif key in GRIPPER_KEYS:
                command.toggle_gripper = not command.toggle_gripper
            elif key in EVENT_KEYS:
                command.events.append(EVENT_KEYS[key])
        command.delta = clip_delta(delta, self.max_delta)
        return command

    def help_lines(self) -> list[str]:
        return list(HELP)
