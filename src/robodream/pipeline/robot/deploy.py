"""`robodream deploy`: run a policy on an arm over ROS 2, safely, recording every episode.

    robodream deploy policy=runs/policy/checkpoints/step_6000 robot=configs/robot/panda.yaml episodes=10
    robodream deploy policy=expert robot=configs/robot/panda_sim.yaml task=push_cube episodes=10 seed=1000

Steps: build the arm from the robot config (`Ros2Arm`: topics, IK, safety layer) -> load the agent (a
checkpoint, whose features are checked against the arm's, or the scripted expert, which needs sim-arm's
privileged state) -> for each episode, the evaluation harness's loop (`run_episode`) over the arm as a task
env (`Ros2TaskEnv`), at the robot's fps, with a live status line -> each episode appended to an episode store
(source "deploy") -> eval_info.json in the shape `robodream eval` writes, plus the safety report and the loop
timing. Per-tick records (latency, state age, holds, clamps) go to ticks.jsonl.

Operator keys (terminal): e / space = e-stop (latched: only r clears it, or an Empty on the reset topic),
s / f = mark the episode a success / failure (ends it), Enter = scene reset done (reset.mode=operator),
q = stop after this episode. Ctrl-C holds the arm at once and stops (the running episode is discarded).
A robot that stops publishing (crash, cable) is held, then the deployment stops with one line; committed
episodes are never touched.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robodream.errors import RobodreamError
from robodream.robots.ros2.config import RobotConfig


@dataclass
class DeployConfig:
    """What to deploy, on which arm, and where the results go."""

    policy: str | None = None  # a checkpoint dir, a training run (its latest checkpoint), or "expert" (sim only)
    robot: RobotConfig = field(default_factory=RobotConfig)  # robot=configs/robot/<arm>.yaml
    task: str = "push_cube"  # a sim task name, or a free-form name for a real task (stored in the store)
    episodes: int = 10
    seed: int = 1000  # episode i uses seed + i (the scene itself only in simulation: reset.mode=topic)
    max_steps: int | None = None  # default: the sim task's limit, else 300
    success: str = "topic"  # topic (robot.topics.success) | operator (keys s/f) | none
    out: str | None = None  # default runs/deploy/<policy>_<robot>_<task>
    store: str | None = None  # episode store to append to; default <out>/episodes.zarr
    record: bool = True
    status_every_s: float = 0.5  # live status line period (terminal); one line per episode otherwise
    inference_budget: float = 0.2  # fraction of a period the policy may think per step before the tick stretches
    device: str = "cpu"
    threads: int = 1  # torch threads for inference (the control loop needs the other core)
    num_inference_steps: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.policy is None:
            raise RobodreamError("name the policy: policy=<checkpoint dir | training run | expert>")
        self.robot.require()
        if self.episodes < 1 or self.seed < 0 or self.threads < 1:
            raise RobodreamError("episodes and threads must be >= 1 and seed >= 0")
        if not 0 <= self.inference_budget < 1:
            raise RobodreamError(f"inference_budget={self.inference_budget}: choose a fraction of the period in [0, 1)")
        if self.success not in ("topic", "operator", "none"):
            raise RobodreamError(f"success={self.success!r}: choose topic, operator or none")
        if self.success == "topic" and not self.robot.topics.success:
            raise RobodreamError("success=topic but robot.topics.success is not set: name the success topic "
                                 "(std_msgs/Bool) or use success=operator (keys s/f)")
        if self.max_steps is None:
            from robodream.robots.sim.tasks import TASKS

            self.max_steps = TASKS[self.task].max_steps if self.task in TASKS else 300
        name = "expert" if self.policy == "expert" else Path(self.policy).name
        self.out = self.out or f"runs/deploy/{name}_{self.robot.name}_{self.task}"
        self.store = self.store or str(Path(self.out) / "episodes.zarr")


class Operator:
    """Keys and signals -> the env and the session (called from the key thread / the signal handler)."""

    HELP = "keys: e/space e-stop, r reset e-stop, s/f success/failure, Enter ready, q stop after this episode"

    def __init__(self, arm, log=sys.stderr):
        self.arm, self.log = arm, log
        self.env = None
        self.ready = threading.Event()
        self.quit_after_episode = False
        self.abort: str | None = None  # set by Ctrl-C: the running episode stops now

    def on_key(self, key: str) -> None:
        if key in "e ":
            self.arm.trip_estop("operator key")
            print("\nE-STOP latched (press r to reset)", file=self.log, flush=True)
        elif key == "r":
            if self.arm.reset_estop():
                print("\ne-stop reset: the arm may move again", file=self.log, flush=True)
        elif key in "sf" and self.env is not None:
            self.env.operator_mark = key == "s"
        elif key in "\r\n":
            self.ready.set()
        elif key == "q":
            self.quit_after_episode = True
            print("\nstopping after this episode", file=self.log, flush=True)

    def on_sigint(self, signum, frame) -> None:
        if self.abort is not None:
            raise KeyboardInterrupt
        self.abort = "interrupted (Ctrl-C): the arm was held"
        self.arm.safety.estop.trip("Ctrl-C")  # the next command (<= one period) is a hold

    def wait_ready(self, message: str) -> None:
        self.ready.clear()
        print(f"\n{message}", file=self.log, flush=True)
        while not self.ready.wait(0.1):
            if self.abort:
                raise _Stopped(self.abort)


class _Stopped(Exception):
    """The operator stopped the running episode."""


class DeploySession:
    """The task env as the harness sees it: records every frame, prints the status line, stops on request."""

    def __init__(self, env, operator: Operator, cfg: DeployConfig, ticks_file, log=sys.stderr):
        self.env, self.operator, self.cfg, self.ticks, self.log = env, operator, cfg, ticks_file, log
        self.fps, self.features = env.fps, env.features
        self.episode_ix, self.results = 0, []
        self.tty = log.isatty()
        self._last_status = 0.0
        env.on_tick = self._on_tick

    def reset(self, seed=None, options=None):
        obs, info = self.env.reset(seed=seed)
        self.frames, self.actions = [obs], []
        self.rewards = [1.0 if info.get("success") else 0.0]
        return obs, info

    def step(self, action):
        if self.operator.abort:
            raise _Stopped(self.operator.abort)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.frames.append(obs)
        self.actions.append(np.asarray(info["action"], dtype=np.float32))
        self.rewards.append(float(reward))
        return obs, reward, terminated, truncated, info

    def episode_data(self) -> dict[str, np.ndarray]:
        """The episode in the store's layout (robots/rollout.py): o_0..o_T, a_0..a_{T-1} + a hold action."""
        from robodream.robots.rollout import hold_action

        actions = self.actions + [hold_action(self.env, self.actions[-1])]
        data = {key: np.stack([f[key] for f in self.frames]) for key in self.frames[0]}
        data["action"] = np.stack(actions).astype(np.float32)
        data["reward"] = np.asarray(self.rewards, dtype=np.float32)
        data["timestamp"] = (np.arange(len(self.frames)) / self.fps).astype(np.float32)
        return data

    def _on_tick(self, record: dict) -> None:
        self.ticks.write(json.dumps({"episode": self.episode_ix, **record}) + "\n")
        now = time.monotonic()
        if self.cfg.progress and self.tty and now - self._last_status >= self.cfg.status_every_s:
            self._last_status = now
            print("\r" + self.status(record["step"]) + "\033[K", end="", file=self.log, flush=True)

    def status(self, step: int) -> str:
        env, safety = self.env, self.env.arm.safety
        hz, p50, p95 = env.stats.recent()
        wins = sum(r.success for r in self.results)
        watchdog = "E-STOP" if safety.estop.latched else ("HOLD" if safety.watchdog.stale else "ok")
        return (f"ep {self.episode_ix + 1}/{self.cfg.episodes} step {step:>3}/{env.max_steps} | {hz:5.2f} Hz | "
                f"latency p50 {p50:4.1f} ms p95 {p95:4.1f} ms | clamps {safety.clamps} | watchdog {watchdog} | "
                f"success {wins}/{len(self.results)}")


