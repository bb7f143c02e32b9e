"""The Lightning "system" around a policy: its loss, and the export of its EMA weights as kept checkpoints.

The modeling files know nothing of Lightning; this module is the only one in policies/ that imports it. The
loop itself is robodream's one trainer (robodream/trainer.py), shared with the world model and the probe:
AdamW with a linear warm-up and cosine decay, an EMA of the weights whose decay warms up as
1 - (1 + k)^-0.75 (Diffusion Policy's EMAModel), gradient clipping, `checkpoints/last.ckpt` for `resume=true`.
What a policy adds is `PolicyCheckpoints`: every checkpoint_every_steps steps (and at the last one) the EMA
weights as a save_pretrained directory `checkpoints/step_<N>/`, loadable without Lightning, kept, so that a run
yields a series of policies to evaluate (`robodream eval --checkpoints <run>`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging

from robodream.trainer import TrainerConfig, checkpoint_dir, make_optimizer


class PolicySystem(L.LightningModule):
    """Trains `policy` with its own `compute_loss`."""

    def __init__(self, policy: torch.nn.Module, trainer_cfg: TrainerConfig):
        super().__init__()
        self.policy = policy
        self.trainer_cfg = trainer_cfg

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.policy.compute_loss(batch)
        self.log("train/loss", loss, on_step=True, batch_size=len(batch["action"]))
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        return make_optimizer(self.parameters(), self.trainer_cfg)


def averaged_policy(trainer: L.Trainer, system: PolicySystem) -> torch.nn.Module:
    """The EMA copy of the policy when an averaging callback runs, else the policy being trained."""
    for callback in trainer.callbacks:
        # WeightAveraging keeps its AveragedModel private; the copy of the module it wraps is what we save
        average = getattr(callback, "_average_model", None) if isinstance(callback, WeightAveraging) else None
        if average is not None:
            return average.module.policy
    return system.policy


def step_checkpoint(out: str | Path, step: int) -> Path:
    """Where a run in `out` keeps the policy of training step `step`."""
    return checkpoint_dir(out) / f"step_{step}"


class PolicyCheckpoints(L.Callback):
    """Every `every_n_steps` steps and at the last step: the EMA policy as `checkpoints/step_<N>/` (kept).

    Only rank 0 writes (every rank holds the same weights under DDP). `training_info(step)` is recorded in the
    checkpoint's config.json (task, fps, data) so that evaluation can check it against the env.
    """

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
        if (step % self.every == 0 or step >= self.max_steps) and trainer.is_global_zero:
            policy = averaged_policy(trainer, pl_module)
            path = step_checkpoint(self.run_dir, step)
            self.saved.append(policy.save_pretrained(path, training=self.training_info(step)))
