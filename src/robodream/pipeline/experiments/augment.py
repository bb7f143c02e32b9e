"""`robodream experiment augment`: do synthetic rollouts help a policy trained on few real demos?

    robodream experiment augment configs/experiment/augment.yaml
    robodream experiment augment configs/experiment/augment.yaml demos=[10] seeds=[0] out=runs/experiments/aug10

For every N in `demos` and every training seed in `seeds` (issue 6, item 3; DreamGen's recipe): collect N real
demos (seeds 0..N-1; with clean DART labels, the same seeds once more with the executed actions: the copy for the
world model, the probe and generation) -> [optionally add a noisy-expert "play" store, failures kept] -> train the
world model and the probe on that data -> train a policy on the real demos only -> generate synthetic rollouts
from the real demos' contexts (demo actions + noise, or the real-only policy with source=policy), filtered by the
probe's success -> train the same policy on real + synthetic (`synthetic.weight` of the samples drawn from the
synthetic store) -> train it once more on the synthetic store's imagined frames only (the V-M-C arm: it never sees
a real frame) -> evaluate all three with the harness on the same held-out seeds. Then the results
(augment_report.py): results.csv (one row per N and seed), summary.csv/.md (mean +- std over seeds) and
success_vs_demos.png.

Every sub-step is a `Stage` (stages.py) with its own output directory under `out`, so a re-run skips the
sub-steps whose config and inputs are unchanged: an interrupted experiment resumes where it stopped, and
adding an N or a seed runs only what is new.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.pipeline.config import save_config
from robodream.pipeline.data.builders import collect_stage
from robodream.pipeline.data.collect import CollectConfig, PlayDataConfig, world_model_demos
from robodream.pipeline.data.merge import merge_stage
from robodream.pipeline.policy.builders import eval_stage, train_policy_stage
from robodream.pipeline.policy.evaluate import EvalConfig
from robodream.pipeline.policy.train import TrainPolicyConfig, policy_trainer
from robodream.pipeline.stages import Stage, read_stamp, run_stages, stage_store
from robodream.pipeline.synthetic.builders import generate_stage, verify_stage
from robodream.pipeline.synthetic.generate import SOURCES, GenerateConfig, GenerateFilterConfig
from robodream.pipeline.world_model.builders import fidelity_stage, train_probe_stage, train_wm_stage
from robodream.pipeline.world_model.commands import TrainWorldModelConfig
from robodream.pipeline.world_model.probe import TrainProbeConfig
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
    workers: int = runtime(2)  # collection worker processes (0 = this process)


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
    #: "demo-actions" (the start episode's own actions + `noise`), "policy" (the real-only policy of the same N and
    #: seed, with `noise`) or "expert" (the scripted expert acting on the imagined world as the probe reads it)
    source: str = "demo-actions"
    #: source=expert: "probe" (the expert reads the probe's cube on every imagined frame) or "start" (it takes the
    #: start frame's recorded cube and dead-reckons it: needs a PyBullet or otherwise annotated start; push_cube)
    expert_cube: str = "probe"
    #: where rollouts start: "demos" (the N real demos' first frames) or "demos+play" (the play episodes' too:
    #: many more start states; with source=demo-actions their actions are the play data's misses)
    starts: str = "demos"
    noise: float = 0.1  # action noise in stds of each action dimension of the real data
    batch_size: int = 32
    stop_at_success: bool = True
    filter: GenerateFilterConfig = field(default_factory=_success_only)
    accelerator: str = runtime("auto")
    devices: str = runtime("1")
    weight: float = 0.5  # share of the real+synthetic training samples drawn from the synthetic store
    #: replay the kept rollouts in PyBullet (verify-synthetic): the precision of their success labels, per N and seed
    verify: bool = True
    #: generate even when a world model or probe fails its gates (pipeline/world_model/gates.py: each world model
    #: is evaluated on its held-out episodes right after training)
    force: bool = runtime(False)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise RobodreamError(f"synthetic.source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.starts not in ("demos", "demos+play"):
            raise RobodreamError(f"synthetic.starts must be demos or demos+play, got {self.starts!r}")
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
    workers: int = runtime(2)
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
    progress: bool = runtime(True)
    real: RealDataConfig = field(default_factory=RealDataConfig)
    play: PlayDataConfig = field(default_factory=PlayDataConfig)
    world_model: WorldModelSection = field(default_factory=WorldModelSection)
    probe: ProbeSection = field(default_factory=ProbeSection)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    policy: PolicySection = field(default_factory=PolicySection)
    eval: ExperimentEvalConfig = field(default_factory=ExperimentEvalConfig)
    #: run only the sub-steps whose names match one of these patterns (shell-style, e.g. ["*-N25-s1"]), to run
    #: independent seeds side by side in separate processes once their shared steps are done; the tables then
    #: hold the evaluations finished so far. [] runs everything
    only: list[str] = runtime(default_factory=list)
    #: results.json files of earlier sittings (e.g. another N, docs/results/): their rows join this run's tables
    #: and plot, so an experiment run one N per session still ends in one table; this run's rows win on a clash
    earlier_results: list[str] = runtime(default_factory=list)

    def __post_init__(self) -> None:
        if not self.demos or any(n < 2 for n in self.demos) or len(set(self.demos)) != len(self.demos):
            raise RobodreamError(f"demos={self.demos}: list distinct numbers of real demos, each >= 2, e.g. "
                                 "demos=[10,25,50]")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise RobodreamError(f"seeds={self.seeds}: list distinct training seeds, e.g. seeds=[0,1,2]")
        if self.synthetic.starts == "demos+play" and not self.play.episodes:
            raise RobodreamError("synthetic.starts=demos+play needs play data: set play.episodes > 0")
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


def _world_model_stages(cfg: AugmentConfig, data: str, seed: int, out: Path, tag: str) -> list[Stage]:
    wm = TrainWorldModelConfig(data=data, out=str(out / "world_model"), world_model=cfg.world_model.world_model,
                               trainer=replace(cfg.world_model.trainer, seed=seed, progress_bar=cfg.progress),
                               val_fraction=cfg.world_model.val_fraction)
    probe = TrainProbeConfig(data=data, out=str(out / "probe"), probe=cfg.probe.probe,
                             trainer=replace(cfg.probe.trainer, seed=seed, progress_bar=cfg.progress),
                             val_fraction=cfg.probe.val_fraction)
    return [train_wm_stage(wm, f"train-wm-{tag}", f"train-wm {tag}: {wm.trainer.max_steps} steps -> {wm.out}"),
            fidelity_stage(wm, f"eval-wm-{tag}", f"eval-wm {tag}: fidelity on held-out episodes -> {wm.out}"),
            train_probe_stage(probe, f"train-probe-{tag}",
                              f"train-probe {tag}: {probe.trainer.max_steps} steps -> {probe.out}")]


def _policy_stages(cfg: AugmentConfig, arm: str, data: dict[str, str], seed: int, out: Path, tag: str) -> list[Stage]:
    """train-policy on `data` (label -> store, or the generate summary for the synthetic part), then eval.

    Arms: "real" (the real demos), "mixed" (real + synthetic, `synthetic.weight` of the samples synthetic) and
    "synthetic" (the synthetic store's imagined frames only: the policy never sees a real frame). The synthetic
    part is read from generate.json at run time: a generation that kept nothing leaves no store; the mixed policy
    then trains on the real demos alone (recorded as 0 kept in the tables), the synthetic-only one cannot train.
    """
    run_dir = out / f"policy_{arm}"
    real = [{"path": data["real"], "weight": 1.0}] if "real" in data else None
    imagined = [{"path": str(out / "synthetic" / "synthetic.zarr"), "weight": 1.0, "imagined_only": True}]

    def sources() -> list[dict]:
        kept = json.loads(Path(data["synthetic"]).read_text())
        if arm == "synthetic":
            if not kept["kept"]:
                raise RobodreamError(f"generate {tag} kept no rollouts: the synthetic-only policy has nothing to train "
                                     "on (loosen synthetic.filter, or generate more rollouts)")
            return [{**imagined[0], "path": kept["store"]}]
        if not kept["kept"]:
            return real
        return [{"path": data["real"], "weight": 1 - cfg.synthetic.weight},
                {"path": kept["store"], "weight": cfg.synthetic.weight}]

    train = TrainPolicyConfig(data=real or imagined, out=str(run_dir), policy=cfg.policy.policy,
                              trainer=replace(cfg.policy.trainer, seed=seed, progress_bar=cfg.progress))
    final = run_dir / "checkpoints" / f"step_{train.trainer.max_steps}"
    extra = {"synthetic_weight": cfg.synthetic.weight} if arm == "mixed" else None
    e = cfg.eval
    evaluation = EvalConfig(policy=str(final), env=cfg.real.env, episodes=e.episodes, seed=e.seed, workers=e.workers,
                            max_steps=e.max_steps, videos=e.videos, out=str(run_dir / "eval"), progress=cfg.progress)
    return [train_policy_stage(train, f"train-policy-{arm}-{tag}",
                               f"train-policy {arm} {tag}: {train.trainer.max_steps} steps -> {run_dir}", data,
                               extra=extra, sources=sources if "synthetic" in data else None),
            eval_stage(evaluation, f"eval-{arm}-{tag}", f"eval {arm} {tag}: {e.episodes} episodes from seed {e.seed}",
                       inputs={"policy": str(final)})]


def _generate_stage(cfg: AugmentConfig, real: str, models: Path, seed: int, out: Path, tag: str) -> Stage:
    """generate from the episodes of `real` (the store whose first frames start the rollouts) -> generate.json."""
    s = cfg.synthetic
    store = out / "synthetic" / "synthetic.zarr"
    policy = out / "policy_real" / "checkpoints" / f"step_{cfg.policy.trainer.max_steps}"
    inputs = {"real": real, "world_model": str(models / "world_model" / "model"),
              "probe": str(models / "probe" / "model")}
    if s.source == "policy":
        inputs["policy"] = str(policy)
    gen = GenerateConfig(wm=inputs["world_model"], probe=inputs["probe"], data=real, policy=inputs.get("policy"),
                         source=s.source, expert_cube=s.expert_cube,
                         rollouts=s.rollouts, horizon=s.horizon, noise=s.noise, seed=seed,
                         batch_size=s.batch_size, stop_at_success=s.stop_at_success, filter=s.filter,
                         out=str(store), overwrite=True, accelerator=s.accelerator, devices=s.devices,
                         progress=cfg.progress, force=s.force)
    return generate_stage(gen, f"generate-{tag}", f"generate {tag}: {s.rollouts} rollouts x {s.horizon} steps -> "
                          f"{store}", inputs, summary=out / "synthetic" / "generate.json")


def plan(cfg: AugmentConfig) -> list[Stage]:
    """Every sub-step of the experiment, in order (nothing runs yet)."""
    root = Path(cfg.out)
    data_dir = root / "data"
    stages, real_stores, wm_demos = [], {}, {}
    for n in cfg.demos:
        real = CollectConfig(episodes=n, workers=cfg.real.workers, out=f"data/real_N{n}.zarr", seed=0,
                             env=cfg.real.env, expert=cfg.real.expert)
        real_stores[n] = wm_demos[n] = stage_store(real.out, root)
        stages.append(collect_stage(real, root, f"real-N{n}", cfg.progress))
        executed = world_model_demos(real, f"data/real_N{n}_executed.zarr")
        if executed is not None:  # the world model, the probe and generation's starts see the executed actions
            wm_demos[n] = stage_store(executed.out, root)
            stages.append(collect_stage(executed, root, f"real-N{n}-executed", cfg.progress))
    wm_data = dict(wm_demos)
    if cfg.play.episodes:
        demos = CollectConfig(workers=cfg.real.workers, env=cfg.real.env, expert=cfg.real.expert)
        play_cfg = cfg.play.collect_config(demos, "data/play.zarr")
        play = stage_store(play_cfg.out, root)
        stages.append(collect_stage(play_cfg, root, "play", cfg.progress))
        for n in cfg.demos:
            wm_data[n] = str(data_dir / f"real_N{n}+play.zarr")
            stages.append(merge_stage([wm_demos[n], play], wm_data[n], f"merge-N{n}", data_dir))
    for n in cfg.demos:
        for seed in cfg.seeds:
            tag, out = f"N{n}-s{seed}", root / f"N{n}" / f"seed{seed}"
            models = root / f"N{n}" / "shared" if cfg.shared_world_model else out
            if not cfg.shared_world_model or seed == cfg.seeds[0]:
                stages += _world_model_stages(cfg, wm_data[n], seed, models,
                                              f"N{n}-shared" if cfg.shared_world_model else tag)
            stages += _policy_stages(cfg, "real", {"real": real_stores[n]}, seed, out, tag)
            starts = wm_data[n] if cfg.synthetic.starts == "demos+play" else wm_demos[n]
            stages.append(_generate_stage(cfg, starts, models, seed, out, tag))
            generated = str(out / "synthetic" / "generate.json")
            if cfg.synthetic.verify:
                stages.append(verify_stage(Path(generated), out / "synthetic" / "verify.json", f"verify-{tag}",
                                           f"verify-synthetic {tag}: replay the kept rollouts in PyBullet",
                                           cfg.progress))
            stages += _policy_stages(cfg, "mixed", {"real": real_stores[n], "synthetic": generated}, seed, out, tag)
            stages += _policy_stages(cfg, "synthetic", {"synthetic": generated}, seed, out, tag)
    return stages


def run_augment(cfg: AugmentConfig) -> dict[str, Path]:
    """Run every sub-step whose inputs changed, then write the tables and the plot; returns the result files."""
    from robodream.pipeline.experiments.augment_report import read_earlier_results, write_augment_results

    earlier = read_earlier_results(cfg.earlier_results)  # a bad file fails now, not after hours of sub-steps
    root = Path(cfg.out)
    stages = chosen_stages(plan(cfg), cfg.only)
    save_config(cfg, root / "config.yaml")
    run_stages(stages, lambda line: print(line, flush=True))
    if cfg.only:
        print(f"ran {len(stages)} sub-steps matching only={cfg.only}; the tables hold what has finished so far")
    return write_augment_results(cfg, root, earlier)


def chosen_stages(stages: list[Stage], patterns: list[str]) -> list[Stage]:
    """The stages whose slug matches one of `patterns` (all of them when there are none), in plan order."""
    if not patterns:
        return stages
    chosen = [s for s in stages if any(fnmatch.fnmatchcase(s.slug, p) for p in patterns)]
    if not chosen:
        raise RobodreamError(f"only={patterns} matches no sub-step of this experiment; its sub-steps are: "
                             f"{', '.join(s.slug for s in stages)}")
    missing = _unfinished_prerequisites(stages, chosen)
    if missing:
        needed = sorted({slug for needs in missing.values() for slug in needs})
        # generate's gate is the one prerequisite that is not a training: say why eval-wm counts when it is named
        why = (" (generate's gate needs eval-wm's fidelity record)"
               if any(slug.startswith("eval-wm") for slug in needed) else "")
        raise RobodreamError(f"only={patterns} runs {', '.join(missing)}, which read models that these sub-steps, "
                             f"left out of only= and not finished, write: {', '.join(needed)}{why}. Run them first, "
                             "or add them to only=")
    return chosen


def _unfinished_prerequisites(stages: list[Stage], chosen: list[Stage]) -> dict[str, list[str]]:
    """Chosen sub-step -> the earlier, not chosen, unfinished sub-steps that write the model run it reads.

    A model input is <run>/model, and a run directory is written by its training and by the evaluations that
    complete it: generate reads the world model, whose eval-wm records the fidelity that generate's gate requires,
    so generate run by only= before eval-wm would fail after minutes of set-up. Episode stores, generate.json and
    policy checkpoints are read by their own paths (a missing one is named when it is opened).
    """
    picked = {stage.slug for stage in chosen}
    missing: dict[str, list[str]] = {}
    for k, stage in enumerate(stages):
        if stage.slug not in picked:
            continue
        model_runs = {Path(path).parent for path in stage.inputs.values() if Path(path).name == "model"}
        for earlier in stages[:k]:
            if earlier.out not in model_runs or earlier.slug in picked:
                continue
            if (read_stamp(earlier.stamp_path) or {}).get("status") != "done":
                missing.setdefault(stage.slug, []).append(earlier.slug)
    return missing
