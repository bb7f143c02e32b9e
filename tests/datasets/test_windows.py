"""Training windows: edge padding at episode boundaries, masks, batching, splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.windows import WindowDataset, make_loader, split_episodes
from robodream.errors import RobodreamError

OFFSETS = {"observation.images.front": [-3, -2, -1, 0, 1], "action": [0, 1, 2, 3]}


def _frame_values(batch_actions: torch.Tensor) -> np.ndarray:
    """Recover (episode*1000 + frame*10) from the first action component."""
    return batch_actions[..., 0].numpy()


def test_one_window_per_frame_of_selected_episodes(tiny_store):
    store = EpisodeStore.open(tiny_store)
    assert len(WindowDataset(store, OFFSETS)) == 16
    assert len(WindowDataset(store, OFFSETS, episodes=[0, 2])) == 9


def test_windows_pad_with_edge_frames_and_flag_padding(tiny_store):
    dataset = WindowDataset(EpisodeStore.open(tiny_store), OFFSETS)
    first = dataset[5]  # frame 0 of episode 1 (frames 5..11)
    images = first["observation.images.front"][:, 0, 0, 0].tolist()
    assert images == [50, 50, 50, 50, 51]  # three padded copies of the first frame, then frames 0 and 1
    assert first["observation.images.front_is_pad"].tolist() == [True, True, True, False, False]
    last = dataset[10]  # frame 5 of episode 1: actions at frames 5, 6, then two copies of 6
    assert _frame_values(last["action"]).tolist() == [1050.0, 1060.0, 1060.0, 1060.0]
    assert last["action_is_pad"].tolist() == [False, False, True, True]


def test_skipped_leading_frames_are_neither_anchors_nor_padding(tiny_store):
    """skip_first (a synthetic episode's real context frames, for imagined-only training): the episode starts
    later, and padding repeats its first kept frame, never a skipped one."""
    store = EpisodeStore.open(tiny_store)
    dataset = WindowDataset(store, OFFSETS, skip_first=[2, 3, 0])  # episodes of 5, 7 and 4 frames
    assert len(dataset) == 3 + 4 + 4
    first = dataset[0]  # frame 2 of episode 0
    assert first["observation.images.front"][:, 0, 0, 0].tolist() == [2, 2, 2, 2, 3]
    assert first["observation.images.front_is_pad"].tolist() == [True, True, True, False, False]
    batch = dataset.__getitems__(list(range(len(dataset))))
    frames = batch["observation.images.front"][:, :, 0, 0, 0].numpy()
    assert not np.isin(frames, [0, 1, 50, 51, 52]).any()
    with pytest.raises(RobodreamError, match="skip_first"):
        WindowDataset(store, OFFSETS, skip_first=[5, 0, 0])  # nothing left of episode 0
    with pytest.raises(RobodreamError, match="skip_first"):
        WindowDataset(store, OFFSETS, skip_first=[1, 1])  # not one per episode


def test_windows_never_cross_episode_boundaries(tiny_store):
    dataset = WindowDataset(EpisodeStore.open(tiny_store), OFFSETS)
    batch = dataset.__getitems__(list(range(len(dataset))))
    episode_of_frame = np.repeat([0, 1, 2], [5, 7, 4])
    action_episode = (_frame_values(batch["action"]) // 1000).astype(int)
    assert (action_episode == episode_of_frame[:, None]).all()
    image_episode = batch["observation.images.front"][:, :, 0, 0, 0].numpy() // 50
    assert (image_episode == episode_of_frame[:, None]).all()


def test_batched_and_single_item_access_agree(tiny_store):
    dataset = WindowDataset(EpisodeStore.open(tiny_store, cache="disk"), OFFSETS)
    batch = dataset.__getitems__([3, 9, 15])
    for row, index in enumerate([3, 9, 15]):
        item = dataset[index]
        for key, value in item.items():
            assert torch.equal(batch[key][row], value)
    assert batch["observation.images.front"].dtype == torch.uint8
    assert batch["observation.images.front"].shape == (3, 5, 16, 16, 3)


def test_loader_yields_whole_batches(tiny_store):
    dataset = WindowDataset(EpisodeStore.open(tiny_store), OFFSETS)
    batches = list(make_loader(dataset, batch_size=4, shuffle=True, seed=0))
    assert [b["action"].shape[0] for b in batches] == [4, 4, 4, 4]
    seen = torch.cat([b["frame_index"] for b in batches]).sort().values
    assert seen.tolist() == list(range(16))


def test_split_is_by_episode_disjoint_and_reproducible():
    train, val = split_episodes(20, val_fraction=0.2, seed=3)
    assert len(val) == 4 and len(train) == 16
    assert sorted(train + val) == list(range(20))
    assert split_episodes(20, val_fraction=0.2, seed=3) == (train, val)
    assert split_episodes(20, val_fraction=0.2, seed=4) != (train, val)
    assert split_episodes(3, val_fraction=0.01) [1] != []  # at least one validation episode
    assert split_episodes(1, val_fraction=0.5) == ([0], [])  # never everything in validation


def test_bad_window_requests_are_clear_errors(tiny_store):
    store = EpisodeStore.open(tiny_store)
    with pytest.raises(RobodreamError, match="no feature 'observation.images.wrist'"):
        WindowDataset(store, {"observation.images.wrist": [0]})
    with pytest.raises(RobodreamError, match="episode indices"):
        WindowDataset(store, OFFSETS, episodes=[5])
    with pytest.raises(RobodreamError, match="val_fraction"):
        split_episodes(10, val_fraction=1.0)
