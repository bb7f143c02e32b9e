"""Field declarations shared by every config dataclass: which keys are runtime-only.

A runtime-only key changes how, where or whether a command runs — worker processes, torch threads, data-loader
workers, progress bars, accelerator and devices, Ray, resume/overwrite, a stage's on/off switch — or names a
location (a store or run directory that a stage fingerprints as an input, or owns as its output), never what it
produces. The stage engine (pipeline/stages.py) leaves these keys out of every stage hash, recursively through
nested configs, so changing one never re-runs a stage; no stage builder lists them by hand.

    workers: int = runtime(2)  # PyBullet worker processes
"""

from __future__ import annotations

import dataclasses
from typing import Any

RUNTIME = "runtime"


def runtime(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose value never changes a command's outputs (see the module doc)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={RUNTIME: True})


def is_runtime(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get(RUNTIME))
