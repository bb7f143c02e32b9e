"""Teleoperation input devices behind one interface (`base.TeleopDevice`).

The keyboard (keys collected by the teleop window) is always there; a SpaceMouse (`pyspacemouse`) and a
gamepad (`pygame`) are optional (`pip install 'robodream[teleop]'`). Each device turns raw input into a
`TeleopCommand` (an end-effector displacement, a gripper command, and episode events) with a pure mapping
function that tests exercise without hardware or a window.
"""

from robodream.robots.teleop.base import TeleopCommand, TeleopDevice
from robodream.robots.teleop.device import DEVICES, make_device

__all__ = ["DEVICES", "TeleopCommand", "TeleopDevice", "make_device"]
