"""`robodream experiment rank`: does success measured in imagination rank policies like success in simulation?

    robodream experiment rank configs/experiment/rank.yaml policy_run=runs/policy \
        imagination.wm=runs/wm imagination.probe=runs/probe

The agents (issue 6, item 4): every checkpoint of a policy run (`policy_run`), extra checkpoints such as a BC run
(`checkpoints`), and the scripted expert at a few noise levels (`expert_noise`: its success falls as the noise
grows, which gives known-ordered reference points). Each is evaluated twice by the same harness on the same
seeds: in PyBullet and in the world model's imagination (success from the probe; each imagined episode starts
from the sim's first frame for its seed). Then Pearson's r and Spearman's rho of the two success rates over
the agents (IRASim and WorldGym report these), rank.json / rank.csv and rank_scatter.png (sim vs imagined,
labelled points, y = x).

Every evaluation is a `Stage` (stages.py) in its own directory, so a re-run evaluates only what changed (a new
checkpoint, another world model).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.pipeline.config import save_config
from robodream.pipeline.experiments.tables import model_weights, pyplot, write_csv
from robodream.pipeline.policy.imagination import ImaginationConfig
from robodream.pipeline.stages import Stage, run_stages
from robodream.robots.sim.env import EnvConfig
from robodream.robots.sim.experts import ExpertConfig
from robodream.stats import (
    bootstrap_interval,
    format_correlation,
    format_interval,
    mean_absolute_error,
    pearson,
    spearman,
)

WORLDS = ("sim", "imagined")
COLUMNS = ("agent", "kind", "step", "sim_success", "imagined_success", "sim_eval", "imagined_eval")


@dataclass
class RankConfig:
    out: str = runtime("runs/experiments/rank")
    policy_run: str | None = None  # a train-policy run: every checkpoints/step_<N> is an agent
    checkpoints: list[str] = field(default_factory=list)  # extra checkpoints (or runs: their latest), e.g. BC
    expert_noise: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.02, 0.03])  # scripted expert, noise (m)
    env: EnvConfig = field(default_factory=EnvConfig)
    imagination: ImaginationConfig = field(default_factory=ImaginationConfig)
    episodes: int = 50
    seed: int = 1000  # episode i uses seed + i, in both worlds; keep clear of the training seeds
    workers: int = runtime(2)
    max_steps: int | None = None  # None: the task's own episode limit
    videos: int = 0  # per agent and world
    progress: bool = runtime(True)

    def __post_init__(self) -> None:
        missing = [name for name in ("wm", "probe") if getattr(self.imagination, name) is None]
        if missing:
            raise RobodreamError("experiment rank evaluates every agent in imagination too: pass "
                                 + " and ".join(f"imagination.{m}=<{'world-model' if m == 'wm' else m} run>"
                                                for m in missing))
        for noise in self.expert_noise:
            ExpertConfig(noise=noise)  # its own range check, before anything runs
        if self.episodes < 1 or self.workers < 0 or self.seed < 0:
            raise RobodreamError("episodes must be >= 1, workers and seed >= 0")


@dataclass
class Agent:
    label: str  # shown in the tables and next to its point in the plot
    kind: str  # "checkpoint" | "expert"
    policy: str  # checkpoint directory, or "expert"
    noise: float = 0.0  # the expert's action noise
    step: int | None = None

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.label).strip("_")


def agents(cfg: RankConfig) -> list[Agent]:
    """The agents to rank, in order: the run's checkpoints, the extra checkpoints, the expert's noise levels."""
    from robodream.pipeline.policy.evaluate import EXPERT
    from robodream.pretrained import checkpoint_label, resolve_model_dir, run_checkpoints

    found = []
    if cfg.policy_run:
        if not Path(cfg.policy_run).is_dir():
            raise RobodreamError(f"policy_run={cfg.policy_run} does not exist: name a train-policy out= directory")
        found += [Agent(f"{Path(cfg.policy_run).name}/{path.name}", "checkpoint", str(path), step=step)
                  for step, path in run_checkpoints(cfg.policy_run)]
    for given in cfg.checkpoints:
        path = resolve_model_dir(given, "policy")
        match = re.match(r"^step_(\d+)$", path.name)
        found.append(Agent(checkpoint_label(path), "checkpoint", str(path), step=int(match[1]) if match else None))
    found += [Agent(f"expert noise={noise:g}", "expert", EXPERT, noise=noise) for noise in cfg.expert_noise]
    if len(found) < 2:
        raise RobodreamError(f"experiment rank needs at least 2 agents to correlate, found {len(found)}: set "
                             "policy_run=<train-policy run>, checkpoints=[...] or expert_noise=[...]")
    labels = [a.slug for a in found]
    if len(set(labels)) != len(labels):
        raise RobodreamError(f"two agents share a name ({labels}): list each checkpoint once")
    return found


def _eval_stage(cfg: RankConfig, agent: Agent, world: str, root: Path) -> Stage:
    from robodream.pipeline.policy.builders import eval_stage
    from robodream.pipeline.policy.evaluate import EvalConfig

    out = root / agent.slug / world
    imagine = world == "imagined"
    evaluation = EvalConfig(policy=agent.policy, task=cfg.env.task, env=cfg.env, expert=ExpertConfig(noise=agent.noise),
                            imagine=imagine, episodes=cfg.episodes, seed=cfg.seed,
                            workers=cfg.workers, max_steps=cfg.max_steps, videos=cfg.videos, out=str(out),
                            progress=cfg.progress,
                            # in PyBullet the world model's settings do not matter, so they stay out of the hash
                            imagination=cfg.imagination if imagine else ImaginationConfig())
    inputs = {} if agent.kind == "expert" else {"policy": agent.policy}
    if imagine:
        inputs |= {"world_model": model_weights(cfg.imagination.wm), "probe": model_weights(cfg.imagination.probe)}
    # The agent's label in the hash: the same folder never passes off one agent's results as another's.
    return eval_stage(evaluation, f"eval-{agent.slug}-{world}",
                      f"eval {agent.label} in {world}: {cfg.episodes} episodes from seed {cfg.seed}", inputs,
                      extra={"agent": agent.label})


def plan(cfg: RankConfig) -> tuple[list[Agent], list[Stage]]:
    """The agents and one evaluation stage per agent and world (nothing runs yet)."""
    found = agents(cfg)
    return found, [_eval_stage(cfg, agent, world, Path(cfg.out)) for agent in found for world in WORLDS]


def correlation(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pearson and Spearman correlation of sim vs imagined success over the agents (None when undefined), the
    mean absolute error of the imagined success rate (points), and a 95% bootstrap interval of each (agents
    resampled with replacement)."""
    sim = [r["sim_success"] for r in rows]
    imagined = [r["imagined_success"] for r in rows]
    stats: dict[str, Any] = {"agents": len(rows)}
    for name, statistic in (("pearson", pearson), ("spearman", spearman), ("mae", mean_absolute_error)):
        stats[name] = statistic(sim, imagined) if rows else None
        interval = bootstrap_interval(statistic, sim, imagined)
        stats[f"{name}_ci95"] = list(interval) if interval else None
    return stats


