"""The report's training curves: every model of a run plotted from the CSV its trainer logged.

robodream's one trainer (robodream/trainer.py) logs to `<model run>/logs/version_<N>/metrics.csv` (a resumed run
adds a version); this reads every such file under a run directory, joins the versions of one model in step order
and plots each logged loss (training and validation) against the optimiser step, one figure per model.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from robodream.pipeline.report.render import Image, Section, Text


def logged_curves(model_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), ...]} of every loss-like column logged under `model_dir`/logs, by step."""
    curves: dict[str, dict[int, float]] = {}
    for path in sorted((model_dir / "logs").glob("version_*/metrics.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                step = row.get("step", "")
                if not step.isdigit():
                    continue
                for key, value in row.items():
                    if key not in ("epoch", "step") and "loss" in key and value not in ("", None):
                        curves.setdefault(key, {})[int(step)] = float(value)
    return {key: sorted(points.items()) for key, points in curves.items()}


def _plot(title: str, curves: dict[str, list[tuple[int, float]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    for key, points in sorted(curves.items()):
        steps = [step for step, _ in points]
        values = [value for _, value in points]
        ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=key)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    if all(v > 0 for points in curves.values() for _, v in points):
        ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves_section(files: list[Path], run_dir: Path, out: Path) -> Section:
    """One figure per trained model of the run (world model, probe, policies) from its logged losses."""
    models = sorted({p.parents[2] for p in files if p.name == "metrics.csv" and p.parent.parent.name == "logs"})
    blocks: list = []
    for model_dir in models:
        curves = logged_curves(model_dir)
        if not curves:
            continue
        name = os.path.relpath(model_dir, run_dir)
        image = out / f"curves_{name.replace(os.sep, '_').replace('.', '_')}.png"
        blocks.append(Image(_plot(name, curves, image), f"training curves of {name}"))
    if not blocks:
        blocks = [Text("no training logs found (models log to <model run>/logs/version_N/metrics.csv)")]
    return Section("Training curves", blocks)
