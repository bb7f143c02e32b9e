"""How much faster `SimReplayer` checks a rollout in PyBullet without rendering, and that it decides the same.

    python benchmarks/replay_speed.py runs/experiments/augment/data/real_N10_executed.zarr [--episodes 20]

Generation with `filter.replay_in_sim` and `robodream verify-synthetic` replay every rollout's actions in PyBullet
to read its outcome. The replayer steps the env inside `without_camera()` (the first frame is still rendered, to
check the start). Baseline, measured in the same run on the same episodes: the same replay with the camera on
every step, as it ran before. Prints seconds per episode for both, their ratio, and whether every outcome (success
and steps executed) is the same.
"""

from __future__ import annotations

import argparse
import contextlib
import time

from robodream.datasets.reader import EpisodeStore
from robodream.features import ACTION
from robodream.pipeline.synthetic.verify import Replay, SimReplayer


def replay_all(replayer: SimReplayer, path: str, episodes: list[dict], image_key: str,
               camera: bool) -> tuple[list[Replay], float]:
    """Each episode's outcome through `SimReplayer.replay`, and the seconds it took; with `camera` the env's
    `without_camera` is made a no-op, so every step renders as it did before (the baseline)."""
    env, _ = replayer.env_and_store(path)  # env construction outside the timing
    if camera:
        env.without_camera = contextlib.nullcontext
    try:
        start = time.perf_counter()
        outcomes = [replayer.replay(path, i, e[image_key][0], image_key, e[ACTION][:-1])
                    for i, e in enumerate(episodes)]
        return outcomes, time.perf_counter() - start
    finally:
        vars(env).pop("without_camera", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="an episode store recorded in PyBullet (executed actions)")
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    store = EpisodeStore.open(args.store)
    image_key = next(k for k in store.keys if k.startswith("observation.images."))
    episodes = [store.episode(i, [image_key, ACTION]) for i in range(min(args.episodes, store.num_episodes))]
    replayer = SimReplayer()
    try:
        baseline, camera_s = replay_all(replayer, args.store, episodes, image_key, camera=True)
        blind, blind_s = replay_all(replayer, args.store, episodes, image_key, camera=False)
    finally:
        replayer.close()
    n = len(episodes)
    same = all(a.success == b.success and a.steps == b.steps for a, b in zip(baseline, blind, strict=True))
    print(f"{n} episodes of {args.store}, {sum(r.steps for r in blind)} steps replayed")
    print(f"camera on every step (baseline)  {camera_s / n * 1000:7.0f} ms per episode")
    print(f"SimReplayer (without_camera)     {blind_s / n * 1000:7.0f} ms per episode   "
          f"{camera_s / blind_s:.1f}x faster")
    print(f"same outcomes (success, steps)   {same}  ({sum(bool(r.success) for r in blind)}/{n} succeed)")


if __name__ == "__main__":
    main()
