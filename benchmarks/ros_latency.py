"""ROS 2 control-loop latency and rate: `Ros2TaskEnv` driving `robodream sim-arm` at 10 Hz, 64x64 camera.

    python benchmarks/ros_latency.py [--seconds 60] [--camera-hz 15] [--inference-ms 60]

Latency is measured per tick from taking the observation to publishing the command, *excluding* the
agent's inference (the time between the env handing out the observation and getting the action back):
reading the newest joint states and frame, FK, the safety layer, IK, the FK check and publishing. The loop
rate is the mean period between observations. Three runs in one process on one sim-arm, each `--seconds`
long: the scripted expert (inference ~0.1 ms); the expert made to think `--inference-ms` every step (within
the 20% inference budget: the rate must hold); and `--chunk-inference-ms` every 8th step, like a diffusion
policy's chunk, over the budget: those ticks stretch so the action still acts for 80% of a period
(robots/ros2/env.py). Baseline measured in the same run: one bare rclpy publish of the same message.

Targets: latency p95 <= 20 ms; loop rate within 5% of 10 Hz.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIM_CONFIG = REPO / "configs" / "robot" / "panda_sim.yaml"


class SlowAgent:
    """The scripted expert, plus an inference time on every ``every``-th step (a chunked policy thinks once
    per chunk)."""

    def __init__(self, inference_s: float, every: int = 1):
        from robodream.robots.sim.experts import make_expert

        self.expert, self.inference_s, self.every, self.steps = make_expert("push_cube"), inference_s, every, 0

    def reset(self, seed=None):
        self.expert.reset(seed)
        self.steps = 0

    def act(self, obs):
        if self.steps % self.every == 0:
            time.sleep(self.inference_s)
        self.steps += 1
        return self.expert.act(obs)


def run(env, agent, seconds: float, first_seed: int) -> dict:
    from robodream.pipeline.policy.harness import run_episode
    from robodream.robots.ros2.env import LoopStats

    env.stats = LoopStats(env.period)
    ages: list[float] = []
    env.on_tick = lambda record: ages.append(record["state_age_ms"])
    started, seed, successes, episodes = time.monotonic(), first_seed, 0, 0
    while time.monotonic() - started < seconds:
        successes += run_episode(env, agent, seed).success
        episodes += 1
        seed += 1
    summary = env.stats.summary()
    summary.update(episodes=episodes, successes=successes, state_age_p95_ms=float(np.percentile(ages, 95)))
    return summary


def bare_publish_ms(arm, repeats: int = 200) -> float:
    """Median cost of one rclpy publish of the arm's command message (no safety, no IK)."""
    from robodream.robots.ros2 import messages as m

    q = arm.measured()[0]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        arm._command_pub.publish(m.joint_trajectory(arm.cfg.joints, q, 0.1))
        times.append(time.perf_counter() - t)
        time.sleep(0.002)
    return float(np.median(times) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="per run")
    parser.add_argument("--camera-hz", type=float, default=15.0)
    parser.add_argument("--inference-ms", type=float, default=15.0, help="per step, within the 20%% budget")
    parser.add_argument("--chunk-inference-ms", type=float, default=80.0, help="every 8th step (a diffusion chunk)")
    args = parser.parse_args()
    env_vars = {"ROS_DOMAIN_ID": str(1 + os.getpid() % 100), "ROS_LOCALHOST_ONLY": "1",
                "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    os.environ.update(env_vars)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; sim-arm camera 64x64 at {args.camera_hz:g} Hz, joint states 100 Hz")
    sim = subprocess.Popen([sys.executable, "-m", "robodream.pipeline.cli", "sim-arm", f"robot={SIM_CONFIG}",
                            f"camera_hz={args.camera_hz}"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
    try:
        for line in sim.stdout:
            if "sim-arm: ready" in line:
                break
        else:
            raise SystemExit(f"sim-arm did not start (exit {sim.wait()})")
        from robodream.pipeline.config import build_config
        from robodream.robots.ros2.arm import Ros2Arm
        from robodream.robots.ros2.config import RobotConfig
        from robodream.robots.ros2.env import Ros2TaskEnv

        arm = Ros2Arm(build_config(RobotConfig, [], [SIM_CONFIG]), node_name="robodream_bench")
        arm.connect()
        env = Ros2TaskEnv(arm, "push_cube", max_steps=80)
        try:
            publish = bare_publish_ms(arm)
            rows = [("no inference", run(env, SlowAgent(0.0), args.seconds, 1000)),
                    (f"{args.inference_ms:g} ms every step", run(env, SlowAgent(args.inference_ms / 1000),
                                                                  args.seconds, 2000)),
                    (f"{args.chunk_inference_ms:g} ms every 8th", run(env, SlowAgent(args.chunk_inference_ms / 1000, 8),
                                                                  args.seconds, 3000))]
        finally:
            env.close()
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    print(f"bare rclpy publish of the command: {publish:.3f} ms (median)")
    print(f"{'run':<22} {'ticks':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'loop Hz':>8} "
          f"{'rate err':>8} {'late':>5} {'state age p95':>13} {'success':>8}")
    for name, s in rows:
        lat = s["latency_ms"]
        print(f"{name:<22} {s['ticks']:>6} {lat['p50']:>7.2f} {lat['p95']:>7.2f} {lat['p99']:>7.2f} {lat['max']:>7.2f} "
              f"{s['loop_hz']:>8.3f} {s['rate_error_pc']:>7.2f}% {s['late_ticks']:>5} "
              f"{s['state_age_p95_ms']:>10.1f} ms "
              f"{s['successes']:>3}/{s['episodes']:<3}")
    worst = max(s["latency_ms"]["p95"] for _, s in rows)
    print(f"latency p95 / 20 ms target: {worst / 20:.2f} (<= 1 passes); rate error within the inference budget "
          f"{max(s['rate_error_pc'] for _, s in rows[:2]):.2f}% (<= 5% passes); a chunk inference over the budget "
          f"stretches its tick (last row)")


if __name__ == "__main__":
    main()
