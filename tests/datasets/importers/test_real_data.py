"""Recordings of real arms made outside this project (../shared/data/real, see its README): both must import.

Skipped, with the reason, where that folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robodream.datasets.reader import EpisodeStore
from robodream.pipeline.cli import main

REPO = Path(__file__).resolve().parents[3]
REAL = REPO.parent / "shared" / "data" / "real"
SO101 = REAL / "lerobot_so101_example"
WX200 = REAL / "interbotix_wx200_waist_diagnostics.bag"


def _require(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real-data recording {path} is absent (it lives in ../shared/data/real beside the repo)")


def test_so101_lerobot_dataset_imports(tmp_path, capsys):
    _require(SO101)
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "so101.zarr"
    assert main(["import-lerobot", str(SO101), f"out={out}"]) == 0
    assert "episodes   6   frames 1782   fps 30" in capsys.readouterr().out
    store = EpisodeStore.open(out)
    assert store.episode_lengths.tolist() == [383, 386, 379, 382, 90, 162]
    assert store.robot_type == "so101_follower" and store.task == "pick and place"
    assert store.features["observation.images.wrist"]["shape"] == [64, 64, 3]
    assert store.features["observation.state"]["names"] == ["j0", "j1", "j2", "j3", "j4", "j5"]
    table = pq.read_table(SO101 / "data" / "chunk-000" / "file-000.parquet")
    source_state = np.asarray(table.column("observation.state").to_pylist(), np.float32)
    np.testing.assert_array_equal(store.episode(5)["observation.state"], source_state[1620:1782])
    images = store.episode(0)["observation.images.wrist"]
    assert images.std() > 10  # real pictures decoded from AV1, not blank frames


def test_so101_imports_at_another_size_and_rate(tmp_path):
    _require(SO101)
    pytest.importorskip("pyarrow")
    out = tmp_path / "so101_small.zarr"
    assert main(["import-lerobot", str(SO101), f"out={out}", "episodes=[4]", "image_size=36", "image_width=64",
                 "fps=15"]) == 0
    store = EpisodeStore.open(out)
    assert store.fps == 15 and store.episode_lengths.tolist() == [45]  # every 2nd of 90 frames
    assert store.features["observation.images.wrist"]["shape"] == [36, 64, 3]  # 640x360 kept at 16:9


def test_widowx_ros1_bag_imports_as_a_state_action_store(tmp_path, capsys):
    _require(WX200)
    pytest.importorskip("rosbags")
    out = tmp_path / "wx200.zarr"
    assert main(["import-bag", str(WX200), "--map", str(REPO / "configs" / "import" / "widowx200.yaml"),
                 f"out={out}"]) == 0
    report = capsys.readouterr().out
    assert "/wx200/joint_states" in report and "10598 msgs" in report and "100.1 Hz" in report
    store = EpisodeStore.open(out)
    assert store.num_episodes == 1 and store.fps == 10 and store.image_keys == []
    assert 1000 <= store.num_frames <= 1060  # ~104 s of commands and joint states at 10 fps
    episode = store.episode(0)
    assert episode["observation.state"].shape[1] == 8 and episode["action"].shape[1] == 1
    waist, command = episode["observation.state"][:, 0], episode["action"][:, 0]
    assert waist.min() < -3.0 and waist.max() > 3.0  # the waist sweeps about +-3.13 rad
    # the arm follows its waist command a few frames later: state and held command line up closely at some lag
    lags = [np.corrcoef(waist[lag:], command[: len(command) - lag])[0, 1] for lag in range(6)]
    assert max(lags) > 0.99 and int(np.argmax(lags)) > 0
    assert store.meta("episode_origin")[0] == str(WX200)
