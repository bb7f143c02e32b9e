"""Shared Lightning set-up for every model robodream trains (world models, policies).

`DeviceConfig` (precision, accelerator, devices, strategy, nodes) is shared by every trainer config, so that
moving any run from a laptop CPU to several GPUs is a config change (`trainer.accelerator=gpu
trainer.devices=4 trainer.strategy=ddp`), never a code change. `TrainerConfig` adds what the world model, the
probe and the policies share — steps, batch size, optimiser, EMA, checkpoint/validation cadence, threads.
`build_trainer` turns it into a `lightning.Trainer` with EMA weights, step-based checkpoints in
<out>/checkpoints (last.ckpt is what `resume=true` continues from, exactly: callbacks.ExactResume) and a CSV
log in <out>/logs; each model adds its own export of the EMA weights (world model and probe: <out>/model; policies: one
<out>/checkpoints/step_<N>/ per checkpoint).

This module imports Lightning (and torch) only inside its functions; modeling code never imports Lightning.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from robodream.config_fields import runtime
from robodream.errors import RobodreamError

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true")


def parse_devices(devices: str | int, key: str = "devices") -> str | int | list[int]:
    """A `devices` setting as Lightning's Trainer takes it: "auto" (Lightning's choice: every GPU of the chosen
    accelerator, one process on a CPU), a count (4; -1: every device), or device ids ("0,1" -> [0, 1]).
    The one parser for every config with a devices key (trainers, generate); `key` names it in the error."""
    text = str(devices).strip()
    if text == "auto":
        return "auto"
    if text.isdigit() or (text.startswith("-") and text[1:].isdigit()):
        return int(text)
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        ids = []
    if not ids:
        raise RobodreamError(f"{key} must be auto, a count or ids like 0,1; got {text!r}")
    return ids


def device_count(devices: str | int) -> int | None:
    """How many devices a `devices` setting asks for, or None when only Lightning knows ("auto", -1: as many
    as it finds). Callers that must decide before Lightning starts (whether its DDP launcher will re-run the
    command line) treat None as "maybe several"."""
    parsed = parse_devices(devices)
    if isinstance(parsed, list):
        return len(parsed)
    return None if parsed == "auto" or parsed < 0 else parsed


@dataclass
class DeviceConfig:
    """Where a training run executes. Every robodream trainer config has these keys, so moving a run from a
    laptop CPU to several GPUs or nodes is `trainer.accelerator=gpu trainer.devices=4 trainer.strategy=ddp`
    for any model. Under DDP each device draws its own batch of trainer.batch_size (the effective batch is
    batch_size x devices x num_nodes) and max_steps counts optimiser steps, as on one device."""

    #: "32-true" (CPU default) or "bf16-mixed" (GPUs, recent CPUs)
    precision: str = "32-true"
    accelerator: str = runtime("auto")
    #: "auto", a count ("4") or device ids ("0,1")
    devices: str = runtime("auto")
    #: "auto", or e.g. "ddp" for several GPUs or processes (gloo on CPU)
    strategy: str = "auto"
    num_nodes: int = 1

    def __post_init__(self) -> None:
        if self.num_nodes < 1:
            raise RobodreamError(f"trainer.num_nodes must be >= 1, got {self.num_nodes}")
        if self.precision not in PRECISIONS:
            raise RobodreamError(f"trainer.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        self.parsed_devices()  # a bad devices string fails here, not after the data is loaded

    def parsed_devices(self) -> Any:
        return parse_devices(self.devices, "trainer.devices")

    def on_one_device(self, command: str):
        """This config for a training stage of `robodream run`, which trains on one device: Lightning's DDP
        launcher starts the other ranks by re-running the command line, which would be the whole pipeline.
        "auto" becomes "1"; an explicit count above one is refused, naming the command to use instead."""
        devices = self.parsed_devices()
        if devices == "auto":
            return replace(self, devices="1")
        if (isinstance(devices, int) and devices > 1) or (isinstance(devices, list) and len(devices) > 1) \
                or self.num_nodes > 1:
            raise RobodreamError(f"trainer.devices={self.devices} num_nodes={self.num_nodes}: inside `robodream run` "
                                 "training uses one device (Lightning would re-run the whole pipeline for the other "
                                 f"ranks); train on several with `robodream {command}` as its own command "
                                 "(docs/scaling.md)")
        return self

    def device_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `lightning.Trainer` that place the run."""
        return {"precision": self.precision, "accelerator": self.accelerator, "devices": self.parsed_devices(),
                "strategy": self.strategy, "num_nodes": self.num_nodes}


