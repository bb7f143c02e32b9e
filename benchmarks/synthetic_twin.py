"""The kept synthetic episodes with PyBullet's frames instead of the world model's: what they would teach a policy
if imagination were perfect (issue 19: which part of synthetic data helps or hurts, the situations or the frames).

Every episode of a synthetic store (made with filter.replay_in_sim, or any store imagined from PyBullet
recordings) is replayed in PyBullet from the real start it was imagined from: the same env and seed, the real
context's actions, then the imagined actions. The frames PyBullet renders, with the actions it executed, go into a
new store, the synthetic store's "twin", recorded like `collect` records (source sim). Training a policy on
real + twin beside real + synthetic isolates the imagined frames: same start states, same actions, same labels.

    python benchmarks/synthetic_twin.py N10/seed0/synthetic/synthetic.zarr data/twin.zarr
    robodream train-policy "data=[{path: data/real_N10.zarr, weight: 0.5}, {path: data/twin.zarr, weight: 0.5}]" ...

Prints how many episodes were re-rendered, their PyBullet successes with a Wilson interval, and the mean absolute
difference between each imagined frame and PyBullet's (0-255), frame by frame along the horizon.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.writer import open_recording
from robodream.features import ACTION
from robodream.pipeline.data.collect import store_features
from robodream.pipeline.synthetic.verify import SimReplayer
from robodream.robots.rollout import record_episode
from robodream.stats import format_success


def twin(synthetic: str, out: str) -> None:
    synth = EpisodeStore.open(synthetic)
    image_key = next(k for k in synth.features if k.startswith("observation.images."))
    replayer, writer = SimReplayer(), None
    successes, errors = 0, []
    try:
        for i in range(synth.num_episodes):
            origin = json.loads(synth.episode_meta(i)["origin"])
            env, real = replayer.env_and_store(origin["data"])
            if env is None:
                raise SystemExit(f"{origin['data']} was not recorded in PyBullet: episode {i} cannot be re-rendered")
            if writer is None:
                writer, _ = open_recording(out, store_features(env.features), resume=False, recorder="twin",
                                           fix="another out=", fps=env.fps, robot_type=env.robot_type,
                                           task=synth.task, cameras=env.cameras, overwrite=True,
                                           extra_attrs={"collection": real.attrs.get("collection", {}),
                                                        "twin_of": synthetic})
            episode = synth.episode(i, [image_key, ACTION])
            actions = iter(episode[ACTION][:-1])  # the last action is the hold after the end
            seed = int(real.meta("episode_seed")[origin["start_episode"]])
            record = record_episode(env, lambda obs, actions=actions: next(actions), seed,
                                    max_steps=len(episode[ACTION]) - 1)
            if not np.array_equal(record.data[image_key][0], episode[image_key][0]):
                raise SystemExit(f"episode {i}: PyBullet's first frame differs from the synthetic episode's")
            writer.append_episode(record.data, source="sim", success=record.success, seed=seed,
                                  origin=json.dumps({"twin_of": synthetic, "episode": i}))
            successes += record.success
            n = min(len(record.data[image_key]), len(episode[image_key]))
            errors.append(np.abs(record.data[image_key][:n].astype(np.float32)
                                 - episode[image_key][:n].astype(np.float32)).mean(axis=(1, 2, 3)))
    finally:
        replayer.close()
        if writer is not None:
            writer.close()
    print(f"twin        {out}: {synth.num_episodes} episodes re-rendered by PyBullet")
    print(f"success     {format_success(successes, synth.num_episodes)} in PyBullet")
    longest = max(len(e) for e in errors)
    per_step = [np.mean([e[t] for e in errors if len(e) > t]) for t in range(longest)]
    print("|imagined - PyBullet| per frame (0-255), frames 0..: " + " ".join(f"{v:.1f}" for v in per_step))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("synthetic", help="a synthetic store made by robodream generate")
    parser.add_argument("out", help="the twin store to write (replaced if it exists)")
    args = parser.parse_args()
    twin(args.synthetic, args.out)


if __name__ == "__main__":
    main()
