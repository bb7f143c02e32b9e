"""The synthetic-data stages of `robodream run`: what the world model is for.

    train-probe (on the world model's store) -> generate (imagined rollouts, labelled by the probe, filtered by
    success) -> train-policy augmented (real + synthetic mix) -> eval augmented in PyBullet
    -> eval in imagination of the real-only and the augmented policy

Configured by the `probe:`, `generate:`, `augmented:` and `imagination:` sections of a pipeline config, each
with its own `enabled` flag. The augmented policy uses the `policy:` section's network, trainer and evaluation
seeds, so it differs from the real-only one in its training data alone, and the report compares the two in
sim and in imagination. Every stage is a `Stage` (stages.py): re-runs skip it while its config and inputs are
unchanged; a changed generate config re-runs generate and what reads the synthetic store, nothing upstream.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.pipeline.config import save_config
from robodream.pipeline.evaluate import EvalConfig
from robodream.pipeline.generate import GenerateConfig, GenerateFilterConfig
from robodream.pipeline.imagination import ImaginationConfig
from robodream.pipeline.policy_stage import (
    PolicyStageConfig,
    eval_stage,
    final_checkpoint,
    train_and_eval_stages,
)
from robodream.pipeline.probe import TrainProbeConfig
from robodream.pipeline.rank_stage import RankStageConfig, rank_stage
from robodream.pipeline.stages import Previous, Stage, StageResult, hashed, stage_dir
from robodream.pipeline.world_model_stage import train_probe_stage
from robodream.robots.sim.env import EnvConfig
from robodream.trainer import TrainerConfig, device_count
from robodream.world_models.probe import ProbeConfig


def _demo_probe_trainer() -> TrainerConfig:
    return TrainerConfig(max_steps=200, batch_size=32, learning_rate=1e-3, warmup_steps=20, val_every_steps=100,
                         checkpoint_every_steps=100, ema_decay=0.99, progress_bar=False)


@dataclass
class ProbeStageConfig:
    """train-probe on the store the world model trained on (the probe must read the world model's frames)."""

    enabled: bool = True
    out: str = "probe"  # relative to the pipeline's out: probe/model, probe/metrics.json
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(channels=[16, 32, 64], hidden=64))
    trainer: TrainerConfig = field(default_factory=_demo_probe_trainer)
    val_fraction: float = 0.2


@dataclass
class GenerateStageConfig:
    """generate: the keys of `robodream generate` (GenerateConfig) that the pipeline does not fill in itself."""

    enabled: bool = runtime(True)
    out: str = "data/synthetic.zarr"  # relative to the pipeline's out
    source: str = "demo-actions"  # or "policy": the real-only policy acts in imagination
    rollouts: int = 8
    horizon: int = 40
    noise: float = 0.1
    seed: int = 0
    batch_size: int = 8
    stop_at_success: bool = True
    filter: GenerateFilterConfig = field(default_factory=lambda: GenerateFilterConfig(success_only=True))
    accelerator: str = runtime("auto")
    devices: str = runtime("1")  # more than one: generate runs as its own process, which Lightning's launcher re-runs
    strategy: str = "auto"
    progress: bool = runtime(True)


@dataclass
class AugmentedPolicyStageConfig:
    """train-policy on real + synthetic windows, with the `policy:` section's network, trainer and eval."""

    enabled: bool = True
    out: str = "policy_augmented"  # relative to the pipeline's out
    real_weight: float = 0.5  # share of training windows drawn from the real store; the rest are synthetic

    def __post_init__(self) -> None:
        if not 0 < self.real_weight < 1:
            raise RobodreamError(f"augmented.real_weight must be in (0, 1), got {self.real_weight}: the share of "
                                 "real windows next to synthetic ones")


@dataclass
class ImaginationEvalStageConfig:
    """eval env=world_model of each trained policy, on the `policy.eval` seeds (so sim and imagination pair up)."""

    enabled: bool = runtime(True)
    episodes: int | None = None  # None: policy.eval.episodes
    max_steps: int | None = None  # stop imagined episodes early (None: the task's limit)
    success_threshold: float = 0.5
    success_radius: float | None = None  # also a success: the probe's cube this close (m) to the goal
    num_sampling_steps: int | None = None  # None: the world model's own
    workers: int = runtime(2)
    videos: int = 1


@dataclass
class SyntheticSections:
    """The pipeline config's sections these stages read (grouped so run.py passes them in one go)."""

    probe: ProbeStageConfig
    generate: GenerateStageConfig
    augmented: AugmentedPolicyStageConfig
    imagination: ImaginationEvalStageConfig
    rank: RankStageConfig = field(default_factory=RankStageConfig)


