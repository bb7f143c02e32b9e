"""Scripted experts for the sim tasks: closed-loop demonstrators that read only the observation dict.

They use ``observation.state`` (end effector, gripper) and ``observation.environment_state`` (the privileged
cube pose and goal), re-plan from the current observation every step, and move at a bounded speed like a
careful human teleoperator (approach, push or grasp, carry, place) rather than jumping to the goal.
``ExpertConfig.noise`` adds Gaussian noise (std in metres) to the commanded deltas, so that demonstrations
cover states off the nominal path; the experts recover from it because they are closed-loop.
``ExpertConfig.label`` chooses what a recorder stores as the action: the noisy action that was executed
(``executed``, the default: what a world model must learn) or the expert's clean action in that state
(``clean``: DART, Laskey et al. 2017 — a policy trained on it learns to recover from its own small errors,
instead of imitating the noise). `clean_action` holds the clean action of the last `act` call.

Usage::

    expert = make_expert("push_cube", ExpertConfig(noise=0.005))
    expert.reset(seed)
    action = expert.act(obs)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robodream.errors import RobodreamError
from robodream.features import ENV_STATE, STATE

#: speed limit of the experts per axis (m per step); below the env's 0.04 so noise is rarely clipped
SPEED = 0.03


@dataclass
class ExpertConfig:
    """Options of the scripted experts."""

    noise: float = 0.0  # std (m) of Gaussian noise added to the delta actions
    label: str = "executed"  # recorded action: executed (noisy, for world models) | clean (DART, for policies)
    #: std (m) of a per-episode offset of where the expert believes the cube is (x, y). > 0 makes play data
    #: for world models: the arm makes the task's motions beside the cube, near misses and clean misses, so a
    #: model learns that the cube moves only when touched (demos alone teach "arm at the goal => cube there").
    decoy: float = 0.0
    #: push_cube only: read the cube once, at the first step, and from then on believe it slides ahead of the
    #: pusher (the decoy's phantom, without the offset). The expert then needs the cube's start position only: it
    #: can act in a world model's imagination, where no reader tracks the imagined cube well enough (issue 19).
    dead_reckon: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.noise <= 0.05:
            raise RobodreamError(f"expert noise={self.noise}: choose a std in [0, 0.05] metres")
        if not 0 <= self.decoy <= 0.2:
            raise RobodreamError(f"expert decoy={self.decoy}: choose a std in [0, 0.2] metres")
        if self.label not in ("executed", "clean"):
            raise RobodreamError(f"expert.label={self.label!r}: choose executed or clean")


class Expert:
    """Common parts: the noise generator, parsing the observation and making the action."""

    def __init__(self, cfg: ExpertConfig | None = None):
        self.cfg = cfg or ExpertConfig()
        self.rng = np.random.default_rng(0)
        self.clean_action: np.ndarray | None = None
        self.decoy_offset = np.zeros(3)

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode; ``seed`` seeds the noise generator and the decoy offset (pass the episode seed)."""
        self.rng = np.random.default_rng(seed)
        self.decoy_offset = np.zeros(3)
        if self.cfg.decoy > 0:
            self.decoy_offset[:2] = self.rng.normal(0.0, self.cfg.decoy, 2)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The float32 action ``[dx, dy, dz, gripper]`` for this observation."""
        state = np.asarray(obs[STATE], dtype=np.float64)
        env = np.asarray(obs[ENV_STATE], dtype=np.float64)
        ee, opening = state[:3], float(state[3])
        cube, goal = self._perceived_cube(env[:3]), env[7:10]
        desired, gripper = self._plan(ee, opening, cube, goal)
        delta = np.clip(desired - ee, -SPEED, SPEED)
        self.clean_action = np.array([*delta, gripper], dtype=np.float32)
        if self.cfg.noise > 0:
            delta = delta + self.rng.normal(0.0, self.cfg.noise, 3)
        return np.array([*delta, gripper], dtype=np.float32)

    def _perceived_cube(self, cube: np.ndarray) -> np.ndarray:
        """Where the expert believes the cube is: the real one, shifted by the episode's decoy offset."""
        return cube + self.decoy_offset

    def _plan(self, ee: np.ndarray, opening: float, cube: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, float]:
        """Where the end effector should go next (absolute target) and the gripper command."""
        raise NotImplementedError


