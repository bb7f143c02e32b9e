"""How well does each way of reading success from the probe find the real successes of held-out episodes?

    python benchmarks/probe_success_rules.py [--probe runs/standard/probe] [--radius 0.02 0.025 0.03 0.035]

Reads a `robodream train-probe` run (its model, the store it was trained on and the held-out episodes listed in
its metrics.json) and scores, per episode, the way imagination judges an episode (success as soon as any frame
passes the rule):
- "probability": the probe's success probability > 0.5 (imagination's default);
- "cube within r": the probe's cube estimate within r (m, xy) of the episode's goal, which imagination knows
  from the initial state (`imagination.success_radius=r`); the task's own rule on the true cube uses 0.035;
- both together (either one fires).
Prints detected successes and false alarms for each rule. Runs in seconds on a CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def detection(fired: np.ndarray, episode: np.ndarray, success: np.ndarray) -> str:
    """'detected/successes, false alarms/failures' for a per-frame rule read per episode (any frame fires)."""
    from robodream.world_models.probe_training import episode_detection

    detected, false_alarms = episode_detection(fired, episode, success)
    return f"{detected}/{success.sum()} detected, {false_alarms}/{(~success).sum()} false alarms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", default="runs/standard/probe", help="a train-probe out= directory")
    parser.add_argument("--radius", type=float, nargs="+", default=[0.02, 0.025, 0.03, 0.035])
    args = parser.parse_args()

    import torch

    from robodream.datasets.reader import EpisodeStore
    from robodream.world_models.probe import StateSuccessProbe
    from robodream.world_models.probe_training import probe_arrays

    torch.set_num_threads(1)
    metrics = json.loads((Path(args.probe) / "metrics.json").read_text())
    probe = StateSuccessProbe.from_pretrained(Path(args.probe) / "model")
    names = [t.name for t in probe.config.targets]
    if "goal" not in names or "cube" not in names:
        raise SystemExit(f"error: the probe predicts {names}; this benchmark needs cube and goal")
    arrays = probe_arrays(EpisodeStore.open(metrics["data"]), probe.config, metrics["held_out_episodes"])
    labels = probe.predict(arrays["frames"])
    episode, success = arrays["episode"], arrays["episode_success"]
    # the true goal of each episode's first frame: what imagination hands its agents and judges against
    targets = probe.config.targets
    goal_index = names.index("goal")
    start = sum(t.size for t in targets[:goal_index])  # positions are the targets' values side by side
    goals = arrays["positions"][:, start:start + targets[goal_index].size]
    first = np.searchsorted(episode, np.arange(len(success)))
    distance = np.linalg.norm(labels["cube"][:, :2] - goals[first[episode], :2], axis=1)
    probability = labels["success_prob"] > 0.5

    print(f"probe {args.probe}: {len(success)} held-out episodes of {metrics['data']}, {len(episode)} frames")
    print(f"  probability > 0.5            {detection(probability, episode, success)}")
    for r in args.radius:
        print(f"  cube within {r * 100:.1f} cm          {detection(distance <= r, episode, success)}")
        print(f"  either, cube within {r * 100:.1f} cm  {detection(probability | (distance <= r), episode, success)}")


if __name__ == "__main__":
    main()
