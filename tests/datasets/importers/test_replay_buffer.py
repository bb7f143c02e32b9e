"""import-zarr: Diffusion Policy replay buffers (zarr v2: data/<key>, meta/episode_ends)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from robodream.datasets.importers.replay_buffer import ReplayImportConfig, import_replay_buffer
from robodream.datasets.reader import EpisodeStore
from robodream.errors import RobodreamError
from robodream.pipeline.cli import main


def make_replay_buffer(path, ends=(5, 12)) -> None:
    """A pusht-like buffer: img (N, 20, 20, 3) uint8, state (N, 5), action (N, 2), keypoint (N, 9, 2)."""
    n = ends[-1]
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    img = np.zeros((n, 20, 20, 3), np.uint8)
    img[:] = (np.arange(n) * 10 % 256)[:, None, None, None]
    root.create_array("data/img", data=img, chunks=(4, 20, 20, 3))
    root.create_array("data/state", data=np.arange(n * 5, dtype=np.float32).reshape(n, 5))
    root.create_array("data/action", data=np.arange(n * 2, dtype=np.float64).reshape(n, 2) / 10)
    root.create_array("data/keypoint", data=np.ones((n, 9, 2), np.float32))
    root.create_array("meta/episode_ends", data=np.asarray(ends, np.int64))


def test_replay_buffer_imports_with_conventional_and_explicit_keys(tmp_path, capsys):
    make_replay_buffer(tmp_path / "pusht.zarr")
    out = tmp_path / "out.zarr"
    assert main(["import-zarr", str(tmp_path / "pusht.zarr"), f"out={out}", "image_size=16", "fps=10",
                 "keys.keypoint=observation.environment_state"]) == 0
    printed = capsys.readouterr().out
    assert "img -> observation.images.front" in printed and "keypoint -> observation.environment_state" in printed
    store = EpisodeStore.open(out)
    assert store.episode_lengths.tolist() == [5, 7] and store.fps == 10
    assert store.meta("episode_source").tolist() == ["import", "import"]
    second = store.episode(1)
    np.testing.assert_array_equal(second["observation.state"], np.arange(25, 60, dtype=np.float32).reshape(7, 5))
    np.testing.assert_allclose(second["action"][0], [1.0, 1.1], rtol=1e-6)
    assert second["observation.images.front"].shape == (7, 16, 16, 3)
    assert second["observation.images.front"][0, 0, 0, 0] == 50
    assert store.features["observation.environment_state"]["shape"] == [18]


def test_replay_buffer_bad_input(tmp_path):
    out = str(tmp_path / "out.zarr")
    with pytest.raises(RobodreamError, match="does not exist"):
        import_replay_buffer(tmp_path / "nope.zarr", ReplayImportConfig(out=out), progress=False)
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=2).create_array("x", shape=(2,), dtype="f4")
    with pytest.raises(RobodreamError, match="is not a replay buffer: expected data/<key> arrays and meta/"):
        import_replay_buffer(tmp_path / "plain.zarr", ReplayImportConfig(out=out), progress=False)
    make_replay_buffer(tmp_path / "short.zarr", ends=(5, 12))
    zarr.open_group(str(tmp_path / "short.zarr"), mode="r+")["data/action"].resize((9, 2))
    with pytest.raises(RobodreamError, match=r"data/action has 9 frames but meta/episode_ends ends at 12"):
        import_replay_buffer(tmp_path / "short.zarr", ReplayImportConfig(out=out), progress=False)
    make_replay_buffer(tmp_path / "ok.zarr")
    with pytest.raises(RobodreamError, match=r"no array maps to 'action'"):
        import_replay_buffer(tmp_path / "ok.zarr", ReplayImportConfig(out=out, keys={"action": ""}), progress=False)
    assert not (tmp_path / "out.zarr").exists()