class PushExpert(Expert):
    """Push the cube onto the target with the closed gripper.

    Move above the "pre-push" point behind the cube (on the line goal -> cube, extended), descend, then push
    along the cube -> goal direction while steering back onto that line. Because the line is recomputed from
    the cube's current position, a cube that drifts or turns during the push is corrected automatically. If
    the pusher is low and on the wrong side of the cube, it lifts before moving, so it never knocks the cube.
    """

    push_z = 0.025  # fingertips ~1.5 cm above the table, below the cube's centre of mass
    travel_z = 0.085  # fingertips clear the 5 cm cube
    behind = 0.06  # ee distance behind the cube centre before pushing (half cube + finger + margin)
    push_speed = 0.015  # m per step (0.15 m/s): slow enough that the cube stays against the fingers

    def __init__(self, cfg: ExpertConfig | None = None):
        super().__init__(cfg)
        self.phantom: np.ndarray | None = None  # with a decoy or dead reckoning: the cube the expert believes it pushes
        self.tracks_phantom = self.cfg.decoy > 0 or self.cfg.dead_reckon

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.phantom = None

    def _perceived_cube(self, cube: np.ndarray) -> np.ndarray:
        # With a decoy the expert pushes a phantom cube (placed at the decoy offset) that slides ahead of the
        # pusher as a real one would, so the arm makes the whole push, to the goal, beside the real cube. Dead
        # reckoning is the same phantom without the offset: the real cube, read once, pushed by belief.
        if not self.tracks_phantom:
            return cube
        if self.phantom is None:
            self.phantom = cube + self.decoy_offset
        return self.phantom

    def _plan(self, ee, opening, cube, goal):
        target, gripper = self._push_plan(ee, cube, goal)
        if self.tracks_phantom and target[2] == self.push_z and float(np.linalg.norm(ee[:2] - cube[:2])) < 0.08:
            to_goal = goal[:2] - cube[:2]
            if float(np.linalg.norm(to_goal)) >= 0.01 and float((ee[:2] - cube[:2]) @ to_goal) < 0:
                # the pusher is low and behind the phantom: the phantom moves with it, a cube-width ahead
                u = to_goal / np.linalg.norm(to_goal)
                ahead = target[:2] + self.behind * u
                self.phantom[:2] = cube[:2] + max(0.0, float((ahead - cube[:2]) @ u)) * u
        return target, gripper

    def _push_plan(self, ee, cube, goal):
        to_goal = goal[:2] - cube[:2]
        dist = float(np.linalg.norm(to_goal))
        if dist < 0.01:  # done: hold still (the env terminates on success anyway)
            return ee.copy(), 1.0
        u = to_goal / dist
        n = np.array([-u[1], u[0]])
        rel = ee[:2] - cube[:2]
        along, across = float(rel @ u), float(rel @ n)
        pre = cube[:2] - self.behind * u

        if along < -0.025 and abs(across) < 0.02 and ee[2] < self.push_z + 0.02:
            # pushing: advance along u (slower for the last few cm, so the cube does not overshoot) and
            # steer the pusher back onto the cube->goal line
            advance = min(self.push_speed, 0.6 * dist + 0.005)
            xy = ee[:2] + advance * u - 0.8 * across * n
            return np.array([*xy, self.push_z]), 1.0

        far_from_pre = float(np.linalg.norm(ee[:2] - pre)) > 0.015
        if far_from_pre and ee[2] < self.travel_z - 0.015 and float(np.linalg.norm(rel)) < 0.09:
            # low and next to the cube on the wrong side: go straight up first
            return np.array([ee[0], ee[1], self.travel_z]), 1.0
        z = self.travel_z if far_from_pre else self.push_z
        return np.array([*pre, z]), 1.0


