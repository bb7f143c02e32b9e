"""MP4 / GIF writing and episode tiling."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robodream.datasets.video import read_video, tile_episodes, write_gif, write_mp4
from robodream.errors import RobodreamError


def _moving_square(length: int, size: int = 32) -> np.ndarray:
    frames = np.zeros((length, size, size, 3), np.uint8)
    for t in range(length):
        frames[t, 8:16, t : t + 8] = (255, 40, 40)
    return frames


def test_mp4_decodes_back_to_the_same_frames(tmp_path):
    frames = _moving_square(12)
    path = write_mp4(frames, tmp_path / "clip.mp4", fps=10)
    decoded = read_video(path)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 6  # H.264 at crf 18


def test_mp4_pads_odd_sizes(tmp_path):
    decoded = read_video(write_mp4(np.zeros((3, 15, 17, 3), np.uint8), tmp_path / "odd.mp4", fps=5))
    assert decoded.shape == (3, 16, 18, 3)


def test_gif_has_every_frame_and_loops(tmp_path):
    path = write_gif(_moving_square(7), tmp_path / "clip.gif", fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 7 and gif.info["loop"] == 0 and gif.info["duration"] == 100


def test_tile_holds_last_frame_of_short_episodes_and_upscales():
    long, short = _moving_square(6, 8), _moving_square(3, 8)
    grid = tile_episodes([long, short, short], columns=2, scale=2, gap=2)
    assert grid.shape == (6, 2 * 16 + 2, 2 * 16 + 2, 3)
    np.testing.assert_array_equal(grid[5, :16, 18:], grid[2, :16, 18:])  # held
    assert (grid[:, 16:18] == 255).all()  # white gap between rows


def test_bad_frames_are_refused(tmp_path):
    with pytest.raises(RobodreamError, match="uint8"):
        write_mp4(np.zeros((2, 8, 8, 3), np.float32), tmp_path / "x.mp4", fps=10)
    with pytest.raises(RobodreamError, match="same frame size"):
        tile_episodes([np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 4, 4, 3), np.uint8)])
