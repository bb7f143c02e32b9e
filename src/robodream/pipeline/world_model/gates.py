"""Gates: a world model and a probe are checked against their recorded fidelity before anything trusts them.

`eval env=world_model`, `generate` and `experiment rank` print success figures that come from imagination and
from the probe. A world model whose frames are noise, or that ignores its actions, and a probe that never (or
always) calls a success, make those figures look as confident as good ones. So each of these commands first reads

- the world model's fidelity record, `<run>/fidelity.json`, which `robodream eval-wm` writes beside the model
  (PSNR against copy-last-frame and shuffled actions on held-out episodes, and the weights it was measured on);
- the probe's `metrics.json`, which `robodream train-probe` writes (success recall and false alarms per
  held-out episode);

and refuses with one line naming every problem, unless `force=true`; a forced run records the problems in its
outputs so that every figure it shows says what it stands on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from robodream.errors import RobodreamError

FIDELITY = "fidelity.json"
#: the horizon at which action sensitivity is judged (or the longest one measured, when shorter)
ACTION_HORIZON = 8


@dataclass(frozen=True)
class GateThresholds:
    """What a world model and a probe must show before imagined figures are printed without `force=true`."""

    #: PSNR of the model over the same model driven by another episode's actions, at ACTION_HORIZON (dB). A model
    #: that reads its actions gains 4-5 dB here (docs/benchmarks.md); one that ignores them, ~0.
    min_action_gain_db: float = 1.0
    min_probe_recall: float = 0.5  # successful held-out episodes the probe detects
    max_probe_false_alarms: float = 0.3  # failed held-out episodes the probe calls a success


def fidelity_problems(metrics: dict, thresholds: GateThresholds = GateThresholds()) -> list[str]:
    """What is wrong with a world model, from `evaluate_fidelity`'s metrics (empty: nothing found)."""
    problems = []
    model, copy_last = metrics["model"]["psnr"], metrics["copy_last_frame"]["psnr"]
    pairs = [(m, c) for m, c in zip(model, copy_last, strict=True) if m is not None and c is not None]
    if pairs and all(m <= c for m, c in pairs):
        problems.append("model below copy-last-frame at every horizon")
    gain = action_gain_db(metrics)
    if gain is None:
        problems.append("action sensitivity unmeasured (the shuffled-actions ablation needs >= 2 episodes)")
    elif gain < thresholds.min_action_gain_db:
        horizon = min(ACTION_HORIZON, len(model))
        problems.append(f"model ignores actions (only {gain:+.1f} dB over shuffled actions at horizon {horizon})")
    trained = metrics.get("training_episodes") or []
    if trained:
        problems.append(f"fidelity measured on {len(trained)} training episodes of {len(metrics['episodes'])}")
    return problems


def action_gain_db(metrics: dict) -> float | None:
    """Model PSNR minus shuffled-actions PSNR at ACTION_HORIZON (None when the ablation was not measured)."""
    i = min(ACTION_HORIZON, len(metrics["horizons"])) - 1
    model, shuffled = metrics["model"]["psnr"][i], metrics["shuffled_actions"]["psnr"][i]
    return None if model is None or shuffled is None else float(model - shuffled)


def verdict_text(problems: list[str]) -> str:
    """The verdict line eval-wm and its stages print."""
    return "; ".join(problems) if problems else "passes the gates (beats copy-last, reads its actions)"


def write_fidelity_record(run_dir: Path, model_dir: Path, metrics: dict, metrics_path: Path) -> Path:
    """`<run>/fidelity.json`: the verdict of an eval-wm run (`metrics["problems"]`), tied to the weights it
    measured."""
    from robodream.pipeline.stages import fingerprint

    record = {"weights": fingerprint(model_dir), "metrics": str(metrics_path), "data": metrics.get("data"),
              "episodes": len(metrics["episodes"]), "training_episodes": len(metrics.get("training_episodes") or []),
              "action_gain_db": action_gain_db(metrics), "problems": metrics["problems"]}
    path = Path(run_dir) / FIDELITY
    path.write_text(json.dumps(record, indent=2))
    return path


def model_problems(wm: str) -> list[str]:
    """What is wrong with the world model at `wm` (a run directory or its model/ export), by its fidelity record."""
    from robodream.pipeline.stages import fingerprint
    from robodream.pretrained import run_dir_of
    from robodream.world_models.model import WorldModel

    model_dir = WorldModel.resolve_model_dir(wm)
    run_dir = run_dir_of(model_dir)
    path = run_dir / FIDELITY
    if not path.is_file():
        return [f"no fidelity recorded for {run_dir} (run robodream eval-wm ckpt={run_dir})"]
    record = json.loads(path.read_text())
    if record.get("weights") != fingerprint(model_dir):
        return [f"the fidelity record in {run_dir} is of other weights (re-run robodream eval-wm ckpt={run_dir})"]
    return list(record["problems"])


def probe_problems(probe: str, thresholds: GateThresholds = GateThresholds()) -> list[str]:
    """What is wrong with the probe at `probe` (a train-probe directory or its model/ export), by its metrics."""
    from robodream.pretrained import run_dir_of

    path = Path(probe)
    path = run_dir_of(path) / "metrics.json"
    if not path.is_file():
        return [f"no held-out accuracy recorded for the probe ({path} is missing)"]
    return probe_metrics_problems(json.loads(path.read_text()), thresholds)


def probe_metrics_problems(metrics: dict, thresholds: GateThresholds = GateThresholds()) -> list[str]:
    """What is wrong with a probe, from train-probe's metrics.json (held-out recall and false alarms)."""
    episodes = metrics["per_episode"]
    problems = [] if metrics.get("held_out_episodes") else ["probe accuracy measured on its training episodes"]
    if episodes["successful_episodes"] == 0:
        problems.append("probe success recall unmeasured (no successful held-out episode)")
    elif episodes["episode_recall"] < thresholds.min_probe_recall:
        problems.append(f"probe success recall {episodes['detected']}/{episodes['successful_episodes']} held-out "
                        f"episodes (below {thresholds.min_probe_recall:.0%})")
    if episodes["failed_episodes"] and episodes["episode_false_alarm_rate"] > thresholds.max_probe_false_alarms:
        problems.append(f"probe false alarms {episodes['false_alarms']}/{episodes['failed_episodes']} held-out "
                        f"failures (above {thresholds.max_probe_false_alarms:.0%})")
    return problems


def check_gates(wm: str, probe: str | None, force: bool, command: str) -> list[str]:
    """The problems of the world model (and probe) `command` would trust; one-line refusal unless `force`.
    Returns the problems, which a forced run records beside its figures."""
    problems = model_problems(wm) + (probe_problems(probe) if probe is not None else [])
    if problems and not force:
        raise RobodreamError(f"{command} refuses to trust this world model and probe: {'; '.join(problems)}. "
                             "Fix them, or pass force=true to run anyway (its figures are then marked as forced)")
    return problems
