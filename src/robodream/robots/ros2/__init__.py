"""ROS 2: the arm behind the Robot interface (`arm.Ros2Arm`), as a task env (`env.Ros2TaskEnv`), its config
(`config.RobotConfig`, from configs/robot/<arm>.yaml), and the simulated arm node (`sim_node`).

Importing this package imports neither rclpy nor pybullet; the submodules import them where they are used.
"""
