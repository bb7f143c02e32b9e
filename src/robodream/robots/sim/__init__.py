"""PyBullet simulation: the Panda scene, the simulated arm, tasks, the task env and scripted experts.

Importing this package does not import pybullet; the submodules do::

    from robodream.robots.sim.env import EnvConfig, make_env
    from robodream.robots.sim.experts import ExpertConfig, make_expert
"""
