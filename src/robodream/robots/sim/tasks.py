"""Tasks on the Panda scene: objects, randomised initial states, the privileged state and the success test.

A task adds its objects to a freshly reset `PandaScene` (`build`), reports the ground-truth
``observation.environment_state`` (`env_state`: cube position + quaternion, goal position) and decides
success. Initial states are drawn from a numpy Generator that the env seeds from the episode seed.

- ``push_cube``: push a 5 cm cube onto a flat, visual-only target disc; success when the cube centre lies on
  the disc (xy distance <= disc radius) and the cube is on the table.
- ``pick_place``: pick up a 4 cm cube and put it into a 22 cm tray with 3 cm walls (built from boxes); success
  when the cube rests inside the tray: centre over the tray floor, low, still, and not touching the gripper.

The pick cube is 4 cm, not 5, so that a parallel gripper (8 cm max opening) can still grasp it when its yaw
is 45 degrees away from the fingers (diagonal 5.7 cm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robodream.robots.sim.bullet import p
from robodream.robots.sim.scene import TABLE_TOP, PandaScene

RGBA = tuple[float, float, float, float]


def _min_separation_pair(
    rng: np.random.Generator, low: np.ndarray, high: np.ndarray, low2: np.ndarray, high2: np.ndarray, sep: float
) -> tuple[np.ndarray, np.ndarray]:
    """Two xy points, the first in [low, high], the second in [low2, high2], at least ``sep`` apart.
    Rejection sampling from ``rng`` (deterministic for a given generator state)."""
    for _ in range(1000):
        a = rng.uniform(low, high)
        b = rng.uniform(low2, high2)
        if np.linalg.norm(a - b) >= sep:
            return a, b
    raise RuntimeError("could not sample a separated pair; the sampling boxes are too small")  # a bug


def _make_box(scene: PandaScene, half: float, mass: float, rgba: RGBA, pos, orn) -> int:
    c = scene.client
    col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[half] * 3, physicsClientId=c)
    vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[half] * 3, rgbaColor=rgba, physicsClientId=c)
    body = p.createMultiBody(mass, col, vis, pos, orn, physicsClientId=c)
    # Friction chosen so the cube slides when pushed but does not slip out of the fingers; a little
    # rolling/spinning friction stops it from spinning on forever after a push.
    p.changeDynamics(body, -1, lateralFriction=0.6, spinningFriction=0.001, rollingFriction=0.0001, physicsClientId=c)
    return body


class Task:
    """Base class: subclasses set the class attributes and implement `_build`, `goal` and `success`."""

    name: str = "task"
    #: default episode limit (control steps), ~2x the scripted expert's typical length
    max_steps: int = 100
    default_colors: dict[str, RGBA] = {}
    cube_half: float = 0.025

    def __init__(self) -> None:
        self.scene: PandaScene | None = None
        self.cube = -1

    def build(self, scene: PandaScene, rng: np.random.Generator, colors: dict[str, RGBA] | None = None) -> None:
        """Add the task's objects to a freshly reset scene, at an initial state drawn from ``rng``."""
        self.scene = scene
        self._build(scene, rng, {**self.default_colors, **(colors or {})})

    def _build(self, scene: PandaScene, rng: np.random.Generator, colors: dict[str, RGBA]) -> None:
        raise NotImplementedError

    def goal(self) -> np.ndarray:
        """Goal position (xyz, robot base frame)."""
        raise NotImplementedError

    def success(self) -> bool:
        raise NotImplementedError

    def cube_pose(self) -> tuple[np.ndarray, np.ndarray]:
        pos, orn = p.getBasePositionAndOrientation(self.cube, physicsClientId=self.scene.client)
        return np.asarray(pos), np.asarray(orn)

    def env_state(self) -> np.ndarray:
        """``[cube_x, cube_y, cube_z, cube_qx, cube_qy, cube_qz, cube_qw, goal_x, goal_y, goal_z]``, float32."""
        pos, orn = self.cube_pose()
        return np.concatenate([pos, orn, self.goal()]).astype(np.float32)

    def _place_cube(self, scene: PandaScene, xy: np.ndarray, yaw: float, rgba: RGBA) -> None:
        orn = p.getQuaternionFromEuler([0.0, 0.0, yaw])
        self.cube = _make_box(scene, self.cube_half, 0.1, rgba, [xy[0], xy[1], TABLE_TOP + self.cube_half], orn)


class PushCube(Task):
    """Push a 5 cm cube onto a target disc."""

    name = "push_cube"
    max_steps = 80
    default_colors = {"cube": (0.85, 0.15, 0.1, 1.0), "target": (0.1, 0.7, 0.2, 1.0)}
    cube_half = 0.025
    target_radius = 0.035  # a 7 cm disc: the 5 cm cube must be pushed onto it, not just next to it
    #: sampling boxes (xy, m) for the cube and the target, and their minimum centre distance; the cube box
    #: leaves room behind the cube (towards the robot and sideways) for the pusher to get around it
    cube_low, cube_high = np.array([0.42, -0.16]), np.array([0.62, 0.16])
    target_low, target_high = np.array([0.38, -0.22]), np.array([0.68, 0.22])
    min_separation = 0.2

    def _build(self, scene: PandaScene, rng: np.random.Generator, colors: dict[str, RGBA]) -> None:
        cube_xy, target_xy = _min_separation_pair(
            rng, self.cube_low, self.cube_high, self.target_low, self.target_high, self.min_separation
        )
        yaw = float(rng.uniform(-math.pi / 4, math.pi / 4))  # a cube's yaw is only defined modulo 90 degrees
        c = scene.client
        # visual-only (no collision shape) so the cube slides over it; 1 mm above the table against z-fighting
        vis = p.createVisualShape(
            p.GEOM_CYLINDER, radius=self.target_radius, length=0.002, rgbaColor=colors["target"], physicsClientId=c
        )
        self._target_pos = np.array([target_xy[0], target_xy[1], TABLE_TOP])
        self.target = p.createMultiBody(0, -1, vis, [target_xy[0], target_xy[1], TABLE_TOP + 0.001], physicsClientId=c)
        self._place_cube(scene, cube_xy, yaw, colors["cube"])

    def goal(self) -> np.ndarray:
        return self._target_pos

    def success(self) -> bool:
        pos, _ = self.cube_pose()
        on_table = pos[2] < TABLE_TOP + 2 * self.cube_half
        return bool(on_table and np.linalg.norm(pos[:2] - self._target_pos[:2]) <= self.target_radius)


