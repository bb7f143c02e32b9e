"""Feature descriptions shared by robots, environments and episode stores.

A feature is described the way LeRobot's info.json does it: ``{"dtype": "float32", "shape": [11],
"names": ["ee_x", ...]}``. Images are ``uint8`` with shape ``[height, width, 3]`` and names
``["height", "width", "channel"]``. Keys follow LeRobot's naming: ``observation.images.<camera>``,
``observation.state``, ``observation.environment_state``, ``action``.
"""

from __future__ import annotations

from typing import TypedDict

IMAGE_PREFIX = "observation.images."
STATE = "observation.state"
ENV_STATE = "observation.environment_state"
ACTION = "action"


class Feature(TypedDict):
    dtype: str
    shape: list[int]
    names: list[str] | None


def image_feature(height: int, width: int) -> Feature:
    return {"dtype": "uint8", "shape": [height, width, 3], "names": ["height", "width", "channel"]}


def vector_feature(names: list[str], dtype: str = "float32") -> Feature:
    return {"dtype": dtype, "shape": [len(names)], "names": list(names)}


def image_keys(features: dict[str, Feature]) -> list[str]:
    """The camera keys of a feature dict, sorted, e.g. ``["observation.images.front"]``."""
    return sorted(k for k in features if k.startswith(IMAGE_PREFIX))
