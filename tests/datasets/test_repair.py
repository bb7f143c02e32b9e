"""Crash safety: a write interrupted at any point leaves committed episodes intact and repairable."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.writer import EpisodeWriter, repair_store
from tests.conftest import TINY_FEATURES, make_episode


class SimulatedCrash(BaseException):
    """Raised from inside zarr writes to stop an append the way a killed process would."""


def _count_writes(store_path) -> int:
    """How many zarr write operations (resize / setitem) one append performs."""
    calls = 0
    original_setitem, original_resize = zarr.Array.__setitem__, zarr.Array.resize

    def setitem(self, *args):
        nonlocal calls
        calls += 1
        return original_setitem(self, *args)

    def resize(self, *args):
        nonlocal calls
        calls += 1
        return original_resize(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(zarr.Array, "__setitem__", setitem)
        patch.setattr(zarr.Array, "resize", resize)
        EpisodeWriter.open(store_path).append_episode(make_episode(6, 7), source="sim")
    return calls


def _append_crashing_after(store_path, writes_before_crash: int) -> None:
    remaining = writes_before_crash
    original_setitem, original_resize = zarr.Array.__setitem__, zarr.Array.resize

    def guard():
        nonlocal remaining
        if remaining == 0:
            raise SimulatedCrash
        remaining -= 1

    def setitem(self, *args):
        guard()
        return original_setitem(self, *args)

    def resize(self, *args):
        guard()
        return original_resize(self, *args)

    writer = EpisodeWriter.open(store_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(zarr.Array, "__setitem__", setitem)
        patch.setattr(zarr.Array, "resize", resize)
        with pytest.raises(SimulatedCrash):
            writer.append_episode(make_episode(6, 3), source="sim", success=True, seed=3)


def _assert_original_three_episodes(store: EpisodeStore) -> None:
    assert store.num_episodes == 3
    for index, length in enumerate((5, 7, 4)):
        expected = make_episode(length, index)
        episode = store.episode(index)
        for key in TINY_FEATURES:
            np.testing.assert_array_equal(episode[key], expected[key])


def test_crash_at_every_write_of_an_append_loses_nothing_committed(tiny_store, tmp_path):
    import shutil

    total = _count_writes(shutil.copytree(tiny_store, tmp_path / "count.zarr"))
    assert total >= 8  # data arrays, metadata, and the commit
    for crash_point in range(total):
        path = shutil.copytree(tiny_store, tmp_path / f"crash{crash_point}.zarr")
        _append_crashing_after(path, crash_point)
        store = EpisodeStore.open(path)
        _assert_original_three_episodes(store)
        report = repair_store(path)
        assert report.episodes == 3 and report.frames == 16
        repaired = EpisodeStore.open(path)
        assert repaired.uncommitted_frames == 0
        _assert_original_three_episodes(repaired)
        # The next append lands right after the committed episodes, with no stale frames.
        writer = EpisodeWriter.open(path)
        writer.append_episode(make_episode(2, 8), source="sim")
        after = EpisodeStore.open(path)
        assert after.episode_ends.tolist() == [5, 12, 16, 18]
        np.testing.assert_array_equal(after.episode(3)["action"], make_episode(2, 8)["action"])


def test_reader_reports_uncommitted_frames_and_repair_drops_them(tiny_store):
    group = zarr.open_group(str(tiny_store), mode="r+")
    for _, array in group["data"].arrays():
        array.resize((20, *array.shape[1:]))  # 4 frames written, never committed
    group["meta/episode_source"].resize((4,))
    group["meta/episode_ends"].resize((4,))  # torn commit: grown, value never written (reads 0)
    store = EpisodeStore.open(tiny_store)
    assert store.num_episodes == 3 and store.uncommitted_frames == 4
    report = repair_store(tiny_store)
    assert report.changed and report.dropped_frames == 4 and report.dropped_meta_entries == 1
    assert group["data/action"].shape == (16, 2) and group["meta/episode_ends"].shape == (3,)
    assert not repair_store(tiny_store).changed


def test_append_repairs_first(tiny_store):
    group = zarr.open_group(str(tiny_store), mode="r+")
    group["data/action"].resize((30, 2))
    writer = EpisodeWriter.open(tiny_store)
    writer.append_episode(make_episode(3, 5), source="sim")
    store = EpisodeStore.open(tiny_store)
    assert store.episode_ends.tolist() == [5, 12, 16, 19]
    assert store.uncommitted_frames == 0
