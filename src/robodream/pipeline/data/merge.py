"""`robodream merge`: join episode stores recorded on different machines (or by different stages) into one.

    robodream merge data/push_a.zarr data/push_b.zarr out=data/push.zarr
    robodream merge s3://bucket/fleet/arm0.zarr s3://bucket/fleet/arm1.zarr out=s3://bucket/fleet/all.zarr
    robodream merge configs/merge/fleet.yaml            # stores listed under `stores:`
    robodream merge data/new.zarr out=data/push.zarr append=true

Steps: build the config -> open every store and check they agree on fps and features (one error line naming
the store and what differs) -> copy their committed episodes in order through the store writer into a temporary
sibling of out=, renamed into place at the end (so a killed merge leaves no store, never a partial one that looks
complete; append=true adds episode by episode, commit-last) -> stats -> summary. This process is the only writer
(it holds out='s writer lock).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from robodream.errors import RobodreamError
from robodream.pipeline.stages import Previous, Stage, StageResult

# zarr, tqdm and the store modules are imported inside the functions: the CLI imports this module to build its
# parser.


@dataclass
class MergeConfig:
    """Which stores to join, in order, and where."""

    #: stores (paths or fsspec URLs) whose episodes are copied, in this order; stores named on the command line
    #: come after these
    stores: list[str] = field(default_factory=list)
    out: str | None = None  # the merged store (path or fsspec URL)
    overwrite: bool = False  # replace an existing out
    append: bool = False  # add the episodes to an existing out (it must have the same fps and features)
    #: allow stores of different tasks: the result keeps each episode's task (meta/episode_task) and exports to
    #: LeRobot as several tasks; without it, stores of different tasks are refused
    mixed_tasks: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.overwrite and self.append:
            raise RobodreamError("append=true and overwrite=true contradict each other: pick one")
        if self.out is not None and any(_same_location(s, self.out) for s in self.stores):
            raise RobodreamError(f"out={self.out} is also one of the stores to merge: write to another store, or "
                                 "leave it out of the list and pass append=true")


@dataclass
class MergeSummary:
    out: str
    stores: int
    episodes: int
    frames: int
    sources: dict[str, int]
    episodes_in_store: int
    elapsed_s: float
    duplicate_sim_seeds: list[int] = field(default_factory=list)
    tasks: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        sources = ", ".join(f"{name} {count}" for name, count in sorted(self.sources.items())) or "none"
        lines = [
            f"store      {self.out}",
            f"merged     {self.episodes} episodes ({self.frames} frames) from {self.stores} "
            f"store{'s' if self.stores != 1 else ''}",
            f"sources    {sources}",
            *([f"tasks      {', '.join(f'{task} {n}' for task, n in self.tasks.items())} (a task per episode)"]
              if len(self.tasks) > 1 else []),
            f"episodes   {self.episodes_in_store} in store",
            f"time       {self.elapsed_s:.1f} s",
        ]
        if self.duplicate_sim_seeds:
            shown = ", ".join(str(s) for s in self.duplicate_sim_seeds[:8])
            more = "" if len(self.duplicate_sim_seeds) <= 8 else f" (+{len(self.duplicate_sim_seeds) - 8} more)"
            # A seed replays bit for bit, so two machines collecting the same seeds with the same config record
            # the same episodes twice: worth saying, not worth refusing (configs may differ between machines).
            lines.append(f"warning    simulated episodes recorded more than once with seeds {shown}{more}: give "
                         "each machine its own seed range (collect seed=...)")
        return lines


def _same_location(a: str, b: str) -> bool:
    from robodream.datasets import layout

    if layout.is_url(a) or layout.is_url(b):
        return str(a).rstrip("/") == str(b).rstrip("/")
    return layout.local_path(a).resolve() == layout.local_path(b).resolve()


def _duplicate_sim_seeds(stores: list) -> list[int]:
    """Seeds of simulated episodes that occur more than once across the stores (and within each); read before
    writing, so that an appended-to store counts as it was."""
    import numpy as np

    seen: set[int] = set()
    duplicates: set[int] = set()
    for store in stores:
        sources, seeds = store.meta("episode_source"), store.meta("episode_seed")
        for seed in np.asarray(seeds)[np.asarray(sources) == "sim"].tolist():
            (duplicates if seed in seen else seen).add(int(seed))
    return sorted(duplicates)


def merge(cfg: MergeConfig) -> MergeSummary:
    """Join `cfg.stores` into `cfg.out` with a progress bar; returns what was merged."""
    from tqdm import tqdm

    from robodream.datasets import layout
    from robodream.datasets.merge import check_compatible, merge_stores
    from robodream.datasets.outputs import check_output
    from robodream.datasets.reader import EpisodeStore

    if not cfg.stores:
        raise RobodreamError("nothing to merge: name the stores, e.g. robodream merge a.zarr b.zarr out=all.zarr")
    if cfg.out is None:
        raise RobodreamError("merge needs out=<store> (a path or fsspec URL) to write the merged store to")
    # The output rule (datasets/outputs.py), checked before anything is read: an existing out= that is not an
    # episode store is refused even with overwrite=true; a store is replaced or added to only when asked.
    hint = "pass append=true to add the episodes to it, or overwrite=true to replace it"
    if layout.is_url(cfg.out):
        if layout.store_exists(cfg.out) and not (cfg.append or cfg.overwrite):
            raise RobodreamError(f"{cfg.out} already exists: {hint}")
    else:
        check_output(cfg.out, overwrite=cfg.append or cfg.overwrite, hint=hint)
    # Check everything before writing anything, so an incompatible store leaves out= untouched.
    stores = [EpisodeStore.open(s, cache="disk") for s in cfg.stores]
    for other in stores[1:]:
        check_compatible(stores[0], other)
    existing = EpisodeStore.open(cfg.out, cache="disk") if cfg.append and layout.store_exists(cfg.out) else None
    if existing is not None:
        check_compatible(existing, stores[0])
    duplicates = _duplicate_sim_seeds([existing, *stores] if existing is not None else stores)
    total = sum(s.num_episodes for s in stores)
    started = time.monotonic()
    with tqdm(total=total, desc="merge", unit="ep", disable=not cfg.progress, dynamic_ncols=True,
              file=sys.stderr) as bar:
        report = merge_stores(cfg.stores, cfg.out, overwrite=cfg.overwrite, append=cfg.append, progress=bar.update,
                              mixed_tasks=cfg.mixed_tasks)
    return MergeSummary(out=str(cfg.out), stores=len(stores), episodes=report.episodes, frames=report.frames,
                        sources=report.sources, elapsed_s=time.monotonic() - started,
                        episodes_in_store=EpisodeStore.open(cfg.out, cache="disk").num_episodes,
                        duplicate_sim_seeds=duplicates, tasks=report.tasks)


def merge_stage(stores: list[str], out: str, slug: str, out_dir: Path) -> Stage:
    """A pipeline stage that merges `stores` into `out` (re-run when any input store changes)."""

    def run(previous: Previous) -> StageResult:
        summary = merge(MergeConfig(stores=stores, out=out, overwrite=True, progress=False))
        return StageResult(f"{summary.episodes_in_store} episodes", [("store", out)])

    return Stage(f"merge {' + '.join(Path(s).stem for s in stores)} -> {out}", slug, out_dir, {"out": Path(out).name},
                 run, inputs={f"store {i}": s for i, s in enumerate(stores)})
