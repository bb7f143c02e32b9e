"""Training and scoring the state-and-success probe on recorded stores (Lightning).

Positions regress their mean/std-normalised values (MSE); success is a binary cross-entropy whose positive
class is weighted by the negative/positive ratio of the training frames, because success frames are rare
(an episode ends when it succeeds). Accuracy is reported on held-out episodes: mean position error in cm
per target, and success precision/recall at probability 0.5 per frame and per episode (any frame over 0.5, the
way evaluation in imagination reads it).
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from robodream.datasets.normalize import Normalizer
from robodream.datasets.reader import EpisodeStore
from robodream.datasets.resumable import ResumableSampler
from robodream.trainer import TrainerConfig, make_optimizer
from robodream.world_models.probe import POSITIONS, ProbeConfig, StateSuccessProbe, target_values


def probe_arrays(store: EpisodeStore, config: ProbeConfig, episodes: list[int]) -> dict[str, np.ndarray]:
    """Frames, target positions and success labels of the given episodes, with each frame's position in
    `episodes` ("episode") and each episode's recorded outcome ("episode_success")."""
    if not episodes:
        return {"frames": np.zeros((0, config.image_size, config.image_size, 3), np.uint8),
                "positions": np.zeros((0, config.num_positions), np.float32), "success": np.zeros(0, np.float32),
                "episode": np.zeros(0, np.int64), "episode_success": np.zeros(0, bool)}
    keys = sorted({config.image_key, config.success_key, *(t.key for t in config.targets)})
    parts = [store.episode(index, keys) for index in episodes]
    data = {key: np.concatenate([p[key] for p in parts]) for key in keys}
    success = (np.asarray(data[config.success_key]).reshape(len(data[config.image_key]), -1)[:, 0] > 0.5)
    episode = np.repeat(np.arange(len(episodes)), [len(p[config.image_key]) for p in parts])
    return {"frames": data[config.image_key], "positions": target_values(config, data).astype(np.float32),
            "success": success.astype(np.float32), "episode": episode,
            "episode_success": (store.outcomes() == 1)[episodes]}  # unknown outcomes count as not succeeded


def episode_detection(said: np.ndarray, episode: np.ndarray, outcomes: np.ndarray) -> tuple[int, int]:
    """A per-frame success call read per episode, as evaluation in imagination reads it (an episode succeeds when
    any of its frames is called a success): (successes detected, failures called a success). `episode` gives
    each frame's episode index into `outcomes`, the recorded successes."""
    episode_said = np.zeros(len(outcomes), bool)
    np.logical_or.at(episode_said, episode, said)
    return int((episode_said & outcomes).sum()), int((episode_said & ~outcomes).sum())


def probe_metrics(probe: StateSuccessProbe, arrays: dict[str, np.ndarray]) -> dict[str, float | dict]:
    """Position error (cm) per target, success precision/recall on labelled frames, and per episode ("per_episode")
    the way evaluation in imagination reads the probe: an episode succeeds when any of its frames passes 0.5,
    scored against the recorded outcomes (successes detected, failures called a success)."""
    predicted = probe.predict(arrays["frames"])
    errors, offset = {}, 0
    for target in probe.config.targets:
        truth = arrays["positions"][:, offset : offset + target.size]
        errors[target.name] = float(np.linalg.norm(predicted[target.name] - truth, axis=1).mean() * 100.0)
        offset += target.size
    said = predicted["success_prob"] > 0.5
    truth = arrays["success"] > 0.5
    true_positive = float((said & truth).sum())
    outcomes = arrays["episode_success"]
    successes, failures = int(outcomes.sum()), int((~outcomes).sum())
    detected, false_alarms = episode_detection(said, arrays["episode"], outcomes)
    return {
        "position_error_cm": errors,
        "success_precision": true_positive / max(1.0, float(said.sum())),
        "success_recall": true_positive / max(1.0, float(truth.sum())),
        "frames": int(len(truth)),
        "success_frames": int(truth.sum()),
        "per_episode": {"episodes": len(outcomes), "successful_episodes": successes, "detected": detected,
                        "failed_episodes": failures, "false_alarms": false_alarms,
                        "episode_recall": detected / max(1, successes),
                        "episode_false_alarm_rate": false_alarms / max(1, failures)},
    }


class ProbeSystem(L.LightningModule):
    def __init__(self, probe: StateSuccessProbe, trainer_cfg: TrainerConfig, pos_weight: float):
        super().__init__()
        self.probe = probe
        self.trainer_cfg = trainer_cfg
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)))

    def _losses(self, batch) -> dict[str, torch.Tensor]:
        frames, positions, success = batch
        predicted, logits = self.probe(frames)
        target = self.probe.normalizer.normalize(POSITIONS, positions)
        position_loss = torch.nn.functional.mse_loss(predicted, target)
        success_loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, success, pos_weight=self.pos_weight)
        return {"loss": position_loss + success_loss, "position_loss": position_loss, "success_loss": success_loss}

    def training_step(self, batch, batch_idx):
        losses = self._losses(batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True)
        return losses["loss"]

    def validation_step(self, batch, batch_idx):
        self.log_dict({f"val/{k}": v for k, v in self._losses(batch).items()}, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return make_optimizer(self.probe.parameters(), self.trainer_cfg)


def train_probe(store: EpisodeStore, config: ProbeConfig, trainer_cfg: TrainerConfig, out: str | os.PathLike,
                train_episodes: list[int], val_episodes: list[int]) -> StateSuccessProbe:
    """Fit a probe on `train_episodes`, validating on `val_episodes`; exports it to <out>/model."""
    from robodream.trainer import build_trainer

    train, val = probe_arrays(store, config, train_episodes), probe_arrays(store, config, val_episodes)
    stats = {POSITIONS: {"mean": train["positions"].mean(0).tolist(), "std": train["positions"].std(0).tolist(),
                         "min": train["positions"].min(0).tolist(), "max": train["positions"].max(0).tolist()}}
    probe = StateSuccessProbe(config, Normalizer({POSITIONS: "mean_std"}, stats))
    positives = float(train["success"].sum())
    pos_weight = (len(train["success"]) - positives) / max(1.0, positives)

    def tensors(arrays):
        return TensorDataset(torch.from_numpy(arrays["frames"]), torch.from_numpy(arrays["positions"]),
                             torch.from_numpy(arrays["success"]))

    generator = torch.Generator().manual_seed(trainer_cfg.seed)
    train_set = tensors(train)
    sampler = RandomSampler(train_set, replacement=True, num_samples=trainer_cfg.max_steps * trainer_cfg.batch_size,
                            generator=generator)
    train_loader = DataLoader(train_set, batch_size=trainer_cfg.batch_size,
                              sampler=ResumableSampler(sampler, generator))
    val_loader = DataLoader(tensors(val), batch_size=256) if len(val["frames"]) else []
    trainer = build_trainer(trainer_cfg, out)
    system = ProbeSystem(probe, trainer_cfg, pos_weight)
    trainer.fit(system, train_dataloaders=train_loader, val_dataloaders=val_loader)
    probe = system.probe.eval()  # EMAWeightAveraging has copied the averaged weights in at the end of fit
    probe.save_pretrained(Path(out) / "model")
    return probe
