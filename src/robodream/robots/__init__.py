"""Robots: the Robot interface, the PyBullet Panda scene, tasks, task environments and scripted experts.

Import submodules directly (``from robodream.robots.sim.env import make_env``): pybullet is only imported
by the simulation modules.
"""
