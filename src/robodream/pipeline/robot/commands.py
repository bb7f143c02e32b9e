"""CLI commands of the ROS 2 bridge (registered in cli.py; nothing heavy is imported until a handler runs):

    robodream sim-arm robot=configs/robot/panda_sim.yaml task=push_cube [faults.latency_ms=30 ...]
    robodream deploy policy=<checkpoint | expert> robot=configs/robot/<arm>.yaml episodes=10
    robodream record-ros robot=configs/robot/<arm>.yaml out=data/arm_teleop.zarr
"""

from __future__ import annotations

import argparse


def _cmd_sim_arm(ns: argparse.Namespace) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.robots.ros2.node import require_rclpy
    from robodream.robots.ros2.sim_node import SimArmConfig, run_sim_arm

    cfg = build_from_args(SimArmConfig, ns.args)
    require_rclpy()
    return run_sim_arm(cfg)


def _cmd_deploy(ns: argparse.Namespace) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.robot.deploy import DeployConfig, run_deploy
    from robodream.robots.ros2.node import require_rclpy

    cfg = build_from_args(DeployConfig, ns.args)
    require_rclpy()
    print("\n".join(run_deploy(cfg)))
    return 0


def _cmd_record_ros(ns: argparse.Namespace) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.robot.record_ros import RecordRosConfig, run_record_ros
    from robodream.robots.ros2.node import require_rclpy

    cfg = build_from_args(RecordRosConfig, ns.args)
    require_rclpy()
    print("\n".join(run_record_ros(cfg)))
    return 0


def add_commands(sub) -> None:
    """Add sim-arm, deploy and record-ros to the `robodream` parser."""
    from robodream.pipeline.cli_args import add_config_command

    add_config_command(sub, "sim-arm", "serve the PyBullet Panda as a ROS 2 arm (joint states, camera, trajectory "
                       "controller) with optional fault injection", _cmd_sim_arm,
                       "robodream.robots.ros2.sim_node:SimArmConfig")
    add_config_command(sub, "deploy", "run a policy on an arm over ROS 2 behind the safety layer, record the "
                       "episodes (source deploy) and write eval_info.json", _cmd_deploy,
                       "robodream.pipeline.robot.deploy:DeployConfig")
    add_config_command(sub, "record-ros", "record teleoperated episodes of an arm from its live ROS 2 topics into "
                       "an episode store", _cmd_record_ros,
                       "robodream.pipeline.robot.record_ros:RecordRosConfig")
