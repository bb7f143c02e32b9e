"""The results of `robodream experiment augment`: tables (CSV + Markdown) and the success-vs-N plot.

Read back from the files the sub-steps wrote (eval_info.json of every policy, generate.json of every
generation), so the tables can be rebuilt from a finished experiment directory at any time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robodream.errors import RobodreamError
from robodream.pipeline.experiments.tables import markdown_table, pyplot, write_csv
from robodream.stats import bootstrap_interval, format_success, mean_std, wilson_interval

ARMS = {"real": "real only", "mixed": "real + synthetic", "synthetic": "synthetic only"}
RUN_COLUMNS = ("n_demos", "seed", "real_success", "mixed_success", "synthetic_success", "delta",
               "real_wins", "mixed_wins", "synthetic_wins", "synthetic_generated", "synthetic_kept",
               "kept_replayed_success", "kept_labelled_success", "kept_probe_called", "rollouts_per_s",
               "eval_episodes", "eval_seed")
SUMMARY_COLUMNS = ("n_demos", "seeds", "real_mean", "real_std", "mixed_mean", "mixed_std", "synthetic_mean",
                   "synthetic_std", "delta_mean", "delta_std", "delta_ci95", "real_ci95", "mixed_ci95",
                   "synthetic_ci95", "synthetic_kept_mean", "label_precision", "real_seeds", "mixed_seeds",
                   "synthetic_seeds", "delta_seeds")


def _success(path: Path) -> tuple[float | None, int | None, dict[str, Any] | None]:
    """(success %, successful episodes, eval_info) of one evaluation; (None, None, None) while it has not run."""
    if not path.is_file():
        return None, None, None
    info = json.loads(path.read_text())
    wins = sum(bool(e.get("success")) for e in info["per_episode"])
    return float(info["aggregated"]["pc_success"]), wins, info


def _outcomes(info: dict[str, Any]) -> dict[int, int]:
    """Held-out seed -> 1 (success) or 0, of one evaluation."""
    return {int(e["seed"]): int(bool(e.get("success"))) for e in info["per_episode"]}


def paired_differences(real: dict[str, Any], mixed: dict[str, Any]) -> list[int]:
    """Per held-out seed both policies met: mixed - real (-1, 0 or +1), in seed order."""
    a, b = _outcomes(real), _outcomes(mixed)
    return [b[seed] - a[seed] for seed in sorted(a.keys() & b.keys())]


def _synthetic_counts(out: Path) -> dict[str, Any]:
    """What the generation of one N and seed made and kept, and how many of its kept labels PyBullet confirms."""
    counts: dict[str, Any] = {}
    generated = out / "synthetic" / "generate.json"
    if generated.is_file():
        report = json.loads(generated.read_text())
        counts |= {"synthetic_generated": report["generated"], "synthetic_kept": report["kept"],
                   "rollouts_per_s": report.get("rollouts_per_s")}
    verified = out / "synthetic" / "verify.json"  # absent when synthetic.verify is off
    if verified.is_file():
        report = json.loads(verified.read_text())
        counts |= {"kept_replayed_success": report["replayed_success"],
                   "kept_labelled_success": report["labelled_success"],
                   # with the replay filter the labels are PyBullet's: how many of them the probe also called
                   "kept_probe_called": report.get("probe_called_replayed_success")}
    return counts


def run_rows(cfg, root: Path) -> list[dict[str, Any]]:
    """One row per N and training seed with a finished evaluation: success (%) of the three policies on the
    held-out seeds (None for an arm not evaluated yet) and the synthetic counts."""
    rows = []
    for n in cfg.demos:
        for seed in cfg.seeds:
            out = root / f"N{n}" / f"seed{seed}"
            row: dict[str, Any] = {"n_demos": n, "seed": seed}
            infos = {}
            for arm in ARMS:
                row[f"{arm}_success"], row[f"{arm}_wins"], infos[arm] = _success(
                    out / f"policy_{arm}" / "eval" / "eval_info.json")
            finished = [info for info in infos.values() if info is not None]
            if not finished:
                continue
            paired = infos["real"] is not None and infos["mixed"] is not None
            # both arms meet the same held-out seeds: the uplift is paired per seed (results.json keeps the pairs)
            row["paired_delta"] = paired_differences(infos["real"], infos["mixed"]) if paired else []
            row["delta"] = row["mixed_success"] - row["real_success"] if paired else None
            rows.append(row | _synthetic_counts(out) | {"eval_episodes": len(finished[0]["per_episode"]),
                                                        "eval_seed": finished[0]["info"]["seeds"][0]})
    return rows


def read_earlier_results(files: list[str]) -> list[dict[str, Any]]:
    """The rows of earlier sittings' results.json `files`, each marked with its file (`from_results`). A missing
    or unreadable file is one clear error."""
    rows = []
    for name in files:
        try:
            earlier = json.loads(Path(name).read_text())["runs"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise RobodreamError(f"earlier_results: {name} is not a results.json of experiment augment ({err})") \
                from err
        rows += [{**row, "from_results": name} for row in earlier]
    return rows


def with_earlier_results(rows: list[dict[str, Any]], earlier: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` plus the `earlier` rows for the (N, seed) pairs `rows` lacks, sorted by N and seed."""
    merged = {(r["n_demos"], r["seed"]): r for r in rows}
    for row in earlier:
        merged.setdefault((row["n_demos"], row["seed"]), row)
    return [merged[key] for key in sorted(merged)]


