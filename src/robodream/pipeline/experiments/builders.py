"""The rank stage of `robodream run`: `experiment rank` on the pipeline's own policies and models.

Configured by the `rank:` section of a pipeline config. The agents are every kept checkpoint of the real-only
policy run, the augmented policy's final checkpoint (when that stage is on) and the scripted expert at the
`expert_noise` levels; each is evaluated in PyBullet and in the pipeline's world model (success from the
pipeline's probe) on the `policy.eval` seeds, and rank.json / rank.csv / rank_scatter.png land in `<out>/rank`,
where the report's ranking section reads them. experiments/rank.py keeps one stage per agent and world inside,
so after a change only the evaluations whose checkpoint or models changed run again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.pipeline.policy.builders import PolicyStageConfig, final_checkpoint, kept_checkpoints
from robodream.pipeline.policy.imagination import ImaginationConfig
from robodream.pipeline.stages import Previous, Stage, StageResult, hashed, stage_dir
from robodream.robots.sim.env import EnvConfig
from robodream.stats import format_correlation


@dataclass
class RankStageConfig:
    """Sim vs imagined success of several agents, and their rank correlation."""

    enabled: bool = runtime(False)
    out: str = runtime("rank")  # relative to the pipeline's out
    expert_noise: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.02, 0.03, 0.05])
    episodes: int | None = None  # None: policy.eval.episodes (the seeds are policy.eval's too)
    max_steps: int | None = None  # the same episode limit in both worlds (None: the task's own)
    workers: int = runtime(2)

    def __post_init__(self) -> None:
        if self.episodes is not None and self.episodes < 1:
            raise RobodreamError(f"rank.episodes must be >= 1 (or null for policy.eval.episodes), got {self.episodes}")


def rank_stage(cfg: RankStageConfig, policy: PolicyStageConfig, policy_runs: list[Path], env: EnvConfig,
               imagination: ImaginationConfig, run_dir: Path) -> Stage:
    """One stage running experiment rank. `policy_runs`: the real-only run first (all its checkpoints become
    agents), then other runs (their final checkpoint); `imagination`: the world model and probe to imagine with."""
    from robodream.pipeline.experiments.rank import RankConfig, run_rank

    out = stage_dir(cfg.out, run_dir)
    checkpoints = kept_checkpoints(policy, policy_runs[0]) + [final_checkpoint(policy, r) for r in policy_runs[1:]]
    episodes = cfg.episodes or policy.eval.episodes
    rank_cfg = RankConfig(out=str(out), checkpoints=[str(c) for c in checkpoints], expert_noise=list(cfg.expert_noise),
                          env=env, imagination=imagination, episodes=episodes, seed=policy.eval.seed,
                          workers=cfg.workers, max_steps=cfg.max_steps, videos=0)

    def run(previous: Previous) -> StageResult:
        import json

        files = run_rank(rank_cfg, indent="      ")  # nested under this stage's line, like its other output
        stats = json.loads(files["json"].read_text())
        return StageResult(f"Spearman {format_correlation(stats['spearman'], 2)} over {stats['agents']} agents",
                           [("rank", str(files["json"])), ("rank", str(files["plot"]))])

    config = {**hashed(cfg), "episodes": episodes, "seed": policy.eval.seed, "task": policy.task, "env": env,
              **hashed(imagination)}
    inputs = {f"policy {i}": str(c) for i, c in enumerate(checkpoints)}
    inputs |= {"world_model": imagination.wm, "probe": imagination.probe}
    return Stage(f"rank: {len(checkpoints)} checkpoints + expert at {len(cfg.expert_noise)} noise levels, sim vs "
                 f"imagination, {episodes} episodes each -> {out}", "rank", out, config, run, inputs=inputs)
