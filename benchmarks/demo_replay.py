"""Do a store's recorded actions reproduce its episodes? Each episode's actions replayed open loop in PyBullet from
the episode's own seed (the check verify-synthetic applies to synthetic episodes, here on recorded ones).

Why it matters (issue 19): a world model learns "these actions make these frames", and generation with
source=demo-actions replays a demo's actions; both assume the stored actions are the ones that moved the arm.
DART demos (expert.label=clean) store what the expert meant while a noisy action was executed. This script
measures the consequence on two stores recorded from the same seeds, one with each label:

    python benchmarks/demo_replay.py runs/experiments/augment/data/real_N10.zarr \
        runs/experiments/augment/data/real_N10_executed.zarr

Prints, per store, the replayed successes with a Wilson interval and the recorded successes.
"""

from __future__ import annotations

import argparse

from robodream.datasets.reader import EpisodeStore
from robodream.features import ACTION
from robodream.pipeline.synthetic.verify import SimReplayer
from robodream.stats import format_success


def replay_store(path: str, replayer: SimReplayer) -> tuple[int, int, int, str]:
    """(replayed successes, episodes replayed, recorded successes, the store's expert.label) of every episode of
    the store at `path`."""
    store = EpisodeStore.open(path)
    label = store.attrs.get("collection", {}).get("expert", {}).get("label", "?")
    image_key = next(k for k in store.keys if k.startswith("observation.images."))
    wins = recorded = replayed = 0
    for i in range(store.num_episodes):
        episode = store.episode(i, [image_key, ACTION])
        # the last frame's action is the recorder's "hold" after the episode ended: not part of what was executed
        success, why, _ = replayer.replay(path, i, episode[image_key][0], image_key, episode[ACTION][:-1])
        if success is None:
            raise SystemExit(f"{path} episode {i} cannot be replayed: {why}")
        wins += success
        replayed += 1
        recorded += bool(store.episode_meta(i)["success"])
    return wins, replayed, recorded, label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stores", nargs="+", help="episode stores recorded in PyBullet")
    args = parser.parse_args()
    replayer = SimReplayer()
    try:
        for path in args.stores:
            wins, n, recorded, label = replay_store(path, replayer)
            print(f"{path}  (expert.label={label})")
            print(f"  recorded successes {recorded}/{n}; replayed open loop in PyBullet: {format_success(wins, n)}")
    finally:
        replayer.close()


if __name__ == "__main__":
    main()