def pooled_wilson_percent(rows: list[dict[str, Any]], n_demos: int, arm: str) -> tuple[float, float]:
    """95% Wilson interval (percent) of `arm` at `n_demos`, all seeds' evaluation episodes pooled (seeds that have
    not evaluated the arm left out): within 0-100 however few the successes."""
    evaluated = [r for r in rows if r["n_demos"] == n_demos and r[f"{arm}_success"] is not None]
    low, high = wilson_interval(sum(r[f"{arm}_wins"] for r in evaluated), sum(r["eval_episodes"] for r in evaluated))
    return 100 * low, 100 * high


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per N: mean and sample std over training seeds (the issue's table), and each arm's 95% Wilson interval
    over all its evaluation episodes pooled across seeds (how much the held-out seeds alone leave open). An arm
    evaluated on fewer seeds than the row has counts only those (`<arm>_seeds`); none: its mean is None."""
    summary = []
    for n in sorted({r["n_demos"] for r in rows}):
        group = [r for r in rows if r["n_demos"] == n]
        entry: dict[str, Any] = {"n_demos": n, "seeds": len(group)}
        for key in (*ARMS, "delta"):
            column = "delta" if key == "delta" else f"{key}_success"
            done = [r for r in group if r[column] is not None]
            values = [r[column] for r in done]
            entry[f"{key}_seeds"] = len(done)
            entry[f"{key}_mean"], entry[f"{key}_std"] = ((round(v, 2) for v in mean_std(values)) if values
                                                         else (None, None))
            if key != "delta":
                low, high = pooled_wilson_percent(group, n, key)
                entry[f"{key}_ci95"] = f"{low:.0f}-{high:.0f}" if done else "-"
        # The held-out episodes' noise in the uplift: paired differences pooled over the seeds, resampled. The
        # training seeds' own spread is delta_std; with 3 seeds the two together say what the mean can claim.
        pairs = [d for r in group for d in r.get("paired_delta", [])]
        bounds = bootstrap_interval(lambda d: 100 * float(d.mean()), pairs) if pairs else None
        entry["delta_ci95"] = f"{bounds[0]:+.0f}..{bounds[1]:+.0f}" if bounds else "-"
        kept = [r["synthetic_kept"] for r in group if r.get("synthetic_kept") is not None]
        entry["synthetic_kept_mean"] = round(mean_std(kept)[0], 1) if kept else None
        checked = [r for r in group if r.get("kept_labelled_success") is not None]
        entry["label_precision"] = format_success(sum(r["kept_replayed_success"] for r in checked),
                                                  sum(r["kept_labelled_success"] for r in checked)) if checked else "-"
        summary.append(entry)
    return summary


def _cell(s: dict[str, Any], key: str) -> str:
    """mean ± std (interval) of one arm or the uplift, saying when fewer seeds than the row's stand behind it."""
    if s[f"{key}_mean"] is None:
        return "not run"
    sign = "+" if key == "delta" else ""
    text = f"{s[f'{key}_mean']:{sign}.1f} ± {s[f'{key}_std']:.1f} ({s[f'{key}_ci95']})"
    return text if s[f"{key}_seeds"] == s["seeds"] else f"{text}, {s[f'{key}_seeds']} of {s['seeds']} seeds"


def _markdown(summary: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    cells = [{"n": s["n_demos"], "seeds": s["seeds"], **{key: _cell(s, key) for key in (*ARMS, "delta")},
              "kept": "-" if s["synthetic_kept_mean"] is None else f"{s['synthetic_kept_mean']:.1f}",
              "precision": s["label_precision"]}
             for s in summary]
    episodes = {r["eval_episodes"] for r in rows}
    seeds = {r["eval_seed"] for r in rows}
    partial = any(s[f"{key}_seeds"] < s["seeds"] for s in summary for key in (*ARMS, "delta"))
    return ("Success (%) in PyBullet on held-out seeds, mean ± std over training seeds, with the 95% Wilson interval "
            f"of all episodes pooled over seeds ({', '.join(map(str, sorted(episodes)))} episodes per policy from "
            f"seed {', '.join(map(str, sorted(seeds)))}). Synthetic only: the policy trained on imagined frames "
            "alone. The uplift's interval is a 95% bootstrap over the paired held-out episodes of all seeds: the "
            "evaluation's noise, not the training seeds' spread (that is its ± std)."
            + (" Unfinished: a cell over fewer seeds than its row says so; \"not run\": no seed evaluated it yet."
               if partial else "") + "\n\n"
            + markdown_table(cells, ["n", "seeds", *ARMS, "delta", "kept", "precision"],
                             ["real demos N", "seeds", *ARMS.values(), "real + synthetic - real only (points)",
                              "synthetic kept (mean)", "kept successes that succeed in PyBullet"]))


def plot_success_vs_demos(summary: list[dict[str, Any]], rows: list[dict[str, Any]], path: Path) -> Path:
    """Success vs N, one line per arm (real only, real + synthetic, synthetic only) through the means over seeds;
    error bars = the 95% Wilson interval of all evaluation episodes pooled over seeds (it stays within 0-100, a
    ± std over 3 seeds would not), each training seed a faint dot so the seeds' spread stays visible."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    demos = [s["n_demos"] for s in summary]
    for index, (arm, label) in enumerate(ARMS.items()):
        offset, color = (-0.015, 0.0, 0.015)[index], f"C{index}"  # an arm keeps its colour when another is absent
        done = [s for s in summary if s[f"{arm}_mean"] is not None]
        if not done:  # an arm no seed has evaluated yet has nothing to draw
            continue
        x = [s["n_demos"] * 10 ** offset for s in done]  # a small offset in log space keeps the arms apart
        means = [s[f"{arm}_mean"] for s in done]
        bounds = [pooled_wilson_percent(rows, s["n_demos"], arm) for s in done]
        yerr = [[m - low for m, (low, _) in zip(means, bounds, strict=True)],
                [high - m for m, (_, high) in zip(means, bounds, strict=True)]]
        ax.errorbar(x, means, yerr=yerr, marker="o", capsize=3, label=label, color=color)
        seeds = [(s["n_demos"] * 10 ** offset, r[f"{arm}_success"]) for s in done for r in rows
                 if r["n_demos"] == s["n_demos"] and r[f"{arm}_success"] is not None]
        ax.scatter(*zip(*seeds, strict=True), s=10, alpha=0.35, color=color, zorder=1)
    ax.set_xscale("log")
    ax.set_xlim(min(demos) / 1.5, max(demos) * 1.5)
    ax.set_xticks(demos, [str(n) for n in demos])
    ax.minorticks_off()
    ax.set(xlabel="real demonstrations N", ylabel="success (%)", ylim=(-3, 103))
    ax.set_title("synthetic augmentation\nbars: pooled 95% Wilson interval, dots: training seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_augment_results(cfg, root: Path, earlier: list[dict[str, Any]] | None = None) -> dict[str, Path]:
    """results.csv, summary.csv, summary.md, results.json and success_vs_demos.png under `root`, of the evaluations
    finished so far (none: no files), with the `earlier` sittings' rows (`read_earlier_results`) joined."""
    rows = with_earlier_results(run_rows(cfg, root), earlier or [])
    if not rows:
        print("no policy evaluation has finished yet: no tables")
        return {}
    summary = summary_rows(rows)
    files = {"results": write_csv(rows, root / "results.csv", RUN_COLUMNS),
             "summary": write_csv(summary, root / "summary.csv", SUMMARY_COLUMNS)}
    files["markdown"] = root / "summary.md"
    files["markdown"].write_text(_markdown(summary, rows))
    files["json"] = root / "results.json"
    files["json"].write_text(json.dumps({"runs": rows, "summary": summary, "config": "config.yaml"}, indent=2))
    files["plot"] = plot_success_vs_demos(summary, rows, root / "success_vs_demos.png")
    print("\n" + files["markdown"].read_text())
    return files
