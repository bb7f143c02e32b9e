"""`robodream run configs/pipeline/<name>.yaml`: the pipeline's stages in order, on one config.

Stages so far: collect (one store per listed task) -> info -> viz -> train-wm -> dream + eval-wm
(world_model_stage.py, when `world_model.enabled`) -> train-policy -> eval (policy_stage.py, when
`policy.enabled`). Later stages (generation, report) plug in here. Collection runs with resume=true, so
re-running a finished pipeline finds its stores complete and skips them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from robodream.datasets.reader import EpisodeStore
from robodream.errors import RobodreamError
from robodream.pipeline.collect import CollectConfig, collect
from robodream.pipeline.config import save_config
from robodream.pipeline.info import describe_store
from robodream.pipeline.policy_stage import PolicyStageConfig, run_policy_stages
from robodream.pipeline.viz import visualize
from robodream.pipeline.world_model_stage import WorldModelStageConfig, run_world_model_stages


def _default_collect() -> list[CollectConfig]:
    return [CollectConfig(task="push_cube", episodes=20), CollectConfig(task="pick_place", episodes=20)]


@dataclass
class VizStageConfig:
    episodes: int = 4  # the first N episodes of each store
    scale: int = 4


@dataclass
class PipelineConfig:
    name: str = "quickstart"
    out: str = "runs/quickstart"  # every output of the run goes under this directory
    collect: list[CollectConfig] = field(default_factory=_default_collect)
    viz: VizStageConfig = field(default_factory=VizStageConfig)
    world_model: WorldModelStageConfig = field(default_factory=WorldModelStageConfig)
    policy: PolicyStageConfig = field(default_factory=PolicyStageConfig)

    def __post_init__(self) -> None:
        if not self.collect:
            raise RobodreamError("the pipeline's collect list is empty: name at least one task to record")


def run_pipeline(cfg: PipelineConfig) -> dict[str, list[Path]]:
    """Run every stage; returns the outputs per stage. Prints progress and where everything went."""
    out = Path(cfg.out)
    save_config(cfg, out / "config.yaml")
    outputs: dict[str, list[Path]] = {"config": [out / "config.yaml"], "stores": [], "videos": []}
    stages = len(cfg.collect) + 1 + (2 if cfg.world_model.enabled else 0) + (2 if cfg.policy.enabled else 0)
    for number, collect_cfg in enumerate(cfg.collect, start=1):
        # Relative store paths live under the run directory, so runs never share stores by accident.
        store_path = collect_cfg.out if "://" in collect_cfg.out else str(out / collect_cfg.out)
        collect_cfg = replace(collect_cfg, out=store_path, resume=True, overwrite=False)
        print(f"[{number}/{stages}] collect {collect_cfg.task}: {collect_cfg.episodes} episodes, "
              f"{collect_cfg.workers} workers -> {collect_cfg.out}", flush=True)
        started = time.monotonic()
        summary = collect(collect_cfg)
        if summary.stopped and summary.episodes_in_store < collect_cfg.episodes:
            raise RobodreamError(f"collect {collect_cfg.task} stopped early: {summary.stopped}")
        note = "already complete, skipped" if summary.new_episodes == 0 else \
            f"{summary.new_episodes} new episodes, expert success {summary.success_rate:.0%}"
        print(f"      {note} ({time.monotonic() - started:.1f} s)")
        outputs["stores"].append(Path(collect_cfg.out))
    print(f"[{len(cfg.collect) + 1}/{stages}] viz: the first {cfg.viz.episodes} episodes of each store", flush=True)
    for store_path in outputs["stores"]:
        store = EpisodeStore.open(store_path, cache="disk")
        selection = f"0-{min(store.num_episodes, cfg.viz.episodes) - 1}"
        viz = visualize(str(store_path), episodes=selection, out_dir=str(out / "viz"), scale=cfg.viz.scale)
        outputs["videos"] += [viz.mp4, viz.gif]
        print("\n".join("      " + line for line in describe_store(store)[:6]))
    number = len(cfg.collect) + 2
    if cfg.world_model.enabled:
        stores = {c.task: str(path) for c, path in zip(cfg.collect, outputs["stores"], strict=True)}
        for kind, paths in run_world_model_stages(cfg.world_model, stores, out, number, stages).items():
            outputs.setdefault(kind, []).extend(paths)
        number += 2
    if cfg.policy.enabled:
        stores = {c.task: (str(path), c.env) for c, path in zip(cfg.collect, outputs["stores"], strict=True)}
        for kind, paths in run_policy_stages(cfg.policy, stores, out, number, stages).items():
            outputs.setdefault(kind, []).extend(paths)
    return outputs
