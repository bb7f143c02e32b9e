"""Normaliser: ranges, constant dimensions, round trips, checkpoints, pooled stats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from robodream.datasets.normalize import Normalizer, merge_stats
from robodream.datasets.reader import EpisodeStore
from robodream.errors import RobodreamError

STATS = {
    "action": {"min": [-1.0, 0.0, 5.0], "max": [3.0, 0.0, 6.0], "mean": [1.0, 0.0, 5.5], "std": [2.0, 0.0, 0.25]},
}


def test_min_max_maps_the_data_range_to_minus_one_one_and_constants_to_zero():
    norm = Normalizer({"action": "min_max"}, STATS)
    values = torch.tensor([[-1.0, 0.0, 5.0], [3.0, 0.0, 6.0], [1.0, 0.0, 5.5]])
    np.testing.assert_allclose(norm.normalize("action", values).numpy(),
                               [[-1, 0, -1], [1, 0, 1], [0, 0, 0]], atol=1e-6)
    torch.testing.assert_close(norm.unnormalize("action", norm.normalize("action", values)), values)


def test_mean_std_standardises():
    norm = Normalizer({"action": "mean_std"}, STATS)
    out = norm.normalize("action", torch.tensor([[3.0, 0.0, 5.75]]))
    np.testing.assert_allclose(out.numpy(), [[1.0, 0.0, 1.0]], atol=1e-6)


def test_buffers_round_trip_through_safetensors(tmp_path):
    norm = Normalizer({"action": "min_max"}, STATS)
    save_file(norm.state_dict(), tmp_path / "norm.safetensors")
    loaded = Normalizer.from_config(norm.config())
    loaded.load_state_dict(load_file(tmp_path / "norm.safetensors"))
    x = torch.randn(4, 3)
    torch.testing.assert_close(loaded.normalize("action", x), norm.normalize("action", x))


def test_stats_from_a_store_normalise_its_actions_into_range(tiny_store):
    store = EpisodeStore.open(tiny_store)
    norm = Normalizer({"action": "min_max", "observation.state": "mean_std"}, store.stats()["features"])
    actions = torch.from_numpy(np.concatenate([store.episode(i)["action"] for i in range(3)]))
    out = norm.normalize("action", actions)
    assert out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6


def test_merged_stats_equal_stats_of_pooled_frames():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (50, 2)), rng.normal(3, 2, (150, 2))

    def stats(x):
        return {"num_frames": len(x), "features": {"s": {"min": x.min(0).tolist(), "max": x.max(0).tolist(),
                                                           "mean": x.mean(0).tolist(), "std": x.std(0).tolist()}}}

    merged = merge_stats([stats(a), stats(b)])["features"]["s"]
    pooled = stats(np.concatenate([a, b]))["features"]["s"]
    for field in ("min", "max", "mean", "std"):
        np.testing.assert_allclose(merged[field], pooled[field], rtol=1e-9)


def test_bad_normaliser_requests_are_clear():
    with pytest.raises(RobodreamError, match="must be one of"):
        Normalizer({"action": "zscore"}, STATS)
    with pytest.raises(RobodreamError, match="no statistics for 'observation.state'"):
        Normalizer({"observation.state": "min_max"}, STATS)
    with pytest.raises(RobodreamError, match="has no feature 'reward'"):
        Normalizer({"action": "min_max"}, STATS).normalize("reward", torch.zeros(1))
