"""`robodream run configs/pipeline/<name>.yaml`: the pipeline's stages in order, on one config.

Stages, each built by its stage folder and added here when its section is `enabled`:
collect (one store per listed task; data/) -> viz -> [collect the world model's task again with the executed
actions, when its demos carry clean DART labels] -> [collect play + merge with the demos, when `play.episodes`:
the world model's and the probe's data only] -> train-wm -> dream + eval-wm (world_model/) -> train-policy -> eval
(policy/) -> train-probe (world_model/) -> generate (synthetic/) -> train-policy augmented -> eval augmented ->
[train-policy synthetic -> eval synthetic: imagined frames only, when `synthetic_only.enabled`] ->
eval in imagination of the real-only and augmented policies (policy/) -> rank: sim vs imagined success of the
checkpoints and a noisy expert (experiments/builders.py) -> report (report/).
Each stage is a `Stage` (stages.py) whose output directory records its resolved config and the hash of its
inputs, so re-running a pipeline skips every stage whose config and upstream outputs are unchanged and re-runs
the ones downstream of a change. `<out>/run.json` lists the stages and the command, for `robodream report`.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from robodream.errors import RobodreamError
from robodream.pipeline.config import save_config
from robodream.pipeline.data.builders import collect_stage
from robodream.pipeline.data.collect import CollectConfig, PlayDataConfig, world_model_demos
from robodream.pipeline.data.merge import merge_stage
from robodream.pipeline.experiments.builders import RankStageConfig, rank_stage
from robodream.pipeline.policy.builders import (
    AugmentedPolicyStageConfig,
    ImaginationEvalStageConfig,
    PolicyStageConfig,
    SyntheticOnlyPolicyStageConfig,
    final_checkpoint,
    imagination_config,
    imagination_eval_stage,
    policy_stages,
    train_and_eval_stages,
)
from robodream.pipeline.stages import Previous, Stage, StageResult, run_stages, stage_dir, stage_store
from robodream.pipeline.synthetic.builders import GenerateStageConfig, generate_section_stage
from robodream.pipeline.world_model.builders import (
    ProbeStageConfig,
    WorldModelStageConfig,
    pipeline_probe_stage,
    world_model_stages,
)
from robodream.robots.sim.env import EnvConfig


def _default_collect() -> list[CollectConfig]:
    return [CollectConfig(task="push_cube", episodes=20), CollectConfig(task="pick_place", episodes=20)]


@dataclass
class VizStageConfig:
    episodes: int = 4  # the first N episodes of each store
    scale: int = 4


@dataclass
class ReportStageConfig:
    enabled: bool = True
    out: str = "report"  # relative to the pipeline's out: report.html (self-contained) and report.md


@dataclass
class PipelineConfig:
    name: str = "quickstart"
    out: str = "runs/quickstart"  # every output of the run goes under this directory
    collect: list[CollectConfig] = field(default_factory=_default_collect)
    viz: VizStageConfig = field(default_factory=VizStageConfig)
    #: play data for the world model (and the probe) only, recorded for `world_model.task` and merged with
    #: its demos; the policies never see it
    play: PlayDataConfig = field(default_factory=PlayDataConfig)
    world_model: WorldModelStageConfig = field(default_factory=WorldModelStageConfig)
    policy: PolicyStageConfig = field(default_factory=PolicyStageConfig)
    probe: ProbeStageConfig = field(default_factory=ProbeStageConfig)
    generate: GenerateStageConfig = field(default_factory=GenerateStageConfig)
    augmented: AugmentedPolicyStageConfig = field(default_factory=AugmentedPolicyStageConfig)
    synthetic_only: SyntheticOnlyPolicyStageConfig = field(default_factory=SyntheticOnlyPolicyStageConfig)
    imagination: ImaginationEvalStageConfig = field(default_factory=ImaginationEvalStageConfig)
    rank: RankStageConfig = field(default_factory=RankStageConfig)
    report: ReportStageConfig = field(default_factory=ReportStageConfig)

    def __post_init__(self) -> None:
        if not self.collect:
            raise RobodreamError("the pipeline's collect list is empty: name at least one task to record")


def _viz_stage(cfg: VizStageConfig, stores: list[str], run_dir: Path) -> Stage:
    def run(previous: Previous) -> StageResult:
        from robodream.datasets.reader import EpisodeStore
        from robodream.pipeline.data.info import describe_store
        from robodream.pipeline.data.viz import visualize

        outputs = []
        for location in stores:
            store = EpisodeStore.open(location, cache="disk")
            selection = f"0-{min(store.num_episodes, cfg.episodes) - 1}"
            viz = visualize(location, episodes=selection, out_dir=str(run_dir / "viz"), scale=cfg.scale)
            outputs += [("videos", str(viz.mp4)), ("videos", str(viz.gif))]
            print("\n".join("      " + line for line in describe_store(store)[:6]))
        return StageResult(f"{len(stores)} stores", outputs)

    return Stage(f"viz: the first {cfg.episodes} episodes of each store", "viz", run_dir / "viz", cfg, run,
                 inputs={f"store {i}": s for i, s in enumerate(stores)})


def _report_stage(cfg: ReportStageConfig, earlier: list[Stage], run_dir: Path, command: str) -> Stage:
    out = stage_dir(cfg.out, run_dir)

    def run(previous: Previous) -> StageResult:
        from robodream.pipeline.report.build import write_report

        html, markdown = write_report(run_dir, out)
        return StageResult(f"open {html}", [("report", str(html)), ("report", str(markdown))])

    # The earlier stages' stamps change exactly when those stages run again (new timings, new outputs).
    inputs = {stage.slug: str(stage.stamp_path) for stage in earlier}
    return Stage("report", "report", out, {"command": command, "out": cfg.out}, run, inputs=inputs)


def _world_model_data(cfg: PipelineConfig, demo_store: str, run_dir: Path) -> tuple[list[Stage], str, str]:
    """The world model's data: its task's demos with the executed actions (recorded a second time when the demos
    carry clean DART labels, pipeline/data/collect.py: world_model_demos), merged with play data when
    `play.episodes` (the world model's task, failures kept). Returns the stages, the demo store the world model
    sees (generation starts from its episodes and actions) and the store the world model and the probe train on."""
    task = cfg.world_model.task
    demos = next(c for c in cfg.collect if c.task == task)
    stages = []
    executed = world_model_demos(demos, f"data/{task}_executed.zarr")
    if executed is not None:
        demo_store = stage_store(executed.out, run_dir)
        stages.append(collect_stage(executed, run_dir, name=f"{task}-executed"))
    if not cfg.play.episodes:
        return stages, demo_store, demo_store
    play = cfg.play.collect_config(demos, f"data/{task}_play.zarr")
    merged = str(run_dir / "data" / f"{task}+play.zarr")
    return stages + [collect_stage(play, run_dir, name=f"{task}-play"),
                     merge_stage([demo_store, stage_store(play.out, run_dir)], merged, f"merge-{task}+play",
                                 run_dir / "data")], demo_store, merged


def _require(flag: bool, stage: str, needs: str) -> None:
    if not flag:
        raise RobodreamError(f"{stage} is enabled but needs {needs}: enable it too, or set {stage}.enabled=false")


def _synthetic_stages(s: PipelineConfig, world_model: tuple[str, Path, str] | None,
                      policy: PolicyStageConfig | None, stores: dict[str, tuple[str, EnvConfig]],
                      run_dir: Path) -> list[Stage]:
    """The synthetic-data, imagination and rank stages that are enabled, in order. `world_model` is (task,
    world-model run dir, the store it trained on, its demo store) when train-wm is part of the pipeline, `policy`
    the real-only policy section when it is; `stores` maps task -> (demo store, env). The probe learns from the
    world model's store (it reads the model's frames, play data included); generation starts from the world
    model's demo store (the demos' episodes with the actions that were executed)."""
    wanted = [s.probe.enabled, s.generate.enabled, s.augmented.enabled, s.synthetic_only.enabled,
              s.imagination.enabled, s.rank.enabled]
    if not any(wanted):
        return []
    _require(world_model is not None, "probe/generate/augmented/imagination/rank", "world_model (train-wm)")
    task, wm_dir, wm_store, wm_demos = world_model
    store, env = stores[task]
    for name in ("generate", "imagination", "rank"):
        if getattr(s, name).enabled:
            _require(s.probe.enabled, name, "probe (train-probe)")
    for name in ("augmented", "synthetic_only"):
        if getattr(s, name).enabled:
            _require(s.generate.enabled, name, "generate (the synthetic store)")
    if (s.augmented.enabled or s.synthetic_only.enabled or s.imagination.enabled or s.rank.enabled
            or s.generate.source == "policy"):
        _require(policy is not None, "augmented/synthetic_only/imagination/rank/generate.source=policy",
                 "policy (the real-only policy and its recipe)")
        if policy.task != task:
            raise RobodreamError(f"policy.task={policy.task!r} but the world model learns {task!r}: synthetic data "
                                 "and imagination come from the world model, so train both on the same task")
    probe_dir = stage_dir(s.probe.out, run_dir)
    synth = str(stage_dir(s.generate.out, run_dir))
    stages = [pipeline_probe_stage(s.probe, task, wm_store, probe_dir)] if s.probe.enabled else []
    if s.generate.enabled:
        acting = final_checkpoint(policy, stage_dir(policy.out, run_dir)) if s.generate.source == "policy" else None
        stages.append(generate_section_stage(s.generate, wm_demos, wm_dir, probe_dir, acting, synth))
    policies = [(policy, stage_dir(policy.out, run_dir), "")] if policy is not None else []
    if s.augmented.enabled:
        w = s.augmented.real_weight
        out = stage_dir(s.augmented.out, run_dir)
        stages += train_and_eval_stages(policy, f"{store}:{w},{synth}:{1 - w}", {"store": store, "synthetic": synth},
                                        env, out, variant="augmented", mix={"real": w, "synthetic": 1 - w},
                                        on=f"{policy.task} + synthetic")
        policies.append((policy, out, "augmented"))
    if s.synthetic_only.enabled:  # evaluated in PyBullet only: the third arm of the augmentation comparison
        stages += train_and_eval_stages(policy, [{"path": synth, "weight": 1.0, "imagined_only": True}],
                                        {"synthetic": synth}, env, stage_dir(s.synthetic_only.out, run_dir),
                                        variant="synthetic", mix={"synthetic": 1.0, "imagined_only": True},
                                        on="imagined frames only")
    if s.imagination.enabled:
        stages += [imagination_eval_stage(s.imagination, cfg, out, variant, env, wm_dir, probe_dir)
                   for cfg, out, variant in policies]
    if s.rank.enabled:
        # The imagination section's probe threshold and sampler, so both stages agree on what success is.
        stages.append(rank_stage(s.rank, policy, [out for _, out, _ in policies], env,
                                 imagination_config(s.imagination, wm_dir, probe_dir), run_dir))
    return stages


def plan(cfg: PipelineConfig, command: str) -> list[Stage]:
    """The pipeline's stages in order (nothing runs yet)."""
    run_dir = Path(cfg.out)
    stages = [collect_stage(c, run_dir) for c in cfg.collect]
    store_paths = [stage_store(c.out, run_dir) for c in cfg.collect]
    stages.append(_viz_stage(cfg.viz, store_paths, run_dir))
    stores = {c.task: path for c, path in zip(cfg.collect, store_paths, strict=True)}
    world_model = None
    if cfg.world_model.enabled:
        task = cfg.world_model.task
        if task not in stores:
            raise RobodreamError(f"world_model.task={task!r} but the pipeline collects only {sorted(stores)}")
        data_stages, wm_demos, wm_store = _world_model_data(cfg, stores[task], run_dir)
        stages += data_stages
        stages += world_model_stages(cfg.world_model, wm_store, run_dir)
        world_model = (task, stage_dir(cfg.world_model.out, run_dir), wm_store, wm_demos)
    elif cfg.play.episodes:
        raise RobodreamError("play.episodes > 0 but world_model.enabled=false: play data is for the world model only")
    envs = {c.task: (path, c.env) for c, path in zip(cfg.collect, store_paths, strict=True)}
    if cfg.policy.enabled:
        stages += policy_stages(cfg.policy, envs, run_dir)
    stages += _synthetic_stages(cfg, world_model, cfg.policy if cfg.policy.enabled else None, envs, run_dir)
    if cfg.report.enabled:
        stages.append(_report_stage(cfg.report, list(stages), run_dir, command))
    return stages


def run_pipeline(cfg: PipelineConfig, command: str | None = None) -> dict[str, list[Path]]:
    """Run every stage whose inputs changed; returns the outputs per kind. Prints progress as it goes."""
    from robodream.datasets.outputs import check_folder

    out = Path(cfg.out)
    check_folder(out, ("run.json", "config.yaml"), "a pipeline run directory")  # never over a user's own files
    command = command or "robodream " + shlex.join(sys.argv[1:])
    save_config(cfg, out / "config.yaml")
    stages = plan(cfg, command)
    index = {"name": cfg.name, "command": command, "config": "config.yaml",
             "stages": [{"name": s.name, "slug": s.slug, "stamp": str(s.stamp_path.relative_to(out))
                         if s.stamp_path.is_relative_to(out) else str(s.stamp_path)} for s in stages]}
    (out / "run.json").write_text(json.dumps(index, indent=2))
    outputs: dict[str, list[Path]] = {"config": [out / "config.yaml"]}
    for outcome in run_stages(stages, lambda line: print(line, flush=True)):
        for kind, path in outcome.outputs:
            outputs.setdefault(kind, []).append(Path(path))
    return outputs
