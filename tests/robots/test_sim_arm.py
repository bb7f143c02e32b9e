"""The simulated Panda: Robot interface, motion in the commanded direction, clipping (real PyBullet)."""

from __future__ import annotations

import numpy as np
import pytest

from robodream.errors import RobodreamError
from robodream.features import STATE
from robodream.robots.robot import Robot
from robodream.robots.sim.arm import ArmConfig, SimPandaArm


@pytest.fixture
def arm():
    robot = SimPandaArm(image_size=32)
    robot.connect()
    yield robot
    robot.disconnect()


def test_robot_interface(arm):
    assert isinstance(arm, Robot) and arm.robot_type == "panda_sim" and arm.is_connected
    obs = arm.get_observation()
    assert set(obs) == set(arm.observation_features)
    for key, feat in arm.observation_features.items():
        assert list(obs[key].shape) == feat["shape"] and str(obs[key].dtype) == feat["dtype"]
    assert arm.action_features["action"]["shape"] == [4]
    home = obs[STATE]
    assert home[:3] == pytest.approx(ArmConfig().home, abs=2e-3)
    assert home[3] == pytest.approx(0.08, abs=1e-3)  # gripper open


def test_context_manager_and_send_before_connect():
    robot = SimPandaArm(image_size=16)
    with pytest.raises(RobodreamError, match="connect"):
        robot.send_action(np.zeros(4))
    with robot:
        assert robot.is_connected
    assert not robot.is_connected


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_end_effector_moves_in_the_commanded_direction(arm, axis, sign):
    start = arm.state()[:3].copy()
    delta = np.zeros(4, np.float32)
    delta[axis] = sign * 0.03
    for _ in range(3):
        arm.send_action(delta)
    moved = arm.state()[:3] - start
    assert sign * moved[axis] == pytest.approx(0.09, abs=0.012)  # 3 x 3 cm, tracked within ~1 cm
    off_axis = np.delete(moved, axis)
    assert np.all(np.abs(off_axis) < 0.01)


def test_actions_are_clipped_and_the_clipped_action_is_returned(arm):
    sent = arm.send_action(np.array([0.5, -0.5, 0.0, 2.0]))
    assert sent.dtype == np.float32
    assert sent == pytest.approx([0.04, -0.04, 0.0, 1.0], abs=1e-6)
    sent = arm.send_action(np.array([0.0, 0.0, 0.0, -1.0]))
    assert sent[3] == 0.0


def test_workspace_box_limits_the_target(arm):
    low_z = arm.config.workspace_low[2]
    sent = None
    for _ in range(12):  # 12 x 4 cm down from 22 cm: would go through the table
        sent = arm.send_action(np.array([0.0, 0.0, -0.04, 0.0]))
    z = arm.state()[2]
    assert z == pytest.approx(low_z, abs=0.006)
    assert abs(sent[2]) < 0.006  # at the floor of the box the applied dz is ~0, not -0.04


def test_gripper_closes_and_opens(arm):
    for _ in range(3):
        arm.send_action(np.array([0.0, 0.0, 0.0, 1.0]))
    assert arm.state()[3] < 0.005
    for _ in range(3):
        arm.send_action(np.array([0.0, 0.0, 0.0, 0.0]))
    assert arm.state()[3] > 0.075


def test_bad_arm_config():
    with pytest.raises(RobodreamError, match="max_delta"):
        ArmConfig(max_delta=0.0)
    with pytest.raises(RobodreamError, match="workspace_low"):
        ArmConfig(workspace_low=(0.9, -0.3, 0.0))
