"""Shared fixtures: tiny episode stores written into tmp_path."""

from __future__ import annotations

import numpy as np
import pytest

from robodream.datasets.writer import create_store

TINY_FEATURES = {
    "observation.images.front": {"dtype": "uint8", "shape": [16, 16, 3], "names": ["height", "width", "channel"]},
    "observation.state": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
    "action": {"dtype": "float32", "shape": [2], "names": ["dx", "dy"]},
}


def make_episode(length: int, episode: int, features: dict = TINY_FEATURES) -> dict[str, np.ndarray]:
    """Frames whose values encode (episode, frame), so reads can be checked exactly."""
    frame = np.arange(length, dtype=np.float32)
    data = {}
    for key, feature in features.items():
        shape = tuple(feature["shape"])
        if feature["dtype"] == "uint8":
            values = (episode * 50 + np.arange(length)) % 256
            data[key] = np.broadcast_to(values[:, None, None, None], (length, *shape)).astype(np.uint8)
        else:
            data[key] = (episode * 1000 + frame[:, None] * 10 + np.arange(shape[0])[None, :]).astype(np.float32)
    return data


@pytest.fixture
def tiny_store(tmp_path):
    """A store with 3 committed episodes of 5, 7 and 4 frames."""
    path = tmp_path / "tiny.zarr"
    writer = create_store(path, fps=10, features=TINY_FEATURES, robot_type="test", task="tiny")
    for index, length in enumerate((5, 7, 4)):
        writer.append_episode(make_episode(length, index), source="sim", success=index != 1, seed=100 + index,
                              origin=f"test:{index}")
    writer.close()
    return path
