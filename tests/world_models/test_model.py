"""The world model itself: learning, determinism, action conditioning, save/load, input checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.windows import WindowDataset
from robodream.errors import RobodreamError
from robodream.world_models.model import WorldModel
from robodream.world_models.training import window_offsets
from tests.world_models.conftest import tiny_config, train_steps


def _fixed_loss(model: WorldModel, batch: dict) -> float:
    with torch.no_grad():
        return float(model.training_loss(batch, generator=torch.Generator().manual_seed(123))["loss"])


def _context(batch: dict, model: WorldModel, rows: slice = slice(0, 4)):
    k = model.config.context_frames
    key = model.config.image_key
    return batch[key][rows, :k], batch["action"][rows], batch["observation.state"][rows, :k]


def test_a_few_training_steps_lower_the_loss(model, batch):
    before = _fixed_loss(model, batch)
    train_steps(model, batch, steps=40)
    after = _fixed_loss(model, batch)
    assert after < 0.7 * before, (before, after)


def test_sampling_is_deterministic_and_survives_save_load(model, batch, tmp_path):
    frames, actions, states = _context(batch, model)
    generator = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    first, first_state = model.sample_next(frames, actions, states, generator=generator())
    assert first.shape == (4, 16, 16, 3) and first.dtype == torch.uint8 and first_state.shape == (4, 3)
    again, _ = model.sample_next(frames, actions, states, generator=generator())
    assert torch.equal(first, again)
    loaded = WorldModel.from_pretrained(model.save_pretrained(tmp_path / "wm"))
    after, after_state = loaded.sample_next(frames, actions, states, generator=generator())
    assert torch.equal(first, after) and torch.equal(first_state, after_state)
    assert json.loads((tmp_path / "wm" / "config.json").read_text())["image_size"] == 16


def _bright_centroid_x(frames: torch.Tensor) -> np.ndarray:
    bright = (frames[..., 0].float() > 128).float()
    xs = torch.arange(frames.shape[2]).float()
    return ((bright * xs).sum(dim=(1, 2)) / bright.sum(dim=(1, 2)).clamp(min=1)).numpy()


def test_the_sampled_next_frame_follows_the_action(moving_square_store):
    """On toy physics (a square moved by the action), the imagined square moves the way the action says."""
    store = EpisodeStore.open(moving_square_store)
    torch.manual_seed(0)
    model = WorldModel.from_stats(tiny_config().with_data_shapes(store.features), store.stats()["features"])
    dataset = WindowDataset(store, window_offsets(model.config))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for step in range(300):
        minibatch = dataset.__getitems__(rng.choice(len(dataset), 32, replace=False).tolist())
        loss = model.training_loss(minibatch, generator=torch.Generator().manual_seed(step))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    batch = dataset.__getitems__(list(range(0, len(dataset), 10)))
    frames, actions, states = _context(batch, model, slice(0, 16))
    right, left = actions.clone(), actions.clone()
    right[:, -1] = torch.tensor([2.0, 0.0])
    left[:, -1] = torch.tensor([-2.0, 0.0])
    same_noise = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    to_right, _ = model.sample_next(frames, right, states, generator=same_noise())
    to_left, _ = model.sample_next(frames, left, states, generator=same_noise())
    shift = _bright_centroid_x(to_right) - _bright_centroid_x(to_left)
    assert np.median(shift) > 2.0, shift  # 4 px apart in the data


def test_more_sampling_steps_are_configurable(model, batch):
    frames, actions, states = _context(batch, model, slice(0, 2))
    one, _ = model.sample_next(frames, actions, states, generator=torch.Generator().manual_seed(0), num_steps=1)
    many, _ = model.sample_next(frames, actions, states, generator=torch.Generator().manual_seed(0), num_steps=8)
    assert one.shape == many.shape and not torch.equal(one, many)


def test_context_shorter_than_k_is_a_clear_error(model, batch):
    frames, actions, states = _context(batch, model)
    with pytest.raises(RobodreamError, match="got 1 context frames; this model needs 2"):
        model.sample_next(frames[:, :1], actions, states)
    with pytest.raises(RobodreamError, match=r"actions have shape \(2, 2\); this model needs \(K\+1, A\) = \(3, 2\)"):
        model.sample_next(frames, actions[:, :2], states)


def test_checkpoint_from_another_architecture_or_version_is_refused(model, tmp_path):
    path = model.save_pretrained(tmp_path / "wm")
    config = json.loads((path / "config.json").read_text())
    for change, message in (
        ({"model_type": "diffusers.UNet2DModel"}, "not a robodream world model"),
        ({"config_version": 99}, "config version 99"),
        ({"attention_heads": 4}, r"fields \['attention_heads'\] this robodream does not know"),
        ({"unet": {**config["unet"], "block_out_channels": [8, 32]}}, "do not fit its config.json"),
    ):
        (path / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(RobodreamError, match=message):
            WorldModel.from_pretrained(path)
    with pytest.raises(RobodreamError, match="no world model at"):
        WorldModel.from_pretrained(tmp_path / "elsewhere")


def test_store_with_other_shapes_is_refused(model):
    features = {"observation.images.front": {"dtype": "uint8", "shape": [32, 32, 3], "names": None},
                "action": {"dtype": "float32", "shape": [2], "names": None},
                "observation.state": {"dtype": "float32", "shape": [3], "names": None}}
    with pytest.raises(RobodreamError, match="the model has image_size=16 but the data has 32"):
        model.config.with_data_shapes(features)
    features["observation.images.front"]["shape"] = [16, 16, 3]
    features["action"]["shape"] = [7]
    with pytest.raises(RobodreamError, match="the model has action_dim=2 but the data has 7"):
        model.config.with_data_shapes(features)
    with pytest.raises(RobodreamError, match="no camera 'wrist'"):
        tiny_config(camera="wrist").with_data_shapes(features)
