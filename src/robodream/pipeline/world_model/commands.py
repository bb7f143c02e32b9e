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

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.pipeline.data.training_data import RECORD_FILE, record_training_data, store_entry
from robodream.pipeline.world_model.counterfactual import CounterfactualConfig
from robodream.trainer import TrainerConfig, warn_about_schedule
from robodream.world_models.configuration import WorldModelConfig

# Heavy modules (torch, zarr, Lightning, diffusers, video) are imported inside the functions: the CLI imports
# this module to build its parser.


@dataclass
class TrainWorldModelConfig:
    data: str = runtime("data/push_cube.zarr")
    out: str = runtime("runs/wm")
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    #: share of episodes held out for validation (loss, rollout strips)
    val_fraction: float = 0.1
    resume: bool = runtime(False)
    overwrite: bool = runtime(False)
    #: "auto" loads the store into RAM when it fits, "ram" forces it, "disk" streams it
    cache: str = runtime("auto")
    strip_episodes: int = 4
    strip_horizon: int = 16


@dataclass
class DreamConfig:
    ckpt: str = "runs/wm"
    data: str = "data/push_cube.zarr"
    #: e.g. 0-7 or 0,3,5; None = the first 8 episodes the model did not train on (training_data.py)
    episodes: str | None = None
    #: imagined steps per episode; None = until the longest selected episode ends
    horizon: int | None = None
    out: str | None = None  # default: <ckpt>/eval/<store name>/
    seed: int = 0
    num_sampling_steps: int | None = None
    scale: int = 3


@dataclass
class EvalWorldModelConfig:
    ckpt: str = "runs/wm"
    data: str = "data/push_cube.zarr"
    #: e.g. all or 0-9; None = every episode the model did not train on (training_data.py)
    episodes: str | None = None
    horizon: int = 32
    out: str | None = None  # default: <ckpt>/eval/<store name>/
    seed: int = 0
    num_sampling_steps: int | None = None
    #: with counterfactual.probe=<probe dir>: other agents' actions replayed in PyBullet and in the model
    counterfactual: CounterfactualConfig = field(default_factory=CounterfactualConfig)


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
    stats = store.stats()["features"]  # before anything is written: refuses NaN/inf in the data
    resolved = replace(cfg, world_model=model_cfg)
    out = Path(cfg.out)
    resume_from = prepare_run_dir(out, cfg.resume, cfg.overwrite)
    if resume_from is not None and (out / "config.yaml").exists():
        _check_same_model(out / "config.yaml", model_cfg)
    first_process = launched_as_rank_zero()
    if first_process:
        save_config(resolved, out / "config.yaml")
        warn_about_schedule(cfg.trainer, validates=cfg.val_fraction > 0)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    model = WorldModel.from_stats(model_cfg, stats)
    data = WorldModelDataModule(store, model_cfg, cfg.trainer, cfg.val_fraction)
    if first_process:
        record_training_data(out, [store_entry(store, data.train_episodes, data.val_episodes)])
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
    val = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if k.startswith("val/"))
    print(f"done: {trainer.global_step} steps in {elapsed:.0f} s" + (f"; {val}" if val else "; no validation ran"))
    for label, path in (("model", out / "model"), ("val strips", out / "val"), ("data split", out / RECORD_FILE)):
        if path.exists():  # only what this run wrote: no validation, no strips
            print(f"{label:<10} {path}")
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


def run_directory(ckpt: str) -> Path:
    """Where a model's training record and evaluations live: the run directory of `<run>/model`, else the
    model directory itself (a model exported on its own)."""
    from robodream.pretrained import run_dir_of
    from robodream.world_models.model import WorldModel

    return run_dir_of(WorldModel.resolve_model_dir(ckpt))


def output_folder(out: str | None, run_dir: Path, data: str, stage_output: bool = False) -> Path:
    """`out`, or `<run>/eval/<store name>/`; never a folder holding what a `robodream run` stage wrote there
    (its dream/ and eval_wm/), unless that stage is the one writing (`stage_output`)."""
    from robodream.pipeline.data.training_data import stage_outputs_inside, store_name

    folder = Path(out) if out else run_dir / "eval" / store_name(data)
    if not stage_output:
        taken = stage_outputs_inside(folder, run_dir)
        if taken:
            raise RobodreamError(f"{folder} holds the results of a `robodream run` stage ({taken[0]}): write "
                                 f"elsewhere (out=..., default {run_dir / 'eval' / store_name(data)})")
    return folder


