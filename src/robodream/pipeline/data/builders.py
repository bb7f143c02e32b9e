"""The collect stage, as `robodream run` and `experiment augment` build it: record one episode store.

The store path (`out`) is hashed as written in the config, relative to the run directory, so a stage hash does
not depend on where the run lives; the other runtime-only keys of CollectConfig (workers, executor, Ray,
resume/overwrite) stay out of the hash (config_fields.runtime).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from robodream.errors import RobodreamError
from robodream.pipeline.data.collect import CollectConfig
from robodream.pipeline.stages import Previous, Stage, StageResult, hashed, stage_store


def collect_stage(cfg: CollectConfig, run_dir: Path, name: str | None = None, progress: bool = True) -> Stage:
    """Record `cfg.episodes` episodes into `stage_store(cfg.out, run_dir)`; the stamp lives in `<run_dir>/data`."""
    store = stage_store(cfg.out, run_dir)
    config = hashed(cfg) | {"out": cfg.out}  # as written, so the hash does not depend on the run's location
    cfg = replace(cfg, out=store, resume=False, overwrite=False)
    name = name or cfg.task

    def run(previous: Previous) -> StageResult:
        from robodream.datasets import layout
        from robodream.datasets.reader import EpisodeStore
        from robodream.pipeline.data.collect import collect

        old = (previous.stamp or {}).get("config")
        # Appending is only right when nothing but the episode count grew (or an attempt at this very config
        # was interrupted); a store recorded with other settings is re-recorded. A store without a stamp (made
        # before stages were hashed, or outside this run) is resumed: collect itself refuses it if its env/expert
        # config differs.
        grown = old is not None and old.get("episodes", 0) <= cfg.episodes and \
            {k: v for k, v in old.items() if k != "episodes"} == {k: v for k, v in config.items() if k != "episodes"}
        resume = layout.store_exists(store) and (previous.interrupted or grown or previous.stamp is None)
        if resume and EpisodeStore.open(store, cache="disk").num_episodes > cfg.episodes:
            raise RobodreamError(f"{store} holds more than {cfg.episodes} episodes: delete it to record it again")
        summary = collect(replace(cfg, resume=resume, overwrite=not resume), progress=progress)
        if summary.episodes_in_store < cfg.episodes:
            raise RobodreamError(f"collect {name} stopped early: {summary.stopped}")
        note = f"{summary.new_episodes} new episodes, expert success {summary.success_rate:.0%}"
        return StageResult(note, [("stores", store)])

    return Stage(f"collect {name}: {cfg.episodes} episodes, {cfg.workers} workers -> {store}",
                 f"collect-{name}", run_dir / "data", config, run)
