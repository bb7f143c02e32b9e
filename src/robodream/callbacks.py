"""Lightning callbacks shared by robodream's trainers (imported only where Lightning is)."""

from __future__ import annotations

import random
import sys
import time
import warnings
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
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


def _random_states() -> tuple[Any, Any, Any]:
    """torch's, numpy's and Python's global generators as they are (cheap: taken after every training batch)."""
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _set_random_states(states: tuple[Any, Any, Any]) -> None:
    torch_state, numpy_state, python_state = states
    torch.set_rng_state(torch_state)
    np.random.set_state(numpy_state)
    random.setstate(python_state)


def _storable(states: tuple[Any, Any, Any]) -> dict[str, Any]:
    """`states` as plain tensors and numbers: Lightning loads checkpoints with torch.load(weights_only=True),
    which refuses numpy arrays."""
    torch_state, (kind, keys, pos, has_gauss, gauss), (version, internal, gauss_next) = states
    return {"torch": torch_state,
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(internal), gauss_next]}


def _from_storable(stored: dict[str, Any]) -> tuple[Any, Any, Any]:
    kind, keys, pos, has_gauss, gauss = stored["numpy"]
    version, internal, gauss_next = stored["python"]
    return (stored["torch"], (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss),
            (version, tuple(internal), gauss_next))


def _training_loader_and_sampler(trainer: L.Trainer) -> tuple[Any, Any]:
    """The training DataLoader and its ResumableSampler (duck-typed: this module does not import datasets),
    or (loader, None) when it has none (e.g. Lightning's distributed sampler replaced it)."""
    loader = trainer.train_dataloader
    sampler = getattr(loader, "sampler", None)
    return loader, sampler if callable(getattr(sampler, "resume", None)) else None


class ExactResume(L.Callback):
    """A run resumed from a checkpoint trains exactly as the run that never stopped (one process).

    The checkpoint keeps the random number generators (torch, numpy, Python: the training noise, dropout,
    augmentations) and the training sampler's position (`ResumableSampler`). They are put back just before the
    first resumed batch. Validation leaves no trace on them: they are restored after every validation to their
    state at the end of the training batch before it, so validating more or less often, or resuming right after a
    checkpoint that preceded a validation, does not change the training that follows.
    """

    def __init__(self) -> None:
        self._after_batch: tuple[Any, Any, Any] | None = None
        self._restored: dict[str, Any] | None = None
        self._trainer: L.Trainer | None = None
        self._pending: dict[str, Any] | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._after_batch = _random_states()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._after_batch is not None:
            _set_random_states(self._after_batch)

    def state_dict(self) -> dict[str, Any]:
        _, sampler = _training_loader_and_sampler(self._trainer) if self._trainer is not None else (None, None)
        # the generators as the last training batch left them (a checkpoint written after a validation too)
        random_states = self._after_batch if self._after_batch is not None else _random_states()
        return {"random": _storable(random_states), "sampler": sampler.state_dict() if sampler is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if trainer.world_size == 1:
            # Lightning warns that a mid-epoch resume is unreliable because it cannot see the sampler's state;
            # on one process this callback restores it. (Under DDP the warning stands.)
            warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        restored, self._restored = self._restored, None
        if restored is None or trainer.global_step == 0:
            return
        # The generators are put back at the first batch: Lightning may create data iterators in between (a
        # validation loader's, drawing its base seed from torch's generator), which the run that never stopped
        # did not.
        self._pending = {"random": _from_storable(restored["random"]), "base_seed_draw": False}
        loader, sampler = _training_loader_and_sampler(trainer)
        if sampler is None or restored.get("sampler") is None or trainer.world_size > 1:
            return
        done_in_epoch = trainer.global_step % len(loader)
        epoch_finished = done_in_epoch == 0
        sampler.resume(restored["sampler"], done_in_epoch * loader.batch_size, epoch_finished)
        if epoch_finished:
            # The next epoch's iterator first draws its workers' base seed (DataLoader), then the order
            # (sampler): from the loader's generator, or torch's global one (drawn after it is restored).
            if loader.generator is not None:
                torch.empty((), dtype=torch.int64).random_(generator=loader.generator)
            else:
                self._pending["base_seed_draw"] = True

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            _set_random_states(pending["random"])
            if pending["base_seed_draw"]:
                torch.empty((), dtype=torch.int64).random_()


def find_callback(trainer: L.Trainer, kind: type) -> Any:
    """The trainer's first callback of type `kind`, or None."""
    return next((c for c in trainer.callbacks if isinstance(c, kind)), None)
