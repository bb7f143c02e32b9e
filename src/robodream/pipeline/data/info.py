"""`robodream info <store>`: a one-screen summary of an episode store."""

from __future__ import annotations

import collections

import numpy as np

from robodream.datasets.layout import store_size_bytes
from robodream.datasets.reader import EpisodeStore


def describe_store(store: EpisodeStore) -> list[str]:
    """Human-readable summary lines: format, counts, lengths, sources, success, features, cameras."""
    lengths = store.episode_lengths
    lines = [
        f"store       {store.location}",
        f"format      {store.attrs['format']} v{store.attrs['version']}",
        f"task        {store.task or '-'}   robot {store.robot_type or '-'}   fps {store.fps:g}",
        f"episodes    {store.num_episodes}   frames {store.num_frames}   "
        f"duration {store.num_frames / store.fps:.1f} s",
    ]
    if store.num_episodes:
        lines.append(f"length      min {lengths.min()}  mean {lengths.mean():.1f}  max {lengths.max()} frames")
        sources = collections.Counter(str(s) for s in store.meta("episode_source"))
        lines.append("sources     " + ", ".join(f"{name} {count}" for name, count in sorted(sources.items())))
        lines.append("success     " + describe_outcomes(store.outcomes()))
        if store.mixed_tasks:
            tasks = collections.Counter(store.episode_tasks())
            lines.append("tasks       " + ", ".join(f"{task} {count}" for task, count in tasks.items()))
        seeds = store.meta("episode_seed")
        if (seeds >= 0).any():
            lines.append(f"seeds       {seeds[seeds >= 0].min()}..{seeds.max()}")
    if store.uncommitted_frames:
        lines.append(f"WARNING     {store.uncommitted_frames} uncommitted trailing frames (a crash?); "
                     f"`robodream repair {store.location}` drops them")
    lines.append("features")
    for key, feature in store.features.items():
        shape = "x".join(str(d) for d in feature["shape"]) or "scalar"
        names = feature.get("names")
        named = "" if not names or len(feature["shape"]) > 1 else "  [" + ", ".join(names) + "]"
        lines.append(f"  {key:<34} {feature['dtype']:<8} {shape}{named}")
    for name, camera in store.cameras.items():
        lines.append(f"camera      {name}: {camera.get('width')}x{camera.get('height')}, fov {camera.get('fov')}")
    stats = store.attrs.get("stats")
    fresh = bool(stats) and stats.get("num_frames") == store.num_frames
    lines.append(f"stats       {'stored, up to date' if fresh else 'not stored or stale (computed on use)'}")
    size = store_size_bytes(store.location)
    if size:
        lines.append(f"on disk     {size / 1e6:.1f} MB ({store.nbytes / max(size, 1):.1f}x compression)")
    return lines


def describe_outcomes(codes: np.ndarray) -> str:
    """"7/9 (78%), 3 unknown": successes over the episodes whose outcome is known, and how many are not."""
    from robodream.datasets import layout

    known = codes != layout.UNKNOWN
    unknown = int((~known).sum())
    if not known.any():
        return f"unknown ({unknown} episodes: no outcome recorded)"
    wins = int((codes == layout.SUCCESS).sum())
    return f"{wins}/{int(known.sum())} ({wins / known.sum():.0%})" + (f", {unknown} unknown" if unknown else "")
