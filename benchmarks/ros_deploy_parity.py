"""Deployment parity: the same agent on the same seeds, evaluated directly in PyBullet and deployed through ROS 2
(`robodream deploy` against `robodream sim-arm`, separate processes).

    python benchmarks/ros_deploy_parity.py --policy expert --episodes 20
    python benchmarks/ros_deploy_parity.py --policy runs/policy/checkpoints/step_5000 --episodes 20

Direct evaluation runs the task env behind the same safety layer (`make_safe_env`) in this process; the
deployment goes through the ROS graph: joint states at 100 Hz, a 64x64 camera at 15 Hz rendered by its own
process, joint_trajectory_controller commands interpolated over one period, IK from the URDF. Differences
come from timing (the arm keeps moving while the policy thinks; frames are up to one camera period old) and
from the trajectory following. Target: success rates within 10 points.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIM_CONFIG = REPO / "configs" / "robot" / "panda_sim.yaml"


def direct(policy: str, seeds: list[int]) -> tuple[list[bool], list[int], float]:
    from robodream.pipeline.policy.harness import run_episode
    from robodream.robots.sim.env import EnvConfig
    from robodream.robots.sim.safe_env import make_safe_env

    if policy == "expert":
        from robodream.robots.sim.experts import make_expert

        agent = make_expert("push_cube")
    else:
        from robodream.policies.runner import load_runner

        agent = load_runner(policy, threads=1)
    env = make_safe_env(EnvConfig(task="push_cube"))
    started = time.monotonic()
    try:
        results = [run_episode(env, agent, seed) for seed in seeds]
    finally:
        env.close()
    return [r.success for r in results], [r.steps for r in results], time.monotonic() - started


def deployed(policy: str, seeds: list[int], out: Path, overrides: list[str], sim_overrides: list[str]) -> dict:
    env = {**os.environ, "ROS_DOMAIN_ID": str(1 + os.getpid() % 100), "ROS_LOCALHOST_ONLY": "1",
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    cli = [sys.executable, "-m", "robodream.pipeline.cli"]
    robot = [f"robot={SIM_CONFIG}", *(f"robot.{o}" for o in overrides)]
    sim = subprocess.Popen([*cli, "sim-arm", *robot, *sim_overrides], cwd=REPO, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in sim.stdout:
            if "sim-arm: ready" in line:
                break
        run = subprocess.run([*cli, "deploy", f"policy={policy}", *robot, f"episodes={len(seeds)}",
                              f"seed={seeds[0]}", f"out={out}", "progress=false"], cwd=REPO, env=env,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=3600)
        if run.returncode != 0:
            raise SystemExit(f"deploy failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    return json.loads((out / "eval_info.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="expert", help="'expert' or a checkpoint directory")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--robot", nargs="*", default=[], metavar="KEY=VALUE",
                        help="robot config overrides for sim-arm and deploy, e.g. command.interface=forward_position")
    parser.add_argument("--sim", nargs="*", default=[], metavar="KEY=VALUE",
                        help="sim-arm overrides, e.g. camera_hz=30")
    args = parser.parse_args()
    seeds = list(range(args.seed, args.seed + args.episodes))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; policy {args.policy}; push_cube seeds {seeds[0]}..{seeds[-1]}; "
          f"robot overrides {args.robot}; sim-arm {args.sim}")
    ok, steps, direct_s = direct(args.policy, seeds)
    with tempfile.TemporaryDirectory() as tmp:
        info = deployed(args.policy, seeds, Path(tmp) / "deploy", args.robot, args.sim)
    ros_ok = [e["success"] for e in info["per_episode"]]
    loop, safety = info["info"]["loop"], info["info"]["safety"]
    print(f"{'':<10} {'success':>9} {'mean steps':>11} {'time':>8}")
    print(f"{'direct':<10} {100 * np.mean(ok):>8.1f}% {np.mean(steps):>11.1f} {direct_s:>7.0f}s")
    print(f"{'deployed':<10} {info['aggregated']['pc_success']:>8.1f}% {info['info']['mean_episode_steps']:>11.1f} "
          f"{info['aggregated']['eval_s']:>7.0f}s")
    print(f"per seed (direct/deployed): {' '.join(f'{int(a)}{int(b)}' for a, b in zip(ok, ros_ok, strict=True))}")
    print(f"difference: {abs(info['aggregated']['pc_success'] - 100 * np.mean(ok)):.1f} points (target <= 10)")
    print(f"deployed loop: {loop['loop_hz']:.3f} Hz, {loop['late_ticks']} late ticks of {loop['ticks']}, latency p95 "
          f"{loop['latency_ms']['p95']:.2f} ms; safety clamps {safety['clamps']}, hold ticks {safety['hold_ticks']}")


if __name__ == "__main__":
    main()
