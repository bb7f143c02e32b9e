"""The report's first section: what its figures are worth, one verdict line per thing measured.

A pipeline run's page shows fidelity tables, success rates and a rank correlation; whether those mean anything
depends on facts spread over the page (the world model below copy-last-frame, a blind probe, imagined figures
forced past the gates, four episodes per evaluation). This section states them first, in words, from the same
files the other sections read.
"""

from __future__ import annotations

import json
from pathlib import Path

from robodream.pipeline.report.render import Section, Text
from robodream.pipeline.world_model.gates import fidelity_problems, probe_metrics_problems
from robodream.stats import format_correlation, format_interval, wilson_interval

#: fewer episodes than this per evaluation is a demonstration of the plumbing, not a measurement
DECISION_EPISODES = 30
BENCHMARKS = "docs/benchmarks.md"


def _world_model_verdicts(files: list[Path], rel) -> list[str]:
    lines = []
    for path in (f for f in files if f.name == "metrics.json" and (f.parent / "fidelity.png").exists()):
        problems = fidelity_problems(json.loads(path.read_text()))
        lines.append(f"World model ({rel(path.parent)}): " + ("; ".join(problems) if problems else
                     "beats copy-last-frame and reads its actions on held-out episodes"))
    for path in (f for f in files if f.name == "metrics.json" and (f.parent / "model").is_dir()):
        metrics = json.loads(path.read_text())
        if "per_episode" not in metrics:  # a world model's run, not a probe's
            continue
        problems = probe_metrics_problems(metrics)
        lines.append(f"Probe ({rel(path.parent)}): " + ("; ".join(problems) if problems else
                     "detects successes and rarely false-alarms on held-out episodes"))
    return lines


def _evaluation_verdicts(files: list[Path], rel) -> list[str]:
    """Imagined evaluations forced past the gates (one line), and the smallest evaluation's interval. A rank
    experiment's own evaluations are left to its verdict."""
    rank_dirs = [f.parent for f in files if f.name == "rank.json"]
    forced: dict[str, list[str]] = {}
    sizes, unchecked = [], []
    for path in (f for f in files if f.name == "eval_info.json"):
        if any(path.is_relative_to(d) for d in rank_dirs):
            continue
        record = json.loads(path.read_text())
        episodes = record.get("per_episode", [])
        sizes.append((len(episodes), sum(bool(e.get("success")) for e in episodes)))
        info = record.get("info", {})
        if info.get("env") == "world_model" and "forced_past_gates" not in info:
            unchecked.append(rel(path.parent))  # evaluated before robodream gated imagination
        for problem in info.get("forced_past_gates") or []:
            forced.setdefault(problem, []).append(rel(path.parent))
    lines = []
    if forced:
        where = sorted({folder for folders in forced.values() for folder in folders})
        lines.append(f"Imagined success in {', '.join(where)} was forced past the gates ({'; '.join(forced)}): not "
                     "evidence about the policies")
    if unchecked:
        lines.append(f"Imagined success in {', '.join(unchecked)} was evaluated before robodream checked the world "
                     "model and probe against their gates: re-run it (a changed config or model) to have them checked")
    if sizes:
        n, wins = min(sizes)
        low, high = wilson_interval(wins, n)
        if n < DECISION_EPISODES:
            lines.append(f"Evaluations of {n} episodes: a 95% interval as wide as {100 * low:.0f}-{100 * high:.0f}% "
                         "(demo size: plumbing, not results)")
    return lines


def _rank_verdicts(files: list[Path], rel) -> list[str]:
    lines = []
    for path in (f for f in files if f.name == "rank.json"):
        record = json.loads(path.read_text())
        levels = len({round(r["sim_success"], 6) for r in record["rows"]})
        spread = format_interval(record.get("spearman_ci95")) or " (no interval)"
        text = (f"Rank ({rel(path.parent)}): {record['agents']} agents x {record['episodes']} seeds, {levels} "
                f"distinct PyBullet success levels; Spearman {format_correlation(record['spearman'], 2)}{spread}")
        if record.get("forced_past_gates"):
            text += "; forced past the gates: the imagined column is not evidence"
        if record["episodes"] < DECISION_EPISODES or levels < 4:
            text += "; too small to decide (the target needs >= 8 agents, >= 4 levels, 50 seeds each)"
        lines.append(text)
    return lines


def verdict_section(files: list[Path], rel, config: dict | None) -> Section:
    """"Read this first": one line per world model, probe, gated evaluation and rank experiment of the run, plus
    the quickstart's note that demo sizes show the plumbing."""
    section = Section("Read this first")
    lines = _world_model_verdicts(files, rel) + _evaluation_verdicts(files, rel) + _rank_verdicts(files, rel)
    if (config or {}).get("name") == "quickstart":
        lines.insert(0, f"This is the quickstart: its sizes show that every stage runs, not what the models can do. "
                        f"Its imagined stages run forced past the gates. Measured figures: {BENCHMARKS} "
                        "(and the README's Status block).")
    section.blocks += [Text(line) for line in lines] or [Text("Nothing measured in this run yet.")]
    return section
