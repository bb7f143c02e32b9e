"""robodream: record robot-arm episodes, train an action-conditioned video-diffusion world model on them,
generate synthetic rollouts, and train and validate manipulation policies.

Importing the package is cheap on purpose: heavy dependencies (pybullet, torch, diffusers, lightning, rclpy)
are imported inside the modules that need them.
"""

__version__ = "0.1.0"
