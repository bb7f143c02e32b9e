"""Resumable stages for `robodream run`: content hashes of each stage's inputs decide what re-runs.

A stage's *input hash* covers its resolved config and a fingerprint of every upstream output it reads. Its
output directory holds `<slug>.stage.yaml` (the resolved config) and `<slug>.stage.json` (the hash, the input and output
fingerprints, timing, status). Re-running a pipeline skips a stage when the recorded hash equals the current
one, it finished, and its outputs still have the recorded fingerprints; a changed config or a changed upstream
output re-runs it, and its new outputs change the fingerprints its downstream stages see. Nothing upstream of
a change is touched.

The resolved config leaves out every runtime-only key: config dataclass fields declared with
`robodream.config_fields.runtime` (worker counts, threads, progress bars, devices, resume/overwrite, and the
locations a stage fingerprints as inputs or owns as outputs), at any depth. A stage's config is a config
dataclass, or a dict whose values may be config dataclasses; builders never list excluded keys themselves.

Fingerprints are about content, never mtimes (a touched or re-copied file that did not change is unchanged):
- an episode store: the committed episode_ends, episode metadata, group attributes (without the cached
  normalisation stats, which readers add later) and the committed shape/dtype of every data array — cheap even
  for large stores, and blind to uncommitted trailing frames a crash left behind;
- any other file or directory: SHA-256 of the bytes of every file (checkpoints here are megabytes).
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from robodream.config_fields import is_runtime
from robodream.errors import RobodreamError
from robodream.hashing import sha256, sha256_file, sha256_json
from robodream.pipeline.config import to_dict

STAMP_VERSION = 1  # bump when the fingerprint definition changes, so old stamps stop matching


@dataclass
class StageResult:
    """What a stage's run function hands back: a one-line note and its outputs as (kind, path)."""

    note: str = ""
    outputs: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Previous:
    """The last attempt at a stage, as its stamp recorded it."""

    stamp: dict | None  # None: the stage never ran in this output directory
    interrupted: bool  # an unfinished attempt at the same inputs and config: resume it rather than restart

    def resumes(self, checkpoint: str | Path) -> bool:
        """Whether a training stage should continue from `checkpoint`: only an interrupted attempt at this very
        config whose checkpoint survived; after a change (or a clean finish) it trains from scratch."""
        return self.interrupted and Path(checkpoint).exists()


@dataclass
class Stage:
    """One step of a pipeline: what it reads, how it is configured, and how to run it.

    `run(previous)` learns about the last attempt, so a stage can resume an interrupted attempt at the same
    inputs or start over after a change.
    """

    name: str  # shown in the progress lines, e.g. "collect push_cube"
    slug: str  # file-name-safe id, unique in the pipeline: "collect-push_cube"
    out: Path  # the stage's output directory; its stamp lives here
    config: Any  # a config dataclass, or a dict whose values may be config dataclasses (see hashed)
    run: Callable[[Previous], StageResult]
    inputs: dict[str, str] = field(default_factory=dict)  # label -> path/URL of an upstream output

    @property
    def stamp_path(self) -> Path:
        return self.out / f"{self.slug}.stage.json"


def stage_dir(out: str | Path, run_dir: Path) -> Path:
    """Where a stage's `out` key points: a relative path lives under the pipeline's out (so runs never share
    outputs by accident), an absolute one stays where it is. The one rule for every stage's `out`."""
    return Path(out) if Path(out).is_absolute() else run_dir / out


def stage_store(out: str, run_dir: Path) -> str:
    """`stage_dir` for an episode store, which may also live at a URL (left as it is)."""
    return out if "://" in out else str(stage_dir(out, run_dir))


def _is_store(location: str) -> bool:
    from robodream.datasets import layout

    return location.endswith(".zarr") and layout.store_exists(location)


def store_fingerprint(location: str) -> str:
    """Hash of an episode store's committed content as described by its metadata (see the module doc)."""
    from robodream.datasets import layout
    from robodream.datasets.reader import EpisodeStore

    store = EpisodeStore.open(location, cache="disk")
    attrs = {k: v for k, v in store.attrs.items() if k != "stats"}
    description: dict[str, Any] = {
        "attrs": attrs,
        "episode_ends": store.episode_ends.tolist(),
        "meta": {name: [str(v) for v in store.meta(name)] for name in ("episode_source", "episode_success",
                                                                      "episode_seed", "episode_origin")},
        "arrays": {name: [store.num_frames, *arr.shape[1:], str(arr.dtype)]
                   for name, arr in sorted(store.group[layout.DATA].arrays())},
    }
    return sha256_json(description)


def fingerprint(location: str | Path) -> str | None:
    """Content fingerprint of a store, a file or a directory; None when it does not exist."""
    location = str(location)
    if _is_store(location):
        return "store:" + store_fingerprint(location)
    if "://" in location:
        raise RobodreamError(f"cannot fingerprint {location}: only episode stores may live at URLs")
    path = Path(location)
    if not path.exists():
        return None
    digest = sha256()
    # Stamps inside a directory record timings, not content; a stamp named directly is fingerprinted.
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*")
                                                 if p.is_file() and not p.name.endswith(".stage.json"))
    for file in files:
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        sha256_file(file, digest)
    return digest.hexdigest()


