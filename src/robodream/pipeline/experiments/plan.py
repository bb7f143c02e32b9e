"""`robodream experiment plan`: the same planner with the world model and with PyBullet, on the same seeds.

    robodream experiment plan configs/experiment/plan.yaml wm=runs/wm probe=runs/probe

Two evaluation stages (policy/builders.eval_stage, so a re-run skips a finished one): `policy=planner` with
`planner.dynamics=sim` (the oracle: this planner's upper bound on this task) and with `dynamics=world_model`,
both in PyBullet on held-out seeds `seed..seed+episodes-1`. Then the counterfactual planning gap, oracle
success minus world-model success, with its Agresti-Caffo 95% interval and a verdict:

- "planner is the bottleneck": the oracle itself is below `oracle_target`; fix the planner first;
- "model is the bottleneck": the interval lies above zero (the world model costs success);
- "as good as the oracle": the interval's upper end is within `max_gap`;
- "inconclusive": neither (more episodes would decide).

Also the planning cost: plans/s and imagined frames/s while planning, against the world model's raw frames/s at
the same batch (samples) and threads, measured here (efficiency = the ratio); and the world-model planner's
side-by-side videos (what PyBullet did with each executed action | the frame the model predicted for it) for the
first `videos` episodes and its first failure: where the model was exploited.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.pipeline.config import save_config
from robodream.pipeline.experiments.tables import model_weights
from robodream.pipeline.policy.planner import PLANNER, PlannerConfig
from robodream.pipeline.stages import Stage, run_stages
from robodream.robots.sim.env import EnvConfig
from robodream.stats import agresti_caffo_interval, format_success

DYNAMICS_FOLDERS = {"sim": "oracle", "world_model": "world_model"}


@dataclass
class PlanExperimentConfig:
    out: str = runtime("runs/experiments/plan")
    wm: str | None = runtime(None)  # world-model run directory (train-wm out=) or its model/ export
    probe: str | None = runtime(None)  # probe directory (train-probe out=)
    env: EnvConfig = field(default_factory=EnvConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    episodes: int = 30
    seed: int = 1000  # held out: collection uses 0..N-1; tune the planner on other seeds
    max_steps: int | None = 40  # the same episode limit for both planners (None: the task's own)
    workers: int = runtime(2)
    videos: int = 3  # per planner: the first N episodes (the world-model planner's also beside its imagination)
    oracle_target: float = 0.8  # below this the planner, not the model, is what to fix
    max_gap: float = 0.2  # "as good as the oracle": the gap's interval ends below this
    progress: bool = runtime(True)

    def __post_init__(self) -> None:
        missing = [name for name in ("wm", "probe") if getattr(self, name) is None]
        if missing:
            raise RobodreamError("experiment plan needs " + " and ".join(f"{m}=<dir>" for m in missing)
                                 + " (a train-wm run and a train-probe run)")
        if self.episodes < 1 or self.workers < 0 or self.seed < 0:
            raise RobodreamError("episodes must be >= 1, workers and seed >= 0")


def planning_stages(cfg: PlanExperimentConfig) -> list[Stage]:
    """One evaluation stage per dynamics, oracle first (nothing runs yet)."""
    from robodream.pipeline.policy.builders import eval_stage
    from robodream.pipeline.policy.evaluate import EvalConfig

    stages = []
    for dynamics, folder in DYNAMICS_FOLDERS.items():
        imagined = dynamics == "world_model"
        planner = replace(cfg.planner, dynamics=dynamics, wm=cfg.wm if imagined else None,
                          probe=cfg.probe if imagined else None)
        evaluation = EvalConfig(policy=PLANNER, task=cfg.env.task, env=cfg.env, planner=planner,
                                episodes=cfg.episodes, seed=cfg.seed, workers=cfg.workers, max_steps=cfg.max_steps,
                                videos=cfg.videos, out=str(Path(cfg.out) / folder), progress=cfg.progress)
        inputs = {"world_model": model_weights(cfg.wm), "probe": model_weights(cfg.probe)} if imagined else {}
        stages.append(eval_stage(evaluation, f"plan-{folder}", f"eval the planner with {folder.replace('_', ' ')} "
                                 f"dynamics: {cfg.episodes} episodes from seed {cfg.seed}", inputs))
    return stages


def verdict(oracle_wins: int, oracle_n: int, model_wins: int, model_n: int, oracle_target: float = 0.8,
            max_gap: float = 0.2) -> tuple[tuple[float, float], str]:
    """The gap's Agresti-Caffo 95% interval (oracle - model, as fractions) and what it says."""
    low, high = agresti_caffo_interval(oracle_wins, oracle_n, model_wins, model_n)
    if oracle_wins / oracle_n < oracle_target:
        return (low, high), (f"planner is the bottleneck: the oracle planner reaches {oracle_wins}/{oracle_n}, "
                             f"below {oracle_target:.0%}; fix the planner before judging the model")
    if low > 0:
        return (low, high), "model is the bottleneck: the world model costs the planner success"
    if high <= max_gap:
        return (low, high), f"as good as the oracle: the gap is below {max_gap:.0%} points"
    return (low, high), "inconclusive: the interval spans zero and the target gap; evaluate more episodes"


