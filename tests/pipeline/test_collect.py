"""Collection: parallel workers, one writer, seed order, resume, and surviving kills and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.writer import EpisodeWriter
from robodream.errors import RobodreamError
from robodream.pipeline.config import build_config
from robodream.pipeline.data.collect import CollectConfig, collect

REPO = Path(__file__).resolve().parents[2]


def _cfg(tmp_path, name: str, *overrides: str) -> CollectConfig:
    return build_config(CollectConfig, [f"out={tmp_path / name}", *overrides])


def _assert_same_episodes(a: EpisodeStore, b: EpisodeStore, count: int | None = None) -> None:
    count = a.num_episodes if count is None else count
    assert a.meta("episode_seed")[:count].tolist() == b.meta("episode_seed")[:count].tolist()
    for index in range(count):
        left, right = a.episode(index), b.episode(index)
        for key in a.keys:
            np.testing.assert_array_equal(left[key], right[key], err_msg=f"episode {index} {key}")


def test_parallel_collection_writes_exactly_what_a_serial_run_writes(tmp_path):
    parallel = collect(_cfg(tmp_path, "par.zarr", "episodes=4", "workers=2"), progress=False)
    serial = collect(_cfg(tmp_path, "ser.zarr", "episodes=4", "workers=0"), progress=False)
    assert parallel.episodes_in_store == serial.episodes_in_store == 4 and not parallel.stopped
    a, b = EpisodeStore.open(tmp_path / "par.zarr"), EpisodeStore.open(tmp_path / "ser.zarr")
    _assert_same_episodes(a, b)
    assert a.meta("episode_source").tolist() == ["sim"] * 4
    assert a.attrs["stats"]["num_frames"] == a.num_frames  # stats stored at the end
    assert a.cameras["front"]["width"] == 64 and a.task == "push_cube"


def test_failures_are_dropped_unless_kept(tmp_path):
    # Three control steps are too few for the expert to succeed.
    dropped = collect(_cfg(tmp_path, "drop.zarr", "episodes=2", "workers=0", "env.max_steps=3", "max_attempts=3"),
                      progress=False)
    assert dropped.episodes_in_store == 0 and dropped.attempts == 3
    assert "only 0/2 episodes after 3 attempts" in dropped.stopped
    kept = collect(_cfg(tmp_path, "keep.zarr", "episodes=2", "workers=0", "env.max_steps=3", "keep_failures=true"),
                   progress=False)
    store = EpisodeStore.open(tmp_path / "keep.zarr")
    assert kept.episodes_in_store == 2 and store.meta("episode_success").tolist() == [False, False]
    assert store.episode_lengths.tolist() == [4, 4]  # 3 steps + the final observation


def test_resume_continues_where_a_run_stopped_and_checks_the_config(tmp_path):
    collect(_cfg(tmp_path, "r.zarr", "episodes=2", "workers=0"), progress=False)
    resumed = collect(_cfg(tmp_path, "r.zarr", "episodes=3", "workers=0", "resume=true"), progress=False)
    assert resumed.new_episodes == 1 and resumed.episodes_in_store == 3
    assert EpisodeStore.open(tmp_path / "r.zarr").meta("episode_seed").tolist() == [0, 1, 2]
    again = collect(_cfg(tmp_path, "r.zarr", "episodes=3", "workers=0", "resume=true"), progress=False)
    assert again.new_episodes == 0
    with pytest.raises(RobodreamError, match="cannot resume .* env config"):
        collect(_cfg(tmp_path, "r.zarr", "episodes=4", "resume=true", "env.image_size=32"), progress=False)
    with pytest.raises(RobodreamError, match="already exists"):
        collect(_cfg(tmp_path, "r.zarr", "episodes=4"), progress=False)


def test_resume_accepts_a_store_recorded_before_a_config_field_existed(tmp_path):
    collect(_cfg(tmp_path, "old.zarr", "episodes=1", "workers=0"), progress=False)
    writer = EpisodeWriter.open(tmp_path / "old.zarr")
    recorded = dict(writer.attrs["collection"])
    recorded["expert"] = {k: v for k, v in recorded["expert"].items() if k != "decoy"}  # as an older version wrote
    writer.group.attrs["collection"] = recorded
    resumed = collect(_cfg(tmp_path, "old.zarr", "episodes=2", "workers=0", "resume=true"), progress=False)
    assert resumed.new_episodes == 1
    with pytest.raises(RobodreamError, match="cannot resume .* expert config"):
        collect(_cfg(tmp_path, "old.zarr", "episodes=3", "workers=0", "resume=true", "expert.decoy=0.04"),
                progress=False)


# -- real subprocesses: SIGKILL, a dead worker, Ctrl-C -------------------------------------------------------

def _start_collector(out: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "robodream.pipeline.cli", "collect", f"out={out}", *overrides],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True,
    )


def _wait_for_episodes(out: Path, count: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"collector ended early: {proc.communicate()}"
        try:
            if EpisodeStore.open(out, cache="disk").num_episodes >= count:
                return
        except RobodreamError:
            pass  # not created yet
        time.sleep(0.2)
    raise AssertionError(f"no {count} episodes in {out} after {timeout} s")


def _worker_pids(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and "spawn_main" in cmdline:
            pids.append(int(entry.name))
    return pids


def _assert_every_committed_episode_reads_back(out: Path) -> EpisodeStore:
    store = EpisodeStore.open(out)
    assert store.num_episodes >= 1
    for index in range(store.num_episodes):
        episode = store.episode(index)
        length = store.episode_lengths[index]
        assert all(len(values) == length for values in episode.values())
        assert episode["observation.images.front"].any()
        assert np.isfinite(episode["action"]).all()
    return store


def test_sigkill_of_the_collector_keeps_committed_episodes_and_resume_completes(tmp_path):
    out = tmp_path / "killed.zarr"
    proc = _start_collector(out, "episodes=10", "workers=2")
    _wait_for_episodes(out, 3, proc)
    workers = _worker_pids(proc.pid)
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    store = _assert_every_committed_episode_reads_back(out)
    committed = store.num_episodes
    assert committed < 10
    deadline = time.monotonic() + 10  # workers die with their parent
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "orphaned worker processes"
    # Resuming yields exactly what an uninterrupted run yields.
    resumed = subprocess.run([sys.executable, "-m", "robodream.pipeline.cli", "collect", f"out={out}", "episodes=10",
                              "workers=2", "resume=true"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    reference = collect(_cfg(tmp_path, "reference.zarr", "episodes=10", "workers=2"), progress=False)
    assert reference.episodes_in_store == 10
    _assert_same_episodes(EpisodeStore.open(out), EpisodeStore.open(tmp_path / "reference.zarr"))


def test_a_killed_worker_stops_collection_with_a_clear_message(tmp_path):
    out = tmp_path / "worker.zarr"
    proc = _start_collector(out, "episodes=30", "workers=2")
    _wait_for_episodes(out, 1, proc)
    os.kill(_worker_pids(proc.pid)[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert "died with exit code -9" in stdout and "resume=true" in stdout
    _assert_every_committed_episode_reads_back(out)


def test_ctrl_c_finishes_the_current_episode_and_stops(tmp_path):
    out = tmp_path / "interrupted.zarr"
    proc = _start_collector(out, "episodes=30", "workers=2")
    _wait_for_episodes(out, 2, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends: the whole process group
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr  # what shells expect after Ctrl-C
    assert "interrupted (Ctrl-C)" in stdout
    store = _assert_every_committed_episode_reads_back(out)
    assert store.uncommitted_frames == 0  # the append in progress was allowed to finish
