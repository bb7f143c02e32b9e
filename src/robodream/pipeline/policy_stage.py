"""The policy stages of `robodream run`: train a policy on a collected store, then evaluate it.

Configured by the `policy:` section of a pipeline config (configs/pipeline/quickstart.yaml trains a tiny
diffusion policy on the push_cube store for a few hundred steps and evaluates it on a few held-out seeds).
A finished stage is skipped when the pipeline is re-run: training when its last checkpoint exists, evaluation
when its eval_info.json exists for the same checkpoint, seeds and episode count.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from robodream.errors import RobodreamError
from robodream.pipeline.train_policy import TrainerConfig
from robodream.policies.configuration import PolicyConfig
from robodream.robots.sim.env import EnvConfig


def _demo_trainer() -> TrainerConfig:
    return TrainerConfig(max_steps=300, batch_size=32, lr=1e-3, warmup_steps=20, checkpoint_every=100,
                         ema_power=0.5)


@dataclass
class PolicyEvalStageConfig:
    episodes: int = 4
    seed: int = 1000  # held out: collection uses seeds 0..N-1
    workers: int = 2
    videos: int = 2


@dataclass
class PolicyStageConfig:
    enabled: bool = True
    task: str = "push_cube"  # train on the store the collect stage recorded for this task
    out: str = "policy"  # relative to the pipeline's out
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    trainer: TrainerConfig = field(default_factory=_demo_trainer)
    eval: PolicyEvalStageConfig = field(default_factory=PolicyEvalStageConfig)


def run_policy_stages(cfg: PolicyStageConfig, stores: dict[str, tuple[str, EnvConfig]], run_dir: Path,
                      number: int, stages: int) -> dict[str, list[Path]]:
    """Train (stage `number`) and evaluate (stage `number + 1`); `stores` maps task -> (store, env config)."""
    from robodream.pipeline.evaluate import EvalConfig, run_evaluation
    from robodream.pipeline.train_policy import TrainPolicyConfig, train_policy

    if cfg.task not in stores:
        raise RobodreamError(f"policy.task={cfg.task!r} but the pipeline collects only {sorted(stores)}: add it to "
                             "collect or pick one of those")
    store, env = stores[cfg.task]
    out = Path(cfg.out) if Path(cfg.out).is_absolute() else run_dir / cfg.out
    final = out / "checkpoints" / f"step_{cfg.trainer.max_steps}"
    print(f"[{number}/{stages}] train-policy {cfg.policy.type} on {cfg.task}: {cfg.trainer.max_steps} steps "
          f"-> {out}", flush=True)
    started = time.monotonic()
    if final.exists():
        print("      already complete, skipped")
    else:
        train_cfg = TrainPolicyConfig(data=store, out=str(out), policy=cfg.policy, trainer=cfg.trainer,
                                      overwrite=True)
        summary = train_policy(train_cfg)
        print(f"      {summary.steps} steps, loss {summary.final_loss:.4f} ({time.monotonic() - started:.1f} s, "
              f"{summary.steps_per_s:.1f} steps/s)")

    e = cfg.eval
    eval_out = out / "eval" / f"{final.name}_{cfg.task}_seed{e.seed}"
    print(f"[{number + 1}/{stages}] eval {final.name} on {cfg.task}: {e.episodes} episodes from seed {e.seed}, "
          f"{e.workers} workers -> {eval_out}", flush=True)
    started = time.monotonic()
    info_path = eval_out / "eval_info.json"
    if _eval_done(info_path, final, e):
        print("      already complete, skipped")
    else:
        eval_cfg = EvalConfig(policy=str(final), task=cfg.task, episodes=e.episodes, seed=e.seed, workers=e.workers,
                              videos=e.videos, out=str(eval_out), env=env)
        [result] = run_evaluation(eval_cfg)
        print(f"      success {result.pc_success:.0f}% ({time.monotonic() - started:.1f} s)")
    print(f"      eval_info {info_path}")
    videos = sorted(eval_out.glob("eval_episode_*.mp4"))
    return {"policy": [final], "eval": [info_path], "videos": videos}


def _eval_done(path: Path, checkpoint: Path, e: PolicyEvalStageConfig) -> bool:
    if not path.exists():
        return False
    info = json.loads(path.read_text()).get("info", {})
    return (info.get("policy") == str(checkpoint) and info.get("seeds") == [e.seed, e.seed + e.episodes - 1])
