"""`robodream experiment augment`: do synthetic rollouts help a policy trained on few real demos?

    robodream experiment augment configs/experiment/augment.yaml
    robodream experiment augment configs/experiment/augment.yaml demos=[10] seeds=[0] out=runs/experiments/aug10

For every N in `demos` and every training seed in `seeds` (issue 6, item 3; DreamGen's recipe):
collect N real demos (seeds 0..N-1) -> [optionally add a noisy-expert "play" store, failures kept] -> train the
world model and the probe on that data -> train a policy on the real demos only -> generate synthetic rollouts
from the real demos' contexts (demo actions + noise, or the real-only policy with source=policy), filtered by
the probe's success -> train the same policy on real + synthetic (`synthetic.weight` of the samples drawn from
the synthetic store) -> evaluate both with the harness on the same held-out seeds. Then the results
(augment_report.py): results.csv (one row per N and seed), summary.csv/.md (mean +- std over seeds) and
success_vs_demos.png.

Every sub-step is a `Stage` (stages.py) with its own output directory under `out`, so a re-run skips the
sub-steps whose config and inputs are unchanged: an interrupted experiment resumes where it stopped, and
adding an N or a seed runs only what is new.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from robodream.errors import RobodreamError
from robodream.pipeline.collect import CollectConfig, PlayDataConfig
from robodream.pipeline.config import save_config, to_dict
from robodream.pipeline.generate import SOURCES, GenerateFilterConfig
from robodream.pipeline.merge import merge_stage
from robodream.pipeline.stages import Previous, Stage, StageResult, fingerprint, run_stages
from robodream.pipeline.train_policy import policy_trainer
from robodream.policies.configuration import PolicyConfig
from robodream.robots.sim.env import EnvConfig
from robodream.robots.sim.experts import ExpertConfig
from robodream.trainer import TrainerConfig
from robodream.world_models.configuration import WorldModelConfig
from robodream.world_models.probe import ProbeConfig


@dataclass
class RealDataConfig:
    """The real demonstrations: scripted-expert episodes recorded in PyBullet."""

    env: EnvConfig = field(default_factory=EnvConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    workers: int = 2  # collection worker processes (0 = this process)


@dataclass
class WorldModelSection:
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    val_fraction: float = 0.1


def _probe_trainer() -> TrainerConfig:
    return TrainerConfig(max_steps=1500, batch_size=64, learning_rate=1e-3, warmup_steps=50)


@dataclass
class ProbeSection:
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    trainer: TrainerConfig = field(default_factory=_probe_trainer)
    val_fraction: float = 0.1


def _success_only() -> GenerateFilterConfig:
    return GenerateFilterConfig(success_only=True)


@dataclass
class SyntheticConfig:
    """Generation (see `robodream generate`) and how much of the mixed training data is synthetic."""

    rollouts: int = 500
    horizon: int = 40
    source: str = "demo-actions"  # or "policy": the real-only policy of the same N and seed, with `noise`
    noise: float = 0.1  # action noise in stds of each action dimension of the real data
    batch_size: int = 32
    stop_at_success: bool = True
    filter: GenerateFilterConfig = field(default_factory=_success_only)
    accelerator: str = "auto"
    devices: str = "1"
    weight: float = 0.5  # share of the real+synthetic training samples drawn from the synthetic store

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise RobodreamError(f"synthetic.source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if not 0 < self.weight < 1:
            raise RobodreamError(f"synthetic.weight={self.weight}: the synthetic share must be in (0, 1)")


@dataclass
class PolicySection:
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    trainer: TrainerConfig = field(default_factory=policy_trainer)


@dataclass
class ExperimentEvalConfig:
    """Held-out evaluation, the same seeds for every policy of the experiment."""

    episodes: int = 50
    seed: int = 1000  # episode i uses seed + i; clear of the demo and play seeds
    workers: int = 2
    max_steps: int | None = None  # None: the task's own episode limit
    videos: int = 0


@dataclass
class AugmentConfig:
    out: str = "runs/experiments/augment"
    demos: list[int] = field(default_factory=lambda: [10, 25, 50])  # real demos N
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # training seeds (world model, probe, policy)
    #: true: one world model and probe per N, trained with the first seed and shared by all seeds (cheaper; the
    #: spread then covers policy training and generation only)
    shared_world_model: bool = False
    progress: bool = True
    real: RealDataConfig = field(default_factory=RealDataConfig)
    play: PlayDataConfig = field(default_factory=PlayDataConfig)
    world_model: WorldModelSection = field(default_factory=WorldModelSection)
    probe: ProbeSection = field(default_factory=ProbeSection)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    policy: PolicySection = field(default_factory=PolicySection)
    eval: ExperimentEvalConfig = field(default_factory=ExperimentEvalConfig)

    def __post_init__(self) -> None:
        if not self.demos or any(n < 2 for n in self.demos) or len(set(self.demos)) != len(self.demos):
            raise RobodreamError(f"demos={self.demos}: list distinct numbers of real demos, each >= 2, e.g. "
                                 "demos=[10,25,50]")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise RobodreamError(f"seeds={self.seeds}: list distinct training seeds, e.g. seeds=[0,1,2]")
        if self.eval.episodes < 1:  # play.episodes is checked by PlayDataConfig
            raise RobodreamError("eval.episodes must be >= 1")
        # Collection tries at most 2N + 10 seeds (collect.py); evaluation must never see a training seed.
        evaluated = range(self.eval.seed, self.eval.seed + self.eval.episodes)
        used = [("real demos", range(0, 2 * max(self.demos) + 10))]
        if self.play.episodes:
            used.append(("play data", range(self.play.seed, self.play.seed + 2 * self.play.episodes + 10)))
        for name, seeds in used:
            if evaluated.start < seeds.stop and seeds.start < evaluated.stop:
                raise RobodreamError(f"evaluation seeds {evaluated.start}..{evaluated.stop - 1} overlap the {name} "
                                     f"seeds {seeds.start}..{seeds.stop - 1}: move eval.seed (or play.seed) clear")


def _collect_stage(cfg: CollectConfig, name: str, out_dir: Path, progress: bool) -> Stage:
    """Record a store; an interrupted attempt (or a store made outside this experiment) is resumed."""
    hashed = {k: v for k, v in to_dict(cfg).items() if k not in ("workers", "out", "resume", "overwrite", "ray")}

    def run(previous: Previous) -> StageResult:
        from robodream.datasets import layout
        from robodream.datasets.reader import EpisodeStore
        from robodream.pipeline.collect import collect

        exists = layout.store_exists(cfg.out)
        resume = exists and (previous.interrupted or previous.stamp is None)
        if resume and EpisodeStore.open(cfg.out, cache="disk").num_episodes > cfg.episodes:
            raise RobodreamError(f"{cfg.out} holds more than {cfg.episodes} episodes: delete it to record it again")
        summary = collect(replace(cfg, resume=resume, overwrite=not resume), progress=progress)
        if summary.episodes_in_store < cfg.episodes:
            raise RobodreamError(f"collecting {name} stopped early: {summary.stopped}")
        return StageResult(f"{summary.new_episodes} new episodes, expert success {summary.success_rate:.0%}",
                           [("store", str(cfg.out))])

    return Stage(f"collect {name}: {cfg.episodes} episodes -> {cfg.out}", f"collect-{name}", out_dir, hashed, run)


def _world_model_stages(cfg: AugmentConfig, data: str, seed: int, out: Path, tag: str) -> list[Stage]:
    wm_trainer = replace(cfg.world_model.trainer, seed=seed, progress_bar=cfg.progress)
    probe_trainer = replace(cfg.probe.trainer, seed=seed, progress_bar=cfg.progress)
    runtime = ("progress_bar", "threads", "num_workers")

    def train_wm(previous: Previous) -> StageResult:
        from robodream.pipeline.world_model import TrainWorldModelConfig, train_world_model

        # hours of training on a CPU: an interrupted attempt continues from its last checkpoint
        resume = previous.resumes(out / "world_model" / "checkpoints" / "last.ckpt")
        model = train_world_model(TrainWorldModelConfig(data=data, out=str(out / "world_model"),
                                                        world_model=cfg.world_model.world_model, trainer=wm_trainer,
                                                        val_fraction=cfg.world_model.val_fraction, resume=resume,
                                                        overwrite=not resume))
        return StageResult(f"{wm_trainer.max_steps} steps" + (" (resumed)" if resume else ""),
                           [("world_model", str(model))])

    def train_probe(previous: Previous) -> StageResult:
        from robodream.pipeline.probe import TrainProbeConfig, metrics_lines, train_probe_command

        model, metrics = train_probe_command(TrainProbeConfig(data=data, out=str(out / "probe"),
                                                              probe=cfg.probe.probe, trainer=probe_trainer,
                                                              val_fraction=cfg.probe.val_fraction, overwrite=True))
        print("\n".join("      " + line for line in metrics_lines(metrics)))
        return StageResult(f"{probe_trainer.max_steps} steps", [("probe", str(model))])

    def hashed(section, trainer) -> dict:
        return {k: v for k, v in to_dict(section).items() if k != "trainer"} | {
            "trainer": {k: v for k, v in to_dict(trainer).items() if k not in runtime}}

    return [Stage(f"train-wm {tag}: {wm_trainer.max_steps} steps -> {out / 'world_model'}", f"train-wm-{tag}",
                  out / "world_model", hashed(cfg.world_model, wm_trainer), train_wm, inputs={"data": data}),
            Stage(f"train-probe {tag}: {probe_trainer.max_steps} steps -> {out / 'probe'}", f"train-probe-{tag}",
                  out / "probe", hashed(cfg.probe, probe_trainer), train_probe, inputs={"data": data})]


def _policy_stages(cfg: AugmentConfig, arm: str, data: dict[str, str], seed: int, out: Path, tag: str) -> list[Stage]:
    """train-policy on `data` (label -> store, or the generate summary for the synthetic part), then eval.

    The synthetic part is read from generate.json at run time: a generation that kept nothing leaves no store,
    and the policy then trains on the real demos alone (recorded as 0 kept in the tables).
    """
    trainer = replace(cfg.policy.trainer, seed=seed, progress_bar=cfg.progress)
    run_dir = out / f"policy_{arm}"
    final = run_dir / "checkpoints" / f"step_{trainer.max_steps}"

    def train(previous: Previous) -> StageResult:
        from robodream.pipeline.train_policy import TrainPolicyConfig, train_policy

        sources = [{"path": data["real"], "weight": 1.0}]
        if "synthetic" in data:
            kept = json.loads(Path(data["synthetic"]).read_text())
            if kept["kept"]:
                sources = [{"path": data["real"], "weight": 1 - cfg.synthetic.weight},
                           {"path": kept["store"], "weight": cfg.synthetic.weight}]
        resume = previous.resumes(run_dir / "checkpoints" / "last.ckpt")
        summary = train_policy(TrainPolicyConfig(data=sources, out=str(run_dir), policy=cfg.policy.policy,
                                                 trainer=trainer, resume=resume, overwrite=not resume))
        return StageResult(f"{summary.steps} steps on {len(sources)} store(s)" + (" (resumed)" if resume else ""),
                           [("policy", str(final))])

    eval_dir = run_dir / "eval"

    def evaluate(previous: Previous) -> StageResult:
        from robodream.pipeline.evaluate import EvalConfig, run_evaluation

        e = cfg.eval
        [result] = run_evaluation(EvalConfig(policy=str(final), env=cfg.real.env, episodes=e.episodes, seed=e.seed,
                                             workers=e.workers, max_steps=e.max_steps, videos=e.videos,
                                             out=str(eval_dir), progress=cfg.progress))
        return StageResult(f"success {result.pc_success:.0f}%", [("eval", str(eval_dir / "eval_info.json"))])

    train_config = {"policy": to_dict(cfg.policy.policy),
                    "trainer": {k: v for k, v in to_dict(trainer).items() if k not in ("progress_bar", "threads")}}
    if "synthetic" in data:
        train_config["synthetic_weight"] = cfg.synthetic.weight
    eval_config = {k: v for k, v in to_dict(cfg.eval).items() if k != "workers"} | {"env": to_dict(cfg.real.env)}
    return [Stage(f"train-policy {arm} {tag}: {trainer.max_steps} steps -> {run_dir}", f"train-policy-{arm}-{tag}",
                  run_dir, train_config, train, inputs=data),
            Stage(f"eval {arm} {tag}: {cfg.eval.episodes} episodes from seed {cfg.eval.seed}", f"eval-{arm}-{tag}",
                  eval_dir, eval_config, evaluate, inputs={"policy": str(final)})]


def _generate_stage(cfg: AugmentConfig, real: str, models: Path, seed: int, out: Path, tag: str) -> Stage:
    s = cfg.synthetic
    store = out / "synthetic" / "synthetic.zarr"
    summary_path = out / "synthetic" / "generate.json"
    policy = out / "policy_real" / "checkpoints" / f"step_{cfg.policy.trainer.max_steps}"
    inputs = {"real": real, "world_model": str(models / "world_model" / "model"),
              "probe": str(models / "probe" / "model")}
    if s.source == "policy":
        inputs["policy"] = str(policy)

    def run(previous: Previous) -> StageResult:
        from robodream.datasets.outputs import remove_store
        from robodream.pipeline.generate import GenerateConfig, generate

        remove_store(store)  # a store from an earlier attempt must not survive a run that keeps nothing
        gen = GenerateConfig(wm=inputs["world_model"], probe=inputs["probe"], data=real, policy=inputs.get("policy"),
                             source=s.source, rollouts=s.rollouts, horizon=s.horizon, noise=s.noise, seed=seed,
                             batch_size=s.batch_size, stop_at_success=s.stop_at_success, filter=s.filter,
                             out=str(store), overwrite=True, accelerator=s.accelerator, devices=s.devices,
                             progress=cfg.progress)
        try:
            summary = generate(gen)
            record = {"generated": summary.generated, "kept": summary.kept, "store": str(store),
                      "fingerprint": fingerprint(store)}
        except RobodreamError as exc:
            # generate refuses to write an empty store; for the experiment "nothing passed the filter" is a result
            if "filtered out" not in str(exc):
                raise
            record = {"generated": s.rollouts, "kept": 0, "store": None, "fingerprint": None}
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(record, indent=2))
        return StageResult(f"{record['kept']}/{record['generated']} rollouts kept", [("generate", str(summary_path))])

    config = {k: v for k, v in to_dict(s).items() if k not in ("weight", "accelerator", "devices")} | {"seed": seed}
    return Stage(f"generate {tag}: {s.rollouts} rollouts x {s.horizon} steps -> {store}", f"generate-{tag}",
                 out / "synthetic", config, run, inputs=inputs)


def plan(cfg: AugmentConfig) -> list[Stage]:
    """Every sub-step of the experiment, in order (nothing runs yet)."""
    root = Path(cfg.out)
    data_dir = root / "data"
    stages, real_stores = [], {}
    for n in cfg.demos:
        real_stores[n] = str(data_dir / f"real_N{n}.zarr")
        stages.append(_collect_stage(CollectConfig(episodes=n, workers=cfg.real.workers, out=real_stores[n], seed=0,
                                                   env=cfg.real.env, expert=cfg.real.expert),
                                     f"real-N{n}", data_dir, cfg.progress))
    wm_data = dict(real_stores)
    if cfg.play.episodes:
        play = str(data_dir / "play.zarr")
        demos = CollectConfig(workers=cfg.real.workers, env=cfg.real.env, expert=cfg.real.expert)
        stages.append(_collect_stage(cfg.play.collect_config(demos, play), "play", data_dir, cfg.progress))
        for n in cfg.demos:
            wm_data[n] = str(data_dir / f"real_N{n}+play.zarr")
            stages.append(merge_stage([real_stores[n], play], wm_data[n], f"merge-N{n}", data_dir))
    for n in cfg.demos:
        for seed in cfg.seeds:
            tag, out = f"N{n}-s{seed}", root / f"N{n}" / f"seed{seed}"
            models = root / f"N{n}" / "shared" if cfg.shared_world_model else out
            if not cfg.shared_world_model or seed == cfg.seeds[0]:
                stages += _world_model_stages(cfg, wm_data[n], seed, models,
                                              f"N{n}-shared" if cfg.shared_world_model else tag)
            stages += _policy_stages(cfg, "real", {"real": real_stores[n]}, seed, out, tag)
            stages.append(_generate_stage(cfg, real_stores[n], models, seed, out, tag))
            stages += _policy_stages(cfg, "mixed", {"real": real_stores[n],
                                                    "synthetic": str(out / "synthetic" / "generate.json")},
                                     seed, out, tag)
    return stages


def run_augment(cfg: AugmentConfig) -> dict[str, Path]:
    """Run every sub-step whose inputs changed, then write the tables and the plot; returns the result files."""
    from robodream.pipeline.experiments.augment_report import write_augment_results

    root = Path(cfg.out)
    save_config(cfg, root / "config.yaml")
    run_stages(plan(cfg), lambda line: print(line, flush=True))
    return write_augment_results(cfg, root)
