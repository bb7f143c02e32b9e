"""`robodream verify-synthetic`: how many of the rollouts a synthetic store calls successes succeed in PyBullet.

    robodream verify-synthetic store=data/synthetic.zarr

A synthetic episode starts from the first K frames of a real episode and continues with imagined frames under
actions that are stored with it; the probe labelled it a success or a failure. When the real episode was
recorded in PyBullet (its store's `collection` attributes name the task env, its `episode_seed` the seed), the
simulator can replay exactly the same actions from exactly the same initial state: a check of the success
label that only a simulator can give. The first frame must match the real episode's first frame pixel for
pixel (same env, same seed), otherwise the episode is reported as unverifiable rather than guessed.

Output: per episode the label and the replayed outcome, and the precision of the success label (replayed
successes among labelled successes) with its Wilson interval, in `<store>.verify.json` and on screen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.features import ACTION
from robodream.stats import format_success


@dataclass
class VerifyConfig:
    store: str = runtime("data/synthetic.zarr")  # a store written by generate
    episodes: str = "all"  # which synthetic episodes to replay (e.g. 0-49)
    out: str | None = runtime(None)  # default: <store>.verify.json beside the store
    progress: bool = runtime(True)


class Replay(NamedTuple):
    """What replaying an action sequence in PyBullet gave (SimReplayer.replay)."""

    success: bool | None  # None: the episode cannot be reproduced in PyBullet (see `why`)
    why: str | None = None
    steps: int = 0  # actions executed before the env ended the episode (at its first success, or its step limit)


class SimReplayer:
    """Replays action sequences in PyBullet from a real episode's initial state: one env per real store, made
    from the store's recorded `collection.env`, reset with the episode's recorded seed."""

    def __init__(self):
        self._stores: dict[str, tuple] = {}

    def env_and_store(self, path: str):
        """(the PyBullet env a real store was recorded with, or None; the store), made once per store."""
        if path not in self._stores:
            from omegaconf import OmegaConf

            from robodream.datasets.reader import EpisodeStore
            from robodream.robots.sim.env import EnvConfig, make_env

            store = EpisodeStore.open(path)
            recorded = _recorded_env(store)
            env = None
            if recorded is not None:
                env = make_env(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EnvConfig), recorded)))
            self._stores[path] = (env, store)
        return self._stores[path]

    def replay(self, real_store: str, start_episode: int, first_frame: np.ndarray, image_key: str,
               actions: np.ndarray) -> Replay:
        """Whether `actions`, executed in order in PyBullet from the episode's start, succeed (`success` None, with
        `why`, when the episode cannot be reproduced). `first_frame` must equal PyBullet's first frame pixel for
        pixel (same env, same seed). `steps` counts the actions executed: the env stops at the first success."""
        env, real = self.env_and_store(real_store)
        if env is None:
            return Replay(None, "the real store was not recorded in PyBullet (no collection.env)")
        obs, _ = env.reset(seed=int(real.meta("episode_seed")[start_episode]))
        if not np.array_equal(obs[image_key], first_frame):
            return Replay(None, "PyBullet's first frame differs from the episode's (another env config or renderer)")
        success, steps = False, 0
        with env.without_camera():  # only the outcome is needed: the renderer would be ~90% of the replay's time
            for action in actions:
                _, _, terminated, truncated, info = env.step(action)
                steps += 1
                success |= bool(info.get("success", False))
                if terminated or truncated:
                    break
        return Replay(success, None, steps)

    def close(self) -> None:
        for env, _ in self._stores.values():
            if env is not None:
                env.close()
        self._stores.clear()


def _recorded_env(store) -> dict | None:
    """The PyBullet env config a store was recorded with; for a merged store (demos + play), its sources' config
    when they all share one (None otherwise: the episodes cannot be reproduced)."""
    from robodream.datasets.reader import EpisodeStore

    recorded = store.attrs.get("collection", {}).get("env")
    sources = store.attrs.get("merged_from")
    if recorded is not None or not sources:
        return recorded
    try:
        envs = [EpisodeStore.open(source).attrs.get("collection", {}).get("env") for source in sources]
    except RobodreamError:  # a source moved or deleted since the merge
        return None
    return envs[0] if envs[0] is not None and all(env == envs[0] for env in envs) else None


def replay_episode(replayer: SimReplayer, synth, index: int) -> dict:
    """Replay synthetic episode `index` in PyBullet: {"episode", "labelled", "replayed" (None: unverifiable),
    "probe_called"}. `labelled` is the episode's success flag, PyBullet's own when generate's replay filter set
    it; `probe_called` is what the probe read on the imagined frames (their reward column), None without one."""
    meta = synth.episode_meta(index)
    origin = json.loads(meta["origin"])
    image_key = next(k for k in synth.features if k.startswith("observation.images."))
    probe_reading = "reward" in synth.features
    episode = synth.episode(index, [image_key, ACTION] + (["reward"] if probe_reading else []))
    # the last action is the hold after the end
    replayed, why, _ = replayer.replay(origin["data"], origin["start_episode"], episode[image_key][0], image_key,
                                    episode[ACTION][:-1])
    called = bool((episode["reward"][origin.get("context_frames", 0):] > 0).any()) if probe_reading else None
    return {"episode": index, "labelled": bool(meta["success"]), "replayed": replayed, "why": why,
            "probe_called": called}


def verify_synthetic(cfg: VerifyConfig) -> dict:
    """Replay the chosen episodes; returns (and writes) the report."""
    from tqdm import tqdm

    from robodream.datasets.reader import EpisodeStore, parse_episode_selection

    synth = EpisodeStore.open(cfg.store)
    episodes = parse_episode_selection(cfg.episodes, synth.num_episodes)
    if any(synth.episode_meta(i)["source"] != "synthetic" for i in episodes):
        raise RobodreamError(f"{cfg.store} holds episodes that are not synthetic: verify-synthetic checks the "
                             "stores `robodream generate` writes")
    replayer = SimReplayer()
    try:
        rows = [replay_episode(replayer, synth, i)
                for i in tqdm(episodes, desc="replay in PyBullet", unit="ep", disable=not cfg.progress)]
    finally:
        replayer.close()
    checked = [r for r in rows if r["replayed"] is not None]
    labelled = [r for r in checked if r["labelled"]]
    hits = sum(r["replayed"] for r in labelled)
    report = {"store": cfg.store, "episodes": len(rows), "verified": len(checked),
              "labelled_success": len(labelled), "replayed_success": hits,
              "precision": hits / len(labelled) if labelled else None,
              "precision_text": format_success(hits, len(labelled)),
              # the probe's own reading against PyBullet, whatever set the labels: its recall on the replayed successes
              "probe_called_replayed_success": sum(bool(r["probe_called"]) for r in checked if r["replayed"]),
              "replayed_success_all": sum(bool(r["replayed"]) for r in checked), "rows": rows}
    out = Path(cfg.out) if cfg.out else Path(str(cfg.store).rstrip("/") + ".verify.json")
    out.write_text(json.dumps(report, indent=2))
    report["out"] = str(out)
    return report


def report_lines(report: dict) -> list[str]:
    """The summary: how many episodes could be replayed, and the precision of the success label."""
    lines = [f"replayed    {report['verified']}/{report['episodes']} episodes in PyBullet from their real start"]
    unverifiable = {r["why"] for r in report["rows"] if r["replayed"] is None}
    lines += [f"not checked {why}" for why in sorted(unverifiable)]
    lines.append(f"precision   of the probe's success label: {report['precision_text']} labelled successes also "
                 "succeed in PyBullet")
    if any(r["probe_called"] is not None for r in report["rows"]):
        recall = format_success(report["probe_called_replayed_success"], report["replayed_success_all"])
        lines.append(f"probe       calls {recall} of the episodes that succeed in PyBullet a success (its recall)")
    lines.append(f"report      {report['out']}")
    return lines
