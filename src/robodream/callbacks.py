"""Lightning callbacks shared by robodream's trainers (imported only where Lightning is)."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
from tqdm import tqdm


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


def find_callback(trainer: L.Trainer, kind: type) -> Any:
    """The trainer's first callback of type `kind`, or None."""
    return next((c for c in trainer.callbacks if isinstance(c, kind)), None)
