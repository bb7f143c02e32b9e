"""The PyBullet scene: plane, table, a fixed-base Franka Panda at the table edge, and a front camera.

Every scene owns its own DIRECT (headless) client and passes ``physicsClientId`` on every call, so several
scenes can live in one process (e.g. parallel collection, or a test that compares two envs).

Coordinates: the world frame IS the robot base frame: the Panda base is at the origin, facing +x, and the
table top is the plane z = 0 (the table and the floor are loaded below it). So every position in the
observations (end effector, objects, goals) and the camera matrices share one frame, as on a real robot
whose poses are reported in its base frame. The workspace is in front of the robot (x in ~[0.35, 0.7] m).
The camera looks at the workspace from above the far side of the table, facing the robot, so the arm and
the objects are both in view.

Rendering uses ``ER_TINY_RENDERER`` (CPU, available headless everywhere) with segmentation masks disabled,
because collection speed is bounded by the renderer (design.md §7: physics is ~50x cheaper per frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet_data

from robodream.robots.sim.bullet import p

#: height of table/table.urdf's top surface above its origin; the table is loaded this far below z = 0
TABLE_HEIGHT = 0.626
#: world z of the table top (the robot base frame's origin is on it)
TABLE_TOP = 0.0
#: the table is shifted so that its near edge (x = -0.1) is just behind the robot base at the origin
TABLE_POSITION = (0.65, 0.0, TABLE_TOP - TABLE_HEIGHT)
PHYSICS_HZ = 240
#: constraint-solver iterations per substep: 20 holds grasps and pushes as well as pybullet's default 50 in
#: the expert benchmarks, and makes the 24 substeps of a control step ~30% cheaper
SOLVER_ITERATIONS = 20


@dataclass
class CameraPose:
    """A pinhole camera: eye and look-at target in world metres, vertical field of view in degrees."""

    # Across the table from the robot, high and 0.3 m to the side, looking down at ~50 degrees: from there the
    # hand hides the cube less than from a low head-on view, depth (x) and height (z) are not confounded, and
    # the arm, the workspace and the goal all fit in a 64 px frame.
    eye: tuple[float, float, float] = (1.0, 0.3, TABLE_TOP + 0.95)
    target: tuple[float, float, float] = (0.46, 0.0, TABLE_TOP + 0.08)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    fov: float = 45.0
    near: float = 0.05
    far: float = 4.0


@dataclass
class Light:
    """TinyRenderer lighting. These are passed explicitly on every render so that nothing depends on
    renderer defaults (and light randomisation only has to change this object)."""

    direction: tuple[float, float, float] = (0.6, 0.3, 1.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    distance: float = 2.0
    ambient: float = 0.6
    diffuse: float = 0.35
    specular: float = 0.05


class PandaScene:
    """A headless PyBullet world with a table, a Panda and one front camera.

    Call `reset` to return the world to its initial state (plane, table, Panda); objects added afterwards (by
    a task) are removed by the next `reset`. ``panda`` is the body id of the arm after `reset`.
    """

    def __init__(self, image_size: int = 64, camera: CameraPose | None = None, shadow: bool = False):
        self.image_size = int(image_size)
        self.nominal_camera = camera or CameraPose()
        self.shadow = shadow
        self.client = p.connect(p.DIRECT)
        self.panda: int = -1
        self.table: int = -1
        self.plane: int = -1
        self._initial_state: int | None = None  # saveState id of the freshly built world
        self._num_base_bodies = 0
        self.light = Light()
        self.set_camera(self.nominal_camera)

    # ---- world -------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Bring the world back to its initial state: plane, table and the Panda, nothing else.

        The first call builds the world from nothing (resetSimulation, then loading the URDFs) and saves that
        state; later calls remove the bodies added since (task objects) and restore the saved state, which
        skips re-parsing the Panda's meshes (~45 ms, ~7% of collection time). Bodies are removed newest
        first so PyBullet hands their ids out again in the original order, and deterministicOverlappingPairs
        sorts contact pairs by id: the same seed downstream gives bit-identical physics whatever ran before
        (tests/robots check fresh envs, reused envs and other processes against each other).
        """
        c = self.client
        if self._initial_state is not None:
            for body in range(p.getNumBodies(physicsClientId=c) - 1, self._num_base_bodies - 1, -1):
                p.removeBody(p.getBodyUniqueId(body, physicsClientId=c), physicsClientId=c)
            p.restoreState(self._initial_state, physicsClientId=c)
        else:
            self._build_world()
        self.light = Light()
        self.set_camera(self.nominal_camera)

    def _build_world(self) -> None:
        c = self.client
        p.resetSimulation(physicsClientId=c)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        # deterministicOverlappingPairs sorts broadphase pairs so contact order does not depend on memory
        # addresses; it is what makes replays identical across processes.
        p.setPhysicsEngineParameter(
            fixedTimeStep=1.0 / PHYSICS_HZ,
            numSolverIterations=SOLVER_ITERATIONS,
            deterministicOverlappingPairs=1,
            physicsClientId=c,
        )
        self.plane = p.loadURDF("plane.urdf", (0.0, 0.0, TABLE_TOP - TABLE_HEIGHT), physicsClientId=c)
        self.table = p.loadURDF("table/table.urdf", TABLE_POSITION, physicsClientId=c)
        self.panda = p.loadURDF(
            "franka_panda/panda.urdf",
            (0.0, 0.0, TABLE_TOP),
            useFixedBase=True,
            physicsClientId=c,
        )
        self._num_base_bodies = p.getNumBodies(physicsClientId=c)
        self._initial_state = p.saveState(physicsClientId=c)

    def step(self, n: int = 1) -> None:
        """Advance the physics by ``n`` steps of 1/240 s."""
        for _ in range(n):
            p.stepSimulation(physicsClientId=self.client)

    # ---- camera ------------------------------------------------------------------------------------------
    def set_camera(self, pose: CameraPose) -> None:
        """Place the camera (used per episode by camera jitter); recomputes view/projection matrices."""
        self.camera = pose
        self.view_matrix = tuple(p.computeViewMatrix(pose.eye, pose.target, pose.up, physicsClientId=self.client))
        self.projection_matrix = tuple(
            p.computeProjectionMatrixFOV(pose.fov, 1.0, pose.near, pose.far, physicsClientId=self.client)
        )

    def camera_info(self) -> dict:
        """JSON-serialisable intrinsics and matrices of the current camera (column-major 4x4, OpenGL
        convention, as pybullet returns them), stored with the data so frames can be unprojected later."""
        pose = self.camera
        return {
            "width": self.image_size,
            "height": self.image_size,
            "fov": float(pose.fov),
            "near": float(pose.near),
            "far": float(pose.far),
            "eye": [float(v) for v in pose.eye],
            "target": [float(v) for v in pose.target],
            "view": [float(v) for v in self.view_matrix],
            "projection": [float(v) for v in self.projection_matrix],
        }

    def render(self) -> np.ndarray:
        """The front camera image, (H, W, 3) uint8. Deliberately just one getCameraImage call and a slice:
        anything more shows up directly in collection fps."""
        light = self.light
        _, _, rgba, _, _ = p.getCameraImage(
            self.image_size,
            self.image_size,
            self.view_matrix,
            self.projection_matrix,
            lightDirection=light.direction,
            lightColor=light.color,
            lightDistance=light.distance,
            lightAmbientCoeff=light.ambient,
            lightDiffuseCoeff=light.diffuse,
            lightSpecularCoeff=light.specular,
            shadow=int(self.shadow),
            renderer=p.ER_TINY_RENDERER,
            flags=p.ER_NO_SEGMENTATION_MASK,
            physicsClientId=self.client,
        )
        return np.reshape(rgba, (self.image_size, self.image_size, 4))[:, :, :3]

    # ---- lifetime ----------------------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self.client >= 0 and p.isConnected(physicsClientId=self.client)

    def close(self) -> None:
        """Disconnect the client (idempotent)."""
        if self.client >= 0:
            if p.isConnected(physicsClientId=self.client):
                p.disconnect(physicsClientId=self.client)
            self.client = -1
