"""Writer/reader round trip, metadata, stats and opening by URL."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.writer import EpisodeWriter, create_store, open_recording
from robodream.errors import RobodreamError
from tests.conftest import TINY_FEATURES, make_episode


@pytest.mark.parametrize("cache", ["ram", "disk"])
def test_round_trip_reads_back_every_episode_exactly(tiny_store, cache):
    store = EpisodeStore.open(tiny_store, cache=cache)
    assert store.in_ram == (cache == "ram")
    assert store.num_episodes == 3 and store.num_frames == 16
    assert store.episode_ends.tolist() == [5, 12, 16]
    assert store.episode_lengths.tolist() == [5, 7, 4]
    for index, length in enumerate((5, 7, 4)):
        expected = make_episode(length, index)
        episode = store.episode(index)
        for key in TINY_FEATURES:
            np.testing.assert_array_equal(episode[key], expected[key])
        np.testing.assert_allclose(episode["timestamp"], np.arange(length) / 10.0, rtol=1e-6)
    assert store.episode_meta(1) == {"index": 1, "length": 7, "source": "sim", "success": False, "seed": 101,
                                     "origin": "test:1"}
    assert store.meta("episode_success").tolist() == [True, False, True]
    assert store.fps == 10 and store.task == "tiny" and store.robot_type == "test"


def test_layout_matches_design(tiny_store):
    group = zarr.open_group(str(tiny_store), mode="r")
    assert group.metadata.zarr_format == 3
    attrs = group.attrs.asdict()
    assert attrs["format"] == "robodream.episodes" and attrs["version"] == 2
    assert set(group["data"].array_keys()) == set(TINY_FEATURES) | {"timestamp"}
    assert group["data/observation.images.front"].shape == (16, 16, 16, 3)
    assert group["data/timestamp"].shape == (16,)
    assert group["meta/episode_ends"].dtype == np.int64
    assert list(group["meta/episode_source"][:]) == ["sim"] * 3


def test_reopened_writer_appends_after_existing_episodes(tiny_store):
    writer = EpisodeWriter.open(tiny_store)
    assert writer.num_episodes == 3 and writer.num_frames == 16
    writer.append_episode(make_episode(6, 3), source="teleop", success=True)
    writer.close()
    store = EpisodeStore.open(tiny_store)
    assert store.episode_ends.tolist() == [5, 12, 16, 22]
    np.testing.assert_array_equal(store.episode(3)["action"], make_episode(6, 3)["action"])
    assert store.episode_meta(3)["source"] == "teleop"
    assert store.episode_meta(3)["seed"] == -1


def test_recorders_reopen_only_a_store_that_records_their_features(tiny_store, tmp_path):
    checked = []
    writer, created = open_recording(tiny_store, TINY_FEATURES, resume=True, recorder="robot x", fix="use another out=",
                                     check=checked.append)
    assert not created and checked == [writer] and writer.num_episodes == 3
    writer.close()
    other = {**TINY_FEATURES, "action": {"dtype": "float32", "shape": [3], "names": ["dx", "dy", "dz"]}}
    with pytest.raises(RobodreamError, match="cannot add to .* than robot x records; use another out="):
        open_recording(tiny_store, other, resume=True, recorder="robot x", fix="use another out=")
    EpisodeWriter.open(tiny_store).close()  # the refused writer released the store's lock
    with pytest.raises(RobodreamError, match="already exists"):  # without resume, an existing store is not added to
        open_recording(tiny_store, TINY_FEATURES, resume=False, recorder="robot x", fix="", fps=5, robot_type="t",
                       task="t")
    writer, created = open_recording(tmp_path / "new.zarr", TINY_FEATURES, resume=True, recorder="robot x", fix="",
                                     fps=5, robot_type="t", task="t")
    assert created and writer.num_episodes == 0
    writer.close()


def test_stats_are_stored_and_match_numpy(tiny_store):
    store = EpisodeStore.open(tiny_store)
    stats = store.attrs["stats"]
    assert stats["num_frames"] == 16
    actions = np.concatenate([store.episode(i)["action"] for i in range(3)])
    np.testing.assert_allclose(stats["features"]["action"]["mean"], actions.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["features"]["action"]["std"], actions.std(0), rtol=1e-5)
    np.testing.assert_allclose(stats["features"]["action"]["min"], actions.min(0))
    np.testing.assert_allclose(stats["features"]["action"]["max"], actions.max(0))
    images = np.concatenate([store.episode(i)["observation.images.front"] for i in range(3)]) / 255.0
    np.testing.assert_allclose(stats["features"]["observation.images.front"]["mean"],
                               images.reshape(-1, 3).mean(0), rtol=1e-6)
    assert store.stats() is stats or store.stats() == stats


def test_stale_stats_are_recomputed_on_read(tiny_store):
    writer = EpisodeWriter.open(tiny_store)
    writer.append_episode(make_episode(3, 9), source="sim")  # no close(): stored stats now stale
    store = EpisodeStore.open(tiny_store)
    assert store.attrs["stats"]["num_frames"] == 16
    assert store.stats()["num_frames"] == 19


def test_ram_cache_auto_respects_budget(tiny_store):
    assert EpisodeStore.open(tiny_store, cache="auto").in_ram
    assert not EpisodeStore.open(tiny_store, cache="auto", max_ram_bytes=100).in_ram


def test_open_by_fsspec_url_round_trip():
    url = "memory://robodream-test/episodes.zarr"
    writer = create_store(url, fps=5, features=TINY_FEATURES, robot_type="test", task="url", overwrite=True)
    writer.append_episode(make_episode(4, 0), source="sim", success=True, seed=1)
    writer.append_episode(make_episode(2, 1), source="sim", success=False, seed=2)
    writer.close()
    store = EpisodeStore.open(url)
    assert store.num_episodes == 2
    np.testing.assert_array_equal(store.episode(1)["observation.state"], make_episode(2, 1)["observation.state"])
    reopened = EpisodeWriter.open(url)
    reopened.append_episode(make_episode(3, 2), source="sim")
    assert EpisodeStore.open(url).num_episodes == 3


def test_file_url_opens_a_local_store(tiny_store):
    assert EpisodeStore.open(f"file://{tiny_store}").num_episodes == 3


def test_gather_matches_between_ram_and_disk(tiny_store):
    indices = np.array([[0, 15, 3], [3, 3, 7]])
    ram = EpisodeStore.open(tiny_store, cache="ram")
    disk = EpisodeStore.open(tiny_store, cache="disk")
    for key in TINY_FEATURES:
        np.testing.assert_array_equal(ram.gather(key, indices), disk.gather(key, indices))
    assert ram.gather("action", indices).shape == (2, 3, 2)


def test_reading_a_missing_episode_or_key_is_a_clear_error(tiny_store):
    store = EpisodeStore.open(tiny_store)
    with pytest.raises(RobodreamError, match="episode 3 does not exist"):
        store.episode(3)
    with pytest.raises(RobodreamError, match="no feature 'observation.depth'"):
        store.episode(0, ["observation.depth"])
