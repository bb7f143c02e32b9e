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

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from robodream.errors import RobodreamError
from robodream.pipeline.config import save_config, to_dict
from robodream.pipeline.generate import GenerateConfig, GenerateFilterConfig
from robodream.pipeline.imagination import ImaginationConfig
from robodream.pipeline.policy_stage import PolicyStageConfig, final_checkpoint, train_and_eval_stages
from robodream.pipeline.rank_stage import RankStageConfig, rank_stage
from robodream.pipeline.stages import Previous, Stage, StageResult, stage_dir
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

    enabled: bool = True
    out: str = "data/synthetic.zarr"  # relative to the pipeline's out
    source: str = "demo-actions"  # or "policy": the real-only policy acts in imagination
    rollouts: int = 8
    horizon: int = 40
    noise: float = 0.1
    seed: int = 0
    batch_size: int = 8
    stop_at_success: bool = True
    filter: GenerateFilterConfig = field(default_factory=lambda: GenerateFilterConfig(success_only=True))
    accelerator: str = "auto"
    devices: str = "1"  # more than one: generate runs as its own process, which Lightning's launcher re-runs
    strategy: str = "auto"
    progress: bool = True


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

    enabled: bool = True
    episodes: int | None = None  # None: policy.eval.episodes
    max_steps: int | None = None  # stop imagined episodes early (None: the task's limit)
    success_threshold: float = 0.5
    success_radius: float | None = None  # also a success: the probe's cube this close (m) to the goal
    num_sampling_steps: int | None = None  # None: the world model's own
    workers: int = 2
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
    trainer = {k: v for k, v in to_dict(cfg.trainer).items() if k != "progress_bar"}
    config = {"task": task, "probe": to_dict(cfg.probe), "trainer": trainer, "val_fraction": cfg.val_fraction}
    one_device = cfg.trainer.on_one_device("train-probe")

    def run(previous: Previous) -> StageResult:
        from robodream.pipeline.probe import TrainProbeConfig, metrics_lines, train_probe_command

        model, metrics = train_probe_command(TrainProbeConfig(data=store, out=str(out), probe=cfg.probe,
                                                              trainer=one_device, val_fraction=cfg.val_fraction,
                                                              overwrite=True))
        print("\n".join("      " + line for line in metrics_lines(metrics)))
        return StageResult(f"success recall {metrics['success_recall']:.2f}",
                           [("probe", str(model)), ("metrics", str(out / "metrics.json"))])

    return Stage(f"train-probe on {task}: {cfg.trainer.max_steps} steps -> {out}", "train-probe", out, config, run,
                 inputs={"store": store})


def _generate_stage(cfg: GenerateStageConfig, store: str, wm_dir: Path, probe_dir: Path, policy: Path | None,
                    synth: str) -> Stage:
    keys = ("source", "rollouts", "horizon", "noise", "seed", "batch_size", "stop_at_success", "filter",
            "accelerator", "devices", "strategy", "progress")
    generate_cfg = GenerateConfig(wm=str(wm_dir / "model"), probe=str(probe_dir / "model"), data=store,
                                  policy=str(policy) if policy else None, out=synth, overwrite=True,
                                  **{k: getattr(cfg, k) for k in keys})
    inputs = {"store": store, "world_model": str(wm_dir / "model"), "probe": str(probe_dir / "model"),
              **({"policy": str(policy)} if policy else {})}

    def run(previous: Previous) -> StageResult:
        from robodream.pipeline.generate import generate

        count = device_count(cfg.devices)
        if count is None or count > 1:  # maybe several (auto, -1): DDP must not re-run the whole pipeline
            summary_lines = _generate_in_subprocess(generate_cfg, Path(synth).parent)
        else:
            summary = generate(generate_cfg)
            summary_lines = summary.lines()
        print("\n".join("      " + line for line in summary_lines))
        counts = next((line.split(None, 1)[1] for line in summary_lines if line.startswith("rollouts")), "")
        return StageResult(counts, [("stores", synth)])

    # Where the work runs (and whether a bar shows it) does not change the rollouts' seeds or the filters.
    return Stage(f"generate: {cfg.rollouts} rollouts of {cfg.horizon} steps ({cfg.source}) -> {synth}", "generate",
                 Path(synth).parent, cfg, run, inputs=inputs, ignore=("accelerator", "devices", "progress"))


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
    imagination = _imagination(cfg, wm_dir, probe_dir)

    def run(previous: Previous) -> StageResult:
        from robodream.pipeline.evaluate import EvalConfig, run_evaluation

        [result] = run_evaluation(EvalConfig(policy=str(final), task=policy.task, episodes=episodes, seed=seed,
                                             workers=cfg.workers, videos=cfg.videos, out=str(eval_out), env=env,
                                             max_steps=cfg.max_steps, imagine=True, imagination=imagination))
        print(f"      eval_info {eval_out / 'eval_info.json'}")
        videos = [("videos", str(p)) for p in sorted(eval_out.glob("eval_episode_*.mp4"))]
        return StageResult(f"success {result.pc_success:.0f}% (probe)",
                           [("eval", str(eval_out / "eval_info.json")), *videos])

    # Episodes are seeded and imagined with the world model's seeded sampler: workers do not change results.
    config = {**{k: v for k, v in to_dict(cfg).items() if k not in ("enabled", "workers")}, "episodes": episodes,
              "seed": seed, "task": policy.task, "env": to_dict(env)}
    which = f"{variant} " if variant else ""
    return Stage(f"eval in imagination {which}{final.name} on {policy.task}: {episodes} episodes from seed {seed} "
                 f"-> {eval_out}", f"eval-imagined{'-' + variant if variant else ''}", eval_out, config, run,
                 inputs={"policy": str(final), "world_model": str(wm_dir / "model"),
                         "probe": str(probe_dir / "model")})
