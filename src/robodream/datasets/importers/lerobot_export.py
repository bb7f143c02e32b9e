"""`robodream export-lerobot <store> <dir>`: an episode store as a LeRobot v3.0 dataset (pyarrow + PyAV only).

Writes the layout `lerobot.py` reads (meta/info.json, meta/tasks.parquet, meta/episodes/chunk-000/file-000.parquet
with per-episode stats, meta/stats.json, data/chunk-000/file-000.parquet, videos/<key>/chunk-000/file-000.mp4).
Features keep their names; the store's `reward` becomes `next.reward`, and each successful episode gets
`next.success` on its last frame, so that `import-lerobot` restores both. LeRobot has no per-episode "unknown":
datasets without a success signal (most real recordings) simply lack `next.success`, so it is written only when
every episode's outcome is known; otherwise it is left out rather than claiming failures. All episodes go into
one data file and one video per camera (LeRobot starts new files past data_files_size_in_mb / video_files_size_in_mb; it
reads single large files just as well). Images are encoded as yuv420p H.264 (default; fast, decodable
everywhere) or AV1 (`codec=av1`, LeRobot's default, smaller files), with a keyframe every 2 frames as LeRobot
does, for fast random access during training.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robodream.datasets import layout
from robodream.datasets.importers.common import require_pyarrow
from robodream.datasets.importers.lerobot import DEFAULT_DATA_PATH, DEFAULT_VIDEO_PATH
from robodream.datasets.outputs import atomic_output
from robodream.datasets.reader import EpisodeStore
from robodream.errors import RobodreamError

CODECS = {"h264": "libx264", "av1": "libsvtav1"}
DEFAULT_CRF = {"h264": 18, "av1": 30}
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
BOOKKEEPING_OUT = ("frame_index", "episode_index", "index", "task_index")
IMAGE_STATS_FRAMES = 100  # image stats from at most this many evenly spaced frames per episode (LeRobot samples too)


@dataclass
class LeRobotExportConfig:
    """`robodream export-lerobot` options."""

    codec: str = "h264"  # h264 | av1
    crf: int | None = None  # quality (lower = better); default 18 for h264, 30 for av1
    overwrite: bool = False
    task: str | None = None  # task text for every episode (default: the store's task)

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise RobodreamError(f"codec={self.codec!r}: choose one of {', '.join(CODECS)}")
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise RobodreamError(f"crf={self.crf}: choose an integer in [0, 63]")


def _stats(values: np.ndarray, image: bool = False) -> dict[str, np.ndarray]:
    """LeRobot-style stats: per dimension (images: per channel, 0-1 units, shape (3, 1, 1))."""
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(-1, values.shape[-1]) / 255.0 if image else values.reshape(len(values), -1)
    out = {"min": flat.min(0), "max": flat.max(0), "mean": flat.mean(0), "std": flat.std(0),
           "count": np.asarray([len(values)])}
    for q in QUANTILES:
        out[f"q{round(q * 100):02d}"] = np.quantile(flat, q, axis=0)
    if image:
        out = {k: (v.reshape(-1, 1, 1) if k != "count" else v) for k, v in out.items()}
    return out


def _aggregate(per_episode: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dataset stats from episode stats: weighted means, pooled variance, extreme min/max; quantiles are the
    count-weighted mean of the episodes' quantiles (what LeRobot's aggregate_stats does)."""
    counts = np.asarray([s["count"][0] for s in per_episode], dtype=np.float64)
    weights = (counts / counts.sum()).reshape(-1, *([1] * per_episode[0]["mean"].ndim))
    means = np.stack([s["mean"] for s in per_episode])
    mean = (weights * means).sum(0)
    variance = (weights * (np.stack([s["std"] for s in per_episode]) ** 2 + (means - mean) ** 2)).sum(0)
    out = {"min": np.min([s["min"] for s in per_episode], axis=0),
           "max": np.max([s["max"] for s in per_episode], axis=0), "mean": mean, "std": np.sqrt(variance),
           "count": np.asarray([int(counts.sum())])}
    for key in per_episode[0]:
        if key.startswith("q"):
            out[key] = (weights * np.stack([s[key] for s in per_episode])).sum(0)
    return out


class _VideoWriter:
    def __init__(self, path: Path, fps: float, height: int, width: int, codec: str, crf: int):
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream(CODECS[codec], rate=Fraction(fps).limit_denominator(1001))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        options = {"crf": str(crf), "g": "2"}
        if codec == "av1":
            options["preset"] = "8"  # SVT-AV1: a speed/size trade-off that stays real-time at small sizes
        self.stream.options = options
        self.frames = 0

    def write(self, frames: np.ndarray) -> None:
        import av

        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = self.frames  # in the codec time base 1/fps: frame i is shown at i / fps
            self.container.mux(self.stream.encode(video_frame))
            self.frames += 1

    def close(self) -> None:
        self.container.mux(self.stream.encode())
        self.container.close()


