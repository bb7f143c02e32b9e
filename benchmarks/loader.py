"""Training-window throughput from an episode store, against a plain in-memory numpy array.

    python benchmarks/loader.py [--store data/push.zarr] [--batches 200]

Windows are what the world model trains on: K=4 context frames + 1 target frame at 64x64, plus the
matching actions, batch 64. The baseline gathers the same windows from a numpy array already in memory
with no episode bookkeeping (no padding, no masks); the store path goes through EpisodeStore (loaded into
RAM) + WindowDataset + DataLoader. Target: ratio >= 0.5. The disk-streaming mode (cache=disk, for stores
larger than RAM) is measured too, for information.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.windows import WindowDataset, make_loader
from robodream.datasets.writer import create_store

IMAGE = "observation.images.front"
OFFSETS = {IMAGE: [-3, -2, -1, 0, 1], "action": [-3, -2, -1, 0]}
BATCH = 64


def synthetic_store(path: Path, episodes: int = 100, length: int = 50) -> Path:
    """A store shaped like collected data: 64x64 frames (smooth gradients + a moving block), 4-d actions."""
    features = {IMAGE: {"dtype": "uint8", "shape": [64, 64, 3], "names": ["height", "width", "channel"]},
                "action": {"dtype": "float32", "shape": [4], "names": ["dx", "dy", "dz", "gripper"]}}
    writer = create_store(path, fps=10, features=features, robot_type="bench", task="bench", overwrite=True)
    rng = np.random.default_rng(0)
    base = np.linspace(0, 200, 64, dtype=np.float32)[None, :, None] * np.ones((64, 64, 3), np.float32)
    for episode in range(episodes):
        frames = np.repeat(base[None], length, axis=0)
        for t in range(length):
            x = (episode + t) % 56
            frames[t, 20:28, x : x + 8] = (220, 30, 30)
        frames += rng.normal(0, 2, frames.shape).astype(np.float32)
        writer.append_episode({IMAGE: frames.clip(0, 255).astype(np.uint8),
                               "action": rng.normal(0, 0.01, (length, 4)).astype(np.float32)}, source="sim")
    writer.close()
    return path


def windows_per_s_store(store: EpisodeStore, batches: int) -> float:
    loader = make_loader(WindowDataset(store, OFFSETS), batch_size=BATCH, shuffle=True, seed=0, drop_last=True)
    count, start = 0, time.perf_counter()
    while count < batches:
        for _batch in loader:
            count += 1
            if count >= batches:
                break
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    return batches * BATCH / (time.perf_counter() - start)


def windows_per_s_numpy(images: np.ndarray, actions: np.ndarray, batches: int) -> float:
    rng = np.random.default_rng(0)
    image_offsets, action_offsets = np.array(OFFSETS[IMAGE]), np.array(OFFSETS["action"])
    start = time.perf_counter()
    for _ in range(batches):
        anchors = rng.integers(3, len(images) - 1, BATCH)
        batch = {IMAGE: torch.from_numpy(images[anchors[:, None] + image_offsets]),
                 "action": torch.from_numpy(actions[anchors[:, None] + action_offsets])}
        assert batch[IMAGE].shape == (BATCH, 5, 64, 64, 3)
    return batches * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="an existing 64x64 store (default: a synthetic one in a temp dir)")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        location = args.store or synthetic_store(Path(tmp) / "bench.zarr")
        started = time.perf_counter()
        ram = EpisodeStore.open(location, cache="ram")
        load_s = time.perf_counter() - started
        images, actions = np.asarray(ram.gather(IMAGE, np.arange(ram.num_frames))), ram.gather(
            "action", np.arange(ram.num_frames))
        print(f"store: {location}  {ram.num_episodes} episodes, {ram.num_frames} frames, "
              f"{ram.nbytes / 1e6:.0f} MB in RAM (loaded in {load_s:.2f} s)")
        numpy_rates, store_rates, disk_rates = [], [], []
        for _ in range(args.repeats):
            numpy_rates.append(windows_per_s_numpy(images, actions, args.batches))
            store_rates.append(windows_per_s_store(ram, args.batches))
        disk = EpisodeStore.open(location, cache="disk")
        disk_rates.append(windows_per_s_store(disk, max(10, args.batches // 10)))
        numpy_rate, store_rate = float(np.median(numpy_rates)), float(np.median(store_rates))
        print(f"plain numpy array     {numpy_rate:10.0f} windows/s")
        print(f"store (RAM)           {store_rate:10.0f} windows/s")
        print(f"store (disk stream)   {disk_rates[0]:10.0f} windows/s")
        print(f"ratio store/numpy     {store_rate / numpy_rate:10.2f}   (target >= 0.5)")


if __name__ == "__main__":
    main()
