"""The policy stages of `robodream run`: train a policy on a collected store, then evaluate it; and the
train-policy / eval stage builders that `robodream run`, `experiment augment` and `experiment rank` share.

Configured by the `policy:` section of a pipeline config (configs/pipeline/quickstart.yaml trains the default
image policy on the push_cube store and evaluates it on held-out seeds; `extra_tasks` trains and evaluates the
same recipe on the stores of other tasks too, each into `<out>_<task>`).
Both are `Stage`s (stages.py): a re-run skips them while their config and inputs are unchanged; retraining the
policy (or recording another store) re-runs the evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.pipeline.policy.evaluate import EvalConfig
from robodream.pipeline.policy.imagination import ImaginationConfig
from robodream.pipeline.policy.train import TrainPolicyConfig, policy_trainer
from robodream.pipeline.stages import Previous, Stage, StageResult, hashed, stage_dir
from robodream.policies.configuration import PolicyConfig
from robodream.robots.sim.env import EnvConfig
from robodream.trainer import TrainerConfig


@dataclass
class PolicyEvalStageConfig:
    episodes: int = 4
    seed: int = 1000  # held out: collection uses seeds 0..N-1
    workers: int = runtime(2)
    videos: int = 2


@dataclass
class PolicyStageConfig:
    enabled: bool = True
    task: str = "push_cube"  # train on the store the collect stage recorded for this task (the policy that the
    #: synthetic-data, imagination and rank sections use)
    #: also train and evaluate the same recipe on these tasks' stores, each into `<out>_<task>`
    extra_tasks: list[str] = field(default_factory=list)
    out: str = "policy"  # relative to the pipeline's out
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    trainer: TrainerConfig = field(default_factory=policy_trainer)
    eval: PolicyEvalStageConfig = field(default_factory=PolicyEvalStageConfig)


def final_checkpoint(cfg: PolicyStageConfig, out: Path) -> Path:
    """The checkpoint the last training step writes (the one every evaluation of the pipeline reads)."""
    return out / "checkpoints" / f"step_{cfg.trainer.max_steps}"


def kept_checkpoints(cfg: PolicyStageConfig, out: Path) -> list[Path]:
    """Every checkpoint a train-policy run with this config keeps: each checkpoint_every_steps, and the last."""
    every, last = cfg.trainer.checkpoint_every_steps, cfg.trainer.max_steps
    return [out / "checkpoints" / f"step_{step}" for step in sorted({*range(every, last + 1, every), last})]


def policy_stages(cfg: PolicyStageConfig, stores: dict[str, tuple[str, EnvConfig]], run_dir: Path) -> list[Stage]:
    """train-policy on the store of `cfg.task` (and of each extra task), then eval on held-out seeds; `stores`
    maps task -> (store, env)."""
    stages = []
    for task in [cfg.task, *cfg.extra_tasks]:
        if task not in stores:
            key = "policy.task" if task == cfg.task else "policy.extra_tasks"
            raise RobodreamError(f"{key} names {task!r} but the pipeline collects only {sorted(stores)}: add it to "
                                 "collect or pick one of those")
        store, env = stores[task]
        main = task == cfg.task
        stages += train_and_eval_stages(replace(cfg, task=task), store, {"store": store}, env,
                                        stage_dir(cfg.out if main else f"{cfg.out}_{task}", run_dir),
                                        variant="" if main else task, on=task)
    return stages


def train_policy_stage(cfg: TrainPolicyConfig, slug: str, name: str, inputs: dict[str, str],
                       extra: dict | None = None, sources: Callable[[], Any] | None = None) -> Stage:
    """train-policy as a stage. `cfg` is the command's config; its data is a location, hashed through `inputs`
    (the stores it names) and `extra` (e.g. the mix weights, the task). `sources`, when given, decides the
    training data at run time (experiment augment: the synthetic store only when generation kept something).
    An interrupted attempt resumes from its last checkpoint."""
    out = Path(cfg.out)
    final = out / "checkpoints" / f"step_{cfg.trainer.max_steps}"

    def train(previous: Previous) -> StageResult:
        from robodream.pipeline.policy.train import train_policy

        resume = previous.resumes(out / "checkpoints" / "last.ckpt")
        data = sources() if sources is not None else cfg.data
        summary = train_policy(replace(cfg, data=data, resume=resume, overwrite=not resume))
        # a resumed run with no steps left to train has no loss to show
        loss = f"{summary.final_loss:.4f}" if summary.final_loss is not None else "-"
        return StageResult(f"{summary.steps} steps, loss {loss}, {summary.steps_per_s:.1f} steps/s"
                           + (" (resumed)" if resume else ""), [("policy", str(final))])

    return Stage(name, slug, out, hashed(cfg) | (extra or {}), train, inputs=inputs)


def eval_stage(cfg: EvalConfig, slug: str, name: str, inputs: dict[str, str], extra: dict | None = None,
               note: str = "") -> Stage:
    """eval as a stage, in PyBullet or in imagination: `cfg` is the command's config (its policy and world
    models are locations, hashed through `inputs`; its out is the stage's folder). Episodes are seeded, so the
    worker count never changes the results."""
    out = Path(cfg.out)

    def evaluate(previous: Previous) -> StageResult:
        from robodream.pipeline.policy.evaluate import run_evaluation

        [result] = run_evaluation(cfg)
        print(f"      eval_info {out / 'eval_info.json'}")
        videos = [("videos", str(p)) for p in sorted(out.glob("eval_episode_*.mp4"))]
        return StageResult(f"success {result.success_text}{note}", [("eval", str(out / "eval_info.json")), *videos])

    return Stage(name, slug, out, hashed(cfg) | (extra or {}), evaluate, inputs=inputs)


def train_and_eval_stages(cfg: PolicyStageConfig, data: Any, inputs: dict[str, str], env: EnvConfig, out: Path,
                          variant: str = "", mix: dict | None = None, on: str | None = None) -> list[Stage]:
    """train-policy on `data` (a store, a weighted mix `a.zarr:0.5,b.zarr:0.5`, or train-policy's list of sources)
    into `out`, then eval in sim.

    `inputs` are the stores `data` names (their fingerprints decide re-runs); `variant` tells apart the policies
    of one pipeline (the augmented one: slugs train-policy-augmented, eval-policy-augmented); `mix` is hashed in
    place of `data`, whose paths depend on where the run lives; `on` names the training data in the stage line.
    """
    final = final_checkpoint(cfg, out)
    suffix, label = (f"-{variant}", f" {variant}") if variant else ("", "")
    train_cfg = TrainPolicyConfig(data=data, out=str(out), policy=cfg.policy,
                                  trainer=cfg.trainer.on_one_device("train-policy"))
    e = cfg.eval
    eval_out = out / "eval" / f"{final.name}_{cfg.task}_seed{e.seed}"
    eval_cfg = EvalConfig(policy=str(final), task=cfg.task, episodes=e.episodes, seed=e.seed, workers=e.workers,
                          videos=e.videos, out=str(eval_out), env=env)
    on = on or cfg.task
    return [
        train_policy_stage(train_cfg, f"train-policy{suffix}",
                           f"train-policy{label} {cfg.policy.type} on {on}: {cfg.trainer.max_steps} steps -> {out}",
                           inputs, extra={"task": cfg.task, **({"mix": mix} if mix is not None else {})}),
        eval_stage(eval_cfg, f"eval-policy{suffix}", f"eval{label} {final.name} on {cfg.task}: {e.episodes} episodes "
                   f"from seed {e.seed}, {e.workers} workers -> {eval_out}", inputs={"policy": str(final)}),
    ]


@dataclass
class AugmentedPolicyStageConfig:
    """train-policy on real + synthetic windows, with the `policy:` section's network, trainer and eval."""

    enabled: bool = True
    out: str = "policy_augmented"  # relative to the pipeline's out
    real_weight: float = 0.5  # share of training windows drawn from the real store; the rest are synthetic

    def __post_init__(self) -> None:
        if not 0 < self.real_weight < 1:
            raise RobodreamError(f"augmented.real_weight must be in (0, 1), got {self.real_weight}: the share of "
                                 "real windows next to synthetic ones")


@dataclass
class SyntheticOnlyPolicyStageConfig:
    """train-policy on the synthetic store's imagined frames only (never a real frame: the real context frames each
    synthetic episode starts from are left out), with the `policy:` section's network, trainer and eval: the third
    arm beside real-only and augmented."""

    enabled: bool = False
    out: str = "policy_synthetic"  # relative to the pipeline's out


@dataclass
class ImaginationEvalStageConfig:
    """eval env=world_model of each trained policy, on the `policy.eval` seeds (so sim and imagination pair up)."""

    enabled: bool = runtime(True)
    episodes: int | None = None  # None: policy.eval.episodes
    max_steps: int | None = None  # stop imagined episodes early (None: the task's limit)
    success_threshold: float = 0.5
    success_radius: float | None = None  # also a success: the probe's cube this close (m) to the goal
    num_sampling_steps: int | None = None  # None: the world model's own
    workers: int = runtime(2)
    videos: int = 1
    force: bool = runtime(False)  # evaluate (and rank) even when the world model or the probe fails its gates


def imagination_config(cfg: ImaginationEvalStageConfig, wm_dir: Path, probe_dir: Path) -> ImaginationConfig:
    """The pipeline's world model and probe, with the imagination section's success threshold and sampler."""
    return ImaginationConfig(wm=str(wm_dir / "model"), probe=str(probe_dir / "model"),
                             success_threshold=cfg.success_threshold, success_radius=cfg.success_radius,
                             num_sampling_steps=cfg.num_sampling_steps, force=cfg.force)


def imagination_eval_stage(cfg: ImaginationEvalStageConfig, policy: PolicyStageConfig, out: Path, variant: str,
                           env: EnvConfig, wm_dir: Path, probe_dir: Path) -> Stage:
    """eval in imagination of the final checkpoint in `out`, on the `policy.eval` seeds (pairs with its sim eval)."""
    final = final_checkpoint(policy, out)
    episodes, seed = cfg.episodes or policy.eval.episodes, policy.eval.seed
    eval_out = out / "eval" / f"{final.name}_{policy.task}_imagined_seed{seed}"
    eval_cfg = EvalConfig(policy=str(final), task=policy.task, episodes=episodes, seed=seed, workers=cfg.workers,
                          videos=cfg.videos, out=str(eval_out), env=env, max_steps=cfg.max_steps, imagine=True,
                          imagination=imagination_config(cfg, wm_dir, probe_dir))
    which = f"{variant} " if variant else ""
    return eval_stage(eval_cfg, f"eval-imagined{'-' + variant if variant else ''}",
                      f"eval in imagination {which}{final.name} on {policy.task}: {episodes} episodes from seed "
                      f"{seed} -> {eval_out}", note=" (probe)",
                      inputs={"policy": str(final), "world_model": str(wm_dir / "model"),
                              "probe": str(probe_dir / "model")})
