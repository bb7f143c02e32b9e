"""World-model stages: `train-wm`, `dream` (real vs imagined videos) and `eval-wm` (fidelity per horizon).

    robodream train-wm data=data/push.zarr world_model=configs/world_model/tiny.yaml out=runs/wm
    robodream dream ckpt=runs/wm data=data/push_val.zarr --episodes 0-7
    robodream eval-wm ckpt=runs/wm data=data/push_val.zarr
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from robodream.errors import RobodreamError
from robodream.trainer import TrainerConfig
from robodream.world_models.configuration import WorldModelConfig

# Heavy modules (torch, zarr, Lightning, diffusers, video) are imported inside the functions: the CLI imports
# this module to build its parser.


@dataclass
class TrainWorldModelConfig:
    data: str = "data/push_cube.zarr"
    out: str = "runs/wm"
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    #: share of episodes held out for validation (loss, rollout strips)
    val_fraction: float = 0.1
    resume: bool = False
    overwrite: bool = False
    #: "auto" loads the store into RAM when it fits, "ram" forces it, "disk" streams it
    cache: str = "auto"
    strip_episodes: int = 4
    strip_horizon: int = 16


@dataclass
class DreamConfig:
    ckpt: str = "runs/wm"
    data: str = "data/push_cube.zarr"
    episodes: str = "0-7"
    #: imagined steps per episode; None = until the longest selected episode ends
    horizon: int | None = None
    out: str | None = None  # default: <ckpt>/dream
    seed: int = 0
    num_sampling_steps: int | None = None
    scale: int = 3


@dataclass
class EvalWorldModelConfig:
    ckpt: str = "runs/wm"
    data: str = "data/push_cube.zarr"
    episodes: str = "all"
    horizon: int = 32
    out: str | None = None  # default: <ckpt>/eval_wm
    seed: int = 0
    num_sampling_steps: int | None = None


def train_world_model(cfg: TrainWorldModelConfig) -> Path:
    """Train (or resume) a world model; returns the exported model directory."""
    import lightning as L

    from robodream.datasets.reader import EpisodeStore
    from robodream.pipeline.config import save_config
    from robodream.trainer import build_trainer, launched_as_rank_zero, prepare_run_dir
    from robodream.world_models.model import WorldModel
    from robodream.world_models.training import WorldModelDataModule, WorldModelSystem

    store = EpisodeStore.open(cfg.data, cache=cfg.cache)
    model_cfg = cfg.world_model.with_data_shapes(store.features)
    resolved = replace(cfg, world_model=model_cfg)
    out = Path(cfg.out)
    resume_from = prepare_run_dir(out, cfg.resume, cfg.overwrite)
    if resume_from is not None and (out / "config.yaml").exists():
        _check_same_model(out / "config.yaml", model_cfg)
    first_process = launched_as_rank_zero()
    if first_process:
        save_config(resolved, out / "config.yaml")
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    model = WorldModel.from_stats(model_cfg, store.stats()["features"])
    data = WorldModelDataModule(store, model_cfg, cfg.trainer, cfg.val_fraction)
    system = WorldModelSystem(model, cfg.trainer, out, val_store=store, val_episodes=data.val_episodes,
                              strip_episodes=cfg.strip_episodes, strip_horizon=cfg.strip_horizon)
    trainer = build_trainer(cfg.trainer, out)
    parameters = sum(p.numel() for p in model.parameters())
    if first_process:
        print(f"training world model: {parameters / 1e6:.2f}M parameters, {len(data.train_episodes)} train / "
              f"{len(data.val_episodes)} val episodes of {store.location}, {cfg.trainer.max_steps} steps -> {out}",
              flush=True)
    started = time.monotonic()
    trainer.fit(system, datamodule=data, ckpt_path=str(resume_from) if resume_from else None)
    elapsed = time.monotonic() - started
    if not trainer.is_global_zero:  # under DDP every process gets here; one of them reports
        return out / "model"
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    summary = {"steps": trainer.global_step, "elapsed_s": elapsed, "metrics": metrics,
               "model": str(out / "model"), "parameters": parameters, "world_size": trainer.world_size}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"done: {trainer.global_step} steps in {elapsed:.0f} s; "
          + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if k.startswith("val/"))
          + f"\nmodel      {out / 'model'}\nval strips {out / 'val'}")
    return out / "model"


def _check_same_model(saved_config: Path, model_cfg: WorldModelConfig) -> None:
    from omegaconf import OmegaConf

    saved = OmegaConf.to_container(OmegaConf.load(saved_config))["world_model"]
    mine = OmegaConf.to_container(OmegaConf.structured(model_cfg))
    if saved != mine:
        changed = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
        raise RobodreamError(f"cannot resume {saved_config.parent}: the world_model config differs in {changed}; "
                             "use the same config, or overwrite=true to start again")


def _load(ckpt: str, data: str):
    from robodream.datasets.reader import EpisodeStore
    from robodream.world_models.model import WorldModel

    model = WorldModel.from_pretrained(ckpt)
    store = EpisodeStore.open(data)
    model.config.with_data_shapes(store.features)  # one clear error if the store does not fit the model
    return model, store


def dream(cfg: DreamConfig) -> tuple[Path, Path]:
    """Real (left) vs imagined (right) under the recorded actions, tiled over episodes: MP4 + GIF."""
    import numpy as np

    from robodream.datasets.video import tile_episodes, write_gif, write_mp4
    from robodream.pipeline.info import parse_episode_selection
    from robodream.world_models.model import resolve_checkpoint
    from robodream.world_models.rollout import imagine, load_clips, side_by_side

    model, store = _load(cfg.ckpt, cfg.data)
    k = model.config.context_frames
    episodes = parse_episode_selection(cfg.episodes, store.num_episodes)
    longest = int(max(store.episode_lengths[episodes]))
    horizon = cfg.horizon or max(1, longest - k)
    clips = load_clips(store, episodes, k, horizon, model.config.image_key, model.config.predict_state)
    imagined = imagine(model, clips, horizon, seed=cfg.seed, num_sampling_steps=cfg.num_sampling_steps)
    # Show the context too: the same real frames on both sides, then the continuation.
    context = clips.frames[:, :k]
    pairs = side_by_side(np.concatenate([context, clips.frames[:, k:]], axis=1),
                         np.concatenate([context, imagined], axis=1))
    labels = [f"#{e} real | imagined" for e in episodes]
    grid = tile_episodes(list(pairs), labels=labels, scale=cfg.scale)
    out = Path(cfg.out) if cfg.out else resolve_checkpoint(cfg.ckpt).parent / "dream"
    stem = out / f"dream_ep{cfg.episodes.replace(',', '_')}"
    return write_mp4(grid, f"{stem}.mp4", store.fps), write_gif(grid, f"{stem}.gif", store.fps)


def eval_world_model(cfg: EvalWorldModelConfig) -> tuple[dict, Path]:
    """Fidelity per horizon against copy-last-frame and shuffled actions; writes metrics.json + a plot."""
    from robodream.pipeline.info import parse_episode_selection
    from robodream.world_models.metrics import evaluate_fidelity, plot_fidelity
    from robodream.world_models.model import resolve_checkpoint

    model, store = _load(cfg.ckpt, cfg.data)
    episodes = parse_episode_selection(cfg.episodes, store.num_episodes)
    started = time.monotonic()
    metrics = evaluate_fidelity(model, store, episodes, horizon=cfg.horizon, seed=cfg.seed,
                                num_sampling_steps=cfg.num_sampling_steps)
    metrics.update(ckpt=str(resolve_checkpoint(cfg.ckpt)), data=str(cfg.data), eval_s=time.monotonic() - started)
    out = Path(cfg.out) if cfg.out else resolve_checkpoint(cfg.ckpt).parent / "eval_wm"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_fidelity(metrics, out / "fidelity.png")
    return metrics, out


def fidelity_table(metrics: dict, horizons: tuple[int, ...] = (1, 2, 4, 8, 16, 32)) -> list[str]:
    """A few horizons of the metrics as text lines (PSNR dB / SSIM)."""
    lines = [f"{'horizon':>8} {'model':>14} {'shuffled act.':>14} {'copy last':>14} {'n':>4}"]
    for h in horizons:
        if h > len(metrics["horizons"]):
            break
        i = h - 1
        cells = []
        for name in ("model", "shuffled_actions", "copy_last_frame"):
            p, s = metrics[name]["psnr"][i], metrics[name]["ssim"][i]
            cells.append(" " * 14 if p is None else f"{p:6.2f}/{s:5.3f}".rjust(14))
        lines.append(f"{h:>8} {' '.join(cells)} {metrics['count'][i]:>4}")
    return lines


def add_commands(sub) -> None:
    from robodream.pipeline.cli import add_config_command, build_from_args

    def train(ns) -> int:
        train_world_model(build_from_args(TrainWorldModelConfig, ns.args))
        return 0

    def run_dream(ns) -> int:
        cfg = build_from_args(DreamConfig, ns.args)
        if ns.episodes:
            cfg = replace(cfg, episodes=ns.episodes)
        mp4, gif = dream(cfg)
        print(f"mp4 {mp4}\ngif {gif}")
        return 0

    def run_eval(ns) -> int:
        metrics, out = eval_world_model(build_from_args(EvalWorldModelConfig, ns.args))
        print("\n".join(fidelity_table(metrics)))
        print(f"metrics {out / 'metrics.json'}\nplot    {out / 'fidelity.png'}")
        return 0

    add_config_command(sub, "train-wm", "train the action-conditioned video-diffusion world model", train,
                       f"{__name__}:TrainWorldModelConfig")
    dream_cmd = add_config_command(sub, "dream", "real vs imagined videos under recorded actions", run_dream,
                                  f"{__name__}:DreamConfig")
    dream_cmd.add_argument("--episodes", default=None, help="episodes to imagine, e.g. 0-7 (default 0-7)")
    add_config_command(sub, "eval-wm", "world-model fidelity (PSNR/SSIM per horizon) against baselines", run_eval,
                       f"{__name__}:EvalWorldModelConfig")