def _column(pa, values: np.ndarray, dtype: str):
    """A (T, ...) array as a parquet column: scalars as values, vectors as fixed-size lists (like LeRobot)."""
    flat = pa.array(values.reshape(-1), type=pa.from_numpy_dtype(np.dtype(dtype)))
    for size in reversed(values.shape[1:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    return flat


def _hf_type(dtype: str, shape: list[int]) -> dict[str, Any]:
    feature: dict[str, Any] = {"dtype": dtype, "_type": "Value"}
    for size in reversed(shape):
        feature = {"feature": feature, "length": size, "_type": "List"}
    return feature


def _tasks_table(pa, tasks: list[str]):
    """meta/tasks.parquet as pandas writes it: task strings in the index (__index_level_0__), task_index column."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "__index_level_0__": pa.array(tasks, pa.string())})
    pandas_meta = {"index_columns": ["__index_level_0__"],
                   "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                                       "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
                   "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                                "numpy_type": "int64", "metadata": None},
                               {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
                                "numpy_type": "object", "metadata": None}],
                   "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0"}
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _listify(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


@dataclass
class _ExportPlan:
    """What an export writes, decided from the store before anything is written."""

    cameras: list[str]
    columns: dict[str, dict]  # store key -> feature, of the parquet columns
    export_name: dict[str, str]  # store key -> LeRobot key
    episode_tasks: list[str]
    tasks: list[str]
    success: np.ndarray  # (E,) bool
    unknown: int  # episodes without a recorded outcome: next.success is then left out
    info_features: dict[str, Any]
    numeric: list[str]


def _plan_export(store: EpisodeStore, cfg: LeRobotExportConfig) -> _ExportPlan:
    cameras = store.image_keys
    for key in cameras:
        height, width = store.features[key]["shape"][:2]
        if height % 2 or width % 2:
            raise RobodreamError(f"{key} is {width}x{height}: yuv420p video needs even sizes; re-import or resize "
                                 "the store")
    columns = {k: f for k, f in store.features.items() if k not in cameras and k != "timestamp"}
    export_name = {k: ("next.reward" if k == "reward" else k) for k in columns}
    imported_tasks = (store.attrs.get("import") or {}).get("tasks") or []
    episode_tasks = ([cfg.task] * store.num_episodes if cfg.task is not None
                     else store.episode_tasks() if store.mixed_tasks  # LeRobot's task_index per episode
                     else imported_tasks if len(imported_tasks) == store.num_episodes and all(imported_tasks)
                     else [store.task or "default"] * store.num_episodes)
    outcomes = store.outcomes()
    unknown = int((outcomes == layout.UNKNOWN).sum())
    info_features: dict[str, Any] = {}
    for key, feature in columns.items():
        shape = list(feature["shape"]) or [1]
        info_features[export_name[key]] = {"dtype": feature["dtype"], "shape": shape, "names": feature.get("names")}
    for key in cameras:
        height, width = store.features[key]["shape"][:2]
        info_features[key] = {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
                              "info": {"video.height": height, "video.width": width, "video.codec": cfg.codec,
                                       "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                                       "video.fps": store.fps, "video.channels": 3, "has_audio": False}}
    for key, dtype in ((("next.success", "bool"),) if not unknown else ()) + (
            ("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"),
            ("task_index", "int64")):
        info_features[key] = {"dtype": dtype, "shape": [1], "names": None}
    numeric = [k for k, f in info_features.items() if f["dtype"] not in ("video", "bool")]
    return _ExportPlan(cameras, columns, export_name, episode_tasks, list(dict.fromkeys(episode_tasks)),
                       outcomes == layout.SUCCESS, unknown, info_features, numeric)


def export_lerobot(store_path: str | Path, out_dir: str | Path, cfg: LeRobotExportConfig,
                   progress: bool = True) -> list[str]:
    """Write every episode of a store as a LeRobot v3.0 dataset at ``out_dir``; returns summary lines."""
    store = EpisodeStore.open(store_path, cache="disk")
    if store.num_episodes == 0:
        raise RobodreamError(f"{store_path} holds no committed episodes: nothing to export")
    crf = cfg.crf if cfg.crf is not None else DEFAULT_CRF[cfg.codec]
    plan = _plan_export(store, cfg)
    with atomic_output(out_dir, overwrite=cfg.overwrite, kind="lerobot") as root:
        episode_rows, per_episode_stats = _write_episodes(store, plan, root, cfg.codec, crf, progress)
        frames = _write_meta(store, plan, root, episode_rows, per_episode_stats)
    return [f"dataset    {out_dir}  (LeRobot v3.0)",
            f"episodes   {store.num_episodes}   frames {frames}   fps {store.fps:g}   tasks {len(plan.tasks)}",
            f"features   {', '.join(k for k in plan.info_features if k not in BOOKKEEPING_OUT)}",
            f"videos     {', '.join(plan.cameras) or 'none'} ({cfg.codec}, crf {crf})"] + (
        [f"success    next.success left out: {plan.unknown} of {store.num_episodes} episodes have no recorded "
         "outcome"] if plan.unknown else [])


def _write_episodes(store: EpisodeStore, plan: _ExportPlan, root: Path, codec: str, crf: int,
                    progress: bool) -> tuple[list[dict], list[dict]]:
    """The data parquet and one video per camera; returns the episodes' meta rows and their stats."""
    pq = require_pyarrow()
    import pyarrow as pa

    fps = store.fps
    data_file = root / DEFAULT_DATA_PATH.format(chunk_index=0, file_index=0)
    data_file.parent.mkdir(parents=True)
    videos = {key: _VideoWriter(root / DEFAULT_VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0), fps,
                                *store.features[key]["shape"][:2], codec, crf) for key in plan.cameras}
    writer = None
    episode_rows, per_episode_stats = [], []
    start = 0
    try:
        for e in tqdm(range(store.num_episodes), desc="export-lerobot", unit="ep", disable=not progress,
                      file=sys.stderr):
            arrays = store.episode(e)
            length = len(arrays["timestamp"])
            done = np.zeros(length, bool)
            done[-1] = plan.success[e]
            values = {plan.export_name[k]: arrays[k] for k in plan.columns}
            values.update({**({"next.success": done} if not plan.unknown else {}),
                           "timestamp": arrays["timestamp"].astype(np.float32),
                           "frame_index": np.arange(length), "episode_index": np.full(length, e),
                           "index": np.arange(start, start + length),
                           "task_index": np.full(length, plan.tasks.index(plan.episode_tasks[e]))})
            table = pa.table({k: _column(pa, np.asarray(v), plan.info_features[k]["dtype"]) for k, v in values.items()})
            if writer is None:
                hf = {"info": {"features": {k: _hf_type(f["dtype"], [] if f["shape"] == [1] else f["shape"])
                                            for k, f in plan.info_features.items() if f["dtype"] != "video"}}}
                schema = table.schema.with_metadata({b"huggingface": json.dumps(hf).encode()})
                writer = pq.ParquetWriter(data_file, schema)
            writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
            stats = {k: _stats(values[k]) for k in plan.numeric}
            row: dict[str, Any] = {"episode_index": e, "tasks": [plan.episode_tasks[e]], "length": length,
                                   "data/chunk_index": 0, "data/file_index": 0,
                                   "dataset_from_index": start, "dataset_to_index": start + length}
            for key in plan.cameras:
                frames = arrays[key]
                row.update({f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0,
                            f"videos/{key}/from_timestamp": videos[key].frames / fps,
                            f"videos/{key}/to_timestamp": (videos[key].frames + length) / fps})
                videos[key].write(frames)
                stats[key] = _stats(frames[::max(1, length // IMAGE_STATS_FRAMES)], image=True)
            row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            row.update({f"stats/{k}/{name}": _listify(v) for k, s in stats.items() for name, v in s.items()})
            episode_rows.append(row)
            per_episode_stats.append(stats)
            start += length
    finally:
        if writer is not None:
            writer.close()
        for video in videos.values():
            video.close()
    return episode_rows, per_episode_stats


def _write_meta(store: EpisodeStore, plan: _ExportPlan, root: Path, episode_rows: list[dict],
                per_episode_stats: list[dict]) -> int:
    """meta/: episodes, tasks, stats and info.json; returns the number of frames exported."""
    pq = require_pyarrow()
    import pyarrow as pa

    frames = episode_rows[-1]["dataset_to_index"]
    episodes_file = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    episodes_file.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), episodes_file)
    pq.write_table(_tasks_table(pa, plan.tasks), root / "meta" / "tasks.parquet")
    stats_all = {k: {name: _listify(v) for name, v in _aggregate([s[k] for s in per_episode_stats]).items()}
                 for k in per_episode_stats[0]}
    (root / "meta" / "stats.json").write_text(json.dumps(stats_all, indent=4))
    fps = store.fps
    info = {"codebase_version": "v3.0", "robot_type": store.robot_type or "unknown",
            "total_episodes": store.num_episodes, "total_frames": frames, "total_tasks": len(plan.tasks),
            "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 500,
            "fps": int(fps) if float(fps).is_integer() else fps,
            "splits": {"train": f"0:{store.num_episodes}"}, "data_path": DEFAULT_DATA_PATH,
            "video_path": DEFAULT_VIDEO_PATH if plan.cameras else None, "features": plan.info_features}
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return frames