def _make_tray(scene: PandaScene, xy: np.ndarray, half: float, wall: float, height: float, rgba: RGBA) -> int:
    """A static open box: a floor and four low walls, one body. Built from boxes rather than
    tray/traybox.urdf because that tray's 7 cm rim (at the 0.3 m scale the workspace allows) is higher than
    the Panda hand's underside when it grasps a cube on the table, so the 21 cm-wide hand caught on it."""
    floor_t = 0.006
    halves = [[half, half, floor_t / 2]]
    centres = [[0.0, 0.0, floor_t / 2]]
    for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        along_x = sy != 0  # walls at +-y run along x
        halves.append([half, wall / 2, height / 2] if along_x else [wall / 2, half, height / 2])
        centres.append([sx * (half - wall / 2), sy * (half - wall / 2), height / 2])
    n = len(halves)
    c = scene.client
    col = p.createCollisionShapeArray(
        [p.GEOM_BOX] * n, halfExtents=halves, collisionFramePositions=centres, physicsClientId=c
    )
    vis = p.createVisualShapeArray(
        [p.GEOM_BOX] * n,
        halfExtents=halves,
        visualFramePositions=centres,
        rgbaColors=[rgba] * n,
        physicsClientId=c,
    )
    return p.createMultiBody(0, col, vis, [xy[0], xy[1], TABLE_TOP], physicsClientId=c)


class PickPlace(Task):
    """Pick up a 4 cm cube and place it in a tray."""

    name = "pick_place"
    max_steps = 100
    default_colors = {"cube": (0.85, 0.15, 0.1, 1.0), "target": (0.35, 0.45, 0.85, 1.0)}
    cube_half = 0.02
    tray_half = 0.11  # 22 cm square tray
    tray_wall = 0.01
    tray_height = 0.03  # walls below the hand's underside (~3.5 cm above the grasp point)
    #: how far the cube centre may be from the tray centre (xy) and still be inside: wall + a bit of cube
    tray_inner_half = 0.11 - 0.01 - 0.01
    cube_low, cube_high = np.array([0.38, -0.26]), np.array([0.64, 0.26])
    tray_low, tray_high = np.array([0.46, -0.18]), np.array([0.60, 0.18])
    #: clearance between the cube centre and the tray's outer edge, per axis: the open fingers reach 7 cm
    #: to each side in y (plus margin), the fingers are 3 cm deep in x
    clearance = np.array([0.05, 0.09])

    def _build(self, scene: PandaScene, rng: np.random.Generator, colors: dict[str, RGBA]) -> None:
        tray_xy = rng.uniform(self.tray_low, self.tray_high)
        for _ in range(1000):  # rejection sampling: the cube outside the tray grown by the clearance
            cube_xy = rng.uniform(self.cube_low, self.cube_high)
            if np.any(np.abs(cube_xy - tray_xy) > self.tray_half + self.clearance):
                break
        else:  # pragma: no cover - the sampling boxes leave plenty of room
            raise RuntimeError("could not place the cube outside the tray")
        yaw = float(rng.uniform(-math.pi / 4, math.pi / 4))
        self.tray = _make_tray(scene, tray_xy, self.tray_half, self.tray_wall, self.tray_height, colors["target"])
        self._tray_pos = np.array([tray_xy[0], tray_xy[1], TABLE_TOP])
        self._place_cube(scene, cube_xy, yaw, colors["cube"])

    def goal(self) -> np.ndarray:
        return self._tray_pos

    def success(self) -> bool:
        c = self.scene.client
        pos, _ = self.cube_pose()
        inside = bool(np.all(np.abs(pos[:2] - self._tray_pos[:2]) <= self.tray_inner_half))
        # resting on the floor (6 mm) puts the centre at ~2.6 cm; 4.5 cm allows a tilted cube, not a held one
        low = pos[2] < self._tray_pos[2] + 0.045
        if not (inside and low):
            return False
        still = np.linalg.norm(p.getBaseVelocity(self.cube, physicsClientId=c)[0]) < 0.05
        released = not p.getContactPoints(self.cube, self.scene.panda, physicsClientId=c)
        return bool(still and released)


@dataclass(frozen=True)
class TaskSpec:
    """Registry entry: the task class and its default episode limit."""

    cls: type[Task]
    max_steps: int


TASKS: dict[str, TaskSpec] = {
    "push_cube": TaskSpec(PushCube, PushCube.max_steps),
    "pick_place": TaskSpec(PickPlace, PickPlace.max_steps),
}
