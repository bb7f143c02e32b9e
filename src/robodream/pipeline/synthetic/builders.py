"""The generate stage: imagined rollouts from the world model, labelled by the probe and filtered by success.

`generate_section_stage` builds it from the `generate:` section of a pipeline config (run.py);
`generate_stage` wraps any `robodream generate` config (shared with `experiment augment`). A changed generate
config re-runs generate and what reads the synthetic store, nothing upstream. `verify_stage` replays a
generation's kept rollouts in PyBullet (verify-synthetic): the precision of their success labels.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.pipeline.config import save_config
from robodream.pipeline.stages import Previous, Stage, StageResult, hashed
from robodream.pipeline.synthetic.generate import GenerateConfig, GenerateFilterConfig
from robodream.trainer import device_count


@dataclass
class GenerateStageConfig:
    """generate: the keys of `robodream generate` (GenerateConfig) that the pipeline does not fill in itself."""

    enabled: bool = runtime(True)
    out: str = "data/synthetic.zarr"  # relative to the pipeline's out
    source: str = "demo-actions"  # or "policy": the real-only policy acts in imagination; or "expert"
    expert_cube: str = "probe"  # source=expert: "probe" reads the imagined cube; "start" dead-reckons it
    rollouts: int = 8
    horizon: int = 40
    noise: float = 0.1
    seed: int = 0
    batch_size: int = 8
    stop_at_success: bool = True
    filter: GenerateFilterConfig = field(default_factory=lambda: GenerateFilterConfig(success_only=True))
    accelerator: str = runtime("auto")
    devices: str = runtime("1")  # more than one: generate runs as its own process, which Lightning's launcher re-runs
    strategy: str = "auto"
    progress: bool = runtime(True)
    force: bool = runtime(False)  # generate even when the world model or the probe fails its gates


def generate_section_stage(cfg: GenerateStageConfig, store: str, wm_dir: Path, probe_dir: Path, policy: Path | None,
                           synth: str) -> Stage:
    """generate from the pipeline's `generate:` section, with the run's world model, probe and (for
    source=policy) real-only policy."""
    keys = ("source", "expert_cube", "rollouts", "horizon", "noise", "seed", "batch_size", "stop_at_success", "filter",
            "accelerator", "devices", "strategy", "progress", "force")
    generate_cfg = GenerateConfig(wm=str(wm_dir / "model"), probe=str(probe_dir / "model"), data=store,
                                  policy=str(policy) if policy else None, out=synth, overwrite=True,
                                  **{k: getattr(cfg, k) for k in keys})
    inputs = {"store": store, "world_model": str(wm_dir / "model"), "probe": str(probe_dir / "model"),
              **({"policy": str(policy)} if policy else {})}
    return generate_stage(generate_cfg, "generate", f"generate: {cfg.rollouts} rollouts of {cfg.horizon} steps "
                          f"({cfg.source}) -> {synth}", inputs, extra={"out": cfg.out})


def generate_stage(cfg: GenerateConfig, slug: str, name: str, inputs: dict[str, str], extra: dict | None = None,
                   summary: Path | None = None) -> Stage:
    """generate as a stage: `cfg` is the command's config (its world model, probe, policy and real store are
    locations, hashed through `inputs`; `extra` adds keys such as `out` as the user wrote it). With `summary`
    (experiment augment), the counts and the store go to that generate.json, and "every rollout was filtered
    out" is a result (no store) rather than an error. Where the work runs never changes the rollouts."""

    def run(previous: Previous) -> StageResult:
        if summary is not None:
            record = _generate_recorded(cfg, summary)
            return StageResult(f"{record['kept']}/{record['generated']} rollouts kept", [("generate", str(summary))])
        summary_lines = _generate(cfg)
        print("\n".join("      " + line for line in summary_lines))
        counts = next((line.split(None, 1)[1] for line in summary_lines if line.startswith("rollouts")), "")
        return StageResult(counts, [("stores", cfg.out)])

    folder = summary.parent if summary is not None else Path(cfg.out).parent
    return Stage(name, slug, folder, hashed(cfg) | (extra or {}), run, inputs=inputs)


def verify_stage(summary: Path, out: Path, slug: str, name: str, progress: bool = True) -> Stage:
    """verify-synthetic on the store a generate stage recorded in `summary` (generate.json) -> `out` (JSON); a
    generation that kept nothing gets a report of 0 labelled successes."""

    def run(previous: Previous) -> StageResult:
        from robodream.pipeline.synthetic.verify import VerifyConfig, verify_synthetic
        from robodream.stats import format_success

        store = json.loads(summary.read_text())["store"]
        if store is None:
            out.write_text(json.dumps({"store": None, "episodes": 0, "verified": 0, "labelled_success": 0,
                                       "replayed_success": 0, "precision": None,
                                       "precision_text": format_success(0, 0), "rows": []}, indent=2))
            return StageResult("nothing kept, nothing to replay", [("verify", str(out))])
        report = verify_synthetic(VerifyConfig(store=store, out=str(out), progress=progress))
        return StageResult(f"labelled successes that succeed in PyBullet: {report['precision_text']}",
                           [("verify", str(out))])

    return Stage(name, slug, out.parent, {"verify": out.name}, run, inputs={"generate": str(summary)})


def _generate(cfg: GenerateConfig) -> list[str]:
    from robodream.pipeline.synthetic.generate import generate

    count = device_count(cfg.devices)
    if count is None or count > 1:  # maybe several (auto, -1): DDP must not re-run the whole pipeline
        return _generate_in_subprocess(cfg, Path(cfg.out).parent)
    return generate(cfg).lines()


def _generate_recorded(cfg: GenerateConfig, summary: Path) -> dict:
    from robodream.datasets.outputs import remove_store
    from robodream.pipeline.stages import fingerprint
    from robodream.pipeline.synthetic.generate import generate

    remove_store(cfg.out)  # a store from an earlier attempt must not survive a run that keeps nothing
    try:
        result = generate(cfg)
        record = {"generated": result.generated, "kept": result.kept, "store": cfg.out,
                  "fingerprint": fingerprint(cfg.out), "forced_past_gates": result.forced_past,
                  "counts": {k: getattr(result, k) for k in ("successes", "dropped_not_success", "dropped_uncertain",
                                                                 "dropped_sim_failure")},
                  "rollouts_per_s": round(result.generated / result.elapsed_s, 3) if result.elapsed_s else None}
    except RobodreamError as exc:
        # generate refuses to write an empty store; for an experiment "nothing passed the filter" is a result
        if "filtered out" not in str(exc):
            raise
        record = {"generated": cfg.rollouts, "kept": 0, "store": None, "fingerprint": None}
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps(record, indent=2))
    return record


def _generate_in_subprocess(cfg: GenerateConfig, folder: Path) -> list[str]:
    """`robodream generate` in a process of its own: Lightning's DDP launcher starts the other devices' processes
    by re-running the current command line, which must be this one stage, not the whole pipeline."""
    config = save_config(cfg, folder / "generate.config.yaml")
    result = subprocess.run([sys.executable, "-m", "robodream.pipeline.cli", "generate", str(config)],
                            stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise RobodreamError(f"generate on {cfg.devices} devices failed (exit {result.returncode}); its config "
                             f"is {config}, run `robodream generate {config}` to see why")
    return [line for line in result.stdout.splitlines() if line.split(" ", 1)[0] in
            ("store", "rollouts", "probe", "time")]