def _strip_runtime(value: Any, plain: Any) -> Any:
    """`plain` (the to_dict form of `value`) without the runtime-only fields of every dataclass inside."""
    if is_dataclass(value) and isinstance(plain, dict):
        return {f.name: _strip_runtime(getattr(value, f.name), plain[f.name]) for f in fields(value)
                if not is_runtime(f) and f.name in plain}
    if isinstance(value, dict) and isinstance(plain, dict):
        return {k: _strip_runtime(value[k], v) for k, v in plain.items()}
    if isinstance(value, list | tuple) and isinstance(plain, list | tuple):
        return [_strip_runtime(v, p) for v, p in zip(value, plain, strict=True)]
    return plain


def hashed(value: Any) -> Any:
    """`value` (a config dataclass, or dicts and lists holding some) as plain data without its runtime-only keys:
    what a stage hash covers."""
    if is_dataclass(value):
        return _strip_runtime(value, to_dict(value))
    if isinstance(value, dict):
        return {k: hashed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [hashed(v) for v in value]
    return value


def resolved_config(stage: Stage) -> dict:
    """The stage's config as a plain dict, without the keys that do not change its outputs."""
    return hashed(stage.config)


def input_hash(stage: Stage, fingerprints: dict[str, str | None]) -> str:
    """SHA-256 of the stage's resolved config and its inputs' fingerprints."""
    missing = [label for label, fp in fingerprints.items() if fp is None]
    if missing:
        raise RobodreamError(f"stage {stage.name} needs {', '.join(stage.inputs[m] for m in missing)}, which an "
                             "earlier stage should have written: re-run the whole pipeline")
    payload = {"version": STAMP_VERSION, "stage": stage.slug, "config": resolved_config(stage),
               "inputs": fingerprints}
    return sha256_json(payload)


def read_stamp(path: Path) -> dict | None:
    """A stage stamp, or None when it is missing or unreadable (then the stage simply re-runs)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _outputs_intact(stamp: dict) -> bool:
    return all(fingerprint(o["path"]) == o["fingerprint"] for o in stamp.get("outputs", []))


def _write_stamp(stage: Stage, stamp: dict) -> None:
    from robodream.pipeline.config import to_yaml

    stage.out.mkdir(parents=True, exist_ok=True)
    (stage.out / f"{stage.slug}.stage.yaml").write_text(to_yaml(resolved_config(stage)))
    tmp = stage.stamp_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=2))
    tmp.replace(stage.stamp_path)  # atomic: a crash leaves the old stamp or the new one, never half of one


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


@dataclass
class StageOutcome:
    stage: Stage
    skipped: bool
    elapsed_s: float  # of the run that produced the outputs (the earlier one when skipped)
    outputs: list[tuple[str, str]]


def run_stages(stages: Sequence[Stage], print_fn: Callable[[str], None] = print) -> list[StageOutcome]:
    """Run `stages` in order, skipping those whose input hash, status and outputs match their stamp.

    Prints "[k/n] stage" with the elapsed time of the whole run and an ETA (from the durations recorded by
    earlier runs of the remaining stages, shown only when all of them are known).
    """
    slugs = [s.slug for s in stages]
    if len(set(slugs)) != len(slugs):
        raise RobodreamError(f"stage names repeat in this pipeline: {slugs}")
    started = time.monotonic()
    previous = [read_stamp(s.stamp_path) for s in stages]
    outcomes = []
    for k, stage in enumerate(stages):
        estimates = [p.get("elapsed_s") if p else None for p in previous[k:]]
        eta = f", ETA {_clock(sum(estimates))}" if all(e is not None for e in estimates) else ""
        print_fn(f"[{k + 1}/{len(stages)}] {stage.name} (elapsed {_clock(time.monotonic() - started)}{eta})")
        # Read again now, not at the start: a stage another process finished meanwhile (an experiment's
        # independent stages run side by side, docs/benchmarks.md) is skipped, not redone.
        stamp = read_stamp(stage.stamp_path)
        fingerprints = {label: fingerprint(path) for label, path in stage.inputs.items()}
        digest = input_hash(stage, fingerprints)
        if stamp and stamp.get("input_hash") == digest and stamp.get("status") == "done" and _outputs_intact(stamp):
            print_fn("      skipped: inputs and config unchanged")
            outputs = [(o["kind"], o["path"]) for o in stamp["outputs"]]
            outcomes.append(StageOutcome(stage, True, stamp.get("elapsed_s", 0.0), outputs))
            continue
        record = {"name": stage.name, "slug": stage.slug, "index": k, "input_hash": digest, "status": "running",
                  "config": resolved_config(stage),
                  "inputs": {label: {"path": stage.inputs[label], "fingerprint": fp}
                             for label, fp in fingerprints.items()},
                  "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        # An interrupted attempt with the same hash may be resumed; any other earlier attempt is stale.
        interrupted = bool(stamp) and stamp.get("input_hash") == digest
        _write_stamp(stage, {**record, "outputs": []})
        stage_started = time.monotonic()
        result = stage.run(Previous(stamp, interrupted))
        elapsed = time.monotonic() - stage_started
        outputs = [{"kind": kind, "path": str(path), "fingerprint": fingerprint(path)} for kind, path in result.outputs]
        _write_stamp(stage, {**record, "status": "done", "elapsed_s": elapsed, "note": result.note,
                             "outputs": outputs})
        print_fn(f"      {result.note + ' ' if result.note else ''}({elapsed:.1f} s)")
        outcomes.append(StageOutcome(stage, False, elapsed, [(kind, str(path)) for kind, path in result.outputs]))
    return outcomes
