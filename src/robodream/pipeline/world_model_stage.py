"""The world-model stages of `robodream run`: train-wm on a collected store, then dream + eval-wm.

Configured by the `world_model:` section of a pipeline config. configs/pipeline/quickstart.yaml trains the
tiny model for a few hundred steps on the push_cube store, writes real-vs-imagined videos of a few episodes
and the fidelity metrics. Training is skipped when the run already finished (train_summary.json with the
configured number of steps); dream and eval are cheap and always rewritten.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from robodream.errors import RobodreamError
from robodream.trainer import TrainerConfig
from robodream.world_models.configuration import WorldModelConfig


def _demo_trainer() -> TrainerConfig:
    return TrainerConfig(max_steps=300, batch_size=16, learning_rate=1e-3, warmup_steps=20, val_every_steps=150,
                         checkpoint_every_steps=150, ema_decay=0.99, progress_bar=False)


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


def run_world_model_stages(cfg: WorldModelStageConfig, stores: dict[str, str], run_dir: Path, number: int,
                           stages: int) -> dict[str, list[Path]]:
    """Train (stage `number`), then dream and evaluate (stage `number + 1`); `stores` maps task -> store."""
    from robodream.pipeline.world_model import (
        DreamConfig,
        EvalWorldModelConfig,
        TrainWorldModelConfig,
        dream,
        eval_world_model,
        fidelity_table,
        train_world_model,
    )

    if cfg.task not in stores:
        raise RobodreamError(f"world_model.task={cfg.task!r} but the pipeline collects only {sorted(stores)}")
    store = stores[cfg.task]
    out = Path(cfg.out) if Path(cfg.out).is_absolute() else run_dir / cfg.out
    print(f"[{number}/{stages}] train-wm on {cfg.task}: {cfg.trainer.max_steps} steps -> {out}", flush=True)
    summary_path = out / "train_summary.json"
    started = time.monotonic()
    if summary_path.exists() and json.loads(summary_path.read_text()).get("steps") == cfg.trainer.max_steps:
        print("      already complete, skipped")
    else:
        resume = (out / "checkpoints" / "last.ckpt").exists()
        train_world_model(TrainWorldModelConfig(data=store, out=str(out), world_model=cfg.world_model,
                                                trainer=cfg.trainer, val_fraction=cfg.val_fraction, resume=resume))
        print(f"      trained in {time.monotonic() - started:.0f} s")
    print(f"[{number + 1}/{stages}] dream + eval-wm", flush=True)
    from robodream.datasets.reader import EpisodeStore
    from robodream.datasets.windows import split_episodes

    episodes = EpisodeStore.open(store, cache="disk").num_episodes
    _, val = split_episodes(episodes, cfg.val_fraction, cfg.trainer.seed)
    shown = ",".join(str(e) for e in val[: cfg.dream_episodes])
    mp4, gif = dream(DreamConfig(ckpt=str(out), data=store, episodes=shown, out=str(out / "dream")))
    metrics, eval_dir = eval_world_model(EvalWorldModelConfig(ckpt=str(out), data=store,
                                                              episodes=",".join(map(str, val)),
                                                              horizon=cfg.eval_horizon))
    print("\n".join("      " + line for line in fidelity_table(metrics, (1, 4, 8, 16))))
    return {"world_model": [out / "model"], "videos": [mp4, gif],
            "metrics": [eval_dir / "metrics.json", eval_dir / "fidelity.png"]}
