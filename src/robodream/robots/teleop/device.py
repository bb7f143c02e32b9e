"""Teleop devices by name: the one place that knows every device (each imports its optional driver lazily)."""

from __future__ import annotations

from robodream.errors import RobodreamError
from robodream.robots.teleop.base import TeleopDevice

DEVICES = ("keyboard", "spacemouse", "gamepad")


def make_device(name: str, *, step: float, max_delta: float) -> TeleopDevice:
    """The device called ``name`` ("keyboard", "spacemouse", "gamepad"); optional ones import lazily."""
    if name == "keyboard":
        from robodream.robots.teleop.keyboard import KeyboardDevice

        return KeyboardDevice(step=step, max_delta=max_delta)
    if name == "spacemouse":
        from robodream.robots.teleop.spacemouse import SpaceMouseDevice

        return SpaceMouseDevice(max_delta=max_delta)
    if name == "gamepad":
        from robodream.robots.teleop.gamepad import GamepadDevice

        return GamepadDevice(max_delta=max_delta)
    raise RobodreamError(f"unknown teleop device {name!r}: choose one of {', '.join(DEVICES)}")