def _require(flag: bool, stage: str, needs: str) -> None:
    if not flag:
        raise RobodreamError(f"{stage} is enabled but needs {needs}: enable it too, or set {stage}.enabled=false")


def synthetic_stages(s: SyntheticSections, world_model: tuple[str, Path, str] | None,
                     policy: PolicyStageConfig | None, stores: dict[str, tuple[str, EnvConfig]],
                     run_dir: Path) -> list[Stage]:
    """The enabled stages, in order. `world_model` is (task, world-model run dir, the store it trained on) when
    train-wm is part of the pipeline, `policy` the real-only policy section when it is; `stores` maps task ->
    (demo store, env). The probe learns from the world model's store (it reads the model's frames, play data
    included); generation starts from the demo store's episodes."""
    wanted = [s.probe.enabled, s.generate.enabled, s.augmented.enabled, s.imagination.enabled, s.rank.enabled]
    if not any(wanted):
        return []
    _require(world_model is not None, "probe/generate/augmented/imagination/rank", "world_model (train-wm)")
    task, wm_dir, wm_store = world_model
    store, env = stores[task]
    for name in ("generate", "imagination", "rank"):
        if getattr(s, name).enabled:
            _require(s.probe.enabled, name, "probe (train-probe)")
    if s.augmented.enabled:
        _require(s.generate.enabled, "augmented", "generate (the synthetic store)")
    if s.augmented.enabled or s.imagination.enabled or s.rank.enabled or s.generate.source == "policy":
        _require(policy is not None, "augmented/imagination/rank/generate.source=policy",
                 "policy (the real-only policy)")
        if policy.task != task:
            raise RobodreamError(f"policy.task={policy.task!r} but the world model learns {task!r}: synthetic data "
                                 "and imagination come from the world model, so train both on the same task")
    probe_dir = stage_dir(s.probe.out, run_dir)
    synth = str(stage_dir(s.generate.out, run_dir))
    stages = [_probe_stage(s.probe, task, wm_store, probe_dir)] if s.probe.enabled else []
    if s.generate.enabled:
        acting = final_checkpoint(policy, stage_dir(policy.out, run_dir)) if s.generate.source == "policy" else None
        stages.append(_generate_stage(s.generate, store, wm_dir, probe_dir, acting, synth))
    policies = [(policy, stage_dir(policy.out, run_dir), "")] if policy is not None else []
    if s.augmented.enabled:
        w = s.augmented.real_weight
        out = stage_dir(s.augmented.out, run_dir)
        stages += train_and_eval_stages(policy, f"{store}:{w},{synth}:{1 - w}", {"store": store, "synthetic": synth},
                                        env, out, variant="augmented", mix={"real": w, "synthetic": 1 - w},
                                        on=f"{policy.task} + synthetic")
        policies.append((policy, out, "augmented"))
    if s.imagination.enabled:
        stages += [_imagination_stage(s.imagination, cfg, out, variant, env, wm_dir, probe_dir)
                   for cfg, out, variant in policies]
    if s.rank.enabled:
        # The imagination section's probe threshold and sampler, so both stages agree on what success is.
        stages.append(rank_stage(s.rank, policy, [out for _, out, _ in policies], env,
                                 _imagination(s.imagination, wm_dir, probe_dir), run_dir))
    return stages


def _probe_stage(cfg: ProbeStageConfig, task: str, store: str, out: Path) -> Stage:
    train_cfg = TrainProbeConfig(data=store, out=str(out), probe=cfg.probe,
                                 trainer=cfg.trainer.on_one_device("train-probe"), val_fraction=cfg.val_fraction)
    return train_probe_stage(train_cfg, "train-probe", f"train-probe on {task}: {cfg.trainer.max_steps} steps -> {out}",
                             extra={"task": task})


def _generate_stage(cfg: GenerateStageConfig, store: str, wm_dir: Path, probe_dir: Path, policy: Path | None,
                    synth: str) -> Stage:
    keys = ("source", "rollouts", "horizon", "noise", "seed", "batch_size", "stop_at_success", "filter",
            "accelerator", "devices", "strategy", "progress")
    generate_cfg = GenerateConfig(wm=str(wm_dir / "model"), probe=str(probe_dir / "model"), data=store,
                                  policy=str(policy) if policy else None, out=synth, overwrite=True,
                                  **{k: getattr(cfg, k) for k in keys})
    inputs = {"store": store, "world_model": str(wm_dir / "model"), "probe": str(probe_dir / "model"),
              **({"policy": str(policy)} if policy else {})}
    return generate_stage(generate_cfg, "generate", f"generate: {cfg.rollouts} rollouts of {cfg.horizon} steps "
                          f"({cfg.source}) -> {synth}", inputs, extra={"out": cfg.out})


