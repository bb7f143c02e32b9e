"""Teleop devices: the pure input -> command mappings (no window, no hardware)."""

from __future__ import annotations

import numpy as np
import pytest

from robodream.errors import RobodreamError
from robodream.robots.teleop import make_device
from robodream.robots.teleop.base import TeleopCommand
from robodream.robots.teleop.gamepad import BUTTON_A, BUTTON_START, gamepad_command
from robodream.robots.teleop.keyboard import LEFT, UP, KeyboardDevice
from robodream.robots.teleop.spacemouse import spacemouse_command


def test_keyboard_steps_accumulate_per_tick_and_are_capped():
    keyboard = KeyboardDevice(step=0.01, max_delta=0.025)
    assert keyboard.read([ord("d")]).delta.tolist() == [0.0, 0.01, 0.0]
    np.testing.assert_allclose(keyboard.read([ord("d")] * 5).delta, [0.0, 0.025, 0.0])  # auto-repeat, capped
    np.testing.assert_allclose(keyboard.read([ord("w"), ord("R"), LEFT]).delta, [-0.01, -0.01, 0.01])
    np.testing.assert_allclose(keyboard.read([UP, ord("s")]).delta, [0.0, 0.0, 0.0])  # opposite keys cancel
    assert keyboard.read([]).delta.tolist() == [0.0, 0.0, 0.0]


def test_keyboard_events_and_gripper():
    keyboard = KeyboardDevice()
    command = keyboard.read([13, ord("y"), ord("x"), ord("n"), 27, ord("Q")])
    assert command.events == ["record", "success", "discard", "failure", "quit", "quit"]
    assert keyboard.read([ord(" ")]).toggle_gripper
    assert not keyboard.read([ord(" "), ord("g")]).toggle_gripper  # two toggles in one tick cancel
    assert keyboard.read([8]).events == ["discard"]  # backspace


def test_spacemouse_and_gamepad_mappings():
    command = spacemouse_command(0.5, 1.0, 0.02, [True, False], [], max_delta=0.04)
    np.testing.assert_allclose(command.delta, [-0.04, 0.02, 0.0])  # push away = -x, right = +y, deadzone on z
    assert command.toggle_gripper and command.events == []
    held = spacemouse_command(0.0, 0.0, 0.0, [True, True], [True, False], max_delta=0.04)
    assert not held.toggle_gripper and held.events == ["record"]  # buttons act on press, not while held
    pad = gamepad_command([0.0, -1.0, 0.0, 0.0, 0.1], [False] * 8, [], max_delta=0.04)
    np.testing.assert_allclose(pad.delta, [-0.04, 0.0, 0.0])  # stick up = away from the camera
    buttons = [False] * 8
    buttons[BUTTON_A] = buttons[BUTTON_START] = True
    pressed = gamepad_command([0.0] * 5, buttons, [], max_delta=0.04)
    assert pressed.toggle_gripper and pressed.events == ["record"]


def test_commands_merge_and_unknown_devices_are_refused():
    merged = TeleopCommand(np.array([0.01, 0, 0]), events=["record"]).merged(
        TeleopCommand(np.array([0, 0.02, 0]), toggle_gripper=True))
    np.testing.assert_allclose(merged.delta, [0.01, 0.02, 0.0])
    assert merged.toggle_gripper and merged.events == ["record"]
    with pytest.raises(RobodreamError, match="unknown teleop device 'joystick'"):
        make_device("joystick", step=0.01, max_delta=0.04)
