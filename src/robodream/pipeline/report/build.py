"""`robodream report <run dir>` (and the last stage of `robodream run`): one page about a pipeline run.

Writes `<run>/report/report.html` (self-contained: images inlined as data URIs) and `report.md` (its Markdown
twin, linking the same images). Sections: the datasets (`robodream info` lines and the episode GIFs),
world-model fidelity against horizon and its baselines (eval-wm's metrics.json + fidelity.png), real vs imagined
GIFs (dream), policy success (every eval_info.json of the run: policies x sim / imagination) with a bar chart,
the rank correlation of sim and imagined success when enough policies were evaluated in both, every model's
training curves (curves.py, from the CSV its trainer logged), the time every
stage took, and the command + resolved config that reproduce the run. Artifacts are found by their file names
in the run directory, so the report also works on runs assembled by hand; a section whose inputs are absent
says so.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from omegaconf import OmegaConf

from robodream.errors import RobodreamError
from robodream.pipeline.report.curves import curves_section
from robodream.pipeline.report.render import Image, Pre, Section, Table, Text, render_html, render_markdown
from robodream.pipeline.report.verdicts import verdict_section
from robodream.stats import format_correlation, format_interval, format_success, spearman, wilson_interval

IMAGINATION = "imagination (probe-labelled)"  # the env column of an eval in the world model: what its success is
MAX_EMBED_BYTES = 8 << 20  # larger GIFs are linked by path rather than inlined, to keep the page loadable


def _walk(run_dir: Path, skip: Path) -> tuple[list[Path], list[Path]]:
    """(episode stores, other files) under `run_dir`; stores are not descended into (they hold many chunks)."""
    stores, files = [], []
    for root, dirs, names in os.walk(run_dir):
        here = Path(root)
        for d in list(dirs):
            if d.endswith(".zarr"):
                stores.append(here / d)
                dirs.remove(d)
            elif (here / d).resolve() == skip.resolve():
                dirs.remove(d)
        files += [here / n for n in names]
    return sorted(stores), sorted(files)


def _rel(path: Path, run_dir: Path) -> str:
    return os.path.relpath(path, run_dir)


def _image_or_note(path: Path, alt: str, run_dir: Path) -> Image | Text:
    if path.stat().st_size > MAX_EMBED_BYTES:
        return Text(f"{alt}: {_rel(path, run_dir)} ({path.stat().st_size / 1e6:.1f} MB, too large to embed)")
    return Image(path, alt)


def _dataset_section(stores: list[Path], files: list[Path], run_dir: Path) -> Section:
    from robodream.datasets.reader import EpisodeStore
    from robodream.pipeline.data.info import describe_store

    section = Section("Datasets")
    if not stores:
        section.blocks.append(Text("No episode store in this run (the collect stages have not run)."))
    for store_path in stores:
        try:
            lines = describe_store(EpisodeStore.open(store_path, cache="disk"))
        except RobodreamError as exc:
            section.blocks.append(Text(f"{_rel(store_path, run_dir)}: cannot be read ({exc})"))
            continue
        section.blocks.append(Pre("\n".join(lines)))
        gifs = [f for f in files if f.parent.name == "viz" and f.name.startswith(store_path.stem + "_ep")
                and f.suffix == ".gif"]
        section.blocks += [_image_or_note(g, f"episodes of {store_path.stem} ({g.name})", run_dir) for g in gifs]
    return section


def _fidelity_section(files: list[Path], run_dir: Path) -> Section:
    from robodream.world_models.metrics import fidelity_table

    section = Section("World-model fidelity against horizon")
    metrics_files = [f for f in files if f.name == "metrics.json" and (f.parent / "fidelity.png").exists()]
    if not metrics_files:
        section.blocks.append(Text("No world-model evaluation in this run (eval-wm writes metrics.json and "
                                   "fidelity.png; the world-model stages are disabled or have not run)."))
    for path in metrics_files:
        metrics = json.loads(path.read_text())
        section.blocks.append(Text(f"{_rel(path.parent, run_dir)}: open-loop replay of {len(metrics['episodes'])} "
                                   f"held-out episodes from {metrics['context_frames']} real context frames, "
                                   f"{metrics['num_sampling_steps']} sampling steps; PSNR (dB) / SSIM per horizon "
                                   "step against copy-last-frame and the same model under shuffled actions."))
        section.blocks.append(Pre("\n".join(fidelity_table(metrics, (1, 2, 4, 8, 16, 32)))))
        section.blocks.append(Image(path.parent / "fidelity.png", "PSNR and SSIM against horizon"))
    return section


def _dream_section(files: list[Path], run_dir: Path) -> Section:
    section = Section("Real vs imagined")
    gifs = [f for f in files if f.parent.name == "dream" and f.suffix == ".gif"]
    if not gifs:
        section.blocks.append(Text("No dream GIF in this run (`robodream dream` writes them; the world-model "
                                   "stages are disabled or have not run)."))
    for gif in gifs:
        section.blocks.append(Text(f"{_rel(gif, run_dir)}: recorded frames above, frames imagined by the world "
                                   "model under the recorded actions below."))
        section.blocks.append(_image_or_note(gif, f"real vs imagined ({gif.name})", run_dir))
    return section


def _eval_rows(files: list[Path], run_dir: Path) -> list[dict]:
    rows = []
    rank_dirs = [f.parent for f in files if f.name == "rank.json"]
    for path in (f for f in files if f.name == "eval_info.json"):
        if any(path.is_relative_to(d) for d in rank_dirs):  # the rank stage's: summarised in its own section
            continue
        record = json.loads(path.read_text())
        info, agg = record.get("info", {}), record.get("aggregated", {})
        policy = str(info.get("policy", "?"))
        if Path(policy).exists() and Path(policy).resolve().is_relative_to(run_dir.resolve()):
            policy = _rel(Path(policy), run_dir)  # checkpoints of this run: shown relative to it
        episodes = record.get("per_episode", [])
        wins = sum(bool(e.get("success")) for e in episodes)
        rows.append({"policy": policy, "data": _training_data(Path(str(info.get("policy", "")))),
                     "env": IMAGINATION if info.get("env") == "world_model" else "sim",
                     "task": str(info.get("task", "?")), "episodes": len(episodes),
                     "success": format_success(wins, len(episodes)), "ci95": wilson_interval(wins, len(episodes)),
                     "examples": {k: path.parent / Path(v["gif"]).name
                                  for k, v in info.get("examples", {}).items()},
                     "pc_success": float(agg.get("pc_success", float("nan"))),
                     "eval_s": float(agg.get("eval_s", float("nan"))), "file": _rel(path, run_dir)})
    return rows


def _training_data(checkpoint: Path) -> str:
    """What a policy learned from, as its checkpoint records it: "real", "synthetic" or "real 50% + synthetic
    50%" (recorded episodes of any source count as real; imagined ones, source "synthetic", as synthetic)."""
    from robodream.datasets.reader import EpisodeStore
    from robodream.policies.pretrained import read_checkpoint_info

    if not (checkpoint / "config.json").is_file():
        return "-"  # the scripted expert, or a checkpoint moved away since
    shares: dict[str, float] = {}
    sources = read_checkpoint_info(checkpoint).get("training", {}).get("data", [])
    total = sum(float(s.get("weight", 1.0)) for s in sources) or 1.0
    for source in sources:
        try:
            kinds = set(EpisodeStore.open(source["path"], cache="disk").meta("episode_source").tolist())
        except RobodreamError:
            kinds = set()
        kind = "synthetic" if kinds == {"synthetic"} else "real" if kinds else "?"
        if source.get("imagined_only"):
            kind = "synthetic, imagined frames only"
        shares[kind] = shares.get(kind, 0.0) + float(source.get("weight", 1.0)) / total
    if len(shares) <= 1:
        return next(iter(shares), "?")
    return " + ".join(f"{kind} {share:.0%}" for kind, share in sorted(shares.items()))


