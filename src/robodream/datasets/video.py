"""Writing frames as MP4 (H.264, plays in browsers) and GIF, and tiling several episodes into a grid."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from robodream.errors import RobodreamError


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise RobodreamError(f"expected (T, H, W, 3) uint8 frames with T >= 1, got {frames.shape} {frames.dtype}")
    return frames


def write_mp4(frames: np.ndarray, path: str | os.PathLike, fps: float) -> Path:
    """Encode RGB frames as H.264 / yuv420p MP4 with PyAV (odd sizes are padded by one pixel)."""
    import av  # imported here: only video writing needs it

    frames = _check_frames(frames)
    height, width = frames.shape[1:3]
    pad = ((0, 0), (0, height % 2), (0, width % 2), (0, 0))
    frames = np.pad(frames, pad, mode="edge") if any(p[1] for p in pad) else frames
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # Small robot frames are mostly flat colour; crf 18 keeps edges crisp at a few kB per second.
        stream.options = {"crf": "18", "preset": "medium"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Decode a video file to (T, H, W, 3) uint8 RGB frames."""
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def write_gif(frames: np.ndarray, path: str | os.PathLike, fps: float) -> Path:
    """Write an endlessly looping GIF."""
    from PIL import Image

    frames = _check_frames(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0,
                   optimize=False)
    return path


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling, so that 64x64 robot frames stay sharp when viewed."""
    if scale == 1:
        return frames
    return frames.repeat(scale, axis=-3).repeat(scale, axis=-2)


def tile_episodes(episodes: Sequence[np.ndarray], labels: Sequence[str] | None = None, columns: int | None = None,
                  scale: int = 4, gap: int = 2) -> np.ndarray:
    """Tile several episodes' frames into one video: (T_max, rows*H', columns*W', 3).

    Shorter episodes hold their last frame; each tile can carry a label in its top-left corner.
    """
    if not episodes:
        raise RobodreamError("no episodes to tile")
    episodes = [upscale(_check_frames(e), scale) for e in episodes]
    height, width = episodes[0].shape[1:3]
    if any(e.shape[1:3] != (height, width) for e in episodes):
        raise RobodreamError("all episodes must have the same frame size to be tiled")
    columns = columns or int(np.ceil(np.sqrt(len(episodes))))
    rows = int(np.ceil(len(episodes) / columns))
    length = max(len(e) for e in episodes)
    canvas = np.full((length, rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for i, frames in enumerate(episodes):
        held = np.concatenate([frames, np.repeat(frames[-1:], length - len(frames), axis=0)])
        if labels is not None:
            held = held.copy()
            for frame in held:
                _label(frame, labels[i])
        row, col = divmod(i, columns)
        y, x = row * (height + gap), col * (width + gap)
        canvas[:, y : y + height, x : x + width] = held
    return canvas


def _label(frame: np.ndarray, text: str) -> None:
    scale = max(0.35, frame.shape[0] / 500)
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # outlined, readable on any background
        cv2.putText(frame, text, (4, int(14 * scale / 0.4)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness,
                    cv2.LINE_AA)
