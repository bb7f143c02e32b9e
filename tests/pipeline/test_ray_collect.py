"""executor=ray: collection on Ray actors (a local Ray started here) writes what local collection writes."""

from __future__ import annotations

import pytest

from robodream.datasets.reader import EpisodeStore
from robodream.errors import RobodreamError
from robodream.pipeline.data.collect import collect
from tests.pipeline.test_collect import _assert_same_episodes, _cfg

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'robodream[ray]'): executor=ray untested")


@pytest.fixture(scope="module")
def local_ray():
    # Two CPUs, no dashboard and a small object store: a laptop-sized Ray that the collector finds initialised.
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024, logging_level="warning")
    yield
    ray.shutdown()


def test_ray_collection_writes_exactly_what_a_local_run_writes(local_ray, tmp_path):
    small = ["episodes=3", "env.image_size=16", "seed=5"]
    on_ray = collect(_cfg(tmp_path, "ray.zarr", *small, "executor=ray", "workers=2"), progress=False)
    local = collect(_cfg(tmp_path, "local.zarr", *small, "workers=0"), progress=False)
    assert on_ray.episodes_in_store == local.episodes_in_store == 3 and not on_ray.stopped
    a, b = EpisodeStore.open(tmp_path / "ray.zarr"), EpisodeStore.open(tmp_path / "local.zarr")
    _assert_same_episodes(a, b)
    assert a.meta("episode_seed").tolist() == [5, 6, 7]
    assert a.attrs["stats"]["num_frames"] == a.num_frames
    assert ray.is_initialized()  # a Ray the caller started is left running for the caller


def test_ray_needs_at_least_one_actor(tmp_path):
    with pytest.raises(RobodreamError, match="executor=ray needs workers >= 1"):
        _cfg(tmp_path, "x.zarr", "executor=ray", "workers=0")
    with pytest.raises(RobodreamError, match="executor must be one of local, ray"):
        _cfg(tmp_path, "x.zarr", "executor=dask")
