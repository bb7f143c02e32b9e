"""The physical arm: deploy a policy, record over ROS 2."""
