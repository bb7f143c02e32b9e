"""Stage hashing (pipeline/stages.py): unchanged stages are skipped, a change re-runs it and what follows."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from robodream.config_fields import runtime
from robodream.datasets.writer import EpisodeWriter
from robodream.errors import RobodreamError
from robodream.pipeline.stages import Previous, Stage, StageResult, fingerprint, run_stages
from tests.conftest import make_episode


@dataclass
class _Sized:
    size: int
    workers: int = runtime(0)  # declared runtime-only: never part of the hash


def _chain(tmp_path: Path, configs: dict[str, dict], calls: list[str]) -> list[Stage]:
    """a -> b -> c: each stage writes a file from its config and its input file."""

    def stage(name: str, upstream: str | None) -> Stage:
        out = tmp_path / name

        def run(previous: Previous) -> StageResult:
            calls.append(name)
            text = json.dumps(configs[name]) + (Path(tmp_path / upstream / "out.txt").read_text() if upstream else "")
            out.mkdir(parents=True, exist_ok=True)
            (out / "out.txt").write_text(text)
            return StageResult(name, [("files", str(out / "out.txt"))])

        inputs = {"upstream": str(tmp_path / upstream / "out.txt")} if upstream else {}
        return Stage(name, name, out, _Sized(**configs[name]), run, inputs=inputs)

    return [stage("a", None), stage("b", "a"), stage("c", "b")]


def test_unchanged_stages_are_skipped_and_a_change_reruns_downstream_only(tmp_path):
    configs = {"a": {"size": 1}, "b": {"size": 2, "workers": 1}, "c": {"size": 3}}
    calls: list[str] = []
    lines: list[str] = []
    run_stages(_chain(tmp_path, configs, calls), lines.append)
    assert calls == ["a", "b", "c"]
    assert lines[0].startswith("[1/3] a (elapsed 0:00") and "ETA" not in lines[0]  # nothing known yet
    stamp = json.loads((tmp_path / "b" / "b.stage.json").read_text())
    assert stamp["status"] == "done" and stamp["config"] == {"size": 2} and stamp["inputs"]["upstream"]["fingerprint"]
    assert (tmp_path / "b" / "b.stage.yaml").read_text().strip() == "size: 2"

    calls.clear()
    lines.clear()
    outcomes = run_stages(_chain(tmp_path, configs, calls), lines.append)
    assert calls == [] and all(o.skipped for o in outcomes)
    assert "ETA" in lines[0]  # the first run's durations are the estimate

    configs["b"]["workers"] = 8  # declared as not changing the outputs
    run_stages(_chain(tmp_path, configs, calls), lines.append)
    assert calls == []

    configs["b"]["size"] = 20
    run_stages(_chain(tmp_path, configs, calls), lines.append)
    assert calls == ["b", "c"]


def test_a_stage_another_process_finished_meanwhile_is_skipped(tmp_path):
    """Independent stages of one plan may run side by side (another process runs the second while this one runs
    the first): a stage's stamp is read when its turn comes, not when the run started, so it is not done twice."""
    from dataclasses import replace

    configs = {"a": {"size": 1}, "b": {"size": 2}, "c": {"size": 3}}
    calls: list[str] = []
    first = _chain(tmp_path / "one", configs, calls)[0]
    second = replace(_chain(tmp_path / "two", configs, calls)[0], slug="a-two")

    def first_while_the_second_runs_elsewhere(previous: Previous) -> StageResult:
        run_stages([second], lambda line: None)
        return first.run(previous)

    outcomes = run_stages([replace(first, run=first_while_the_second_runs_elsewhere), second], lambda line: None)
    assert calls == ["a", "a"] and [o.skipped for o in outcomes] == [False, True]


def test_an_upstream_rerun_with_identical_output_does_not_rerun_downstream(tmp_path):
    configs = {"a": {"size": 1}, "b": {"size": 2}, "c": {"size": 3}}
    calls: list[str] = []
    run_stages(_chain(tmp_path, configs, calls), lambda _: None)
    (tmp_path / "a" / "a.stage.json").unlink()  # a re-runs, writes the same bytes: b and c see the same input
    calls.clear()
    run_stages(_chain(tmp_path, configs, calls), lambda _: None)
    assert calls == ["a"]


def test_changed_or_missing_outputs_rerun_the_stage(tmp_path):
    configs = {"a": {"size": 1}, "b": {"size": 2}, "c": {"size": 3}}
    calls: list[str] = []
    run_stages(_chain(tmp_path, configs, calls), lambda _: None)
    (tmp_path / "c" / "out.txt").unlink()
    calls.clear()
    run_stages(_chain(tmp_path, configs, calls), lambda _: None)
    assert calls == ["c"]


def test_an_interrupted_stage_is_told_to_resume(tmp_path):
    seen: list[Previous] = []

    def crash(previous: Previous) -> StageResult:
        seen.append(previous)
        raise KeyboardInterrupt

    def finish(previous: Previous) -> StageResult:
        seen.append(previous)
        return StageResult()

    with pytest.raises(KeyboardInterrupt):
        run_stages([Stage("s", "s", tmp_path, {"size": 1}, crash)], lambda _: None)
    run_stages([Stage("s", "s", tmp_path, {"size": 1}, finish)], lambda _: None)
    assert not seen[0].interrupted and seen[1].interrupted and seen[1].stamp["status"] == "running"
    run_stages([Stage("s", "s", tmp_path, {"size": 2}, finish)], lambda _: None)
    assert not seen[2].interrupted and seen[2].stamp["config"] == {"size": 1}  # another config: start over


def test_a_missing_input_is_one_clear_error(tmp_path):
    stage = Stage("needs x", "x", tmp_path, {}, lambda p: StageResult(), inputs={"x": str(tmp_path / "nope")})
    with pytest.raises(RobodreamError, match="needs .*nope"):
        run_stages([stage], lambda _: None)


def test_file_fingerprints_follow_content_not_mtime(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "w.bin").write_bytes(b"weights")
    before = fingerprint(tmp_path / "d")
    os.utime(tmp_path / "d" / "w.bin", (1, 1))
    (tmp_path / "d" / "x.stage.json").write_text("{}")  # stamps are timing records, not content
    assert fingerprint(tmp_path / "d") == before
    (tmp_path / "d" / "w.bin").write_bytes(b"weightz")
    assert fingerprint(tmp_path / "d") != before
    assert fingerprint(tmp_path / "missing") is None


def test_store_fingerprint_sees_committed_episodes_only(tiny_store):
    before = fingerprint(tiny_store)
    assert before.startswith("store:")
    writer = EpisodeWriter.open(tiny_store)
    writer.group.attrs["stats"] = {"num_frames": -1}  # readers cache stats in the attributes: not content
    writer.close(compute_stats=False)
    assert fingerprint(tiny_store) == before
    writer = EpisodeWriter.open(tiny_store)
    writer.append_episode(make_episode(3, 3), source="sim", success=True, seed=103, origin="test:3")
    writer.close()
    assert fingerprint(tiny_store) != before