def _with_interval(stats: dict[str, Any], name: str) -> str:
    """"+0.632 (95% CI +0.20..+0.90)", "36.8 points (95% CI 26.0..46.0)", or "undefined"."""
    value, interval = stats[name], stats.get(f"{name}_ci95")
    if name == "mae":
        return ("undefined" if value is None else f"{value:.1f} points") + format_interval(interval, "{:.1f}")
    return format_correlation(value) + format_interval(interval)


def plot_scatter(rows: list[dict[str, Any]], stats: dict[str, Any], path: Path) -> Path:
    """Sim vs imagined success, one labelled point per agent, and the y = x line of perfect agreement."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.plot([0, 100], [0, 100], linestyle="--", color="grey", linewidth=1, label="y = x")
    for kind, marker in (("checkpoint", "o"), ("expert", "s")):
        chosen = [r for r in rows if r["kind"] == kind]
        if chosen:
            ax.scatter([r["sim_success"] for r in chosen], [r["imagined_success"] for r in chosen], marker=marker,
                       label=kind, zorder=3)
    points: dict[tuple[float, float], list[str]] = {}
    for r in rows:  # agents on the same point share one label block instead of overprinting each other
        points.setdefault((r["sim_success"], r["imagined_success"]), []).append(r["agent"])
    for xy, labels in points.items():
        ax.annotate("\n".join(labels), xy, textcoords="offset points", xytext=(4, -4), fontsize=7, va="top")
    ax.set(xlabel="success in PyBullet (%)", ylabel="success in imagination (%)", xlim=(-3, 103), ylim=(-3, 103),
           title=f"Pearson {format_correlation(stats['pearson'])}, Spearman {format_correlation(stats['spearman'])} "
                 f"({stats['agents']} agents)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def run_rank(cfg: RankConfig, indent: str = "") -> dict[str, Path]:
    """Evaluate every agent in both worlds (skipping unchanged evaluations), then correlate; returns the files.
    `indent` prefixes the progress lines (a pipeline's rank stage nests them under its own)."""
    root = Path(cfg.out)
    found, stages = plan(cfg)
    forced_past = cfg.imagination.gates("experiment rank")  # before hours of evaluation, not after
    save_config(cfg, root / "config.yaml")
    run_stages(stages, lambda line: print(indent + line, flush=True))
    rows = []
    for agent in found:
        infos = {w: json.loads((root / agent.slug / w / "eval_info.json").read_text()) for w in WORLDS}
        rows.append({"agent": agent.label, "kind": agent.kind, "step": agent.step,
                     **{f"{w}_success": float(infos[w]["aggregated"]["pc_success"]) for w in WORLDS},
                     **{f"{w}_eval": str(root / agent.slug / w / "eval_info.json") for w in WORLDS}})
    stats = correlation(rows)
    files = {"csv": write_csv(rows, root / "rank.csv", COLUMNS), "json": root / "rank.json"}
    files["json"].write_text(json.dumps({**stats, "episodes": cfg.episodes, "seeds": [cfg.seed,
                                         cfg.seed + cfg.episodes - 1], "world_model": cfg.imagination.wm,
                                         "probe": cfg.imagination.probe, "imagined_success_from": "probe-labelled",
                                         "forced_past_gates": forced_past, "rows": rows}, indent=2))
    files["plot"] = plot_scatter(rows, stats, root / "rank_scatter.png")
    width = max(len(r["agent"]) for r in rows)
    lines = [f"FORCED past the gates: {'; '.join(forced_past)}: the imagined column is not evidence"] \
        if forced_past else []
    lines += [f"{'agent':<{width}} {'sim':>6} {'imagined':>9}  (success over {cfg.episodes} seeds each; imagined "
              "= probe-labelled)"]
    lines += [f"{r['agent']:<{width}} {r['sim_success']:>5.1f}% {r['imagined_success']:>8.1f}%" for r in rows]
    lines += [f"Spearman {_with_interval(stats, 'spearman')}, Pearson {_with_interval(stats, 'pearson')}, mean "
              f"absolute error {_with_interval(stats, 'mae')} over {stats['agents']} agents",
              f"table   {files['csv']}, {files['json']}", f"plot    {files['plot']}"]
    print("\n" + "\n".join(indent + line for line in lines), flush=True)
    return files
