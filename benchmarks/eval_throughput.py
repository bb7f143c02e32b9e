"""Evaluation throughput: episodes/s with 2 worker processes against 1, on the same policy and seeds.

    python benchmarks/eval_throughput.py [--policy runs/bench/policy/diffusion/checkpoints/step_6000]
                                         [--episodes 16] [--task push_cube]

Without --policy, the default diffusion policy (configs/policy/diffusion.yaml, 10 DDIM steps) is built
untrained from a 2-episode store: it never succeeds, so every episode runs the task's full 80 steps and the
two runs do identical work. Figures are end to end as a user sees them (worker start-up, torch/diffusers
import, checkpoint load, PyBullet, policy inference, video encoding of the first episode).
Target: (2 workers) / (1 worker) >= 1.6 on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from robodream.pipeline.config import build_config
from robodream.pipeline.data.collect import CollectConfig, collect
from robodream.pipeline.policy.evaluate import EvalConfig, run_evaluation

REPO = Path(__file__).resolve().parents[1]


def untrained_checkpoint(tmp: Path, task: str) -> Path:
    """The default diffusion policy, initialised from a tiny store's stats and saved without training."""
    from robodream.datasets.reader import EpisodeStore
    from robodream.policies.base import select_features
    from robodream.policies.configuration import PolicyConfig
    from robodream.policies.pretrained import make_policy

    store_path = tmp / "two.zarr"
    collect(CollectConfig(task=task, episodes=2, workers=0, out=str(store_path)), progress=False)
    store = EpisodeStore.open(store_path)
    config = build_config(PolicyConfig, [], [REPO / "configs" / "policy" / "diffusion.yaml"]).for_task(task)
    policy = make_policy(config, select_features(config, store.features, str(store_path)),
                         store.stats()["features"])
    return policy.save_pretrained(tmp / "untrained", training={"step": 0, "task": task, "fps": store.fps})


def episodes_per_s(policy: Path, task: str, episodes: int, workers: int, out: Path) -> tuple[float, float]:
    cfg = EvalConfig(policy=str(policy), task=task, episodes=episodes, workers=workers, videos=1, out=str(out),
                     progress=False)
    started = time.monotonic()
    [result] = run_evaluation(cfg)
    elapsed = time.monotonic() - started
    return episodes / elapsed, result.info["info"]["mean_episode_steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default=None, help="checkpoint to evaluate (default: untrained diffusion)")
    parser.add_argument("--task", default="push_cube")
    parser.add_argument("--episodes", type=int, default=16)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; task {args.task}, {args.episodes} episodes per run")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        policy = Path(args.policy) if args.policy else untrained_checkpoint(tmp, args.task)
        one, steps = episodes_per_s(policy, args.task, args.episodes, 1, tmp / "one")
        two, _ = episodes_per_s(policy, args.task, args.episodes, 2, tmp / "two")
    print(f"policy                  {args.policy or 'untrained configs/policy/diffusion.yaml'}")
    print(f"mean episode length     {steps:8.1f} steps")
    print(f"eval, 1 worker          {one:8.3f} episodes/s   ({one * steps:.1f} steps/s)")
    print(f"eval, 2 workers         {two:8.3f} episodes/s   ({two * steps:.1f} steps/s)")
    print(f"2 workers / 1 worker    {two / one:8.2f}   (target >= 1.6)")


if __name__ == "__main__":
    main()
