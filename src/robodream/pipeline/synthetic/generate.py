"""`robodream generate`: synthetic episodes from a world model, labelled by the probe, into an episode store.

    robodream generate wm=runs/wm probe=runs/probe data=data/push.zarr rollouts=1000 horizon=40 \
        source=demo-actions noise=0.1 filter.success_only=true out=data/synth.zarr
    robodream generate wm=runs/wm probe=runs/probe policy=runs/policy/checkpoints/step_5000 source=policy ...
    robodream generate wm=runs/wm probe=runs/probe data=data/push_cube+play.zarr source=expert noise=0.1 ...

Generation runs through Lightning's predict loop: `accelerator=gpu devices=4` spreads the rollouts over four
GPUs with no code change. Each device writes its own shard (the single-writer rule of the store holds per
shard); rank 0 merges the shards in rank order and moves the result into place only when everything
succeeded, so an interrupted run leaves no half-written store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.features import ENV_STATE
from robodream.hashing import sha256_file
from robodream.pipeline.world_model.gates import check_gates
from robodream.pretrained import WEIGHTS_FILE
from robodream.trainer import parse_devices

SOURCES = ("demo-actions", "policy", "expert")
OUT_HINT = "pass overwrite=true to replace it"


@dataclass
class GenerateFilterConfig:
    success_only: bool = False  # keep only rollouts the probe calls a success
    #: a success counts (for success_only and stop_at_success) once the probe has called it for this many
    #: consecutive imagined frames: a single frame's misreading ends episodes early (docs/benchmarks.md, issue 19)
    success_frames: int = 1
    samples: int = 1  # M imagined samples per rollout for the uncertainty filter (1: off)
    max_spread: float | None = None  # drop rollouts whose samples' mean per-pixel std (0-1 units) exceeds this
    #: replay each rollout's actions in PyBullet from its real start and keep it only when they succeed there
    #: (the real store must be a PyBullet recording; the episode's success then is the simulator's)
    replay_in_sim: bool = False


@dataclass
class GenerateConfig:
    wm: str = runtime("runs/wm")
    probe: str = runtime("runs/probe")
    data: str = runtime("data/push_cube.zarr")  # real store: start contexts, demo actions, action statistics
    episodes: str = "all"  # real episodes that may start a rollout (e.g. 0-49)
    policy: str | None = runtime(None)
    source: str = "demo-actions"
    rollouts: int = 100
    horizon: int = 40
    noise: float = 0.1  # action noise, in stds of each action dimension in the real data
    seed: int = 0
    batch_size: int = 32
    #: end each episode at its first success: the probe's, or PyBullet's with filter.replay_in_sim
    stop_at_success: bool = True
    #: source=expert: where the expert believes the cube is: "probe" (its reading of every imagined frame) or
    #: "start" (the real start's recorded cube, then dead reckoning: it slides ahead of the pusher; push_cube)
    expert_cube: str = "probe"
    filter: GenerateFilterConfig = field(default_factory=GenerateFilterConfig)
    out: str = runtime("data/synth.zarr")
    overwrite: bool = runtime(False)
    accelerator: str = runtime("auto")
    devices: str = runtime("1")
    strategy: str = "auto"
    progress: bool = runtime(True)
    #: run even when the world model or the probe fails its gates (pipeline/world_model/gates.py); the store's
    #: origin and the summary then say so
    force: bool = runtime(False)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise RobodreamError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source == "policy" and not self.policy:
            raise RobodreamError("source=policy needs policy=<checkpoint directory>")
        if self.rollouts < 1 or self.horizon < 1 or self.batch_size < 1:
            raise RobodreamError("rollouts, horizon and batch_size must all be >= 1")
        if self.filter.samples < 1 or self.filter.success_frames < 1:
            raise RobodreamError(f"filter.samples and filter.success_frames must be >= 1, got {self.filter.samples} "
                                 f"and {self.filter.success_frames}")
        if self.filter.max_spread is not None and self.filter.samples < 2:
            raise RobodreamError("filter.max_spread needs filter.samples >= 2 (the spread is measured across samples)")
        if self.noise < 0:
            raise RobodreamError(f"noise must be >= 0, got {self.noise}")
        if self.expert_cube not in ("probe", "start"):
            raise RobodreamError(f"expert_cube must be probe or start, got {self.expert_cube!r}")
        parse_devices(self.devices)  # a bad devices string fails here, not after the models are loaded


def model_id(directory: Path) -> str:
    """A short content hash of a model's weights, recorded in every synthetic episode's origin."""
    return sha256_file(directory / WEIGHTS_FILE).hexdigest()[:12]


@dataclass
class GenerateSummary:
    store: str
    generated: int = 0
    kept: int = 0
    successes: int = 0
    dropped_not_success: int = 0
    dropped_uncertain: int = 0
    dropped_sim_failure: int = 0
    elapsed_s: float = 0.0
    forced_past: list[str] = field(default_factory=list)  # the gate problems force=true ran past

    def lines(self) -> list[str]:
        rate = self.generated / self.elapsed_s if self.elapsed_s else 0.0
        forced = [f"FORCED      past the gates: {'; '.join(self.forced_past)} (probe labels below are not "
                  "trustworthy)"] if self.forced_past else []
        return forced + [f"store       {self.store}",
                f"rollouts    {self.generated} imagined, {self.kept} kept ({self.kept / max(1, self.generated):.0%})",
                f"probe       {self.successes} successes; dropped {self.dropped_not_success} failures, "
                f"{self.dropped_uncertain} uncertain, {self.dropped_sim_failure} failing when replayed in PyBullet",
                f"time        {self.elapsed_s:.1f} s ({rate:.2f} rollouts/s)"]


def generate(cfg: GenerateConfig) -> GenerateSummary | None:
    """Run the generation described by `cfg`; returns its summary once the store is in place.

    Under DDP every process returns only after the merged store is in place; rank 0 returns the summary (with
    every device's counts), the other ranks None.
    """
    import lightning as L

    from robodream.datasets import outputs
    from robodream.datasets.reader import parse_episode_selection
    from robodream.pipeline.synthetic.distributed import GenerationDataModule, GenerationModule, ShardWriter

    out = Path(cfg.out)
    outputs.check_output(out, overwrite=cfg.overwrite, hint=OUT_HINT)  # before loading anything (datasets/outputs.py)
    # The probe is judged only when its reading decides something: with the simulator-replay filter, success and
    # the episode's end are PyBullet's, and an expert that dead-reckons the cube never reads it either.
    reads_success = cfg.filter.success_only or (cfg.stop_at_success and not cfg.filter.replay_in_sim) or \
        (cfg.source == "expert" and cfg.expert_cube == "probe")
    forced_past = check_gates(cfg.wm, cfg.probe if reads_success else None, cfg.force, "generate")
    wm_dir, model, store, probe = _load_models(cfg)
    policy = _load_policy(cfg, store) if cfg.source == "policy" else None
    if cfg.source == "expert" and (not model.config.predict_state or ENV_STATE not in store.features):
        raise RobodreamError("source=expert acts on the imagined world's state: it needs a world model that predicts "
                             f"observation.state (world_model.predict_state) and a store with {ENV_STATE} (the goal)")
    settings = _settings(cfg, wm_dir, forced_past)
    episodes = parse_episode_selection(cfg.episodes, store.num_episodes)
    module = GenerationModule(model, probe, store, settings, policy)
    partial = out.with_name(f".{out.name}.partial")
    writer = ShardWriter(partial, store, model.config.image_key, cfg.rollouts, cfg.progress)
    trainer = L.Trainer(accelerator=cfg.accelerator, devices=parse_devices(cfg.devices), strategy=cfg.strategy,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[writer], use_distributed_sampler=False)
    # Rank 0 holds out='s writer lock for the whole run (and so owns, and first clears, the `.partial` shards).
    lock = outputs.claim_output(out, overwrite=cfg.overwrite, hint=OUT_HINT) if trainer.is_global_zero else None
    started, summary = time.monotonic(), GenerateSummary(store=str(out), forced_past=forced_past)
    try:
        trainer.predict(module, datamodule=GenerationDataModule(cfg.rollouts, episodes, cfg.seed, cfg.batch_size),
                        return_predictions=False)
        trainer.strategy.barrier()  # every shard closed and its counts written before rank 0 reads them
        error = None
        if trainer.is_global_zero:
            try:
                writer.finish(out, world_size=trainer.world_size, summary=summary)
            except RobodreamError as exc:  # handed to every rank below, so none waits on a merge that failed
                error = str(exc)
        # The broadcast doubles as a barrier: no rank returns (and goes on to read `out`) before the merged
        # store is in place, and all of them raise the same error when it could not be made.
        error = trainer.strategy.broadcast(error, src=0)
    except BaseException:
        if trainer.is_global_zero:
            writer.discard(trainer.world_size)
        raise
    finally:
        if lock is not None:
            lock.release()
    if error is not None:
        raise RobodreamError(error)
    summary.elapsed_s = time.monotonic() - started
    return summary if trainer.is_global_zero else None


def _settings(cfg: GenerateConfig, wm_dir: Path, forced_past: list[str]):
    """What each batch of rollouts needs from `cfg`, with the provenance every episode records."""
    from robodream.pipeline.synthetic.rollouts import GenerationSettings

    origin = {"world_model": str(wm_dir), "model_id": model_id(wm_dir), "probe": str(cfg.probe),
              "source": cfg.source, "noise": cfg.noise, "policy": cfg.policy, "data": str(cfg.data),
              "forced_past_gates": forced_past}
    if cfg.source == "expert":
        origin["expert_cube"] = cfg.expert_cube
    return GenerationSettings(source=cfg.source, horizon=cfg.horizon, noise=cfg.noise, seed=cfg.seed,
                              samples=cfg.filter.samples, max_spread=cfg.filter.max_spread,
                              success_only=cfg.filter.success_only, stop_at_success=cfg.stop_at_success,
                              success_frames=cfg.filter.success_frames, replay_in_sim=cfg.filter.replay_in_sim,
                              expert_cube=cfg.expert_cube, origin=origin)


def _load_models(cfg: GenerateConfig):
    """(world-model directory, world model, real store, probe), checked against each other."""
    from robodream.datasets.reader import EpisodeStore
    from robodream.world_models.model import WorldModel
    from robodream.world_models.probe import StateSuccessProbe

    wm_dir = WorldModel.resolve_model_dir(cfg.wm)
    model = WorldModel.from_pretrained(wm_dir)
    store = EpisodeStore.open(cfg.data)
    model.config.with_data_shapes(store.features)
    probe = StateSuccessProbe.from_pretrained(cfg.probe)
    if probe.config.image_size != model.config.image_size:
        raise RobodreamError(f"the probe reads {probe.config.image_size}px frames but the world model makes "
                             f"{model.config.image_size}px ones")
    return wm_dir, model, store, probe


def _load_policy(cfg: GenerateConfig, store):
    from robodream.policies.pretrained import check_features, load_pretrained

    policy = load_pretrained(cfg.policy)
    check_features({k: v for k, v in policy.features.items()}, store.features, f"policy {cfg.policy}",
                   f"store {cfg.data}")
    return policy