def _comparison_table(rows: list[dict]) -> Table:
    """One line per policy, one column per environment: real-only vs augmented, sim vs imagination at a glance."""
    envs = sorted(dict.fromkeys(r["env"] for r in rows), key=lambda env: env != "sim")  # sim first, the reference
    lines: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in rows:
        lines.setdefault((r["policy"], r["data"], r["task"]), {})[r["env"]] = r["success"]
    return Table(["policy", "training data", "task", *(f"success in {env}" for env in envs)],
                 [[*key, *(cells.get(env, "-") for env in envs)] for key, cells in lines.items()])


def _success_chart(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def label(r: dict) -> str:
        return f"{r['policy']}\n{r['data']}, {r['task']}"

    policies = list(dict.fromkeys(label(r) for r in rows))
    envs = list(dict.fromkeys(r["env"] for r in rows))
    width = 0.8 / len(envs)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(policies) + 1.5), 3.4))
    for i, env in enumerate(envs):
        found = [next((r for r in rows if r["env"] == env and label(r) == p), None) for p in policies]
        values = [r["pc_success"] if r else np.nan for r in found]
        errors = np.clip(np.array([[r["pc_success"] - 100 * r["ci95"][0], 100 * r["ci95"][1] - r["pc_success"]]
                                   if r else [0.0, 0.0] for r in found]).T, 0.0, None)  # rounding: never below 0
        ax.bar(np.arange(len(policies)) + (i - (len(envs) - 1) / 2) * width, values, width, yerr=errors, capsize=3,
               label=env)
    ax.set_xticks(np.arange(len(policies)), policies, fontsize=8)
    ax.set_ylabel("success (%), 95% Wilson interval")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _policy_section(files: list[Path], run_dir: Path, out: Path) -> list[Section]:
    section = Section("Policy success")
    rows = _eval_rows(files, run_dir)
    if not rows:
        section.blocks.append(Text("No eval_info.json in this run (the policy stages are disabled or have not run)."))
        return [section]
    section.blocks.append(Text("Every evaluation found in the run: sim = PyBullet, imagination = the world model "
                               "with the success probe; same held-out seeds per task."))
    section.blocks.append(_comparison_table(rows))
    section.blocks.append(Text("Each evaluation (training data: recorded episodes are real, world-model rollouts "
                               "synthetic; an augmented policy shares the real-only one's network, steps and seeds):"))
    section.blocks.append(Table(["policy", "training data", "task", "env", "episodes", "success", "eval time",
                                 "eval_info"],
                                [[r["policy"], r["data"], r["task"], r["env"], str(r["episodes"]),
                                  r["success"], f"{r['eval_s']:.1f} s", r["file"]] for r in rows]))
    section.blocks.append(Image(_success_chart(rows, out / "success.png"), "success rate per policy and environment"))
    section.blocks += _example_blocks(rows, run_dir)
    pairs = {}
    for r in rows:
        pairs.setdefault((r["policy"], r["task"]), {})[r["env"]] = r["pc_success"]
    both = [(p["sim"], p[IMAGINATION]) for p in pairs.values() if {"sim", IMAGINATION} <= p.keys()]
    ranking = _ranking_section(files, run_dir, both, out)
    return [section, ranking]


