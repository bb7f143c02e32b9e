"""Collection throughput against the raw renderer, and scaling from 1 to 2 workers.

    python benchmarks/collect.py [--task push_cube] [--episodes 40] [--image-size 64]

Three measurements in one run, on the same scene and image size:
1. raw renderer: a bare loop of the scene's getCameraImage call (TinyRenderer), no physics, no IK, no I/O;
2. `collect` with 1 worker process: physics, IK, expert, rendering, transfer to the parent, Zarr writes;
3. `collect` with 2 worker processes.
Collection figures are end to end (process start-up included), as a user sees them.
Targets: (2) / (1) >= 0.8 and (3) / (2) >= 1.6 on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from robodream.pipeline.data.collect import CollectConfig, collect
from robodream.robots.sim.env import EnvConfig, make_env


def raw_render_fps(task: str, image_size: int, frames: int) -> float:
    env = make_env(EnvConfig(task=task, image_size=image_size))
    env.reset(seed=0)
    env.scene.render()  # warm-up
    start = time.perf_counter()
    for _ in range(frames):
        env.scene.render()
    elapsed = time.perf_counter() - start
    env.close()
    return frames / elapsed


def collect_fps(task: str, image_size: int, episodes: int, workers: int, out: Path) -> tuple[float, int]:
    cfg = CollectConfig(task=task, episodes=episodes, workers=workers, out=str(out),
                        env=EnvConfig(task=task, image_size=image_size))
    summary = collect(cfg, progress=False)
    if summary.episodes_in_store < episodes:
        raise SystemExit(f"collection stopped early: {summary.stopped}")
    return summary.new_frames / summary.elapsed_s, summary.new_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="push_cube")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--render-frames", type=int, default=600)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; task {args.task}, {args.image_size}x{args.image_size}, "
          f"{args.episodes} episodes per collection run")
    raw = raw_render_fps(args.task, args.image_size, args.render_frames)
    with tempfile.TemporaryDirectory() as tmp:
        one, frames = collect_fps(args.task, args.image_size, args.episodes, 1, Path(tmp) / "one.zarr")
        two, _ = collect_fps(args.task, args.image_size, args.episodes, 2, Path(tmp) / "two.zarr")
    print(f"raw renderer            {raw:8.1f} frames/s")
    print(f"collect, 1 worker       {one:8.1f} frames/s   ({frames} frames)")
    print(f"collect, 2 workers      {two:8.1f} frames/s")
    print(f"1 worker / raw render   {one / raw:8.2f}   (target >= 0.8)")
    print(f"2 workers / 1 worker    {two / one:8.2f}   (target >= 1.6)")


if __name__ == "__main__":
    main()
