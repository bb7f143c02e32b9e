"""Lightning system and data module for training a `WorldModel` on an episode store.

The system owns the loss and the optimiser (Lightning style guide); the model knows nothing of the loop.
Every validation it logs the validation loss, writes a rollout strip (real frames above imagined ones, PNG
and side-by-side GIF) of a few validation episodes to <out>/val/, and exports the EMA weights to
<out>/model (config.json + model.safetensors) — the directory `robodream dream` and `eval-wm` load.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, RandomSampler

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.resumable import ResumableSampler
from robodream.datasets.video import upscale, write_gif
from robodream.datasets.windows import WindowDataset, split_episodes
from robodream.errors import RobodreamError
from robodream.features import ACTION, STATE
from robodream.trainer import TrainerConfig, make_optimizer
from robodream.world_models.configuration import WorldModelConfig
from robodream.world_models.model import WorldModel
from robodream.world_models.rollout import imagine, load_clips, rollout_strip, side_by_side


def window_offsets(config: WorldModelConfig) -> dict[str, list[int]]:
    """Frames t-K+1..t+1 (K context + the next), the actions at t-K..t (the last K and the next one),
    the states at the frames."""
    k = config.context_frames
    offsets = {config.image_key: list(range(-k + 1, 2)), ACTION: list(range(-k, 1))}
    if config.predict_state:
        offsets[STATE] = list(range(-k + 1, 2))
    return offsets


def _collate(batch):
    return batch


class WorldModelDataModule(L.LightningDataModule):
    """Windows over one store, split into train/val episodes; training samples windows with replacement so
    one 'epoch' is the whole run (max_steps batches)."""

    def __init__(self, store: EpisodeStore, config: WorldModelConfig, trainer_cfg: TrainerConfig,
                 val_fraction: float = 0.1):
        super().__init__()
        self.store = store
        self.config = config
        self.trainer_cfg = trainer_cfg
        self.train_episodes, self.val_episodes = split_episodes(store.num_episodes, val_fraction, trainer_cfg.seed)
        if not self.train_episodes:
            raise RobodreamError(f"{store.location} has no episodes to train on")
        offsets = window_offsets(config)
        self.train_set = WindowDataset(store, offsets, self.train_episodes)
        self.val_set = WindowDataset(store, offsets, self.val_episodes) if self.val_episodes else None

    def _loader(self, dataset: WindowDataset, sampler=None, shuffle: bool = False) -> DataLoader:
        return DataLoader(dataset, batch_size=self.trainer_cfg.batch_size, sampler=sampler, shuffle=shuffle,
                          collate_fn=_collate, num_workers=self.trainer_cfg.num_workers,
                          persistent_workers=self.trainer_cfg.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        cfg = self.trainer_cfg
        # One epoch is the whole run; a resumed run continues the same draw of windows (ExactResume).
        generator = torch.Generator().manual_seed(cfg.seed)
        sampler = RandomSampler(self.train_set, replacement=True, num_samples=cfg.max_steps * cfg.batch_size,
                                generator=generator)
        return self._loader(self.train_set, sampler=ResumableSampler(sampler, generator))

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set) if self.val_set is not None else []


class WorldModelSystem(L.LightningModule):
    """Loss, optimiser, validation strip and export around a `WorldModel`."""

    def __init__(self, model: WorldModel, trainer_cfg: TrainerConfig, out: str | os.PathLike,
                 val_store: EpisodeStore | None = None, val_episodes: list[int] | None = None,
                 strip_episodes: int = 4, strip_horizon: int = 16):
        super().__init__()
        self.model = model
        self.trainer_cfg = trainer_cfg
        self.out = Path(out)
        self.val_store = val_store
        self.strip_episodes = (val_episodes or [])[:strip_episodes]
        self.strip_horizon = strip_horizon

    def training_step(self, batch, batch_idx):
        losses = self.model.training_loss(batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=len(batch[ACTION]))
        return losses["loss"]

    def validation_step(self, batch, batch_idx):
        # Fixed noise per batch so that validation losses are comparable across the run.
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        losses = self.model.training_loss(batch, generator=generator)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, prog_bar=True, sync_dist=True,
                      batch_size=len(batch[ACTION]))
        if batch_idx == 0 and self.trainer.is_global_zero:
            # The EMA callback has swapped the averaged weights in for validation: export and show those.
            self.export()
            self.write_rollout_strip()

    def export(self) -> Path:
        return self.model.save_pretrained(self.out / "model")

    def write_rollout_strip(self) -> None:
        if self.val_store is None or not self.strip_episodes:
            return
        cfg = self.model.config
        try:
            clips = load_clips(self.val_store, self.strip_episodes, cfg.context_frames, self.strip_horizon,
                               cfg.image_key, cfg.predict_state)
        except RobodreamError:
            return  # validation episodes shorter than the context: nothing to show
        was_training = self.model.training
        imagined = imagine(self.model, clips, self.strip_horizon, seed=0)
        self.model.train(was_training)
        real = clips.frames[:, cfg.context_frames :]
        folder = self.out / "val"
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"step_{self.global_step:07d}"
        scale = max(1, 128 // cfg.image_size)
        Image.fromarray(upscale(rollout_strip(real, imagined, every=max(1, self.strip_horizon // 8)), scale)).save(
            f"{stem}.png")
        pairs = side_by_side(real, imagined)  # (B, T, H, 2W+gap, 3)
        video = np.concatenate(list(pairs), axis=1)  # episodes stacked vertically
        write_gif(upscale(video, scale), f"{stem}.gif", fps=self.val_store.fps)

    def on_train_end(self) -> None:
        # EMAWeightAveraging has copied the averaged weights into the model by now.
        if self.trainer.is_global_zero:
            self.export()

    def configure_optimizers(self):
        return make_optimizer(self.model.parameters(), self.trainer_cfg)
