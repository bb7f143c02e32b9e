"""The safety layer (clamps, e-stop latch, watchdog), URDF kinematics, the safe sim env, and ROS message
conversions — everything of the ROS 2 bridge that runs without a ROS graph."""

from __future__ import annotations

import os

import numpy as np
import pytest

from robodream.errors import RobodreamError
from robodream.pipeline.cli import main
from robodream.pipeline.config import build_config
from robodream.robots.kinematics import Kinematics
from robodream.robots.ros2.config import RobotConfig
from robodream.robots.safety import SafetyConfig, SafetyLayer
from robodream.robots.sim.arm import REST_POSE
from robodream.robots.sim.env import EnvConfig, make_env
from robodream.robots.sim.experts import make_expert
from robodream.robots.sim.safe_env import make_safe_env
from tests.pipeline.ros_util import SIM_CONFIG

PANDA = [f"panda_joint{i}" for i in range(1, 8)]
LOWER = np.array([-2.9671, -1.8326, -2.9671, -3.1416, -2.9671, -0.0873, -2.9671])
UPPER = np.array([2.9671, 1.8326, 2.9671, 0.0, 2.9671, 3.8223, 2.9671])
VELOCITY = np.array([2.175] * 4 + [2.61] * 3)


def _layer(**overrides) -> SafetyLayer:
    return SafetyLayer(SafetyConfig(**overrides), 0.1, LOWER, UPPER, VELOCITY, {"joint_states": 0.1, "camera": 0.3})


