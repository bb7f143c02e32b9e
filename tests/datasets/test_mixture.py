"""Mixing stores: per-sample probabilities independent of store sizes; `data=` parsing."""

from __future__ import annotations

import numpy as np
import pytest

from robodream.datasets.mixture import MixtureDataset, make_mixture_loader, sample_weights
from robodream.datasets.reader import EpisodeStore
from robodream.datasets.windows import WindowDataset
from robodream.datasets.writer import create_store
from robodream.errors import RobodreamError
from robodream.pipeline.policy.train import parse_data

from ..conftest import TINY_FEATURES, make_episode


def _store(path, episodes: int, length: int, offset: int):
    writer = create_store(path, fps=10, features=TINY_FEATURES, robot_type="test", task="tiny")
    for index in range(episodes):
        writer.append_episode(make_episode(length, offset + index), source="sim", success=True)
    writer.close()
    return EpisodeStore.open(path)


def test_mixture_draws_each_store_with_its_weight_whatever_its_size(tmp_path):
    big = _store(tmp_path / "big.zarr", 10, 20, 0)  # 200 frames
    small = _store(tmp_path / "small.zarr", 1, 10, 50)  # 10 frames
    offsets = {"observation.state": [-1, 0], "action": [0, 1, 2]}
    mixture = MixtureDataset([WindowDataset(big, offsets), WindowDataset(small, offsets)])
    loader = make_mixture_loader(mixture, [0.3, 0.7], batch_size=50, seed=0)
    batches = zip(range(40), iter(loader), strict=False)
    sources = np.concatenate([batch["dataset_index"].numpy() for _, batch in batches])
    assert abs((sources == 1).mean() - 0.7) < 0.03  # 2000 samples; size ratio 20:1 plays no part
    batch = next(iter(loader))
    # every item's values are those of the store it claims to come from (episode 50+ encode the small one)
    from_small = batch["observation.state"][:, -1, 0].numpy() >= 50_000
    np.testing.assert_array_equal(from_small, batch["dataset_index"].numpy() == 1)
    assert batch["action"].shape == (50, 3, 2) and batch["action_is_pad"].shape == (50, 3)


def test_sample_weights_and_bad_weights():
    weights = sample_weights([2, 8], [1, 1])
    assert np.isclose(weights[:2].sum(), 0.5) and np.isclose(weights.sum(), 1.0)
    with pytest.raises(RobodreamError, match="positive sum"):
        sample_weights([2, 8], [0, 0])


def test_parse_data_forms():
    assert parse_data("a.zarr") == [{"path": "a.zarr", "weight": 1.0}]
    assert parse_data("a.zarr:0.7,b.zarr:0.3") == [{"path": "a.zarr", "weight": 0.7},
                                                  {"path": "b.zarr", "weight": 0.3}]
    assert parse_data(["s3://bucket/a.zarr:2", {"path": "b.zarr", "weight": 1}]) == [
        {"path": "s3://bucket/a.zarr", "weight": 2.0}, {"path": "b.zarr", "weight": 1.0}]
    assert parse_data("s3://bucket/a.zarr") == [{"path": "s3://bucket/a.zarr", "weight": 1.0}]
    with pytest.raises(RobodreamError, match="weights must be >= 0"):
        parse_data("a.zarr:-1")
