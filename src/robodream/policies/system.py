"""The Lightning "system" around a policy: loss, optimiser, LR schedule, EMA, checkpoints, progress.

The modeling files know nothing of Lightning; this module is the only one in policies/ that imports it.
Training choices follow Chi et al. 2023 (Diffusion Policy, appendix A.4): AdamW (betas 0.95/0.999, weight
decay 1e-6), cosine learning-rate decay after a linear warm-up, and an EMA of the weights whose decay warms
up as 1 - (1 + step)^-0.75 (the EMAModel of their code and of diffusers), capped at 0.9999. The EMA weights
are the ones saved in policy checkpoints and evaluated.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from tqdm import tqdm

from robodream.policies.pretrained import save_pretrained

CHECKPOINTS = "checkpoints"  # save_pretrained directories, one per saved step (kept)
LIGHTNING = "lightning"  # Lightning's resumable last.ckpt (optimizer, LR schedule, EMA, loop state)


class PolicySystem(L.LightningModule):
    """Trains `policy` with its own `compute_loss`."""

    def __init__(self, policy: torch.nn.Module, lr: float = 1e-4, weight_decay: float = 1e-6,
                 warmup_steps: int = 500, max_steps: int = 10_000, betas: tuple[float, float] = (0.95, 0.999)):
        super().__init__()
        self.policy = policy
        self.lr, self.weight_decay, self.betas = lr, weight_decay, betas
        self.warmup_steps, self.max_steps = warmup_steps, max_steps

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.policy.compute_loss(batch)
        self.log("train/loss", loss, on_step=True, batch_size=len(batch["action"]))
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, betas=self.betas,
                                      weight_decay=self.weight_decay)
        schedule = partial(_warmup_cosine, warmup=self.warmup_steps, total=self.max_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then half a cosine down to 0 at `total` (diffusers' get_cosine_schedule_with_warmup)."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _warmup_ema(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor, power: float,
                max_decay: float) -> torch.Tensor:
    # decay_k = 1 - (1 + k)^-power: small at first so early checkpoints are not dominated by the random init
    decay = min(max_decay, 1.0 - (1.0 + float(num_averaged)) ** -power)
    return averaged + (current - averaged) * (1.0 - decay)


def ema_callback(power: float = 0.75, max_decay: float = 0.9999) -> WeightAveraging:
    """Lightning's weight-averaging callback with the warm-up EMA of Diffusion Policy."""
    return WeightAveraging(avg_fn=partial(_warmup_ema, power=power, max_decay=max_decay))


def averaged_policy(trainer: L.Trainer, system: PolicySystem) -> torch.nn.Module:
    """The EMA copy of the policy when an averaging callback runs, else the policy being trained."""
    for callback in trainer.callbacks:
        # WeightAveraging keeps its AveragedModel private; the copy of the module it wraps is what we save
        average = getattr(callback, "_average_model", None) if isinstance(callback, WeightAveraging) else None
        if average is not None:
            return average.module.policy
    return system.policy


class RunCheckpoints(L.Callback):
    """Every `every_n_steps` (and at the last step): a kept policy checkpoint `checkpoints/step_<N>/` (EMA
    weights, loadable without Lightning) and Lightning's resumable `lightning/last.ckpt` (overwritten)."""

    def __init__(self, run_dir: str | Path, every_n_steps: int, max_steps: int,
                 training_info: Callable[[int], dict] | None = None):
        self.run_dir = Path(run_dir)
        self.every = every_n_steps
        self.max_steps = max_steps
        self.training_info = training_info or (lambda step: {"step": step})
        self.saved: list[Path] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: PolicySystem, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.every == 0 or step >= self.max_steps:
            self.save(trainer, pl_module, step)

    def save(self, trainer: L.Trainer, pl_module: PolicySystem, step: int) -> None:
        # Every rank holds the same weights under DDP: rank 0 writes; save_checkpoint is collective (all ranks
        # call it, the strategy writes once).
        if trainer.is_global_zero:
            policy = averaged_policy(trainer, pl_module)
            self.saved.append(save_pretrained(policy, self.run_dir / CHECKPOINTS / f"step_{step}",
                                              self.training_info(step)))
        last = self.run_dir / LIGHTNING / "last.ckpt"
        last.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(last.with_suffix(".tmp"))
        if trainer.is_global_zero:
            last.with_suffix(".tmp").replace(last)  # atomic: a crash while saving keeps the previous last.ckpt


class StepProgress(L.Callback):
    """One progress bar over optimiser steps (not epochs) with the smoothed loss and steps/s."""

    def __init__(self, max_steps: int, enabled: bool = True, smoothing: float = 0.98):
        self.max_steps, self.enabled, self.smoothing = max_steps, enabled, smoothing
        self.loss: float | None = None
        self.bar: tqdm | None = None
        self.start_step = 0
        self.started = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start_step = trainer.global_step
        self.started = time.monotonic()
        self.bar = tqdm(total=self.max_steps, initial=trainer.global_step, desc="train", unit="step",
                        disable=not (self.enabled and trainer.is_global_zero), dynamic_ncols=True, file=sys.stderr)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = float(outputs["loss"]) if isinstance(outputs, Mapping) else float(outputs)
        self.loss = loss if self.loss is None else self.smoothing * self.loss + (1 - self.smoothing) * loss
        if self.bar is not None:
            self.bar.update(trainer.global_step - self.bar.n)
            self.bar.set_postfix_str(f"loss {self.loss:.4f}, {self.steps_per_s(trainer):.2f} steps/s")

    def steps_per_s(self, trainer: L.Trainer) -> float:
        elapsed = time.monotonic() - self.started
        return (trainer.global_step - self.start_step) / elapsed if elapsed > 0 else 0.0

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