def test_end_effector_stage_clamps_step_box_gripper_and_nan():
    s = _layer()
    ee = np.array([0.5, 0.0, 0.1])
    sent, target = s.clamp_ee(ee, [0.01, -0.02, 0.03, 1.0])  # nominal: untouched
    np.testing.assert_allclose(sent, [0.01, -0.02, 0.03, 1.0])
    assert s.clamps == 0
    sent, target = s.clamp_ee(ee, [0.5, 0.0, 0.0, 0.0])  # too large
    np.testing.assert_allclose(sent[:3], [0.04, 0.0, 0.0])
    sent, target = s.clamp_ee(np.array([0.79, 0.0, 0.02]), [0.04, 0.0, -0.04, 1.7])  # out of the box
    np.testing.assert_allclose(target, [0.80, 0.0, 0.012])
    assert sent[3] == 1.0
    sent, target = s.clamp_ee(ee, [np.nan, 0.0, np.inf, 1.0])  # NaN/inf -> hold, gripper kept
    np.testing.assert_allclose(sent, [0, 0, 0, 1.0])
    np.testing.assert_allclose(target, ee)
    assert dict(s.counts) == {"ee_step": 1, "workspace": 1, "gripper_range": 1, "nonfinite_action": 1}
    outside = np.array([0.9, 0.0, 0.1])  # pushed out by contact: comes back at most one step per tick
    _, target = s.clamp_ee(outside, [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(target, [0.86, 0.0, 0.1])


def test_joint_stage_enforces_limits_max_relative_target_and_velocity():
    s = _layer(max_joint_step=0.1, velocity_scale=0.5)  # 2.175 * 0.5 * 0.1 = 0.109 > 0.1: the step binds
    q = np.array(REST_POSE[:7])
    np.testing.assert_allclose(s.clamp_joints(q, q + 0.05), q + 0.05)
    far = s.clamp_joints(q, q + np.array([0.4, 0.2, 0, 0, 0, 0, 0]))
    np.testing.assert_allclose(far - q, [0.1, 0.05, 0, 0, 0, 0, 0])  # scaled uniformly: direction kept
    beyond = s.clamp_joints(np.zeros(7) + [0, 0, 0, -0.05, 0, 0, 0], np.array([0, 0, 0, 0.5, 0, 0, 0.0]))
    assert beyond[3] <= -0.01 + 1e-12  # URDF upper limit 0 minus the margin
    slow = _layer(velocity_scale=0.2)  # 2.61 * 0.2 * 0.1 = 0.052 for joints 5-7
    moved = slow.clamp_joints(q, q + np.array([0, 0, 0, 0, 0, 0, 0.3]))
    assert moved[6] - q[6] == pytest.approx(0.0522)
    assert dict(s.counts) == {"joint_step": 1, "joint_limit": 1} and dict(slow.counts) == {"joint_velocity": 1}
    np.testing.assert_allclose(s.clamp_joints(q, q + np.nan), q)


def test_estop_latches_until_reset_and_watchdog_counts_trips():
    s = _layer()
    assert s.must_hold({"joint_states": 0.01, "camera": 0.05}) is None
    s.estop.trip("button")
    s.estop.trip("again")  # already latched: one trip
    assert "E-STOP (button)" == s.must_hold({"joint_states": 0.01, "camera": 0.05})
    assert s.estop.reset() and not s.estop.reset()
    assert "joint_states 0.25 s old" in s.must_hold({"joint_states": 0.25, "camera": 0.05})
    assert "camera inf s old" in s.must_hold({"joint_states": 0.25, "camera": float("inf")})
    assert s.must_hold({"joint_states": 0.01, "camera": 0.05}) is None
    s.must_hold({"joint_states": 0.5, "camera": 0.05})
    report = s.report()
    assert report["estop_trips"] == 1 and report["watchdog_trips"] == 2 and report["hold_ticks"] == 4
    with pytest.raises(RobodreamError, match="state_timeout_s"):
        SafetyConfig(state_timeout_s=3.0)
    with pytest.raises(RobodreamError, match="workspace"):
        SafetyConfig(workspace_low=[0.9, 0, 0])


def test_urdf_kinematics_matches_the_simulated_arm():
    env = make_env(EnvConfig())
    kin = Kinematics("franka_panda/panda.urdf", PANDA, "panda_grasptarget", rest_pose=REST_POSE[:7])
    try:
        obs, _ = env.reset(seed=3)
        q = obs["observation.state"][4:].astype(np.float64)
        np.testing.assert_allclose(kin.fk(q), obs["observation.state"][:3], atol=1e-6)
        target = obs["observation.state"][:3] + np.array([0.03, -0.02, -0.03])
        np.testing.assert_allclose(kin.ik(target, q, {"panda_finger_joint1": 0.04}), env.arm._ik(target), atol=1e-6)
        np.testing.assert_allclose(kin.limits.lower, LOWER)
        np.testing.assert_allclose(kin.limits.velocity, VELOCITY)
    finally:
        kin.close()
        env.close()
    with pytest.raises(RobodreamError, match="not in .*panda.urdf"):
        Kinematics("franka_panda/panda.urdf", ["shoulder"], "panda_grasptarget")
    with pytest.raises(RobodreamError, match="URDF nope.urdf not found"):
        Kinematics("nope.urdf", PANDA, "tool0")


def test_safe_sim_env_equals_the_bare_env_on_a_nominal_policy_and_holds_on_estop():
    from robodream.pipeline.policy.harness import run_episode

    bare, safe = make_env(EnvConfig()), make_safe_env(EnvConfig())
    try:
        for seed in (1000, 1001):
            a = run_episode(bare, make_expert("push_cube"), seed)
            b = run_episode(safe, make_expert("push_cube"), seed)
            assert (a.success, a.steps) == (b.success, b.steps)
        assert safe.safety.clamps == 0
        obs, _ = safe.reset(seed=5)
        safe.safety.estop.trip("test")
        for _ in range(3):
            obs2, *_, info = safe.step(np.array([0.04, 0.04, 0.0, 1.0]))
        assert info["safety"]["hold"].startswith("E-STOP")
        np.testing.assert_allclose(obs2["observation.state"][:3], obs["observation.state"][:3], atol=2e-3)
    finally:
        bare.close()
        safe.close()


def test_image_messages_decode_to_square_rgb():
    rclpy_msgs = pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages are not installed")
    from robodream.robots.ros2.messages import image_to_rgb, rgb_to_image

    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    msg = rgb_to_image(rgb, 12.5, "cam")
    assert msg.header.stamp.sec == 12 and msg.header.stamp.nanosec == 500_000_000
    np.testing.assert_array_equal(image_to_rgb(msg, 48)[:, :48], rgb[:, 8:56])  # centre crop, no resize
    bgr = rclpy_msgs.Image(height=2, width=2, encoding="bgr8", step=6, data=bytes([1, 2, 3] * 4))
    assert image_to_rgb(bgr, 2)[0, 0].tolist() == [3, 2, 1]
    with pytest.raises(RobodreamError, match="encoding '32FC1' is not supported"):
        image_to_rgb(rclpy_msgs.Image(height=1, width=1, encoding="32FC1", step=4, data=bytes(4)), 1)


def test_robot_configs_load_and_bad_fields_are_one_line(capsys):
    sim = build_config(RobotConfig, [], [SIM_CONFIG])
    assert sim.cameras["front"].topic == "/camera/front/image_raw" and sim.command.interface == "joint_trajectory"
    real = build_config(RobotConfig, [], [SIM_CONFIG.parent / "panda.yaml"])
    assert real.topics.environment_state is None and real.reset.mode == "operator"
    with pytest.raises(RobodreamError, match="command.interface='velocity'"):
        build_config(RobotConfig, ["command.interface=velocity"], [SIM_CONFIG])
    assert main(["deploy", "policy=expert"]) == 2
    assert "name the arm: robot=configs/robot/<arm>.yaml" in capsys.readouterr().err
    assert main(["deploy", f"robot={SIM_CONFIG}", "success=maybe", "policy=expert"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_operator_keys_are_read_from_a_pipe():
    import time

    from robodream.pipeline.robot.operator_keys import KeyReader

    read_fd, write_fd = os.pipe()
    keys: list[str] = []
    with open(read_fd, "rb", buffering=0) as stream, KeyReader(keys.append, stream):
        os.write(write_fd, b"e r\n")
        deadline = time.monotonic() + 5
        while len(keys) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.close(write_fd)
    assert keys == ["e", " ", "r", "\n"]
