"""`robodream train-probe`: the state-and-success probe that labels and scores imagined frames.

    robodream train-probe data=data/push.zarr out=runs/probe trainer.max_steps=1500

Writes <out>/model (config.json + model.safetensors), <out>/metrics.json (accuracy on held-out episodes:
position error in cm per target, success precision/recall) and the resolved config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from robodream.config_fields import runtime
from robodream.trainer import TrainerConfig
from robodream.world_models.probe import ProbeConfig


def _probe_trainer() -> TrainerConfig:
    return TrainerConfig(max_steps=1500, batch_size=64, learning_rate=1e-3, warmup_steps=50, val_every_steps=500,
                         checkpoint_every_steps=500, ema_decay=0.99, progress_bar=False)


@dataclass
class TrainProbeConfig:
    data: str = runtime("data/push_cube.zarr")
    out: str = runtime("runs/probe")
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    trainer: TrainerConfig = field(default_factory=_probe_trainer)
    val_fraction: float = 0.1
    overwrite: bool = runtime(False)


def train_probe_command(cfg: TrainProbeConfig) -> tuple[Path, dict]:
    """Train the probe and report its held-out accuracy."""
    import lightning as L

    from robodream.datasets.reader import EpisodeStore
    from robodream.datasets.windows import split_episodes
    from robodream.pipeline.config import save_config
    from robodream.trainer import prepare_run_dir
    from robodream.world_models.probe_training import probe_arrays, probe_metrics, train_probe

    store = EpisodeStore.open(cfg.data)
    cfg.probe.check_features(store.features)
    image_size = store.features[cfg.probe.image_key]["shape"][0]
    probe_cfg = replace(cfg.probe, image_size=image_size)
    out = Path(cfg.out)
    prepare_run_dir(out, resume=False, overwrite=cfg.overwrite)
    save_config(replace(cfg, probe=probe_cfg), out / "config.yaml")
    L.seed_everything(cfg.trainer.seed, verbose=False)
    train_episodes, val_episodes = split_episodes(store.num_episodes, cfg.val_fraction, cfg.trainer.seed)
    probe = train_probe(store, probe_cfg, cfg.trainer, out, train_episodes, val_episodes)
    metrics = probe_metrics(probe, probe_arrays(store, probe_cfg, val_episodes or train_episodes))
    metrics.update(data=str(cfg.data), held_out_episodes=val_episodes)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return out / "model", metrics


def metrics_lines(metrics: dict) -> list[str]:
    errors = ", ".join(f"{name} {cm:.2f} cm" for name, cm in metrics["position_error_cm"].items())
    episodes = metrics["per_episode"]
    return [f"held-out frames  {metrics['frames']} ({metrics['success_frames']} success)",
            f"position error   {errors}",
            f"success          precision {metrics['success_precision']:.2f}, recall {metrics['success_recall']:.2f} "
            "per frame",
            f"episodes         {episodes['detected']}/{episodes['successful_episodes']} successes detected, "
            f"{episodes['false_alarms']}/{episodes['failed_episodes']} failures called a success"]
