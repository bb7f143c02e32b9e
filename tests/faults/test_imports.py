"""Fault battery, importers and per-episode metadata: recordings made elsewhere must come in right or not at all.

Each case failed before issue 16: float 0..255 replay-buffer images imported white, a damaged replay buffer gave a
traceback, ROS joint names and field sizes were not checked, legacy ROS 1 definitions and empty topics gave
misleading errors, a receive-clock grid lost its last frame, merges relabelled every episode with the first store's
task, and episodes of unknown outcome were shown and exported as failures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from robodream.datasets.reader import EpisodeStore
from tests.faults.conftest import assert_bad_input, run_cli

# -- Diffusion Policy replay buffers ----------------------------------------------------------------------------


def _replay_buffer(path: Path, img: np.ndarray, ends=(3, 6)) -> Path:
    n = ends[-1]
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array("data/img", data=img, chunks=(2, *img.shape[1:]))
    root.create_array("data/state", data=np.arange(n * 2, dtype=np.float32).reshape(n, 2))
    root.create_array("data/action", data=np.ones((n, 2), np.float32))
    root.create_array("meta/episode_ends", data=np.asarray(ends, np.int64))
    return path


def _grey_frames(levels: np.ndarray, size: int = 8) -> np.ndarray:
    return np.broadcast_to(levels[:, None, None, None], (len(levels), size, size, 3)).astype(np.float32).copy()


def test_float_replay_images_in_0_255_keep_their_values(tmp_path):
    # the original PushT buffer: img float32 in 0..255 (it used to be clipped to 0..1, i.e. pure white)
    levels = np.array([0, 40, 80, 120, 160, 200], np.float32)
    source = _replay_buffer(tmp_path / "pusht.zarr", _grey_frames(levels))
    result = run_cli("import-zarr", source, f"out={tmp_path / 'out.zarr'}", "image_size=null")
    assert result.code == 0, result.stderr
    assert "img is float32 in 0..255 (read from the data" in result.stdout
    frames = np.concatenate([EpisodeStore.open(tmp_path / "out.zarr").episode(e)["observation.images.front"]
                             for e in range(2)])
    assert frames[:, 4, 4, 0].tolist() == levels.astype(int).tolist()


def test_float_replay_images_in_0_1_and_an_explicit_scale(tmp_path):
    levels = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], np.float32)
    source = _replay_buffer(tmp_path / "unit.zarr", _grey_frames(levels))
    result = run_cli("import-zarr", source, f"out={tmp_path / 'out.zarr'}", "image_size=null")
    assert result.code == 0 and "img is float32 in 0..1 (read from the data" in result.stdout, result.stderr
    frames = EpisodeStore.open(tmp_path / "out.zarr").episode(1)["observation.images.front"]
    assert frames[:, 4, 4, 0].tolist() == [153, 204, 255]
    # a dark 0..255 buffer looks like 0..1: image_scale says what it is
    result = run_cli("import-zarr", source, f"out={tmp_path / 'dark.zarr'}", "image_size=null", "image_scale=255")
    assert result.code == 0 and "img is float32 in 0..255 (given)" in result.stdout, result.stderr
    assert EpisodeStore.open(tmp_path / "dark.zarr").episode(1)["observation.images.front"][2, 0, 0, 0] == 1
    # a first episode in 0..1 and a later one in 0..255: refused, not clipped to white
    mixed = _replay_buffer(tmp_path / "mixed.zarr", _grey_frames(np.array([0, 0.5, 1, 0, 100, 200], np.float32)))
    assert_bad_input(run_cli("import-zarr", mixed, f"out={tmp_path / 'mixed_out.zarr'}"), "data/img episode 1",
                     "image_scale=255")
    assert not (tmp_path / "mixed_out.zarr").exists()


@pytest.mark.parametrize("damage", ["array metadata", "image chunk", "episode_ends chunk"])
def test_damaged_replay_buffer_is_one_line(tmp_path, damage):
    source = _replay_buffer(tmp_path / "buffer.zarr", np.zeros((6, 8, 8, 3), np.uint8))
    target, text, named = {"array metadata": ("data/img/.zarray", b"{garbage", "data/img"),
                           "image chunk": ("data/img/0.0.0.0", b"\x00not blosc" * 8, "data/img"),
                           "episode_ends chunk": ("meta/episode_ends/0", b"xx", "meta/episode_ends")}[damage]
    (source / target).write_bytes(text)
    result = run_cli("import-zarr", source, f"out={tmp_path / 'out.zarr'}")
    assert_bad_input(result, named, str(source))
    assert not (tmp_path / "out.zarr").exists()
