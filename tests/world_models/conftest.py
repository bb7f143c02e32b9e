"""Tiny world models (16 px, two UNet levels) over the shared tiny store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.windows import WindowDataset
from robodream.world_models.configuration import UNetConfig, WorldModelConfig
from robodream.world_models.model import WorldModel
from robodream.world_models.training import window_offsets

TINY_UNET = UNetConfig(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=4, embedding_dim=32,
                       mid_attention=False)


def tiny_config(**overrides) -> WorldModelConfig:
    return WorldModelConfig(context_frames=2, unet=TINY_UNET, **overrides)


@pytest.fixture
def store(tiny_store):
    return EpisodeStore.open(tiny_store)


@pytest.fixture
def model(store):
    torch.manual_seed(0)
    return WorldModel.from_stats(tiny_config().with_data_shapes(store.features), store.stats()["features"])


@pytest.fixture
def batch(store, model):
    dataset = WindowDataset(store, window_offsets(model.config))
    return dataset.__getitems__(list(range(len(dataset))))


def train_steps(model: WorldModel, batch: dict, steps: int, lr: float = 3e-3) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        loss = model.training_loss(batch, generator=torch.Generator().manual_seed(step))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def _square_frame(x: int, y: int, size: int = 16) -> np.ndarray:
    frame = np.full((size, size, 3), 20, np.uint8)
    frame[y : y + 4, x : x + 4] = (240, 200, 40)
    return frame


@pytest.fixture(scope="session")
def moving_square_store(tmp_path_factory):
    """Toy physics whose next frame depends on the action: a 4x4 square moves by the action (dx, dy) pixels."""
    from robodream.datasets.writer import create_store

    features = {"observation.images.front": {"dtype": "uint8", "shape": [16, 16, 3], "names": None},
                "observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
                "action": {"dtype": "float32", "shape": [2], "names": ["dx", "dy"]}}
    path = tmp_path_factory.mktemp("square") / "square.zarr"
    writer = create_store(path, fps=10, features=features, robot_type="toy", task="square")
    rng = np.random.default_rng(0)
    for _ in range(24):
        position = rng.integers(2, 10, 2)
        frames, states, actions = [], [], []
        for _ in range(10):
            action = rng.integers(-2, 3, 2)
            frames.append(_square_frame(*position))
            states.append(position.astype(np.float32))
            actions.append(action.astype(np.float32))
            position = np.clip(position + action, 0, 12)
        writer.append_episode({"observation.images.front": np.stack(frames), "observation.state": np.stack(states),
                               "action": np.stack(actions)}, source="sim")
    writer.close()
    return path
