"""LeRobot v3.0: a hand-built minimal dataset imports; export -> import gives the same arrays back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robodream.datasets.importers.lerobot import LeRobotImportConfig, import_lerobot
from robodream.datasets.reader import EpisodeStore
from robodream.datasets.writer import create_store
from robodream.errors import RobodreamError
from robodream.pipeline.cli import main

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

LENGTHS = (5, 7)
VIDEO_KEY = "observation.images.top"


def frame_colour(index: int) -> tuple[int, int, int]:
    """Flat colours far apart, so that the frame a decoder returned is recognisable after compression."""
    return (40 * (index % 6) + 20, 200 - 25 * (index % 8), 60 + 90 * (index % 3))


def make_lerobot_dataset(root: Path, fps: int = 10, size: tuple[int, int] = (24, 32)) -> Path:
    """The smallest LeRobot v3.0 dataset that has everything the format needs: 2 episodes in one data file and
    one AV1-free (H.264) video holding both episodes back to back."""
    import av

    total = sum(LENGTHS)
    episode_index = np.concatenate([np.full(n, e) for e, n in enumerate(LENGTHS)])
    frame_index = np.concatenate([np.arange(n) for n in LENGTHS])
    state = np.stack([np.arange(total) * 0.5, -np.arange(total) * 1.0], axis=1).astype(np.float32)
    action = (state + 0.25).astype(np.float32)
    (root / "data" / "chunk-000").mkdir(parents=True)
    vector = lambda a: pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1), pa.float32()), a.shape[1])  # noqa: E731
    pq.write_table(pa.table({
        "observation.state": vector(state), "action": vector(action),
        "timestamp": pa.array((frame_index / fps).astype(np.float32)), "frame_index": pa.array(frame_index),
        "episode_index": pa.array(episode_index), "index": pa.array(np.arange(total)),
        "task_index": pa.array(np.zeros(total, np.int64)),
    }), root / "data" / "chunk-000" / "file-000.parquet")
    starts = np.cumsum((0,) + LENGTHS)
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([
        {"episode_index": e, "tasks": ["stack the cubes"], "length": n, "data/chunk_index": 0, "data/file_index": 0,
         "dataset_from_index": int(starts[e]), "dataset_to_index": int(starts[e + 1]),
         f"videos/{VIDEO_KEY}/chunk_index": 0, f"videos/{VIDEO_KEY}/file_index": 0,
         f"videos/{VIDEO_KEY}/from_timestamp": starts[e] / fps, f"videos/{VIDEO_KEY}/to_timestamp": starts[e + 1] / fps}
        for e, n in enumerate(LENGTHS)]), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.table({"task_index": [0], "__index_level_0__": ["stack the cubes"]}),
                   root / "meta" / "tasks.parquet")
    video = root / "videos" / VIDEO_KEY / "chunk-000" / "file-000.mp4"
    video.parent.mkdir(parents=True)
    with av.open(str(video), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        for i in range(total):
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), frame_colour(i), np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    features = {
        "observation.state": {"dtype": "float32", "shape": [2], "names": {"motors": ["a", "b"]}},
        "action": {"dtype": "float32", "shape": [2], "names": ["a", "b"]},
        VIDEO_KEY: {"dtype": "video", "shape": [*size, 3], "names": ["height", "width", "channels"]},
        **{k: {"dtype": d, "shape": [1], "names": None} for k, d in (
            ("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"),
            ("task_index", "int64"))},
    }
    (root / "meta" / "info.json").write_text(json.dumps({
        "codebase_version": "v3.0", "robot_type": "toy_arm", "total_episodes": len(LENGTHS), "total_frames": total,
        "fps": fps, "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4", "features": features}))
    return root


def test_hand_built_v3_dataset_imports(tmp_path):
    root = make_lerobot_dataset(tmp_path / "toy")
    summary = import_lerobot(root, LeRobotImportConfig(out=str(tmp_path / "toy.zarr"), image_size=16), progress=False)
    assert summary.episodes == 2 and summary.frames == 12
    store = EpisodeStore.open(tmp_path / "toy.zarr")
    assert store.fps == 10 and store.robot_type == "toy_arm" and store.task == "stack the cubes"
    assert store.episode_lengths.tolist() == list(LENGTHS)
    assert store.features["observation.state"]["names"] == ["a", "b"]  # {"motors": [...]} flattened
    assert set(store.features) == {"observation.state", "action", VIDEO_KEY, "timestamp"}
    second = store.episode(1)
    np.testing.assert_array_equal(second["observation.state"][:, 0], np.arange(5, 12) * 0.5)
    np.testing.assert_allclose(second["timestamp"], np.arange(7) / 10, atol=1e-6)
    # frame k of episode 1 is video frame 5 + k (from_timestamp 0.5 s + its timestamp)
    images = second[VIDEO_KEY]
    assert images.shape == (7, 16, 16, 3)
    for k in range(7):
        assert np.abs(images[k, 8, 8].astype(int) - frame_colour(5 + k)).max() <= 8
    assert store.meta("episode_origin")[1].endswith("#episode=1")


def _sim_like_store(path: Path) -> Path:
    features = {
        "observation.images.front": {"dtype": "uint8", "shape": [64, 64, 3], "names": ["height", "width", "channel"]},
        "observation.state": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["dx", "dy"]},
        "reward": {"dtype": "float32", "shape": [], "names": None},
    }
    rng = np.random.default_rng(0)
    writer = create_store(path, fps=10, features=features, robot_type="panda_sim", task="push")
    yy, xx = np.mgrid[0:64, 0:64]
    for e, length in enumerate((6, 9, 4)):
        images = np.stack([np.stack([xx * 3 + t * 3, yy * 2 + e * 40, np.full_like(xx, 90 + 10 * t)], axis=-1)
                           for t in range(length)]).clip(0, 255).astype(np.uint8)  # smooth gradients
        writer.append_episode({"observation.images.front": images,
                               "observation.state": rng.normal(size=(length, 3)).astype(np.float32),
                               "action": rng.normal(size=(length, 2)).astype(np.float32),
                               "reward": (np.arange(length) == length - 1).astype(np.float32) * (e != 1)},
                              source="sim", success=e != 1, seed=e)
    writer.close()
    return path


def test_export_then_import_round_trips(tmp_path, capsys):
    store_path = _sim_like_store(tmp_path / "sim.zarr")
    assert main(["export-lerobot", str(store_path), str(tmp_path / "lr")]) == 0
    assert "episodes   3   frames 19" in capsys.readouterr().out
    info = json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_frames"] == 19 and info["fps"] == 10
    assert info["features"]["observation.images.front"]["dtype"] == "video"
    assert info["features"]["next.reward"]["shape"] == [1]
    episodes = pq.read_table(tmp_path / "lr" / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert [e["dataset_from_index"] for e in episodes] == [0, 6, 15]
    assert episodes[1]["videos/observation.images.front/from_timestamp"] == pytest.approx(0.6)
    assert len(episodes[0]["stats/observation.images.front/mean"]) == 3  # per channel, LeRobot's (3, 1, 1)
    assert pq.read_table(tmp_path / "lr" / "meta" / "tasks.parquet").schema.pandas_metadata["index_columns"] == [
        "__index_level_0__"]

    # 64x64 frames come back at the default store size 64x64 (image_size=null keeps any source size)
    assert main(["import-lerobot", str(tmp_path / "lr"), f"out={tmp_path / 'back.zarr'}"]) == 0
    original, back = EpisodeStore.open(store_path), EpisodeStore.open(tmp_path / "back.zarr")
    assert back.fps == original.fps and back.task == original.task and back.robot_type == original.robot_type
    assert set(back.features) == set(original.features)
    assert back.episode_ends.tolist() == original.episode_ends.tolist()
    assert back.meta("episode_success").tolist() == original.meta("episode_success").tolist()
    for e in range(original.num_episodes):
        a, b = original.episode(e), back.episode(e)
        for key in ("observation.state", "action", "reward", "timestamp"):
            np.testing.assert_array_equal(a[key], b[key])
        error = np.abs(a["observation.images.front"].astype(int) - b["observation.images.front"].astype(int))
        assert error.mean() < 2.0 and np.percentile(error, 99) <= 12  # H.264 yuv420p at crf 18


def test_lerobot_bad_input(tmp_path):
    root = make_lerobot_dataset(tmp_path / "toy")
    out = str(tmp_path / "x.zarr")
    info = json.loads((root / "meta" / "info.json").read_text())
    (root / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(RobodreamError, match="LeRobot v2.1 dataset; only v3.0"):
        import_lerobot(root, LeRobotImportConfig(out=out), progress=False)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    data = root / "data" / "chunk-000" / "file-000.parquet"
    data.write_bytes(data.read_bytes()[:200])
    with pytest.raises(RobodreamError, match=r"cannot read .*file-000\.parquet: .*truncated"):
        import_lerobot(root, LeRobotImportConfig(out=out), progress=False)
    with pytest.raises(RobodreamError, match="is not a LeRobot dataset"):
        import_lerobot(tmp_path, LeRobotImportConfig(out=out), progress=False)
    with pytest.raises(RobodreamError, match="fps=4 does not divide"):
        import_lerobot(make_lerobot_dataset(tmp_path / "ok"), LeRobotImportConfig(out=out, fps=4), progress=False)
    assert not Path(out).exists() and not list(tmp_path.glob(".x.zarr*"))