def raw_frames_per_s(wm: str, batch: int, threads: int, num_sampling_steps: int | None, steps: int = 6) -> float:
    """The world model's imagined frames/s at `batch` rollouts per step on `threads` torch threads (planning
    efficiency is measured against this)."""
    import numpy as np
    import torch

    from robodream.world_models.env import WorldModelEnv
    from robodream.world_models.model import WorldModel

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = WorldModel.from_pretrained(wm)
        c = model.config
        env = WorldModelEnv(model, num_envs=batch, seed=0, num_sampling_steps=num_sampling_steps)
        frames = np.zeros((batch, c.context_frames, c.image_size, c.image_size, 3), np.uint8)
        states = np.zeros((batch, c.context_frames, c.state_dim), np.float32) if c.predict_state else None
        env.reset_from(frames, None, states)
        action = np.zeros((batch, c.action_dim), np.float32)
        env.step(action)  # warm-up
        started = time.perf_counter()
        for _ in range(steps):
            env.step(action)
        return batch * steps / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)


def _summary(cfg: PlanExperimentConfig, infos: dict[str, dict]) -> dict[str, Any]:
    wins = {k: sum(bool(e["success"]) for e in info["per_episode"]) for k, info in infos.items()}
    n = {k: len(info["per_episode"]) for k, info in infos.items()}
    (low, high), said = verdict(wins["oracle"], n["oracle"], wins["world_model"], n["world_model"],
                                cfg.oracle_target, cfg.max_gap)
    planning = infos["world_model"]["aggregated"].get("planning", {})
    raw = raw_frames_per_s(cfg.wm, cfg.planner.samples, cfg.planner.threads, cfg.planner.num_sampling_steps)
    videos = [v for v in infos["world_model"].get("video_paths", []) if "imagined" in v]
    return {
        "episodes": cfg.episodes, "seeds": [cfg.seed, cfg.seed + cfg.episodes - 1], "max_steps": cfg.max_steps,
        "planners": {k: {"successes": wins[k], "n": n[k], "success": format_success(wins[k], n[k]),
                         "pc_success": infos[k]["aggregated"]["pc_success"],
                         "pc_success_ci95": infos[k]["aggregated"]["pc_success_ci95"],
                         "planning": infos[k]["aggregated"].get("planning")} for k in infos},
        "gap_points": 100 * (wins["oracle"] / n["oracle"] - wins["world_model"] / n["world_model"]),
        "gap_ci95_points": [100 * low, 100 * high], "verdict": said,
        "cost": {"plans_per_s": planning.get("plans_per_s"), "imagined_frames_per_s": planning.get("model_steps_per_s"),
                 "raw_frames_per_s": raw, "efficiency": (planning.get("model_steps_per_s") or 0) / raw,
                 "batch": cfg.planner.samples, "threads_per_worker": cfg.planner.threads},
        "side_by_side_videos": videos, "world_model": cfg.wm, "probe": cfg.probe,
    }


def run_plan_experiment(cfg: PlanExperimentConfig) -> dict[str, Any]:
    """Evaluate both planners (skipping finished evaluations), then the gap; returns and writes plan.json."""
    root = Path(cfg.out)
    save_config(cfg, root / "config.yaml")
    run_stages(planning_stages(cfg), lambda line: print(line, flush=True))
    infos = {folder: json.loads((root / folder / "eval_info.json").read_text())
             for folder in DYNAMICS_FOLDERS.values()}
    summary = _summary(cfg, infos)
    (root / "plan.json").write_text(json.dumps(summary, indent=2))
    cost = summary["cost"]
    lines = [f"oracle planner (PyBullet dynamics)  {summary['planners']['oracle']['success']}",
             f"world-model planner                 {summary['planners']['world_model']['success']}",
             f"gap (oracle - world model)          {summary['gap_points']:+.0f} points "
             f"(95% Agresti-Caffo {summary['gap_ci95_points'][0]:+.0f} .. {summary['gap_ci95_points'][1]:+.0f})",
             f"verdict                             {summary['verdict']}",
             f"planning cost                       {cost['plans_per_s'] or 0:.2f} plans/s, "
             f"{cost['imagined_frames_per_s'] or 0:.1f} imagined frames/s per worker; raw "
             f"{cost['raw_frames_per_s']:.1f} frames/s at batch {cost['batch']}: efficiency {cost['efficiency']:.2f}",
             f"summary                             {root / 'plan.json'}"]
    lines += [f"side by side                        {v}" for v in summary["side_by_side_videos"][:3]]
    print("\n" + "\n".join(lines), flush=True)
    return summary