def _load_agent(cfg: DeployConfig, env_features: dict):
    if cfg.policy == "expert":
        from robodream.features import ENV_STATE
        from robodream.robots.sim.experts import make_expert

        if ENV_STATE not in env_features:
            raise RobodreamError("policy=expert reads the privileged cube/goal state, which only a simulator "
                                 "publishes: set robot.topics.environment_state (sim-arm: /sim/environment_state)")
        return make_expert(cfg.task)
    from robodream.policies.pretrained import check_features, read_checkpoint_info
    from robodream.policies.runner import load_runner
    from robodream.pretrained import resolve_model_dir

    checkpoint = resolve_model_dir(cfg.policy, "policy")
    info = read_checkpoint_info(checkpoint)
    check_features(info["features"], env_features, f"checkpoint {checkpoint}", f"robot {cfg.robot.name}",
                   "; set robot.image_size / cameras in the robot config to what the policy was trained on")
    trained_fps = info.get("training", {}).get("fps")
    if trained_fps and float(trained_fps) != float(cfg.robot.fps):
        raise RobodreamError(f"checkpoint {checkpoint} was trained at {trained_fps} fps but robot.fps is "
                             f"{cfg.robot.fps:g}: set robot.fps={trained_fps}")
    return load_runner(str(checkpoint), cfg.device, cfg.threads, cfg.num_inference_steps)