@dataclass
class TrainerConfig(DeviceConfig):
    max_steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    #: final learning rate of the cosine schedule, as a fraction of learning_rate
    final_lr_fraction: float = 0.1
    grad_clip: float = 1.0
    #: EMA of the weights (evaluated, exported and used for sampling); 0 disables it. The decay warms up as
    #: 1 - (1 + step)^-ema_power (Diffusion Policy's EMAModel), capped at ema_decay, so early validations and
    #: short runs are not dominated by the random initial weights.
    ema_decay: float = 0.999
    ema_power: float = 0.75
    val_every_steps: int = 500
    checkpoint_every_steps: int = 500
    log_every_steps: int = 25
    num_workers: int = runtime(0)
    seed: int = 0
    #: torch CPU threads (None: torch's default, all cores). On a 2-core machine that other work shares, 2
    #: threads ran the default policy 2.2x slower than 1 (OpenMP threads waiting for a busy core; docs/benchmarks.md)
    threads: int | None = runtime(None)
    progress_bar: bool = runtime(True)
    #: where training curves go, by name: csv (<out>/logs, what the report plots), tensorboard (<out>/tensorboard),
    #: mlflow (<out>/mlruns, a local file store) and wandb (offline, <out>/wandb); the last three need their package
    loggers: list[str] = runtime(default_factory=lambda: ["csv"])

    #: keys of the policy trainer before policies moved onto this one: old key -> current key
    LEGACY_KEYS: ClassVar[dict[str, str]] = {"lr": "learning_rate", "checkpoint_every": "checkpoint_every_steps",
                                             "progress": "progress_bar", "ema_max_decay": "ema_decay"}

    def __post_init__(self) -> None:
        super().__post_init__()
        positive = ("max_steps", "batch_size", "val_every_steps", "checkpoint_every_steps", "log_every_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise RobodreamError(f"trainer.{name} must be >= 1, got {getattr(self, name)}")
        unknown = [name for name in self.loggers if name not in LOGGERS]
        if unknown or not self.loggers:
            raise RobodreamError(f"trainer.loggers={list(self.loggers)}: name one or more of {sorted(LOGGERS)}")
        if not 0 <= self.ema_decay < 1:
            raise RobodreamError(f"trainer.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.learning_rate <= 0:
            raise RobodreamError(f"trainer.learning_rate must be > 0, got {self.learning_rate}")
        if self.warmup_steps < 0 or not 0 <= self.final_lr_fraction <= 1:
            raise RobodreamError("trainer: warmup_steps must be >= 0 and final_lr_fraction in [0, 1]")
        if self.threads is not None and self.threads < 1:
            raise RobodreamError(f"trainer.threads must be >= 1 or null (torch's default), got {self.threads}")

    @classmethod
    def translate_legacy(cls, key: str, value: Any) -> list[tuple[str, Any]] | None:
        """The current keys for a key of the old policy trainer (see pipeline/config.py); None: not a legacy key.
        `ema: false` is `ema_decay: 0`; `ema: true` is the default."""
        if key == "ema":
            return [] if value else [("ema_decay", 0.0)]
        return [(cls.LEGACY_KEYS[key], value)] if key in cls.LEGACY_KEYS else None


def schedule_warnings(cfg: TrainerConfig, validates: bool = True) -> list[str]:
    """Settings that are valid but do not do what they say within this run's max_steps."""
    found = []
    if cfg.warmup_steps >= cfg.max_steps:
        found.append(f"trainer.warmup_steps={cfg.warmup_steps} >= trainer.max_steps={cfg.max_steps}: the learning rate "
                     f"never finishes its warm-up (it ends at {cfg.max_steps / max(1, cfg.warmup_steps):.0%} of "
                     "learning_rate, with no cosine decay); lower warmup_steps")
    if validates and cfg.val_every_steps > cfg.max_steps:
        found.append(f"trainer.val_every_steps={cfg.val_every_steps} > trainer.max_steps={cfg.max_steps}: no "
                     "validation runs (no val/loss, no validation outputs); lower val_every_steps")
    if cfg.checkpoint_every_steps > cfg.max_steps:
        found.append(f"trainer.checkpoint_every_steps={cfg.checkpoint_every_steps} > trainer.max_steps="
                     f"{cfg.max_steps}: only the final checkpoint is written")
    return found


def warn_about_schedule(cfg: TrainerConfig, validates: bool = True) -> None:
    """Print schedule_warnings as `warning:` lines on stderr."""
    for message in schedule_warnings(cfg, validates):
        print(f"warning: {message}", file=sys.stderr, flush=True)


def ema_decay_at(step: int, cfg: TrainerConfig) -> float:
    """EMA decay after `step` updates: warms up from 0 towards cfg.ema_decay."""
    return min(cfg.ema_decay, max(0.0, 1.0 - (1.0 + step) ** -cfg.ema_power))


def lr_lambda(cfg: TrainerConfig):
    """Linear warm-up, then cosine decay to final_lr_fraction (Diffusion Policy's schedule)."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return cfg.final_lr_fraction + (1 - cfg.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def make_optimizer(parameters, cfg: TrainerConfig) -> dict[str, Any]:
    """AdamW + the warm-up/cosine schedule, in the shape Lightning's configure_optimizers returns."""
    import torch

    optimizer = torch.optim.AdamW(parameters, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def launched_as_rank_zero() -> bool:
    """Whether this is the process the user started, before Lightning has set up distributed training: the
    processes Lightning's DDP launcher starts for the other devices (and torchrun, SLURM) carry their rank in
    these variables. Used for the writes before `fit`; after it, `trainer.is_global_zero` says the same."""
    return all(int(os.environ.get(name, "0")) == 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def checkpoint_dir(out: str | os.PathLike) -> Path:
    return Path(out) / "checkpoints"


def last_checkpoint(out: str | os.PathLike) -> Path | None:
    path = checkpoint_dir(out) / "last.ckpt"
    return path if path.exists() else None


# What makes a folder a training run directory: robodream wrote its config there, its checkpoints, or an older
# layout's Lightning folder (or a pipeline stage its stamp: see `check_folder`).
RUN_DIR_MARKERS = ("config.yaml", "checkpoints", "lightning")


def prepare_run_dir(out: str | os.PathLike, resume: bool, overwrite: bool) -> Path | None:
    """Check the output directory against resume/overwrite; returns the checkpoint to resume from, if any.

    `out` must be a folder robodream can write (checked now, not after training) that is new, empty or a training
    run (the output rule, datasets/outputs.py), and a checkpoint to resume from must be complete (a kill or a
    full disk can cut last.ckpt)."""
    from robodream.checkpoints import check_lightning_checkpoint
    from robodream.datasets.layout import check_writable_dir
    from robodream.datasets.outputs import check_folder

    out = Path(out)
    check_folder(out, RUN_DIR_MARKERS, "a training run directory")
    if resume and overwrite:
        raise RobodreamError("resume=true and overwrite=true contradict each other: pick one")
    check_writable_dir(out)
    existing = last_checkpoint(out)
    if existing and resume:
        check_lightning_checkpoint(existing)
    if existing and not resume and not overwrite:
        raise RobodreamError(f"{out} already holds a training run: pass resume=true to continue it or "
                             "overwrite=true to start again")
    if overwrite and out.exists():
        import shutil

        shutil.rmtree(checkpoint_dir(out), ignore_errors=True)
    return existing if resume else None


#: logger name -> (the package it needs, how to install it)
LOGGERS = {"csv": (None, None), "tensorboard": ("tensorboard", "pip install tensorboard"),
           "mlflow": ("mlflow", "pip install mlflow"), "wandb": ("wandb", "pip install wandb")}


def make_loggers(names: list[str], out: str | os.PathLike) -> list:
    """Lightning loggers by name, all writing under `out` (nothing leaves the machine: W&B runs offline, MLflow
    writes a local file store). Refuses unknown names and loggers whose package is not installed, in one line."""
    import importlib.util

    from lightning.pytorch import loggers

    if not names:
        raise RobodreamError(f"trainer.loggers is empty: name at least one of {sorted(LOGGERS)} (csv feeds the "
                             "report's training curves)")
    made = []
    for name in names:
        if name not in LOGGERS:
            raise RobodreamError(f"trainer.loggers: unknown logger {name!r}; choose from {sorted(LOGGERS)}")
        package, install = LOGGERS[name]
        if package and importlib.util.find_spec(package) is None:
            raise RobodreamError(f"trainer.loggers: {name} needs the {package} package: {install}")
        if name == "csv":  # logs/version_N: a resumed run adds a version
            made.append(loggers.CSVLogger(str(out), name="logs"))
        elif name == "tensorboard":
            made.append(loggers.TensorBoardLogger(str(out), name="tensorboard"))
        elif name == "mlflow":
            made.append(loggers.MLFlowLogger(experiment_name="robodream", tracking_uri=f"file:{Path(out) / 'mlruns'}"))
        else:
            made.append(loggers.WandbLogger(save_dir=str(out), offline=True, project="robodream"))
    return made


def build_trainer(cfg: TrainerConfig, out: str | os.PathLike, callbacks: list | None = None,
                  keep_checkpoints: bool = True, step_progress: bool = False):
    """A Lightning Trainer for `cfg` writing under `out`.

    keep_checkpoints: keep a resumable Lightning checkpoint every checkpoint_every_steps (False: only last.ckpt,
    for models that export their own kept checkpoints). step_progress: one bar over optimiser steps with the
    smoothed loss and steps/s (`StepProgress`) instead of Lightning's per-epoch bar, for loaders whose epochs
    are short.
    """
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint, WeightAveraging

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    all_callbacks = list(callbacks or [])
    # No version counter: a run copied to a new directory and resumed there would otherwise write last-v1.ckpt
    # (its restored last_model_path names the old directory), and the next resume would start from the old last.
    all_callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir(out), filename="step_{step:07d}",
                                         every_n_train_steps=cfg.checkpoint_every_steps, save_last=True,
                                         save_top_k=-1 if keep_checkpoints else 0, auto_insert_metric_name=False,
                                         enable_version_counter=False))
    from robodream.callbacks import ExactResume, StepProgress

    all_callbacks.append(ExactResume())  # resume=true continues the same random draws and data order
    if step_progress:
        all_callbacks.append(StepProgress(cfg.max_steps, enabled=cfg.progress_bar))
    if cfg.ema_decay > 0:
        @torch.no_grad()
        def warmup_ema(averaged, current, num_averaged):
            decay = ema_decay_at(int(num_averaged), cfg)
            return averaged + (current - averaged) * (1.0 - decay)

        # Lightning's WeightAveraging keeps the average in an AveragedModel, swaps it in for validation,
        # saves it in checkpoints and copies it into the model when training ends.
        all_callbacks.append(WeightAveraging(avg_fn=warmup_ema))
    return L.Trainer(
        max_steps=cfg.max_steps,
        **cfg.device_kwargs(),
        val_check_interval=cfg.val_every_steps,
        check_val_every_n_epoch=None,  # validate every val_every_steps optimiser steps, not per epoch
        log_every_n_steps=cfg.log_every_steps,
        gradient_clip_val=cfg.grad_clip or None,
        callbacks=all_callbacks,
        logger=make_loggers(cfg.loggers, out),
        default_root_dir=str(out),
        enable_progress_bar=cfg.progress_bar and not step_progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=True,
    )
