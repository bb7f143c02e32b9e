"""The world-model stages of `robodream run`: train-wm on a collected store, then dream + eval-wm; and the
train-wm / train-probe stage builders that `robodream run` and `experiment augment` share.

Configured by the `world_model:` section of a pipeline config. configs/pipeline/quickstart.yaml trains the
tiny model for a few hundred steps on the push_cube store, writes real-vs-imagined videos of a few episodes
and the fidelity metrics. Both stages are `Stage`s (stages.py): re-running the pipeline skips them while their
config and input store are unchanged, and a retrained model re-runs dream + eval-wm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from robodream.pipeline.stages import Previous, Stage, StageResult, hashed, stage_dir
from robodream.pipeline.world_model.commands import TrainWorldModelConfig
from robodream.pipeline.world_model.probe import TrainProbeConfig
from robodream.trainer import TrainerConfig
from robodream.world_models.configuration import WorldModelConfig
from robodream.world_models.probe import ProbeConfig


def _demo_trainer(max_steps: int = 300, batch_size: int = 16) -> TrainerConfig:
    """The demo-size schedule of the pipeline's world model (and, shorter, its probe): validate and checkpoint
    twice."""
    return TrainerConfig(max_steps=max_steps, batch_size=batch_size, learning_rate=1e-3, warmup_steps=20,
                         val_every_steps=max_steps // 2, checkpoint_every_steps=max_steps // 2, ema_decay=0.99,
                         progress_bar=False)


@dataclass
class WorldModelStageConfig:
    enabled: bool = True
    task: str = "push_cube"  # train on the store the collect stage recorded for this task
    out: str = "world_model"  # relative to the pipeline's out
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    trainer: TrainerConfig = field(default_factory=_demo_trainer)
    val_fraction: float = 0.2
    dream_episodes: int = 4  # validation episodes shown real vs imagined
    eval_horizon: int = 16


def train_wm_stage(cfg: TrainWorldModelConfig, slug: str, name: str, extra: dict | None = None) -> Stage:
    """train-wm as a stage: `cfg` is the command's config (its data store is the input, its out the stage's
    folder); `extra` adds keys to the hash (the task). An interrupted attempt resumes from its last checkpoint."""
    out = Path(cfg.out)

    def train(previous: Previous) -> StageResult:
        from robodream.pipeline.world_model.commands import train_world_model

        resume = previous.resumes(out / "checkpoints" / "last.ckpt")
        model = train_world_model(replace(cfg, resume=resume, overwrite=not resume))
        return StageResult(f"trained {cfg.trainer.max_steps} steps" + (" (resumed)" if resume else ""),
                           [("world_model", str(model))])

    return Stage(name, slug, out, hashed(cfg) | (extra or {}), train, inputs={"store": cfg.data})


def fidelity_stage(cfg: TrainWorldModelConfig, slug: str, name: str, horizon: int = 16) -> Stage:
    """eval-wm of the model train_wm_stage(cfg) trains, on the episodes it held out, with its gate verdict in
    <out>/fidelity.json (record_fidelity)."""
    out = Path(cfg.out)

    def evaluate(previous: Previous) -> StageResult:
        note, outputs = record_fidelity(out, cfg.data, held_out_episodes(cfg.data, cfg.val_fraction, cfg.trainer.seed),
                                        horizon)
        return StageResult(note, outputs)

    split = {"horizon": horizon, "val_fraction": cfg.val_fraction, "split_seed": cfg.trainer.seed}
    return Stage(name, slug, out, split, evaluate, inputs={"store": cfg.data, "model": str(out / "model")})


def train_probe_stage(cfg: TrainProbeConfig, slug: str, name: str, extra: dict | None = None) -> Stage:
    """train-probe as a stage (see train_wm_stage); the probe trains in minutes, so it always starts over."""
    out = Path(cfg.out)

    def train(previous: Previous) -> StageResult:
        from robodream.pipeline.world_model.probe import metrics_lines, train_probe_command

        model, metrics = train_probe_command(replace(cfg, overwrite=True))
        print("\n".join("      " + line for line in metrics_lines(metrics)))
        return StageResult(f"success recall {metrics['success_recall']:.2f}",
                           [("probe", str(model)), ("metrics", str(out / "metrics.json"))])

    return Stage(name, slug, out, hashed(cfg) | (extra or {}), train, inputs={"store": cfg.data})


def held_out_episodes(store: str, val_fraction: float, seed: int) -> list[int]:
    """The episodes a train-wm run on `store` with this split held out for validation."""
    from robodream.datasets.reader import EpisodeStore
    from robodream.datasets.windows import split_episodes

    return split_episodes(EpisodeStore.open(store, cache="disk").num_episodes, val_fraction, seed)[1]


def record_fidelity(run_dir: Path, store: str, episodes: list[int], horizon: int) -> tuple[str, list]:
    """eval-wm of the model in `run_dir` on held-out `episodes` into <run>/eval_wm/, with its verdict in
    <run>/fidelity.json (what the gates read); prints the table and the verdict. Returns a stage note and the
    outputs."""
    from robodream.pipeline.world_model.commands import EvalWorldModelConfig, eval_world_model
    from robodream.pipeline.world_model.gates import FIDELITY, verdict_text
    from robodream.world_models.metrics import fidelity_table

    metrics, eval_dir = eval_world_model(EvalWorldModelConfig(ckpt=str(run_dir), data=store,
                                                              episodes=",".join(map(str, episodes)), horizon=horizon,
                                                              out=str(run_dir / "eval_wm")), stage_output=True)
    problems = metrics["problems"]
    print("\n".join("      " + line for line in fidelity_table(metrics, (1, 4, 8, 16))))
    print(f"      verdict {verdict_text(problems)}")
    return f"{len(episodes)} held-out episodes" + (f" ({problems[0]})" if problems else ""), [
        ("metrics", str(eval_dir / "metrics.json")), ("metrics", str(eval_dir / "fidelity.png")),
        ("metrics", str(run_dir / FIDELITY))]


def world_model_stages(cfg: WorldModelStageConfig, store: str, run_dir: Path) -> list[Stage]:
    """train-wm on `store` (path or URL: the `cfg.task` demos, with play data when the pipeline records some),
    then dream + eval-wm on its validation episodes."""
    out = stage_dir(cfg.out, run_dir)
    train_cfg = TrainWorldModelConfig(data=store, out=str(out), world_model=cfg.world_model,
                                      trainer=cfg.trainer.on_one_device("train-wm"), val_fraction=cfg.val_fraction)

    def evaluate(previous: Previous) -> StageResult:
        from robodream.pipeline.world_model.commands import DreamConfig, dream

        val = held_out_episodes(store, cfg.val_fraction, cfg.trainer.seed)
        shown = ",".join(str(e) for e in val[: cfg.dream_episodes])
        # This stage's own folders (dream/, eval_wm/): `robodream dream/eval-wm` by hand write to eval/<store>/.
        mp4, gif = dream(DreamConfig(ckpt=str(out), data=store, episodes=shown, out=str(out / "dream")),
                         stage_output=True)
        note, outputs = record_fidelity(out, store, val, cfg.eval_horizon)
        return StageResult(note, [("videos", str(mp4)), ("videos", str(gif)), *outputs])

    eval_config = {"dream_episodes": cfg.dream_episodes, "eval_horizon": cfg.eval_horizon,
                   "val_fraction": cfg.val_fraction, "split_seed": cfg.trainer.seed, "fidelity_record": True}
    return [
        train_wm_stage(train_cfg, "train-wm", f"train-wm on {cfg.task}: {cfg.trainer.max_steps} steps -> {out}",
                       extra={"task": cfg.task}),
        Stage("dream + eval-wm", "eval-wm", out, eval_config, evaluate,
              inputs={"store": store, "model": str(out / "model")}),
    ]


@dataclass
class ProbeStageConfig:
    """train-probe on the store the world model trained on (the probe must read the world model's frames)."""

    enabled: bool = True
    out: str = "probe"  # relative to the pipeline's out: probe/model, probe/metrics.json
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(channels=[16, 32, 64], hidden=64))
    trainer: TrainerConfig = field(default_factory=lambda: _demo_trainer(max_steps=200, batch_size=32))
    val_fraction: float = 0.2


def pipeline_probe_stage(cfg: ProbeStageConfig, task: str, store: str, out: Path) -> Stage:
    """train-probe from the pipeline's `probe:` section on `store` (the one the world model trained on)."""
    train_cfg = TrainProbeConfig(data=store, out=str(out), probe=cfg.probe,
                                 trainer=cfg.trainer.on_one_device("train-probe"), val_fraction=cfg.val_fraction)
    return train_probe_stage(train_cfg, "train-probe",
                             f"train-probe on {task}: {cfg.trainer.max_steps} steps -> {out}", extra={"task": task})
