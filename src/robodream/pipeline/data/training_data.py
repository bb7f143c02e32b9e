"""What a model was trained on, recorded next to it, so that evaluations never pass training episodes off as
held out.

train-wm and train-policy write `<run>/training_data.json`: per store its location, committed episode count,
a fingerprint, and the episode ids trained on and held out. `dream` and `eval-wm` read it: by default they
show the held-out episodes (plus any episode appended to the store since), and any training episode they are
asked to show is named in a `warning:` line and labelled "(train)" in their outputs.

The fingerprint is cheap and stable: a hash of the store's task and the committed `episode_ends` of the
episodes the model saw. A store that grew since (collect resume=true, an append) still matches on its first
episodes, so its new episodes count as unseen; a copy of the store elsewhere matches too; a store rebuilt
with other episodes does not.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from robodream.errors import RobodreamError
from robodream.hashing import sha256

RECORD_FILE = "training_data.json"
RECORD_VERSION = 1


def store_fingerprint(store: Any, episodes: int | None = None) -> str:
    """A hash of the store's task and the committed episode_ends of its first `episodes` episodes (all)."""
    count = store.num_episodes if episodes is None else episodes
    ends = np.asarray(store.episode_ends[:count], dtype="<i8")
    return sha256(str(store.task).encode(), ends.tobytes()).hexdigest()[:16]


def store_entry(store: Any, train: list[int], held_out: list[int]) -> dict[str, Any]:
    """The record of one store: where, how many committed episodes, fingerprint, and the split."""
    return {"path": str(store.location), "episodes": int(store.num_episodes), "fingerprint": store_fingerprint(store),
            "train": [int(e) for e in train], "held_out": [int(e) for e in held_out]}


def record_training_data(run_dir: str | Path, entries: list[dict[str, Any]]) -> Path:
    """Write `<run_dir>/training_data.json` (the stores a model was trained on, with their splits)."""
    path = Path(run_dir) / RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": RECORD_VERSION, "stores": entries}, indent=1))
    return path


def read_training_data(run_dir: str | Path) -> list[dict[str, Any]] | None:
    """The recorded stores of a run directory; None when it records none (a model trained before this)."""
    path = Path(run_dir) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        return list(json.loads(path.read_text())["stores"])
    except (ValueError, KeyError, TypeError):
        raise RobodreamError(f"damaged {path}: delete it to evaluate without the training split") from None


def entry_for(entries: list[dict[str, Any]], store: Any) -> dict[str, Any] | None:
    """The entry of the recorded stores whose episodes `store` holds (its first ones), if any."""
    for entry in entries:
        count = int(entry["episodes"])
        if store.num_episodes >= count and store_fingerprint(store, count) == entry["fingerprint"]:
            return entry
    return None


def store_name(location: str | Path) -> str:
    """`data/push_cube.zarr` -> `push_cube` (the folder evaluations of that store go to)."""
    name = Path(str(location).rstrip("/")).name
    return name[: -len(".zarr")] if name.endswith(".zarr") and len(name) > len(".zarr") else name or "store"


class EpisodeChoice:
    """Which episodes of `store` an evaluation of the model in `run_dir` shows, and which of them it trained on."""

    def __init__(self, run_dir: Path, store: Any):
        entries = read_training_data(run_dir)
        self.recorded = entries is not None
        self.entry = entry_for(entries, store) if entries else None
        self.run_dir, self.store = run_dir, store
        self.trained: set[int] = set(self.entry["train"]) if self.entry else set()

    def default(self) -> list[int]:
        """The held-out episodes (and those appended since training); every episode of a store it never saw."""
        if self.entry is None:
            if not self.recorded:
                print(f"note: {self.run_dir} records no training split (trained by an older robodream): the "
                      "episodes shown may include training episodes", file=sys.stderr)
            return list(range(self.store.num_episodes))
        episodes = [*self.entry["held_out"], *range(int(self.entry["episodes"]), self.store.num_episodes)]
        if not episodes:
            raise RobodreamError(f"{self.store.location} holds no episode the model in {self.run_dir} did not train "
                                 "on: pass episodes=... to show training episodes anyway, or data=<another store>")
        return episodes

    def check(self, episodes: list[int], command: str, marked: str) -> list[int]:
        """Warn (one line) when `episodes` include training episodes (`marked`: where they are labelled)."""
        seen = [e for e in episodes if e in self.trained]
        if seen:
            shown = ", ".join(map(str, seen[:12])) + (", ..." if len(seen) > 12 else "")
            print(f"warning: {command}: episodes {shown} of {self.store.location} are training episodes of "
                  f"{self.run_dir} ({marked}): they show what the model memorised, not how it generalises",
                  file=sys.stderr)
        return seen


def stage_outputs_inside(folder: Path, run_dir: Path) -> list[str]:
    """Outputs of `robodream run` stages recorded in `run_dir` (their *.stage.json) that lie inside `folder`."""
    inside = []
    folder = folder.resolve()
    for stamp in sorted(run_dir.glob("*.stage.json")):
        try:
            outputs = json.loads(stamp.read_text()).get("outputs", [])
        except (OSError, ValueError):
            continue
        for output in outputs:
            path = Path(str(output.get("path", ""))).resolve()
            if path == folder or folder in path.parents:
                inside.append(str(path))
    return inside
