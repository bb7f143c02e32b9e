"""`robodream train-policy`: train a diffusion or BC policy on one or more episode stores with Lightning.

    robodream train-policy data=data/push.zarr policy=configs/policy/diffusion.yaml out=runs/policy
    robodream train-policy data=real.zarr:0.7,synthetic.zarr:0.3 policy=configs/policy/bc.yaml
    robodream train-policy out=runs/policy resume=true          # continue from runs/policy/checkpoints/last.ckpt

Steps: open the stores and check they hold what the policy needs -> pool their normalisation stats with the
mixing weights -> fix the policy's time layout for the data's task (`policy.per_task`) -> build the policy
(normaliser inside) -> train for trainer.max_steps with robodream's one trainer (trainer.py: EMA, warm-up +
cosine LR, `checkpoints/last.ckpt`), keeping the EMA policy as `checkpoints/step_<N>/` every
trainer.checkpoint_every_steps (a run yields a series of checkpoints to evaluate with
`robodream eval --checkpoints <out>`) -> summary.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.pipeline.config import save_config, to_dict
from robodream.pipeline.data.training_data import record_training_data, store_entry
from robodream.policies.configuration import PolicyConfig
from robodream.trainer import TrainerConfig, warn_about_schedule


def policy_trainer(**changes: Any) -> TrainerConfig:
    """The trainer defaults of a policy (robodream's one TrainerConfig; docs/benchmarks.md, "Policies"): batch 32,
    learning rate 1e-3 with a 500-step warm-up and a cosine decay to 0, one CPU thread (a second one ran 1.33x faster
    on an idle 2-core machine and 2.2x slower when another process kept one core busy: benchmarks/train_threads.py),
    a kept checkpoint every 2000 steps. One
    device unless asked: inside `robodream run` several devices would make Lightning's launcher re-run the whole
    pipeline for the other ranks."""
    defaults = dict(max_steps=10_000, batch_size=32, learning_rate=1e-3, weight_decay=1e-6, warmup_steps=500,
                    final_lr_fraction=0.0, checkpoint_every_steps=2000, threads=1, devices="1")
    return TrainerConfig(**(defaults | changes))


def parse_data(data: Any) -> list[dict[str, Any]]:
    """`data=` as given on the command line or in YAML -> [{"path": ..., "weight": ...}].

    Accepts "a.zarr", "a.zarr:0.7,b.zarr:0.3", a list of such strings, or a list of {path, weight} mappings.
    The weight is the part after the last colon when it parses as a number (so s3://... URLs work). A mapping
    may add `imagined_only: true` for a synthetic store: the policy then trains on its imagined frames only,
    never on the real context frames each synthetic episode starts from (the synthetic-only arm of
    experiment augment).
    """
    if data is None or data == "" or data == []:
        raise RobodreamError("no training data: pass data=<store.zarr> (or data=a.zarr:0.7,b.zarr:0.3 to mix)")
    items = data.split(",") if isinstance(data, str) else list(data)
    sources = []
    for item in items:
        imagined_only = False
        if isinstance(item, dict):
            path, weight = item.get("path"), item.get("weight", 1.0)
            imagined_only = bool(item.get("imagined_only", False))
            unknown = set(item) - {"path", "weight", "imagined_only"}
            if unknown:
                raise RobodreamError(f"data entry {dict(item)} has unknown keys {sorted(unknown)}: use path, weight "
                                     "and imagined_only")
        else:
            path, weight = str(item).strip(), 1.0
            head, sep, tail = path.rpartition(":")
            if sep and head and "/" not in tail:
                try:
                    path, weight = head, float(tail)
                except ValueError:
                    pass
        if not path:
            raise RobodreamError(f"bad data entry {item!r}: expected <store> or <store>:<weight>")
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise RobodreamError(f"bad weight {weight!r} for {path}: use a number, e.g. {path}:0.5") from None
        if weight < 0:
            raise RobodreamError(f"the weight of {path} is {weight}: weights must be >= 0")
        # the flag only when set, so the record (and the hash) of every ordinary source stays as it was
        sources.append({"path": str(path), "weight": weight, **({"imagined_only": True} if imagined_only else {})})
    if sum(s["weight"] for s in sources) <= 0:
        raise RobodreamError("every data weight is 0: give at least one store a positive weight")
    return sources


@dataclass
class TrainPolicyConfig:
    """What to train, on what, and where."""

    data: Any = runtime(None)  # see parse_data
    out: str = runtime("runs/policy")
    resume: bool = runtime(False)  # continue the run in `out` from its lightning/last.ckpt
    overwrite: bool = runtime(False)  # replace an existing run in `out`
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    trainer: TrainerConfig = field(default_factory=policy_trainer)

    def __post_init__(self) -> None:
        if self.resume and self.overwrite:
            raise RobodreamError("resume=true and overwrite=true contradict each other: pick one")
        if self.data is None and self.resume:
            self.data = _saved_config(Path(self.out)).get("data")  # `resume=true out=...` is enough
        self.data = parse_data(self.data)


def _saved_config(out: Path) -> dict[str, Any]:
    path = out / "config.yaml"
    if not path.is_file():
        raise RobodreamError(f"cannot resume: {out} holds no training run (no config.yaml)")
    return OmegaConf.to_container(OmegaConf.load(path))  # type: ignore[return-value]


@dataclass
class TrainSummary:
    out: Path
    steps: int
    start_step: int
    elapsed_s: float
    steps_per_s: float
    final_loss: float | None
    checkpoints: list[Path]
    world_size: int = 1  # training processes (devices x nodes)

    def lines(self) -> list[str]:
        loss = f"{self.final_loss:.4f}" if self.final_loss is not None else "-"
        done = self.steps - self.start_step
        return [
            f"run          {self.out}",
            f"steps        {self.steps}" + (f" (resumed at {self.start_step})" if self.start_step else ""),
            f"time         {self.elapsed_s:.1f} s ({self.steps_per_s:.2f} steps/s over {done} steps)",
            f"devices      {self.world_size}" + (" (one batch each per step)" if self.world_size > 1 else ""),
            f"loss         {loss} (smoothed)",
            f"checkpoints  {len(self.checkpoints)} new in {self.out / 'checkpoints'}",
            f"evaluate     robodream eval policy={self.checkpoints[-1] if self.checkpoints else self.out} "
            f"(or --checkpoints {self.out})",
        ]


def open_training_data(cfg: TrainPolicyConfig):
    """Open every store, select the policy's features from each and check they agree.

    Returns (stores, features, stats) with stats pooled over the stores with the mixing weights.
    """
    from robodream.datasets.imagined import imagined_stats
    from robodream.datasets.normalize import merge_stats
    from robodream.datasets.reader import EpisodeStore
    from robodream.policies.base import select_features

    stores, features = [], None
    for source in cfg.data:
        store = EpisodeStore.open(source["path"])
        if store.num_episodes == 0:
            raise RobodreamError(f"{source['path']} holds no committed episodes")
        selected = select_features(cfg.policy, store.features, source["path"])
        if features is None:
            features, first = selected, source["path"]
        else:
            for key, feature in features.items():
                if list(selected[key]["shape"]) != list(feature["shape"]):
                    raise RobodreamError(f"{source['path']} has {key} of shape {selected[key]['shape']} but "
                                         f"{first} has {feature['shape']}: mixed stores must match")
            if store.fps != stores[0].fps:
                raise RobodreamError(f"{source['path']} runs at {store.fps} fps but {first} at {stores[0].fps}: "
                                     "mixed stores must share the control rate")
        stores.append(store)
    # an imagined-only source is normalised by its imagined frames alone: not one statistic from a real frame
    parts = [imagined_stats(st, list(st.features)) if source.get("imagined_only") else st.stats()
             for st, source in zip(stores, cfg.data, strict=True)]
    weights = [s["weight"] for s in cfg.data]
    stats = parts[0] if len(parts) == 1 else merge_stats(parts, weights)
    missing = [k for k in features if k not in stats["features"]]
    if missing:
        raise RobodreamError(f"no normalisation statistics for {missing} in {cfg.data[0]['path']}")
    return stores, features, stats["features"]


def _prepare_out(cfg: TrainPolicyConfig) -> Path | None:
    """Check `out` against resume/overwrite; returns the checkpoint to resume from (or None)."""
    import shutil

    from robodream.trainer import last_checkpoint, launched_as_rank_zero, prepare_run_dir

    out = Path(cfg.out)
    if not launched_as_rank_zero():  # rank 0 has checked and prepared `out` before it launched this process
        return last_checkpoint(out) if cfg.resume else None
    legacy = out / "lightning" / "last.ckpt"  # the layout of policy runs before the one trainer
    if legacy.exists() and cfg.resume:
        raise RobodreamError(f"cannot resume {out}: it was trained by an older robodream ({legacy}); its "
                             "checkpoints/step_<N> still evaluate, but continue it with overwrite=true or another out=")
    if legacy.exists() and not cfg.overwrite:
        raise RobodreamError(f"{out} already holds a training run: pass overwrite=true to replace it, or another out=")
    if cfg.resume:
        saved = _saved_config(out)
        for part in ("policy", "data"):
            if saved.get(part) != to_dict(cfg)[part]:
                raise RobodreamError(f"cannot resume {out}: it was trained with a different {part} config; use the "
                                     f"same {part} settings or another out=")
    resume_from = prepare_run_dir(out, cfg.resume, cfg.overwrite)
    if cfg.overwrite:  # prepare_run_dir removed checkpoints/; the old logs go too, and an older layout's folder
        for part in ("lightning", "logs"):
            shutil.rmtree(out / part, ignore_errors=True)
    return resume_from


def _quiet_lightning() -> None:
    # Lightning's banner lines (GPU/TPU available, ...) and data-loader advice drown the progress bar.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")


def train_policy(cfg: TrainPolicyConfig) -> TrainSummary:
    """Train as configured (see the module docstring); returns the summary."""
    import lightning as L
    import torch

    from robodream.callbacks import StepProgress, find_callback
    from robodream.datasets.imagined import context_frames
    from robodream.datasets.mixture import MixtureDataset, make_mixture_loader
    from robodream.datasets.windows import WindowDataset, make_loader
    from robodream.policies.pretrained import make_policy
    from robodream.policies.system import PolicyCheckpoints, PolicySystem
    from robodream.trainer import build_trainer, launched_as_rank_zero

    _quiet_lightning()
    t = cfg.trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    stores, features, stats = open_training_data(cfg)  # first: bad data (NaN actions) leaves `out` untouched
    resume_from = _prepare_out(cfg)
    policy_cfg = cfg.policy.for_task(stores[0].task)
    L.seed_everything(t.seed, verbose=False)
    policy = make_policy(policy_cfg, features, stats)
    windows = [WindowDataset(store, policy.delta_indices(),
                             skip_first=context_frames(store) if source.get("imagined_only") else None)
               for store, source in zip(stores, cfg.data, strict=True)]
    if len(windows) == 1:
        loader = make_loader(windows[0], t.batch_size, shuffle=True, num_workers=t.num_workers, drop_last=True,
                             seed=t.seed)
    else:
        loader = make_mixture_loader(MixtureDataset(windows), [s["weight"] for s in cfg.data], t.batch_size,
                                     num_workers=t.num_workers, seed=t.seed)
    if len(loader) == 0:
        raise RobodreamError(f"the data holds {sum(len(w) for w in windows)} frames, fewer than one batch of "
                             f"trainer.batch_size={t.batch_size}: lower the batch size or record more episodes")
    out = Path(cfg.out)
    if launched_as_rank_zero():
        save_config(cfg, out / "config.yaml")
        # A policy trains on every episode of its stores: recorded, so that evaluations can tell (training_data.py)
        record_training_data(out, [store_entry(st, list(range(st.num_episodes)), [])
                                   | ({"frames": "imagined only"} if source.get("imagined_only") else {})
                                   for st, source in zip(stores, cfg.data, strict=True)])
        warn_about_schedule(t, validates=False)

    def training_info(step: int) -> dict[str, Any]:
        return {"step": step, "task": stores[0].task, "fps": stores[0].fps, "robot_type": stores[0].robot_type,
                # frames trained on: every frame, or an imagined-only source's imagined frames
                "run": str(out), "data": [{**s, "episodes": st.num_episodes, "frames": len(w)}
                                          for s, st, w in zip(cfg.data, stores, windows, strict=True)]}

    checkpoints = PolicyCheckpoints(out, t.checkpoint_every_steps, t.max_steps, training_info)
    # Under DDP Lightning gives each process a DistributedSampler over the loader's own sampler (the mixture's
    # weighted sampler included), so the mixing ratio holds per device.
    trainer = build_trainer(t, out, [checkpoints], keep_checkpoints=False, step_progress=True)
    started = time.monotonic()
    trainer.fit(PolicySystem(policy, t), loader, ckpt_path=str(resume_from) if resume_from else None)
    elapsed = time.monotonic() - started
    progress = find_callback(trainer, StepProgress)
    return TrainSummary(out, trainer.global_step, progress.start_step, elapsed, progress.steps_per_s(trainer),
                        progress.loss, checkpoints.saved, trainer.world_size)


def run_train_policy(cfg: TrainPolicyConfig) -> int:
    """CLI entry: train and print the summary."""
    from robodream.trainer import launched_as_rank_zero

    summary = train_policy(cfg)
    if launched_as_rank_zero():
        print("\n".join(summary.lines()))
    return 0
