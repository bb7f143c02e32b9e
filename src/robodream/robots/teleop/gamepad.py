"""Gamepad teleoperation through pygame's joystick API (optional: `pip install 'robodream[teleop]'`).

Layout (an Xbox-style pad as SDL numbers it): left stick moves in the table plane as seen in the front camera
(up = away from the camera), right stick up/down moves up/down, A toggles the gripper, Start starts/saves an
episode, B discards it, X / Y mark success / failure, Back quits. Stick deflection is proportional: full
deflection = the arm's per-tick limit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from robodream.errors import RobodreamError
from robodream.robots.teleop.base import TeleopCommand, TeleopDevice, clip_delta, rising

DEADZONE = 0.15  # worn sticks rest well away from zero
LEFT_X, LEFT_Y, RIGHT_Y = 0, 1, 4
BUTTON_A, BUTTON_B, BUTTON_X, BUTTON_Y, BUTTON_BACK, BUTTON_START = 0, 1, 2, 3, 6, 7
BUTTON_EVENTS = {BUTTON_START: "record", BUTTON_B: "discard", BUTTON_X: "success", BUTTON_Y: "failure",
                 BUTTON_BACK: "quit"}


def gamepad_command(axes: Sequence[float], buttons: Sequence[bool], previous: Sequence[bool],
                    max_delta: float) -> TeleopCommand:
    """Pure mapping from one gamepad reading (SDL axes in [-1, 1], y pointing down) to a command."""
    def axis(i: int) -> float:
        value = float(axes[i]) if i < len(axes) else 0.0
        return 0.0 if abs(value) < DEADZONE else value

    # stick up (negative y) = away from the camera = robot -x; right = +y; right stick up = +z
    delta = np.asarray([axis(LEFT_Y), axis(LEFT_X), -axis(RIGHT_Y)]) * max_delta
    command = TeleopCommand(delta=clip_delta(delta, max_delta))
    for button in rising(buttons, previous):
        if button == BUTTON_A:
            command.toggle_gripper = True
        elif button in BUTTON_EVENTS:
            command.events.append(BUTTON_EVENTS[button])
    return command


class GamepadDevice(TeleopDevice):
    name = "gamepad"

    def __init__(self, max_delta: float = 0.04):
        self.max_delta = max_delta
        self._previous: list[bool] = []
        self._joystick = None

    def connect(self) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # joystick events only; the OpenCV window shows the view
        try:
            import pygame
        except ImportError:
            raise RobodreamError("device=gamepad needs pygame: pip install 'robodream[teleop]'") from None
        pygame.init()
        pygame.joystick.init()
        if pygame.joystick.get_count() == 0:
            raise RobodreamError("no gamepad found: plug one in (or use device=keyboard)")
        self._joystick = pygame.joystick.Joystick(0)
        self._joystick.init()

    def read(self, keys: Sequence[int]) -> TeleopCommand:
        import pygame

        pygame.event.pump()
        js = self._joystick
        axes = [js.get_axis(i) for i in range(js.get_numaxes())]
        buttons = [bool(js.get_button(i)) for i in range(js.get_numbuttons())]
        command = gamepad_command(axes, buttons, self._previous, self.max_delta)
        self._previous = buttons
        return command

    def help_lines(self) -> list[str]:
        return ["Gamepad: sticks move", "  A gripper  Start rec/save", "  B discard  X/Y success/fail"]

    def close(self) -> None:
        if self._joystick is not None:
            import pygame

            pygame.quit()
            self._joystick = None
