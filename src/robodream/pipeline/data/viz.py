"""`robodream viz <store> --episodes 0-3`: episodes side by side as an MP4 and a GIF grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robodream.datasets import layout
from robodream.datasets.reader import EpisodeStore, parse_episode_selection
from robodream.datasets.video import tile_episodes, write_gif, write_mp4
from robodream.errors import RobodreamError


@dataclass
class VizOutputs:
    mp4: Path
    gif: Path
    episodes: list[int]


def visualize(store_location: str, episodes: str = "0-3", out_dir: str | None = None, camera: str | None = None,
              scale: int = 4, columns: int | None = None) -> VizOutputs:
    """Tile the selected episodes (labelled with index and success) and write <store>_ep<sel>.mp4/.gif."""
    store = EpisodeStore.open(store_location, cache="disk")
    if not store.image_keys:
        raise RobodreamError(f"{store_location} has no camera images to visualise (it holds {store.keys})")
    key = store.image_keys[0] if camera is None else f"observation.images.{camera}"
    if key not in store.features:
        cams = [k.removeprefix("observation.images.") for k in store.image_keys]
        raise RobodreamError(f"{store_location} has no camera {camera!r}; cameras: {', '.join(cams)}")
    if scale < 1:
        raise RobodreamError(f"scale must be >= 1, got {scale}")
    selected = parse_episode_selection(episodes, store.num_episodes)
    base = layout.check_writable_dir(Path(out_dir) if out_dir else Path(str(store_location).rstrip("/")).parent)
    frames, labels = [], []
    for index in selected:
        frames.append(store.episode(index, [key])[key])
        meta = store.episode_meta(index)
        outcome = {True: "ok", False: "fail", None: "unknown"}[meta["success"]]
        labels.append(f"#{index} {outcome}")
    grid = tile_episodes(frames, labels=labels, columns=columns, scale=scale)
    stem = Path(str(store_location).rstrip("/")).stem + f"_ep{episodes.replace(',', '_')}"
    mp4 = write_mp4(grid, base / f"{stem}.mp4", store.fps)
    return VizOutputs(mp4, write_gif(grid, base / f"{stem}.gif", store.fps), selected)