def dream(cfg: DreamConfig, stage_output: bool = False) -> tuple[Path, Path]:
    """Real (left) vs imagined (right) under the recorded actions, tiled over episodes: MP4 + GIF."""
    import numpy as np

    from robodream.datasets.reader import parse_episode_selection
    from robodream.datasets.video import tile_episodes, write_gif, write_mp4
    from robodream.pipeline.data.training_data import EpisodeChoice
    from robodream.world_models.rollout import imagine, load_clips, side_by_side

    model, store = _load(cfg.ckpt, cfg.data)
    run_dir = run_directory(cfg.ckpt)
    out = output_folder(cfg.out, run_dir, cfg.data, stage_output)
    choice = EpisodeChoice(run_dir, store)
    if cfg.episodes is None:
        episodes = choice.default()[:8]
        name = "held_out" if choice.entry else "ep" + _span(episodes)
    else:
        episodes = parse_episode_selection(cfg.episodes, store.num_episodes)
        name = "ep" + cfg.episodes.replace(",", "_")
    trained = choice.check(episodes, "dream", "labelled '(train)' in the video")
    k = model.config.context_frames
    longest = int(max(store.episode_lengths[episodes]))
    horizon = cfg.horizon or max(1, longest - k)
    clips = load_clips(store, episodes, k, horizon, model.config.image_key, model.config.predict_state)
    imagined = imagine(model, clips, horizon, seed=cfg.seed, num_sampling_steps=cfg.num_sampling_steps)
    # Show the context too: the same real frames on both sides, then the continuation.
    context = clips.frames[:, :k]
    pairs = side_by_side(np.concatenate([context, clips.frames[:, k:]], axis=1),
                         np.concatenate([context, imagined], axis=1))
    labels = [f"#{e}{' (train)' if e in trained else ''} real | imagined" for e in episodes]
    grid = tile_episodes(list(pairs), labels=labels, scale=cfg.scale)
    stem = out / f"dream_{name}"
    return write_mp4(grid, f"{stem}.mp4", store.fps), write_gif(grid, f"{stem}.gif", store.fps)


def _span(episodes: list[int]) -> str:
    return f"{episodes[0]}-{episodes[-1]}" if episodes == list(range(episodes[0], episodes[-1] + 1)) else \
        "_".join(map(str, episodes))


def eval_world_model(cfg: EvalWorldModelConfig, stage_output: bool = False) -> tuple[dict, Path]:
    """Fidelity per horizon against copy-last-frame and shuffled actions; writes metrics.json + a plot."""
    from robodream.datasets.reader import parse_episode_selection
    from robodream.pipeline.data.training_data import EpisodeChoice
    from robodream.pipeline.world_model.gates import fidelity_problems, write_fidelity_record
    from robodream.world_models.metrics import evaluate_fidelity, plot_fidelity
    from robodream.world_models.model import WorldModel

    model, store = _load(cfg.ckpt, cfg.data)
    run_dir = run_directory(cfg.ckpt)
    out = output_folder(cfg.out, run_dir, cfg.data, stage_output)
    choice = EpisodeChoice(run_dir, store)
    episodes = choice.default() if cfg.episodes is None else parse_episode_selection(cfg.episodes,
                                                                                      store.num_episodes)
    trained = choice.check(episodes, "eval-wm", "listed as training_episodes in metrics.json")
    started = time.monotonic()
    metrics = evaluate_fidelity(model, store, episodes, horizon=cfg.horizon, seed=cfg.seed,
                                num_sampling_steps=cfg.num_sampling_steps)
    metrics.update(ckpt=str(WorldModel.resolve_model_dir(cfg.ckpt)), data=str(cfg.data),
                   eval_s=time.monotonic() - started, episodes=[int(e) for e in episodes],
                   training_episodes=[int(e) for e in trained], held_out=not trained and choice.entry is not None)
    metrics["problems"] = fidelity_problems(metrics)  # the gates' verdict (gates.py), recorded with the figures
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_fidelity(metrics, out / "fidelity.png")
    write_fidelity_record(run_dir, WorldModel.resolve_model_dir(cfg.ckpt), metrics, out / "metrics.json")
    if cfg.counterfactual.probe is not None:
        from robodream.pipeline.world_model.counterfactual import counterfactual_report

        counterfactual_report(model, cfg.counterfactual, out)
    return metrics, out


def add_commands(sub) -> None:
    from robodream.pipeline.cli_args import add_config_command, build_from_args

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
        from robodream.pipeline.world_model.gates import verdict_text
        from robodream.world_models.metrics import fidelity_table

        cfg = build_from_args(EvalWorldModelConfig, ns.args)
        metrics, out = eval_world_model(cfg)
        print("\n".join(fidelity_table(metrics)))
        if cfg.counterfactual.probe is not None:
            from robodream.pipeline.world_model.counterfactual import counterfactual_lines

            print("counterfactual replay: the same actions from the same start, PyBullet vs imagined")
            print("\n".join(counterfactual_lines(json.loads((out / "counterfactual.json").read_text()))))
        print(f"verdict {verdict_text(metrics['problems'])}")
        print(f"metrics {out / 'metrics.json'}\nplot    {out / 'fidelity.png'}")
        return 0

    add_config_command(sub, "train-wm", "train the action-conditioned video-diffusion world model", train,
                       f"{__name__}:TrainWorldModelConfig")
    dream_cmd = add_config_command(sub, "dream", "real vs imagined videos under recorded actions", run_dream,
                                  f"{__name__}:DreamConfig")
    dream_cmd.add_argument("--episodes", default=None, help="episodes to imagine, e.g. 0-7 (default: the first 8 the "
                           "model did not train on)")
    add_config_command(sub, "eval-wm", "world-model fidelity (PSNR/SSIM per horizon) against baselines", run_eval,
                       f"{__name__}:EvalWorldModelConfig")
    add_config_command(sub, "train-probe", "train the state-and-success probe that labels imagined frames",
                       _cmd_train_probe, "robodream.pipeline.world_model.probe:TrainProbeConfig")


def _cmd_train_probe(ns) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.world_model.probe import TrainProbeConfig, metrics_lines, train_probe_command

    model, metrics = train_probe_command(build_from_args(TrainProbeConfig, ns.args))
    print("\n".join(metrics_lines(metrics)) + f"\nprobe            {model}")
    return 0
