"""`robodream import-zarr <replay.zarr>`: a Diffusion Policy replay buffer (zarr v2) into an episode store.

Diffusion Policy's ReplayBuffer keeps every frame of every episode back to back in ``data/<key>`` arrays
(e.g. pusht: img (N, 96, 96, 3) uint8, state (N, 5), action (N, 2), keypoint, n_contacts) and the cumulative
episode lengths in ``meta/episode_ends`` — the same layout as an episode store's core, without feature names,
fps or per-episode metadata. `keys` maps source arrays to store features (``keys.img=observation.images.front``,
``keys.keypoint=`` to leave one out); the conventional names below are recognised without it, and any other
(N, H, W, 3) array becomes a camera. Arrays not mapped are listed in the summary and left out.

Image values: uint8 frames are stored as they are. Float (or other non-uint8) frames come in two conventions:
0..1, and 0..255 (the original PushT buffer keeps ``img`` as float32 in 0..255). ``image_scale`` is the value that
means full white; by default it is read from the data (the first episode's maximum: above 1 means 0..255) and a
later episode that does not fit the choice is an error rather than clipped frames. The summary says which was used.
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
    #: the value of full white in non-uint8 images: 1 (0..1 floats) or 255 (0..255); null = read it from the data
    image_scale: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_scale is not None and not self.image_scale > 0:
            raise RobodreamError(f"image_scale={self.image_scale}: give the value of full white, e.g. 1 for images "
                                 "in 0..1 or 255 for 0..255 (or null to read it from the data)")
        if not self.fps > 0:
            raise RobodreamError(f"fps={self.fps}: choose a positive frame rate")
        targets = list(self.keys.values())
        if len(set(targets)) != len(targets):
            raise RobodreamError(f"keys maps two arrays to the same feature: {self.keys}")


def _is_image(array) -> bool:
    shape = array.shape
    return len(shape) == 4 and (shape[-1] == 3 or shape[1] == 3)


def _image_scale(values: np.ndarray) -> float:
    """Full white of non-uint8 frames judged from their values: 0..1 unless anything exceeds 1 (then 0..255)."""
    return 255.0 if values.size and float(np.nanmax(values)) > 1.0 else 1.0


def _images(values: np.ndarray, size: tuple[int, int], fit: str, scale: float, where: str) -> np.ndarray:
    if values.shape[-1] != 3:  # (N, 3, H, W), as some buffers keep torch's layout
        values = values.transpose(0, 2, 3, 1)
    if values.dtype != np.uint8:  # numbers in [0, scale]
        top = float(np.nanmax(values)) if values.size else 0.0
        if top > scale * 1.001:  # clipping would turn the frames white: say so instead
            raise RobodreamError(f"{where} has values up to {top:g}, above image_scale={scale:g} (full white): pass "
                                 "image_scale=255 for images in 0..255 (or the right scale)")
        values = (np.clip(np.nan_to_num(values) / scale, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.stack([fit_image(np.ascontiguousarray(frame), *size, mode=fit) for frame in values])


def _read(source: Path, name: str, read):
    """``read()``, with damaged arrays (bad metadata, corrupt chunks) turned into one line naming the array."""
    try:
        return read()
    except RobodreamError:
        raise
    except Exception as exc:  # zarr, numcodecs and json raise many types for damaged files
        raise RobodreamError(f"cannot read {name} of {source}: {type(exc).__name__}: {exc} (the replay buffer is "
                             "damaged or incomplete)") from None


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


def _data_arrays(group, source: Path) -> dict:
    """The arrays under data/, opened one by one so that a damaged one is named (listing them all at once reads
    their metadata concurrently, and zarr then reports a damaged one with stray tracebacks)."""
    import zarr

    folder = source / "data"
    if not folder.is_dir():  # not a directory store: let zarr list it
        return _read(source, "the arrays under data/", lambda: dict(group["data"].arrays()))
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    members = {name: _read(source, f"data/{name}", lambda n=name: group["data"][n]) for name in names}
    return {name: member for name, member in members.items() if isinstance(member, zarr.Array)}


def _open_buffer(source: Path) -> tuple[dict, np.ndarray]:
    """The data/ arrays and the checked episode ends of a replay buffer (one error line for anything damaged)."""
    import zarr

    if not source.exists():
        raise RobodreamError(f"{source} does not exist: give the path of a Diffusion Policy replay buffer (*.zarr)")
    try:
        group = zarr.open_group(str(source), mode="r")
    except Exception as exc:
        raise RobodreamError(f"cannot open {source} as a zarr group: {exc}") from None
    if group.attrs.get("format") == "robodream.episodes":
        raise RobodreamError(f"{source} is already a robodream episode store: use it directly (or `robodream info`)")
    if not _read(source, "its groups",
                 lambda: "data" in group and "meta" in group and "episode_ends" in group["meta"]):
        raise RobodreamError(f"{source} is not a replay buffer: expected data/<key> arrays and meta/episode_ends")
    data = _data_arrays(group, source)
    ends = _read(source, "meta/episode_ends", lambda: np.asarray(group["meta"]["episode_ends"][:], dtype=np.int64))
    if len(ends) == 0:
        raise RobodreamError(f"{source} holds no episodes (meta/episode_ends is empty)")
    if np.any(np.diff(np.concatenate([[0], ends])) <= 0):
        raise RobodreamError(f"{source}: meta/episode_ends must increase; got {ends[:10].tolist()}...")
    return data, ends


def import_replay_buffer(source: str | Path, cfg: ReplayImportConfig, progress: bool = True) -> ImportSummary:
    """Import a zarr v2 replay buffer (data/<key>, meta/episode_ends) into a new store at ``cfg.out``."""
    source = Path(source)
    data, ends = _open_buffer(source)
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
        scales = dict.fromkeys(sizes, cfg.image_scale)
        for e, (start, end) in enumerate(tqdm(list(zip(starts, ends, strict=True)), desc="import-zarr", unit="ep",
                                              disable=not progress, file=sys.stderr)):
            episode = {}
            for name, key in mapping.items():
                values = _read(source, f"data/{name} (frames {start}-{end - 1})",
                               lambda n=name, a=start, b=end: np.asarray(data[n][a:b]))
                if key in sizes and values.dtype != np.uint8 and scales[key] is None:
                    scales[key] = _image_scale(values)
                episode[key] = (_images(values, sizes[key], cfg.image_fit, scales[key] or 255.0,
                                        f"data/{name} episode {e}") if key in sizes
                                else values.reshape(len(values), -1).astype(np.float32))
            writer.append_episode(episode, source="import", origin=f"replay:{source}#episode={e}")
        writer.close()
        summary.episodes, summary.frames, summary.features = writer.num_episodes, writer.num_frames, writer.features
    summary.notes.append("mapped     " + ", ".join(f"{k} -> {v}" for k, v in mapping.items()))
    for name, key in mapping.items():
        if key in sizes and data[name].dtype != np.uint8:
            how = "given" if cfg.image_scale is not None else "read from the data; set image_scale= to override"
            summary.notes.append(f"images     {name} is {data[name].dtype} in 0..{scales[key]:g} ({how})")
    ignored = sorted(set(data) - set(mapping))
    if ignored:
        summary.notes.append(f"left out   {', '.join(ignored)} (map them with keys.<array>=<feature>)")
    return summary
