"""What every importer shares: image fitting, options and the summary it prints (outputs: `datasets.outputs`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robodream.errors import RobodreamError

FITS = ("crop", "pad")


@dataclass
class ImageOptions:
    """How imported camera frames are sized in the store.

    Frames are scaled to cover (``crop``, default) or to fit inside (``pad``, black borders) the target
    size while keeping their aspect ratio. Centre-crop is the default because world models and policies learn
    from every pixel of a small frame: padding a 16:9 camera into a square spends a quarter of the pixels on
    black bars. Use ``pad`` when the edges of the view matter (a wide scene camera), or import at the
    camera's aspect (``image_size=72 image_width=128``). ``image_size=null`` keeps the source size.
    """

    image_size: int | None = 64  # store frame height (and width, unless image_width is set); null = keep
    image_width: int | None = None
    image_fit: str = "crop"  # crop | pad

    def __post_init__(self) -> None:
        for name in ("image_size", "image_width"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or not 8 <= value <= 2048):
                raise RobodreamError(f"{name}={value!r}: choose an integer in [8, 2048] (or null to keep the "
                                     "source size)")
        if self.image_fit not in FITS:
            raise RobodreamError(f"image_fit={self.image_fit!r}: choose one of {', '.join(FITS)}")

    def target(self, height: int, width: int) -> tuple[int, int]:
        """The store frame size for a source frame of ``height`` x ``width``."""
        if self.image_size is None:
            return int(height), int(width)
        return self.image_size, self.image_width or self.image_size


def fit_image(image: np.ndarray, height: int, width: int, mode: str = "crop") -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to ``height`` x ``width`` keeping its aspect ratio (see ImageOptions)."""
    import cv2

    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    scale = max(height / h, width / w) if mode == "crop" else min(height / h, width / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if mode == "crop":  # cover the target, then cut the centre (rounding can leave a pixel short: cover it)
        new_h, new_w = max(new_h, height), max(new_w, width)
    # INTER_AREA averages the source pixels a target pixel covers (no aliasing when shrinking).
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    if mode == "crop":
        top, left = (new_h - height) // 2, (new_w - width) // 2
        return np.ascontiguousarray(resized[top : top + height, left : left + width])
    out = np.zeros((height, width, resized.shape[2]), dtype=resized.dtype)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out


def require_pyarrow():
    """pyarrow.parquet, or a RobodreamError saying how to install it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise RobodreamError("reading and writing LeRobot datasets needs pyarrow: "
                             "pip install 'robodream[lerobot]'") from None
    return pq


def flatten_names(names: Any, size: int | None = None) -> list[str] | None:
    """LeRobot writes names as a list, or a dict of lists ({"motors": [...]}); the store wants a list or None."""
    if isinstance(names, dict):
        names = [str(n) for group in names.values() for n in (group if isinstance(group, list) else [group])]
    if not isinstance(names, list) or not names:
        return None
    names = [str(n) for n in names]
    return names if size is None or len(names) == size else None


@dataclass
class ImportSummary:
    """What an import produced, printed by the CLI."""

    store: str
    episodes: int = 0
    frames: int = 0
    fps: float = 0.0
    features: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # per-topic reports, skipped keys, ...

    def lines(self) -> list[str]:
        """One screen: where the store is, episodes, frames, duration, features, then the notes."""
        lines = [f"store      {self.store}",
                 f"episodes   {self.episodes}   frames {self.frames}   fps {self.fps:g}   "
                 f"duration {self.frames / self.fps if self.fps else 0:.1f} s"]
        for key, feature in self.features.items():
            shape = "x".join(str(d) for d in feature["shape"]) or "scalar"
            lines.append(f"  {key:<34} {feature['dtype']:<8} {shape}")
        return lines + self.notes