def _open_store(cfg: DeployConfig, env):
    from robodream.datasets.writer import open_recording

    features = {**env.features, "reward": {"dtype": "float32", "shape": [], "names": None}}
    # deployments always add to store= (there is no resume key: each run's episodes join the earlier ones)
    writer, _ = open_recording(cfg.store, features, resume=True, recorder=f"robot {cfg.robot.name}",
                               fix="use another store=", fps=env.fps, robot_type=env.robot_type, task=cfg.task,
                               cameras=env.cameras, extra_attrs={"deploy": {"robot": cfg.robot.name}})
    return writer


def _finish_episode(cfg: DeployConfig, session: DeploySession, writer, seed: int, result) -> None:
    """Record the episode just run (when recording) and print its line."""
    if writer is not None:
        writer.append_episode(session.episode_data(), source="deploy", success=result.success,
                              seed=seed if cfg.robot.reset.mode == "topic" else -1,
                              origin=f"deploy:{cfg.policy}:{cfg.robot.name}")
    print(("\n" if session.tty else "") + f"episode {session.episode_ix + 1}/{cfg.episodes} (seed {seed}): "
          f"{'success' if result.success else 'failure'} in {result.steps} steps | "
          + session.status(result.steps), file=sys.stderr, flush=True)


def run_deploy(cfg: DeployConfig) -> list[str]:
    """Deploy as configured; returns the summary lines. Raises RobodreamError (e.g. a lost robot) after
    holding the arm and writing what was completed."""
    from robodream.datasets.outputs import check_folder
    from robodream.pipeline.config import save_config
    from robodream.pipeline.policy.harness import run_episode
    from robodream.pipeline.robot.operator_keys import KeyReader
    from robodream.robots.ros2.arm import Ros2Arm
    from robodream.robots.ros2.env import Ros2TaskEnv

    out = Path(cfg.out)
    check_folder(out, ("config.yaml", "eval_info.json"), "a deployment folder")  # the rule of datasets/outputs.py
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    arm = Ros2Arm(cfg.robot, node_name="robodream_deploy")
    operator = Operator(arm)
    arm.connect()  # before the heavy policy import, so a missing robot is reported in seconds
    stopped, results, writer = "", [], None
    previous = signal.signal(signal.SIGINT, operator.on_sigint) \
        if threading.current_thread() is threading.main_thread() else None
    started = time.monotonic()
    try:
        env = Ros2TaskEnv(arm, cfg.task, cfg.max_steps, cfg.success, wait_operator=operator.wait_ready,
                          inference_budget=cfg.inference_budget)
        operator.env = env
        agent = _load_agent(cfg, env.features)
        writer = _open_store(cfg, env) if cfg.record else None
        with open(out / "ticks.jsonl", "a") as ticks, KeyReader(operator.on_key):
            session = DeploySession(env, operator, cfg, ticks)
            print(f"deploying {cfg.policy} on {cfg.robot.name} ({cfg.task}) at {cfg.robot.fps:g} Hz; "
                  f"{Operator.HELP}", file=sys.stderr, flush=True)
            for i in range(cfg.episodes):
                session.episode_ix, seed = i, cfg.seed + i
                result = run_episode(session, agent, seed, cfg.max_steps)
                results.append(result)
                session.results = results
                _finish_episode(cfg, session, writer, seed, result)
                if operator.quit_after_episode:
                    stopped = "stopped by the operator (q)"
                    break
    except _Stopped as exc:
        stopped = str(exc)
    except RobodreamError as exc:
        stopped = str(exc)
        kept = f"{len(results)} episodes completed" + (f" and recorded in {cfg.store}" if writer is not None else "")
        raise type(exc)(f"{exc} -- deployment stopped; {kept}; eval_info in {out}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        arm.disconnect()  # the final hold
        if writer is not None:
            writer.close()
        info = _deploy_info(cfg, results, time.monotonic() - started, stopped, arm, operator)
        (out / "eval_info.json").write_text(json.dumps(info, indent=2))
    return _summary(cfg, info, out, stopped)


def _deploy_info(cfg: DeployConfig, results: list, seconds: float, stopped: str, arm, operator: Operator) -> dict:
    """eval_info.json of a deployment: the harness's figures plus the robot, safety and control-loop reports."""
    from robodream.pipeline.config import to_dict
    from robodream.pipeline.policy.harness import eval_info

    return eval_info(results, seconds, info={
        "policy": cfg.policy, "task": cfg.task, "robot": cfg.robot.name, "mode": "deploy",
        "seeds": [cfg.seed, cfg.seed + cfg.episodes - 1], "success_source": cfg.success,
        "store": cfg.store if cfg.record else None, "stopped": stopped or None,
        "mean_episode_steps": float(np.mean([r.steps for r in results])) if results else None,
        "safety": arm.safety.report() if arm.safety else None,
        "loop": operator.env.stats.summary() if operator.env else None, "robot_config": to_dict(cfg.robot)})


def _summary(cfg: DeployConfig, info: dict, out: Path, stopped: str) -> list[str]:
    agg, loop, safety = info["aggregated"], info["info"]["loop"], info["info"]["safety"]
    n = len(info["per_episode"])
    lines = [f"deployed     {cfg.policy} on {cfg.robot.name}, task {cfg.task}: {n} episodes",
             f"success      {agg['pc_success']:.1f}% ({cfg.success})",
             f"loop         {loop['loop_hz']:.2f} Hz (target {loop['target_hz']:g}, {loop['late_ticks']} late ticks); "
             f"latency p50 {loop['latency_ms']['p50']:.1f} ms, p95 {loop['latency_ms']['p95']:.1f} ms",
             f"safety       {safety['clamps_total']} clamps {safety['clamps'] or ''}, watchdog trips "
             f"{safety['watchdog_trips']}, e-stops {safety['estop_trips']}, hold ticks {safety['hold_ticks']}",
             f"eval_info    {out / 'eval_info.json'}"]
    if cfg.record:
        lines.append(f"store        {cfg.store} (source deploy)")
    if stopped:
        lines.append(f"stopped      {stopped}")
    return lines
