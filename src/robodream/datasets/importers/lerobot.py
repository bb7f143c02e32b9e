"""`robodream import-lerobot`: a LeRobot v3.0 dataset folder into an episode store, without the lerobot package.

LeRobot v3.0 layout (what this reads):

    meta/info.json                                   codebase_version "v3.0", fps, features, data_path, video_path
    meta/episodes/chunk-*/file-*.parquet             one row per episode: episode_index, tasks, length,
                                                     data/{chunk,file}_index, videos/<key>/{chunk_index,
                                                     file_index, from_timestamp, to_timestamp}, stats/...
    meta/tasks.parquet                               task strings (pandas index) -> task_index
    data/chunk-*/file-*.parquet                      one row per frame, many episodes per file
    videos/<key>/chunk-*/file-*.mp4                  many episodes per file, back to back

Features map 1:1 by name (observation.state, observation.images.<cam>, action, ...); `next.reward` becomes
the store's `reward`, `next.success` the episode's success flag; frame_index/episode_index/index/task_index
are bookkeeping and are not stored. The frame of episode e at time t is the video frame nearest
``from_timestamp(e) + t``, as LeRobot itself decodes it. Store fps = the dataset's fps (or an integer
fraction of it, with `fps=`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robodream.datasets.importers.common import (
    ImageOptions,
    ImportSummary,
    fit_image,
    flatten_names,
    require_pyarrow,
)
from robodream.datasets.outputs import atomic_output
from robodream.datasets.writer import create_store
from robodream.errors import RobodreamError
from robodream.features import image_feature

BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index", "next.done", "next.success")
RENAMED = {"next.reward": "reward"}
DEFAULT_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"


@dataclass
class LeRobotImportConfig(ImageOptions):
    """`robodream import-lerobot <dir>` options."""

    out: str | None = None  # store path; default data/<dataset folder name>.zarr
    overwrite: bool = False
    fps: float | None = None  # default: the dataset's fps; a value that divides it keeps every k-th frame
    episodes: list[int] | None = None  # import only these episode indices

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fps is not None and not self.fps > 0:
            raise RobodreamError(f"fps={self.fps}: choose a positive frame rate, or null for the dataset's")


def read_info(root: Path) -> dict[str, Any]:
    """meta/info.json of a LeRobot v3 dataset, checked."""
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise RobodreamError(f"{root} is not a LeRobot dataset: {path} is missing")
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RobodreamError(f"cannot read {path}: {exc}") from None
    version = str(info.get("codebase_version", "?"))
    if not version.startswith("v3"):
        raise RobodreamError(f"{root} is a LeRobot {version} dataset; only v3.0 is read here: convert it with "
                             "lerobot's convert_dataset_v21_to_v30 script first")
    for key in ("fps", "features"):
        if key not in info:
            raise RobodreamError(f"{path} has no {key!r} entry: the dataset is damaged")
    return info


def _read_parquet(path: Path):
    pq = require_pyarrow()
    if not path.is_file():
        raise RobodreamError(f"{path} is missing: the LeRobot dataset is incomplete")
    try:
        return pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError on truncated files; name the file
        raise RobodreamError(f"cannot read {path}: {exc} (truncated or not a parquet file?)") from None


def read_episodes(root: Path) -> list[dict[str, Any]]:
    """Rows of meta/episodes/**/*.parquet, sorted by episode_index."""
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise RobodreamError(f"{root}/meta/episodes/ holds no parquet files: the LeRobot dataset is incomplete")
    rows = [row for f in files for row in _read_parquet(f).to_pylist()]
    return sorted(rows, key=lambda r: r["episode_index"])


def column_array(table, name: str, shape: list[int]) -> np.ndarray:
    """A parquet column as a (rows, *shape) numpy array (lists of fixed or variable size are flattened)."""
    column = table.column(name).combine_chunks()
    import pyarrow as pa

    while any(check(column.type) for check in (pa.types.is_list, pa.types.is_fixed_size_list, pa.types.is_large_list)):
        column = column.flatten()
    values = column.to_numpy(zero_copy_only=False)
    rows = table.num_rows
    if values.size != rows * int(np.prod(shape, dtype=np.int64)):
        raise RobodreamError(f"column {name!r} holds {values.size} values for {rows} frames, expected shape {shape} "
                             "per frame (info.json disagrees with the data)")
    return values.reshape(rows, *shape)


class VideoCursor:
    """Frames of one video file by timestamp, decoding forward only (episodes are read in file order)."""

    def __init__(self, path: Path, fps: float):
        if not path.is_file():
            raise RobodreamError(f"{path} is missing: the LeRobot dataset is incomplete")
        self.path, self.fps = path, fps
        self._open()

    def _open(self) -> None:
        import av

        try:
            self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threading: AV1 (dav1d) decodes ~2x faster on 2 cores
            self._frames = self._container.decode(stream)
        except Exception as exc:
            raise RobodreamError(f"cannot open video {self.path}: {exc}") from None
        self._count = 0
        self._before = None
        self._after = self._next()

    def _next(self):
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except Exception as exc:  # av.error.InvalidDataError etc. on damaged files
            raise RobodreamError(f"cannot decode {self.path}: {exc} (truncated video?)") from None
        t = frame.time if frame.time is not None else self._count / self.fps
        self._count += 1
        return t, frame

    def frame_at(self, t: float) -> np.ndarray:
        """The RGB frame nearest to ``t`` seconds; it must lie within half a frame period."""
        if self._before is not None and t < self._before[0] - 0.5 / self.fps:
            self.close()
            self._open()  # asked to go back: decode again from the start
        while self._after is not None and self._after[0] <= t:
            self._before, self._after = self._after, self._next()
        nearest = min((c for c in (self._before, self._after) if c is not None), key=lambda c: abs(c[0] - t),
                      default=None)
        if nearest is None or abs(nearest[0] - t) > 0.5 / self.fps:
            found = f"nearest at {nearest[0]:.3f} s" if nearest else "no frames"
            raise RobodreamError(f"{self.path} has no frame at {t:.3f} s ({found}): the video is shorter than the "
                                 "episodes say (truncated?)")
        return nearest[1].to_ndarray(format="rgb24")

    def close(self) -> None:
        self._container.close()


def _store_features(info: dict[str, Any], options: ImageOptions) -> tuple[dict, dict, list[str]]:
    """Store features, the source column/video key of each, and the keys left out (with why)."""
    features, sources, skipped = {}, {}, []
    for key, feature in info["features"].items():
        dtype, shape = feature.get("dtype"), list(feature.get("shape") or [])
        if key in BOOKKEEPING:
            continue
        if dtype in ("video", "image"):
            height, width = options.target(shape[0], shape[1])
            features[key] = image_feature(height, width)
        elif dtype in ("float32", "float64", "int32", "int64", "int16", "uint8", "bool"):
            name = RENAMED.get(key, key)
            store_shape = [] if name == "reward" else shape
            store_dtype = "float32" if name == "reward" else dtype
            names = flatten_names(feature.get("names"), int(np.prod(shape))) if store_shape else None
            features[name] = {"dtype": store_dtype, "shape": store_shape, "names": names}
        else:
            skipped.append(f"{key} ({dtype})")
            continue
        sources[RENAMED.get(key, key)] = (key, dtype, shape)
    return features, sources, skipped


def import_lerobot(root: str | Path, cfg: LeRobotImportConfig, progress: bool = True) -> ImportSummary:
    """Import a LeRobot v3.0 dataset folder into a new store at ``cfg.out``; returns an ImportSummary."""
    root = Path(root)
    info = read_info(root)
    src_fps = float(info["fps"])
    stride = 1
    if cfg.fps is not None:
        stride = round(src_fps / cfg.fps)
        if stride < 1 or abs(src_fps / cfg.fps - stride) > 1e-6:
            raise RobodreamError(f"fps={cfg.fps:g} does not divide the dataset's {src_fps:g} fps: choose e.g. "
                                 f"{src_fps / 2:g} or {src_fps / 3:g}, or leave fps unset")
    episodes = read_episodes(root)
    if cfg.episodes is not None:
        known = {e["episode_index"] for e in episodes}
        missing = sorted(set(cfg.episodes) - known)
        if missing:
            raise RobodreamError(f"episodes {missing} are not in {root} (it holds {len(known)}: 0-{max(known)})")
        episodes = [e for e in episodes if e["episode_index"] in set(cfg.episodes)]
    features, sources, skipped = _store_features(info, cfg)
    data_path = info.get("data_path") or DEFAULT_DATA_PATH
    video_path = info.get("video_path") or DEFAULT_VIDEO_PATH
    out = cfg.out or f"data/{root.name}.zarr"
    tasks = [" ; ".join(e.get("tasks") or []) for e in episodes]
    unique_tasks = list(dict.fromkeys(t for t in tasks if t))
    summary = ImportSummary(store=str(out), fps=src_fps / stride)
    cursors: dict[tuple[str, int, int], VideoCursor] = {}
    table_cache: dict[Path, Any] = {}
    with atomic_output(out, overwrite=cfg.overwrite) as temporary:
        writer = create_store(
            temporary, fps=src_fps / stride, features=features, robot_type=str(info.get("robot_type") or "unknown"),
            task=" | ".join(unique_tasks),
            cameras={k.split(".")[-1]: {"height": f["shape"][0], "width": f["shape"][1]}
                     for k, f in features.items() if len(f["shape"]) == 3},
            extra_attrs={"import": {"format": "lerobot-" + str(info.get("codebase_version")), "source": str(root),
                                    "source_fps": src_fps, "tasks": tasks}},
        )
        if len(unique_tasks) > 1:  # a dataset of several tasks keeps each episode's (like its task_index)
            writer.keep_episode_tasks(" | ".join(unique_tasks))
        try:
            for episode, task in tqdm(list(zip(episodes, tasks, strict=True)), desc="import-lerobot", unit="ep",
                                      disable=not progress, file=sys.stderr):
                data, success = _episode(root, episode, info, features, sources, data_path, video_path, stride,
                                         cfg, cursors, table_cache)
                writer.append_episode(data, source="import", success=success, task=task or None,
                                      origin=f"lerobot:{root}#episode={episode['episode_index']}")
        finally:
            for cursor in cursors.values():
                cursor.close()
        writer.close()
        summary.episodes, summary.frames, summary.features = writer.num_episodes, writer.num_frames, writer.features
    if skipped:
        summary.notes.append("not imported (not numeric): " + ", ".join(skipped))
    return summary


def _episode(root, episode, info, features, sources, data_path, video_path, stride, cfg, cursors, table_cache):
    index = episode["episode_index"]
    path = root / data_path.format(chunk_index=episode.get("data/chunk_index", 0),
                                   file_index=episode.get("data/file_index", 0))
    if path not in table_cache:
        table_cache.clear()  # one data file in memory at a time; episodes come in file order
        table_cache[path] = _read_parquet(path)
    table = table_cache[path]
    rows = np.flatnonzero(column_array(table, "episode_index", [1]).reshape(-1) == index)
    if not len(rows):
        raise RobodreamError(f"{path} holds no frames of episode {index} (meta/episodes says it does)")
    frames = column_array(table, "frame_index", [1]).reshape(-1)[rows] if "frame_index" in table.column_names else None
    if frames is not None:
        rows = rows[np.argsort(frames, kind="stable")]
    rows = rows[::stride]
    episode_table = table.take(rows)
    timestamps = column_array(episode_table, "timestamp", [1]).reshape(-1).astype(np.float64)
    data: dict[str, np.ndarray] = {"timestamp": timestamps.astype(np.float32)}
    for store_key, (key, dtype, shape) in sources.items():
        feature = features[store_key]
        if dtype == "video":
            cursor_key = (key, episode[f"videos/{key}/chunk_index"], episode[f"videos/{key}/file_index"])
            if cursor_key not in cursors:
                file = root / video_path.format(video_key=key, chunk_index=cursor_key[1], file_index=cursor_key[2])
                cursors[cursor_key] = VideoCursor(file, float(info["fps"]))
            start = float(episode[f"videos/{key}/from_timestamp"])
            data[store_key] = np.stack([fit_image(cursors[cursor_key].frame_at(start + t), *feature["shape"][:2],
                                                  mode=cfg.image_fit) for t in timestamps])
        elif dtype == "image":
            data[store_key] = np.stack([fit_image(_decode_png(cell, key), *feature["shape"][:2], mode=cfg.image_fit)
                                        for cell in episode_table.column(key).to_pylist()])
        else:
            values = column_array(episode_table, key, shape)
            data[store_key] = values.reshape(len(values), *feature["shape"]).astype(feature["dtype"])
    success = None  # unknown: LeRobot datasets record next.success only where an environment reported it
    if "next.success" in episode_table.column_names:
        success = bool(column_array(episode_table, "next.success", [1]).any())
    return data, success


def _decode_png(cell: Any, key: str) -> np.ndarray:
    import cv2

    payload = cell.get("bytes") if isinstance(cell, dict) else None
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR) if payload else None
    if image is None:
        raise RobodreamError(f"cannot decode an image of {key!r}: expected PNG/JPEG bytes in the parquet column")
    return np.ascontiguousarray(image[:, :, ::-1])
