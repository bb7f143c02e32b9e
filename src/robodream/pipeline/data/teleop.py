"""`robodream teleop`: drive the simulated arm from the keyboard (or a SpaceMouse / gamepad) and record episodes.

    robodream teleop task=pick_place out=data/teleop.zarr
    robodream teleop task=push_cube device=spacemouse resume=true out=data/teleop.zarr

A window shows the front camera (scaled up), the episode number and length, the measured loop rate, the
gripper state and the key help. Enter starts recording from a freshly reset scene; Enter again saves the
episode (source "teleop"), x discards it, y / n mark it a success / failure (by default the task's own success
test decides), q or Esc quits. Episode i starts from seed `seed + i`, stored in episode_seed, so its initial
scene can be replayed.

Timing: the loop runs at the dataset fps (10 Hz). Each tick applies the input gathered during the previous
tick, steps the simulation by exactly 1/fps and redraws, then waits for the next tick while collecting keys.
The stored timestamps are simulation time (k / fps), which is exact whatever the wall clock did; a tick that
takes longer than its period is counted, shown in the window and reported on stderr, because it makes the
arm feel sluggish to the operator and means this machine cannot keep the dataset rate.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from robodream.datasets import layout
from robodream.datasets.outputs import remove_store
from robodream.errors import RobodreamError
from robodream.robots.sim.env import EnvConfig
from robodream.robots.teleop.device import DEVICES

OVERRUN_REPORT_S = 5.0  # report overruns on stderr at most this often


@dataclass
class TeleopConfig:
    """What to teleoperate and where to store it."""

    task: str | None = None  # shorthand for env.task
    out: str | None = None  # store path; default data/teleop_<task>.zarr
    device: str = "keyboard"  # keyboard | spacemouse | gamepad (keys still control episodes)
    seed: int = 0  # episode i starts from the scene of seed `seed + i`
    step: float = 0.01  # keyboard: metres per key press
    scale: int = 8  # window magnification of the camera frame
    max_episodes: int | None = None  # quit after saving this many
    resume: bool = False  # add episodes to an existing store
    overwrite: bool = False
    env: EnvConfig = field(default_factory=lambda: EnvConfig(max_steps=600))  # 60 s per episode at most

    def __post_init__(self) -> None:
        if self.task is not None and self.task != self.env.task:
            self.env = replace(self.env, task=self.task)  # replace() re-runs EnvConfig's validation
        self.task = self.env.task
        if self.device not in DEVICES:
            raise RobodreamError(f"device={self.device!r}: choose one of {', '.join(DEVICES)}")
        if not 0 < self.step <= 0.05:
            raise RobodreamError(f"step={self.step}: choose a key step in (0, 0.05] metres")
        if not isinstance(self.scale, int) or not 1 <= self.scale <= 16:
            raise RobodreamError(f"scale={self.scale!r}: choose an integer in [1, 16]")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise RobodreamError(f"max_episodes={self.max_episodes}: choose an integer >= 1, or null")
        if self.resume and self.overwrite:
            raise RobodreamError("resume=true and overwrite=true contradict each other: pick one")
        if self.out is None:
            self.out = f"data/teleop_{self.env.task}.zarr"


@dataclass
class TeleopSummary:
    store: str
    fps: float
    saved: int = 0
    discarded: int = 0
    frames: int = 0
    ticks: int = 0
    late_ticks: int = 0
    worst_tick_ms: float = 0.0
    episodes_in_store: int = 0

    def lines(self) -> list[str]:
        return [f"store      {self.store}  ({self.episodes_in_store} episodes)",
                f"teleop     {self.saved} saved ({self.frames} frames), {self.discarded} discarded",
                f"loop       {self.ticks} ticks at {self.fps:g} Hz, {self.late_ticks} late "
                f"(worst {self.worst_tick_ms:.0f} ms)"]


def _open_store(cfg: TeleopConfig, env):
    """Create the store (or reopen it with resume=true, checking it records the same features)."""
    from robodream.datasets.writer import open_recording
    from robodream.pipeline.config import to_dict

    features = {**env.features, "reward": {"dtype": "float32", "shape": [], "names": None}}
    return open_recording(cfg.out, features, resume=cfg.resume, recorder=f"task {cfg.env.task} at image_size "
                          f"{cfg.env.image_size}", fix="use another out=", fps=env.fps, robot_type=env.robot_type,
                          task=cfg.env.task, cameras=env.cameras, overwrite=cfg.overwrite,
                          extra_attrs={"teleop": {"env": to_dict(cfg.env), "device": cfg.device}})


@contextmanager
def _exit_on_termination():
    """SIGTERM / SIGHUP (kill, a closed terminal) end teleop through its clean-up, like Esc: saved episodes are
    kept and a store that got none is removed, instead of dying with an empty store that blocks the retry."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum, frame):
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class TeleopSession:
    """The control loop. ``window`` shows canvases and returns the keys pressed until a deadline
    (`teleop_window.OpenCVWindow`, or a scripted stand-in in tests)."""

    def __init__(self, cfg: TeleopConfig, window, device=None, clock=time.monotonic, log=sys.stderr):
        from robodream.robots.teleop.device import make_device
        from robodream.robots.teleop.keyboard import KeyboardDevice

        self.cfg, self.window, self.clock, self.log = cfg, window, clock, log
        self.keyboard = KeyboardDevice(step=cfg.step)
        self.device = device or (self.keyboard if cfg.device == "keyboard" else make_device(
            cfg.device, step=cfg.step, max_delta=0.04))
        self.episode: dict | None = None  # frames / actions / rewards of the episode being recorded
        self.gripper, self.mark, self.message = 0.0, None, ""

    def run(self) -> TeleopSummary:
        """Run until quit (or max_episodes saved); returns what was recorded."""
        from robodream.robots.sim.env import make_env

        cfg = self.cfg
        self.env = make_env(cfg.env)
        self.keyboard.max_delta = self.env.max_delta
        try:
            # The window before the store: a display that cannot show one fails (or, inside Qt, aborts the
            # process) before any store exists, so nothing blocks the retry.
            self.window.open()
            self.writer, created = _open_store(cfg, self.env)
        except BaseException:
            self.window.close()
            self.env.close()
            raise
        self.summary = TeleopSummary(str(cfg.out), float(self.env.fps))
        seeds = [int(s) for s in self.writer.meta("episode_seed") if s >= 0]
        self.seed = max([cfg.seed, *(s + 1 for s in seeds)])
        try:
            self.device.connect()
            self.obs, self.info = self.env.reset(seed=self.seed)
            with _exit_on_termination():
                self._loop()
        finally:
            self.window.close()
            self.device.close()
            self.env.close()
            self.writer.close()
            self.summary.episodes_in_store = self.writer.num_episodes
            if created and self.writer.num_episodes == 0 and not layout.is_url(cfg.out):
                remove_store(layout.local_path(cfg.out))  # nothing saved: leave no empty store
        return self.summary

    def _loop(self) -> None:
        from robodream.pipeline.data.teleop_window import WINDOW_NAME, render

        help_lines = self.keyboard.help_lines() + (self.device.help_lines() if self.device is not self.keyboard else [])
        period = 1.0 / self.env.fps
        summary, last_report, fps = self.summary, -np.inf, float(self.env.fps)
        next_tick, keys = self.clock(), []
        while True:
            tick_start = self.clock()
            if not self._tick(keys):
                return
            status = self._status(fps)
            title = f"{WINDOW_NAME} - {'REC' if self.episode is not None else 'ready'} - {summary.saved} saved"
            self.window.show(render(self.obs["observation.images.front"], status, help_lines, self.cfg.scale), title)
            # pace: the next tick is one period after this one; an overrun restarts the schedule from now
            summary.ticks += 1
            work = self.clock() - tick_start
            summary.worst_tick_ms = max(summary.worst_tick_ms, work * 1000)
            next_tick += period
            if self.clock() > next_tick:
                summary.late_ticks += 1
                if self.clock() - last_report > OVERRUN_REPORT_S:
                    last_report = self.clock()
                    print(f"teleop: a control tick took {work * 1000:.0f} ms (> {period * 1000:.0f} ms at "
                          f"{self.env.fps:g} fps): this machine cannot keep the dataset rate "
                          f"({summary.late_ticks} late ticks so far)", file=self.log)
                next_tick = self.clock()
            keys = self.window.wait_keys(next_tick)
            fps = 0.8 * fps + 0.2 / max(self.clock() - tick_start, 1e-6)

    def _tick(self, keys: list[int]) -> bool:
        """Apply one tick of input: start, step, mark, save/discard, quit. Returns False to stop."""
        command = self.keyboard.read(keys)
        if self.device is not self.keyboard:
            command = self.device.read(keys).merged(command)
        if command.toggle_gripper:
            self.gripper = 1.0 - self.gripper
        if command.gripper is not None:
            self.gripper = float(np.clip(command.gripper, 0.0, 1.0))
        events = command.events
        if self.episode is None and "record" in events:  # start: the first frame is the reset scene
            self.episode = {"frames": [self.obs], "actions": [],
                            "rewards": [1.0 if self.info.get("success") else 0.0]}
            self.mark, self.message = None, "recording"
            events = [e for e in events if e != "record"]
        if self.episode is not None:
            action = np.asarray([*command.delta, self.gripper], dtype=np.float32)
            self.obs, reward, _, truncated, self.info = self.env.step(action)
            self.episode["frames"].append(self.obs)
            self.episode["actions"].append(np.asarray(self.info["action"], dtype=np.float32))
            self.episode["rewards"].append(float(reward))
            for event in events:
                if event in ("success", "failure"):
                    self.mark = event == "success"
            if "record" in events or truncated:
                self.message = self._save() + (" (time limit)" if truncated else "")
                if self._next_episode():
                    return False
            elif "discard" in events:
                self.summary.discarded += 1
                self.message = f"discarded episode (seed {self.seed})"
                self._next_episode()
        if "quit" in events:  # after the tick's other events: Enter then Esc saves, then quits
            if self.episode is not None:
                self.summary.discarded += 1
                print(f"teleop: quit while recording: episode {self.writer.num_episodes} (seed {self.seed}) "
                      "discarded", file=self.log)
            return False
        return True

    def _next_episode(self) -> bool:
        """Reset the scene for the next episode; True when max_episodes are saved."""
        self.episode, self.gripper, self.mark = None, 0.0, None
        self.seed += 1
        self.obs, self.info = self.env.reset(seed=self.seed)
        return bool(self.cfg.max_episodes and self.summary.saved >= self.cfg.max_episodes)

    def _save(self) -> str:
        from robodream.robots.rollout import hold_action

        env, episode = self.env, self.episode
        success = bool(self.info.get("success")) if self.mark is None else self.mark
        steps = len(episode["actions"])
        frames = episode["frames"]
        data = {key: np.stack([f[key] for f in frames]) for key in frames[0]}
        # the final observation is stored with a hold action, as recorded sim episodes are (rollout.py)
        data["action"] = np.stack(episode["actions"] + [hold_action(env, episode["actions"][-1])]).astype(np.float32)
        data["reward"] = np.asarray(episode["rewards"], dtype=np.float32)
        data["timestamp"] = (np.arange(steps + 1) / env.fps).astype(np.float32)
        index = self.writer.append_episode(data, source="teleop", success=success, seed=self.seed,
                                           origin=f"teleop:{self.cfg.device}:{self.cfg.env.task}")
        self.summary.saved += 1
        self.summary.frames += steps + 1
        return f"saved episode {index}: {steps + 1} frames, {'success' if success else 'failure'}"

    def _status(self, fps: float):
        from robodream.pipeline.data.teleop_window import Status

        recording = self.episode is not None
        return Status(task=self.cfg.env.task, store=str(self.cfg.out), episode=self.writer.num_episodes,
                      saved=self.summary.saved, recording=recording,
                      elapsed_s=len(self.episode["actions"]) / self.env.fps if recording else 0.0, fps=fps,
                      target_fps=self.env.fps, late_ticks=self.summary.late_ticks, gripper=self.gripper,
                      task_success=bool(self.info.get("success")), mark=self.mark, message=self.message)
