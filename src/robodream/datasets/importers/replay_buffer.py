"""`robodream import-zarr <replay.zarr>`: a Diffusion Policy replay buffer (zarr v2) into an episode store.

Diffusion Policy's ReplayBuffer keeps every frame of every episode back to back in ``data/<key>`` arrays
(e.g. pusht: img (N, 96, 96, 3) uint8, state (N, 5), action (N, 2), keypoint, n_contacts) and the cumulative
episode lengths in ``meta/episode_ends`` — the same layout as an episode store's core, without feature names,
fps or per-episode metadata. `keys` maps source arrays to store features (``keys.img=observation.images.front``,
``keys.keypoint=`` to leave one out); the conventional names below are recognised without it, and any other
(N, H, W, 3) array becomes a camera. Arrays not mapped are listed in the summary and left out.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robodream.datasets.importers.common import ImageOptions, ImportSummary, fit_image
from robodream.datasets.outputs import atomic_output
from robodream.datasets.writer import create_store
from robodream.errors import RobodreamError
from robodream.features import ACTION, IMAGE_PREFIX, STATE, image_feature, vector_feature

#: Diffusion Policy's usual array names -> store features, used when `keys` is empty
CONVENTIONAL = {"action": ACTION, "state": STATE, "agent_pos": STATE, "robot_eef_pose": STATE,
                "img": IMAGE_PREFIX + "front", "image": IMAGE_PREFIX + "front"}


@dataclass
class ReplayImportConfig(ImageOptions):
    """`robodream import-zarr` options."""

    out: str | None = None  # store path; default data/<source name>_import.zarr
    overwrite: bool = False
    fps: float = 10.0  # replay buffers do not record their rate (pusht and Diffusion Policy's real data: 10 Hz)
    keys: dict[str, str] = field(default_factory=dict)  # source array -> store feature
    robot_type: str = "unknown"
    task: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fps > 0:
            raise RobodreamError(f"fps={self.fps}: choose a positive frame rate")
        targets = list(self.keys.values())
        if len(set(targets)) != len(targets):
            raise RobodreamError(f"keys maps two arrays to the same feature: {self.keys}")


def _is_image(array) -> bool:
    shape = array.shape
    return len(shape) == 4 and (shape[-1] == 3 or shape[1] == 3)


def _images(values: np.ndarray, size: tuple[int, int], fit: str) -> np.ndarray:
    if values.shape[-1] != 3:  # (N, 3, H, W), as some buffers keep torch's layout
        values = values.transpose(0, 2, 3, 1)
    if values.dtype != np.uint8:  # float images in [0, 1]
        values = (np.clip(values, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.stack([fit_image(np.ascontiguousarray(frame), *size, mode=fit) for frame in values])


def _mapping(data: dict, keys: dict[str, str]) -> dict[str, str]:
    """Source array -> feature: the conventional names, then every other camera-shaped array, with the explicit
    `keys` winning (an empty value leaves an array out)."""
    mapping: dict[str, str] = {}
    for name, key in CONVENTIONAL.items():
        if name in data and key not in mapping.values() and name not in keys:
            mapping[name] = key
    for name, key in keys.items():
        mapping = {n: k for n, k in mapping.items() if k != key}  # an explicit choice takes the feature over
        if key:
            mapping[name] = key
    for name, array in data.items():
        camera = IMAGE_PREFIX + name
        if name not in mapping and name not in keys and _is_image(array) and camera not in mapping.values():
            mapping[name] = camera
    return mapping


def import_replay_buffer(source: str | Path, cfg: ReplayImportConfig, progress: bool = True) -> ImportSummary:
    """Import a zarr v2 replay buffer (data/<key>, meta/episode_ends) into a new store at ``cfg.out``."""
    import zarr

    source = Path(source)
    if not source.exists():
        raise RobodreamError(f"{source} does not exist: give the path of a Diffusion Policy replay buffer (*.zarr)")
    try:
        group = zarr.open_group(str(source), mode="r")
    except Exception as exc:
        raise RobodreamError(f"cannot open {source} as a zarr group: {exc}") from None
    if group.attrs.get("format") == "robodream.episodes":
        raise RobodreamError(f"{source} is already a robodream episode store: use it directly (or `robodream info`)")
    if "data" not in group or "meta" not in group or "episode_ends" not in group["meta"]:
        raise RobodreamError(f"{source} is not a replay buffer: expected data/<key> arrays and meta/episode_ends")
    data = {name: array for name, array in group["data"].arrays()}
    ends = np.asarray(group["meta"]["episode_ends"][:], dtype=np.int64)
    if len(ends) == 0:
        raise RobodreamError(f"{source} holds no episodes (meta/episode_ends is empty)")
    if np.any(np.diff(np.concatenate([[0], ends])) <= 0):
        raise RobodreamError(f"{source}: meta/episode_ends must increase; got {ends[:10].tolist()}...")
    mapping = _mapping(data, cfg.keys)
    missing = sorted(set(mapping) - set(data))
    if missing:
        raise RobodreamError(f"{source} has no arrays {missing} (from keys); it has {sorted(data)}")
    for name, array in data.items():
        if name in mapping and array.shape[0] < ends[-1]:
            raise RobodreamError(f"{source}: data/{name} has {array.shape[0]} frames but meta/episode_ends ends at "
                                 f"{ends[-1]} (truncated?)")
    features, sizes = {}, {}
    for name, key in mapping.items():
        array = data[name]
        if key.startswith(IMAGE_PREFIX):
            if not _is_image(array):
                raise RobodreamError(f"data/{name} has shape {array.shape}: a camera needs (N, H, W, 3) frames")
            height, width = array.shape[1:3] if array.shape[-1] == 3 else array.shape[2:4]
            sizes[key] = cfg.target(height, width)
            features[key] = image_feature(*sizes[key])
        else:
            width = int(np.prod(array.shape[1:], dtype=np.int64))
            features[key] = vector_feature([f"{name}[{i}]" for i in range(width)])
    for required in (STATE, ACTION):
        if required not in features:
            raise RobodreamError(f"no array maps to {required!r}: set keys.<array>={required} (arrays: {sorted(data)})")
    out = cfg.out or f"data/{source.stem}_import.zarr"
    summary = ImportSummary(store=str(out), fps=cfg.fps)
    with atomic_output(out, overwrite=cfg.overwrite) as temporary:
        writer = create_store(temporary, fps=cfg.fps, features=features, robot_type=cfg.robot_type, task=cfg.task,
                              cameras={k[len(IMAGE_PREFIX):]: {"height": s[0], "width": s[1]}
                                       for k, s in sizes.items()},
                              extra_attrs={"import": {"format": "diffusion-policy-replay-buffer", "source": str(source),
                                                      "keys": mapping}})
        starts = np.concatenate([[0], ends[:-1]])
        for e, (start, end) in enumerate(tqdm(list(zip(starts, ends, strict=True)), desc="import-zarr", unit="ep",
                                              disable=not progress, file=sys.stderr)):
            episode = {}
            for name, key in mapping.items():
                values = np.asarray(data[name][start:end])
                episode[key] = (_images(values, sizes[key], cfg.image_fit) if key in sizes
                                else values.reshape(len(values), -1).astype(np.float32))
            writer.append_episode(episode, source="import", origin=f"replay:{source}#episode={e}")
        writer.close()
        summary.episodes, summary.frames, summary.features = writer.num_episodes, writer.num_frames, writer.features
    summary.notes.append("mapped     " + ", ".join(f"{k} -> {v}" for k, v in mapping.items()))
    ignored = sorted(set(data) - set(mapping))
    if ignored:
        summary.notes.append(f"left out   {', '.join(ignored)} (map them with keys.<array>=<feature>)")
    return summary