def _example_blocks(rows: list[dict], run_dir: Path) -> list:
    """The first successful and the first failed episode of every policy evaluated in sim (eval_<outcome>.gif)."""
    blocks = []
    for r in (r for r in rows if r["env"] == "sim" and r["examples"]):
        shown = {outcome: gif for outcome, gif in sorted(r["examples"].items(), reverse=True) if gif.is_file()}
        if shown:
            blocks.append(Text(f"{r['policy']} on {r['task']} in PyBullet ({r['success']}): "
                               + " and ".join(f"the first {k}" for k in shown) + " among the evaluation episodes"))
            blocks += [_image_or_note(gif, f"{outcome}: {r['policy']}", run_dir) for outcome, gif in shown.items()]
    return blocks


def _ranking_section(files: list[Path], run_dir: Path, both: list[tuple[float, float]], out: Path) -> Section:
    """The rank stage's results (rank.json) when the run has them, else the policies evaluated in both worlds."""
    ranking = Section("Sim vs imagination ranking")
    found = [f for f in files if f.name == "rank.json"]
    if found:
        record = json.loads(found[0].read_text())
        rho, r = (format_correlation(record[k], 2) + format_interval(record.get(f"{k}_ci95"))
                  for k in ("spearman", "pearson"))
        mae = "" if record.get("mae") is None else f", mean absolute error {record['mae']:.0f} points" + \
            format_interval(record.get("mae_ci95"), "{:.0f}")
        ranking.blocks.append(Text(f"Every agent evaluated on the same {record['episodes']} seeds "
                                   f"({record['seeds'][0]}..{record['seeds'][1]}) in PyBullet and in imagination "
                                   f"(probe-labelled): Spearman {rho}, Pearson {r}{mae} over {record['agents']} "
                                   f"agents ({_rel(found[0], run_dir)})."))
        ranking.blocks.append(Table(["agent", "sim success", "imagined success"],
                                    [[r["agent"], f"{r['sim_success']:.0f}%", f"{r['imagined_success']:.0f}%"]
                                     for r in record["rows"]]))
        plot = found[0].parent / "rank_scatter.png"
        if plot.exists():
            ranking.blocks.append(Image(plot, "imagined vs simulated success per agent"))
    elif len(both) < 3:
        ranking.blocks.append(Text(f"A rank correlation needs at least 3 policies evaluated both in sim and in "
                                   f"imagination; this run has {len(both)} (enable the pipeline's rank stage)."))
    else:
        ranking.blocks.append(Image(_scatter(both, out / "rank_scatter.png"), "imagined vs simulated success"))
        rho = spearman(*map(list, zip(*both, strict=True)))
        ranking.blocks.append(Text(f"Spearman rank correlation over {len(both)} policies: "
                                   f"{format_correlation(rho, 2)}"))
    return ranking