class PickPlaceExpert(Expert):
    """Grasp the cube from above, lift, carry it over the tray, lower, release, retreat.

    A small phase machine, each transition checked on the current observation; if the cube is lost on the
    way (dropped, or the grasp missed), the expert goes back to the approach.
    """

    APPROACH, DESCEND, CLOSE, LIFT, CARRY, LOWER, RELEASE = range(7)
    hover = 0.08  # height above the cube for the approach
    carry_z = 0.15  # the cube's bottom clears the tray walls (3 cm) comfortably
    place_z = 0.07  # release height above the tray floor: a short drop

    def __init__(self, cfg: ExpertConfig | None = None):
        super().__init__(cfg)
        self.phase, self.phase_steps = self.APPROACH, 0

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.phase, self.phase_steps = self.APPROACH, 0

    def _set(self, phase: int) -> None:
        self.phase, self.phase_steps = phase, 0

    def _plan(self, ee, opening, cube, goal):
        self.phase_steps += 1
        grasp_z = max(cube[2], 0.015)
        held = np.linalg.norm(cube - ee) < 0.03 and opening < 0.06
        over_tray = np.all(np.abs(cube[:2] - goal[:2]) < 0.1)

        if self.phase in (self.LIFT, self.CARRY, self.LOWER) and not held:
            self._set(self.RELEASE if over_tray else self.APPROACH)
        xy_err = float(np.linalg.norm(ee[:2] - cube[:2]))
        if self.phase == self.APPROACH:
            target = np.array([cube[0], cube[1], grasp_z + self.hover])
            if xy_err < 0.012 and abs(ee[2] - target[2]) < 0.03 and opening > 0.07:
                self._set(self.DESCEND)
            return target, 0.0
        if self.phase == self.DESCEND:
            # keep centring over the cube on the way down; close when low enough and centred, or when blocked
            target = np.array([cube[0], cube[1], grasp_z])
            if (ee[2] - grasp_z < 0.008 and xy_err < 0.012) or self.phase_steps > 10:
                self._set(self.CLOSE)
            elif xy_err > 0.035:  # the cube was nudged away: go back up and re-approach
                self._set(self.APPROACH)
            return target, 0.0
        if self.phase == self.CLOSE:
            # hold still while the fingers close; 3 steps (0.3 s) is enough for the fingers to squeeze
            if self.phase_steps >= 3:
                self._set(self.LIFT if held else self.APPROACH)
            return ee.copy(), 1.0
        if self.phase == self.LIFT:
            if ee[2] > self.carry_z - 0.02:
                self._set(self.CARRY)
            return np.array([ee[0], ee[1], self.carry_z]), 1.0
        if self.phase == self.CARRY:
            if np.linalg.norm(ee[:2] - goal[:2]) < 0.015:
                self._set(self.LOWER)
            return np.array([goal[0], goal[1], self.carry_z]), 1.0
        if self.phase == self.LOWER:
            target = np.array([goal[0], goal[1], goal[2] + self.place_z])
            if np.linalg.norm(ee - target) < 0.015:
                self._set(self.RELEASE)
            return target, 1.0
        # RELEASE: open, then back off upwards so the fingers leave the cube; if the cube landed outside the
        # tray (dropped on the way), start over once the gripper is open
        if not over_tray and opening > 0.07:
            self._set(self.APPROACH)
        up = ee[2] + (0.03 if opening > 0.06 else 0.0)
        return np.array([ee[0], ee[1], min(up, self.carry_z + 0.05)]), 0.0


EXPERTS: dict[str, type[Expert]] = {"push_cube": PushExpert, "pick_place": PickPlaceExpert}


def make_expert(task: str, cfg: ExpertConfig | None = None) -> Expert:
    """The scripted expert for ``task`` (one of push_cube, pick_place)."""
    if task not in EXPERTS:
        raise RobodreamError(f"no scripted expert for task '{task}': choose one of {', '.join(EXPERTS)}")
    if cfg is not None and cfg.dead_reckon and task != "push_cube":
        raise RobodreamError(f"expert.dead_reckon is defined for push_cube only, not {task}")
    expert = EXPERTS[task](cfg)
    expert.reset(None)
    return expert