def generate_stage(cfg: GenerateConfig, slug: str, name: str, inputs: dict[str, str], extra: dict | None = None,
                   summary: Path | None = None) -> Stage:
    """generate as a stage: `cfg` is the command's config (its world model, probe, policy and real store are
    locations, hashed through `inputs`; `extra` adds keys such as `out` as the user wrote it). With `summary`
    (experiment augment), the counts and the store go to that generate.json, and "every rollout was filtered
    out" is a result (no store) rather than an error. Where the work runs never changes the rollouts."""

    def run(previous: Previous) -> StageResult:
        if summary is not None:
            record = _generate_recorded(cfg, summary)
            return StageResult(f"{record['kept']}/{record['generated']} rollouts kept", [("generate", str(summary))])
        summary_lines = _generate(cfg)
        print("\n".join("      " + line for line in summary_lines))
        counts = next((line.split(None, 1)[1] for line in summary_lines if line.startswith("rollouts")), "")
        return StageResult(counts, [("stores", cfg.out)])

    folder = summary.parent if summary is not None else Path(cfg.out).parent
    return Stage(name, slug, folder, hashed(cfg) | (extra or {}), run, inputs=inputs)


def _generate(cfg: GenerateConfig) -> list[str]:
    from robodream.pipeline.generate import generate

    count = device_count(cfg.devices)
    if count is None or count > 1:  # maybe several (auto, -1): DDP must not re-run the whole pipeline
        return _generate_in_subprocess(cfg, Path(cfg.out).parent)
    return generate(cfg).lines()


def _generate_recorded(cfg: GenerateConfig, summary: Path) -> dict:
    from robodream.datasets.outputs import remove_store
    from robodream.pipeline.generate import generate
    from robodream.pipeline.stages import fingerprint

    remove_store(cfg.out)  # a store from an earlier attempt must not survive a run that keeps nothing
    try:
        result = generate(cfg)
        record = {"generated": result.generated, "kept": result.kept, "store": cfg.out,
                  "fingerprint": fingerprint(cfg.out)}
    except RobodreamError as exc:
        # generate refuses to write an empty store; for an experiment "nothing passed the filter" is a result
        if "filtered out" not in str(exc):
            raise
        record = {"generated": cfg.rollouts, "kept": 0, "store": None, "fingerprint": None}
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps(record, indent=2))
    return record


def _generate_in_subprocess(cfg: GenerateConfig, folder: Path) -> list[str]:
    """`robodream generate` in a process of its own: Lightning's DDP launcher starts the other devices' processes
    by re-running the current command line, which must be this one stage, not the whole pipeline."""
    config = save_config(cfg, folder / "generate.config.yaml")
    result = subprocess.run([sys.executable, "-m", "robodream.pipeline.cli", "generate", str(config)],
                            stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise RobodreamError(f"generate on {cfg.devices} devices failed (exit {result.returncode}); its config "
                             f"is {config}, run `robodream generate {config}` to see why")
    return [line for line in result.stdout.splitlines() if line.split(" ", 1)[0] in
            ("store", "rollouts", "probe", "time")]


def _imagination(cfg: ImaginationEvalStageConfig, wm_dir: Path, probe_dir: Path) -> ImaginationConfig:
    """The pipeline's world model and probe, with the imagination section's success threshold and sampler."""
    return ImaginationConfig(wm=str(wm_dir / "model"), probe=str(probe_dir / "model"),
                             success_threshold=cfg.success_threshold, success_radius=cfg.success_radius,
                             num_sampling_steps=cfg.num_sampling_steps)


def _imagination_stage(cfg: ImaginationEvalStageConfig, policy: PolicyStageConfig, out: Path, variant: str,
                       env: EnvConfig, wm_dir: Path, probe_dir: Path) -> Stage:
    final = final_checkpoint(policy, out)
    episodes, seed = cfg.episodes or policy.eval.episodes, policy.eval.seed
    eval_out = out / "eval" / f"{final.name}_{policy.task}_imagined_seed{seed}"
    eval_cfg = EvalConfig(policy=str(final), task=policy.task, episodes=episodes, seed=seed, workers=cfg.workers,
                          videos=cfg.videos, out=str(eval_out), env=env, max_steps=cfg.max_steps, imagine=True,
                          imagination=_imagination(cfg, wm_dir, probe_dir))
    which = f"{variant} " if variant else ""
    return eval_stage(eval_cfg, f"eval-imagined{'-' + variant if variant else ''}",
                      f"eval in imagination {which}{final.name} on {policy.task}: {episodes} episodes from seed "
                      f"{seed} -> {eval_out}", note=" (probe)",
                      inputs={"policy": str(final), "world_model": str(wm_dir / "model"),
                              "probe": str(probe_dir / "model")})