def _scatter(pairs: list[tuple[float, float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter([p[0] for p in pairs], [p[1] for p in pairs])
    ax.plot([0, 100], [0, 100], ":", color="grey")
    ax.set_xlabel("success in sim (%)")
    ax.set_ylabel("success in imagination (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _timing_section(run_dir: Path, index: dict | None) -> Section:
    section = Section("Stage timings")
    if index is None:
        section.blocks.append(Text("No run.json in this directory: it was not made by `robodream run`."))
        return section
    rows, total = [], 0.0
    for entry in index.get("stages", []):
        if entry["slug"] == "report":  # this very stage: still running while it writes the page
            continue
        stamp_path = run_dir / entry["stamp"]
        stamp = json.loads(stamp_path.read_text()) if stamp_path.exists() else {}
        elapsed = stamp.get("elapsed_s")
        total += elapsed or 0.0
        rows.append([entry["name"], stamp.get("status", "not run"), "-" if elapsed is None else f"{elapsed:.1f} s",
                     stamp.get("started", "-"), stamp.get("note", "")])
    section.blocks.append(Text("Time of the run that produced each stage's outputs (a stage skipped because "
                               "its inputs were unchanged keeps its earlier timing)."))
    section.blocks.append(Table(["stage", "status", "time", "started (UTC)", "result"], rows))
    section.blocks.append(Text(f"Total: {total:.1f} s."))
    return section


def _reproduce_section(run_dir: Path, index: dict | None) -> Section:
    section = Section("Reproduce")
    config = run_dir / "config.yaml"
    if index is not None:
        section.blocks.append(Text("The command that made this run:"))
        section.blocks.append(Pre(index.get("command", "?")))
    if config.exists():
        section.blocks.append(Text(f"The resolved config (every default filled in); `robodream run {config}` "
                                   "repeats the run exactly, skipping every stage whose outputs are still there:"))
        section.blocks.append(Pre(config.read_text().rstrip()))
    else:
        section.blocks.append(Text("No config.yaml in this directory."))
    return section


def build_sections(run_dir: Path, out: Path) -> list[Section]:
    """Every section of the report of `run_dir`; generated plots go to `out`."""
    index_path = run_dir / "run.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else None
    stores, files = _walk(run_dir, skip=out)
    config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml")) if (run_dir / "config.yaml").exists() \
        else None
    return [verdict_section(files, lambda path: _rel(path, run_dir), config), _dataset_section(stores, files, run_dir),
            _fidelity_section(files, run_dir),
            _dream_section(files, run_dir), *_policy_section(files, run_dir, out), curves_section(files, run_dir, out),
            _timing_section(run_dir, index),
            _reproduce_section(run_dir, index)]


# Files that make a folder a run directory worth a report (besides run.json and episode stores).
RUN_ARTIFACTS = ("eval_info.json", "metrics.json", "rank.json", "train_summary.json")
REPORT_FILES = ("report.html", "report.md")


def _check_report_folder(run_dir: Path, out: Path) -> None:
    """The output rule for reports: write into a run directory this command recognises (a `robodream run`, or a
    folder holding stores or evaluations), or else only into a new or empty folder or over an earlier report."""
    from robodream.datasets import layout

    if out.exists() and not out.is_dir():
        raise RobodreamError(f"{out} is a file: choose a folder for the report (--out)")
    if layout.store_exists(out):
        raise RobodreamError(f"{out} is an episode store: choose another folder for the report (--out)")
    if out.resolve().is_relative_to(run_dir.resolve()):
        if not _is_run_dir(run_dir, out):
            raise RobodreamError(f"{run_dir} is not a robodream run directory (no run.json, episode store or "
                                 "evaluation in it): pass the out= of a `robodream run`, or write the report to a "
                                 "new folder with --out")
        return
    earlier = any((out / name).is_file() for name in REPORT_FILES)
    if out.is_dir() and any(out.iterdir()) and not earlier:
        raise RobodreamError(f"{out} already holds other files and no earlier report: refusing to write the report "
                             "into it; choose a new or empty folder with --out")


def _is_run_dir(run_dir: Path, out: Path) -> bool:
    from robodream.datasets import layout

    if (run_dir / "run.json").is_file():
        return True
    stores, files = _walk(run_dir, skip=out)
    return any(layout.store_exists(s) for s in stores) or any(f.name in RUN_ARTIFACTS for f in files)


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write report.html (self-contained) and report.md for the run in `run_dir`; returns their paths."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RobodreamError(f"no run directory at {run_dir}: pass the `out` of a `robodream run`")
    out = Path(out) if out is not None else run_dir / "report"
    _check_report_folder(run_dir, out)
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(run_dir, out)
    index_path = run_dir / "run.json"
    name = json.loads(index_path.read_text()).get("name", run_dir.name) if index_path.exists() else run_dir.name
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"robodream run {name}"
    sections.insert(0, Section("Run", [Text(f"Run directory {run_dir.resolve()}, report written {when}.")]))
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(render_html(title, sections))
    md_path.write_text(render_markdown(title, sections, out))
    return html_path, md_path
