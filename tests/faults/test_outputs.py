"""One rule for outputs (issue "Nothing lost", point 1): no command deletes, empties or writes into a folder it did
not create; new stores appear whole or not at all; one writer per store.

Every case runs the real CLI in a subprocess (tests/faults/conftest.py) and checks the user's own folder by digest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from robodream.datasets import outputs
from robodream.datasets.reader import EpisodeStore
from robodream.datasets.writer import EpisodeWriter, create_store
from robodream.errors import RobodreamError
from tests.conftest import TINY_FEATURES, make_episode
from tests.faults.conftest import REPO, assert_bad_input, cli_env, run_cli, tree_digest
from tests.pipeline.test_world_model_cli import FAST, TINY_YAML
from tests.policies.conftest import train_args

COLLECT = ("collect", "episodes=1", "workers=0", "env.image_size=16", "env.max_steps=3", "keep_failures=true")


def _store(path: Path, episodes: int = 3, length: int = 5) -> Path:
    writer = create_store(path, fps=10, features=TINY_FEATURES, robot_type="test", task="tiny")
    for index in range(episodes):
        writer.append_episode(make_episode(length, index), source="sim", seed=index)
    writer.close()
    return path


def _siblings(path: Path) -> list[str]:
    """Temporary folders and lock files robodream keeps next to `path`."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}"))


# -- an existing folder that is not a store is never deleted, emptied or written into ------------------------

REFUSED = {
    "collect": lambda store, folder: [*COLLECT, f"out={folder}"],
    "collect overwrite": lambda store, folder: [*COLLECT, f"out={folder}", "overwrite=true"],
    "collect resume": lambda store, folder: [*COLLECT, f"out={folder}", "resume=true"],
    "merge": lambda store, folder: ["merge", str(store), f"out={folder}", "progress=false"],
    "merge overwrite": lambda store, folder: ["merge", str(store), f"out={folder}", "overwrite=true"],
    "merge append": lambda store, folder: ["merge", str(store), f"out={folder}", "append=true"],
    # checked before the models are even loaded: these paths need not exist
    "generate overwrite": lambda store, folder: ["generate", "wm=no_wm", "probe=no_probe", f"data={store}",
                                                 f"out={folder}", "overwrite=true", "progress=false"],
    "export-lerobot overwrite": lambda store, folder: ["export-lerobot", str(store), str(folder), "overwrite=true"],
    "train-wm overwrite": lambda store, folder: ["train-wm", f"data={store}", f"world_model={TINY_YAML}",
                                                 f"out={folder}", "overwrite=true", "trainer.max_steps=1", *FAST],
    "train-policy overwrite": lambda store, folder: ["train-policy", *train_args(store, folder, "bc", 1),
                                                     "overwrite=true"],
    "eval": lambda store, folder: ["eval", "policy=expert", "task=push_cube", "episodes=1", "workers=0",
                                   "env.image_size=16", f"out={folder}", "progress=false"],
    "run": lambda store, folder: ["run", str(REPO / "configs" / "pipeline" / "quickstart.yaml"), f"out={folder}"],
    "report": lambda store, folder: ["report", str(folder)],
    "report --out": lambda store, folder: ["report", str(store.parent), "--out", str(folder)],
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_an_existing_folder_that_is_not_an_output_of_the_same_kind_is_refused(case, unrelated_folder, tmp_path):
    store = _store(tmp_path / "runs" / "tiny.zarr")
    before = tree_digest(unrelated_folder)
    result = run_cli(*REFUSED[case](store, unrelated_folder))
    assert_bad_input(result, str(unrelated_folder))
    assert tree_digest(unrelated_folder) == before
    assert _siblings(unrelated_folder) == []  # no lock file or temporary folder left beside it


def test_a_relative_out_naming_an_existing_folder_is_refused(unrelated_folder):
    """`out=data` / `out=~`-like: a folder of the user's, named relative to the working directory."""
    before = tree_digest(unrelated_folder)
    result = run_cli(*COLLECT, f"out={unrelated_folder.name}", "overwrite=true", cwd=unrelated_folder.parent)
    assert_bad_input(result, "is not an episode store")
    assert tree_digest(unrelated_folder) == before


def test_every_store_creator_refuses_a_folder_and_a_file_in_one_place(unrelated_folder, tmp_path):
    """create_store (collect, teleop, record-ros, deploy, imports, merge, generate) and atomic_output share the rule."""
    before = tree_digest(unrelated_folder)
    for overwrite in (False, True):
        with pytest.raises(RobodreamError, match="is not an episode store; refusing to replace it"):
            create_store(unrelated_folder, fps=10, features=TINY_FEATURES, robot_type="t", task="t",
                         overwrite=overwrite)
        with pytest.raises(RobodreamError, match="is a file, not an episode store"):
            create_store(unrelated_folder / "thesis.tex", fps=10, features=TINY_FEATURES, robot_type="t", task="t",
                         overwrite=overwrite)
        with pytest.raises(RobodreamError, match="is not a LeRobot dataset"):
            with outputs.atomic_output(unrelated_folder, overwrite=overwrite, kind="lerobot"):
                pass
    assert tree_digest(unrelated_folder) == before and _siblings(unrelated_folder) == []
    other = zarr.open_group(tmp_path / "other_tool.zarr", mode="w")  # a zarr group, but not an episode store
    other.attrs["made_by"] = "another tool"
    with pytest.raises(RobodreamError, match="is not an episode store"):
        create_store(tmp_path / "other_tool.zarr", fps=10, features=TINY_FEATURES, robot_type="t", task="t",
                     overwrite=True)
    assert zarr.open_group(tmp_path / "other_tool.zarr", mode="r").attrs["made_by"] == "another tool"


def test_overwrite_replaces_a_store_of_the_same_kind(tmp_path):
    store = _store(tmp_path / "a.zarr", episodes=3)
    source = _store(tmp_path / "b.zarr", episodes=1)
    result = run_cli("merge", str(source), f"out={store}", "overwrite=true", "progress=false")
    assert result.code == 0, result.stderr
    assert EpisodeStore.open(store).num_episodes == 1 and _siblings(store) == []


def test_the_report_writes_into_a_run_directory_it_recognises_or_a_new_folder(tmp_path):
    run = tmp_path / "run"
    _store(run / "data" / "tiny.zarr")
    assert run_cli("report", str(run)).code == 0 and (run / "report" / "report.md").is_file()
    assert run_cli("report", str(run)).code == 0  # over its own earlier report
    assert run_cli("report", str(run), "--out", str(tmp_path / "new")).code == 0
    assert (tmp_path / "new" / "report.html").is_file()


# -- a killed merge leaves no store or a complete one; the next run removes its temporary folder -------------

def test_a_killed_merge_leaves_nothing_or_a_complete_store_and_the_next_run_cleans_up(tmp_path):
    source = _store(tmp_path / "source.zarr", episodes=24, length=40)
    out = tmp_path / "merged.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "robodream.pipeline.cli", "merge", str(source), f"out={out}",
                             "progress=false"], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill it once episodes are being written (meta/episode_ends has a chunk: one was committed), wherever the
    # merge writes them: a temporary sibling, or (as before the output rule) out= itself.
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if any((p / "meta" / "episode_ends" / "c").exists() for p in [out, *tmp_path.glob(".merged.zarr.partial-*")]):
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    complete = out.exists()  # only if the merge got to its final rename first
    if complete:
        assert EpisodeStore.open(out).num_episodes == 24
    else:
        assert _siblings(out), "expected the killed merge's temporary folder (removed by the next run)"
    # The retry a user would run, append=true included: every episode once, nothing left beside the store.
    result = run_cli("merge", str(source), f"out={out}", "append=true", "progress=false")
    assert result.code == 0, result.stderr
    merged = EpisodeStore.open(out)
    assert merged.num_episodes == (48 if complete else 24)
    assert merged.meta("episode_seed").tolist()[:24] == list(range(24))
    assert _siblings(out) == []


@pytest.mark.parametrize("append", [False, True], ids=["new store", "append"])
def test_temporary_folders_of_dead_runs_are_removed_by_the_next_writer(append, tmp_path):
    out = tmp_path / "out.zarr"
    stale = [".out.zarr.partial-999999", ".out.zarr.partial", ".out.zarr.partial.rank1"]
    if append:  # an old store moved aside is put back when out= is missing (next test); here out= is there
        _store(out, 2)
        stale.append(".out.zarr.old-999999")
    for name in stale:
        (tmp_path / name / "data").mkdir(parents=True)
    (tmp_path / ".out.zarr.partial.counts.json").write_text("{}")
    result = run_cli("merge", str(_store(tmp_path / "a.zarr", 1)), f"out={out}", f"append={append}", "progress=false")
    assert result.code == 0, result.stderr
    assert _siblings(out) == [] and EpisodeStore.open(out).num_episodes == 1 + 2 * append


def test_the_partial_folder_of_a_killed_export_is_removed_by_the_next_export(tmp_path):
    dataset = tmp_path / "ds"
    (tmp_path / ".ds.partial-999999" / "data").mkdir(parents=True)
    result = run_cli("export-lerobot", str(_store(tmp_path / "s.zarr")), str(dataset))
    assert result.code == 0, result.stderr
    assert (dataset / "meta" / "info.json").is_file() and _siblings(dataset) == []


def test_an_old_store_moved_aside_by_a_killed_replace_is_put_back(tmp_path):
    """A kill between "move the old store aside" and "move the new one in": the next run finds the old one."""
    out = tmp_path / "out.zarr"
    _store(out, 2).rename(tmp_path / ".out.zarr.old-999999")
    _store(tmp_path / ".out.zarr.partial-999999", 1)  # the replacement, never moved in
    result = run_cli("merge", str(_store(tmp_path / "a.zarr", 1)), f"out={out}", "progress=false")
    assert_bad_input(result, "already exists")  # the old store is back, and not replaced without overwrite=true
    assert EpisodeStore.open(out).num_episodes == 2 and _siblings(out) == []


# -- one writer per store -------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    lambda store: [*COLLECT, f"out={store}", "resume=true", "episodes=5"],
    lambda store: ["merge", str(store.with_name("other.zarr")), f"out={store}", "append=true", "progress=false"],
    lambda store: ["merge", str(store.with_name("other.zarr")), f"out={store}", "overwrite=true", "progress=false"],
    lambda store: ["repair", str(store)],
], ids=["collect resume", "merge append", "merge overwrite", "repair"])
def test_a_second_writer_is_refused_naming_the_store_and_the_holder(command, tmp_path):
    store = _store(tmp_path / "s.zarr")
    _store(tmp_path / "other.zarr", 1)
    writer = EpisodeWriter.open(store)  # this test process is the first writer
    try:
        result = run_cli(*command(store))
        assert_bad_input(result, str(store), f"pid {os.getpid()}")
    finally:
        writer.close()
    assert EpisodeStore.open(store).num_episodes == 3
    assert _siblings(store) == []  # the lock file goes with its writer


_HOLD = "from robodream.datasets.writer import EpisodeWriter; import sys, time; w = EpisodeWriter.open(sys.argv[1]); " \
        "print('holding', flush=True); time.sleep(600)"


def test_the_lock_of_a_killed_writer_is_taken_over(tmp_path):
    store = _store(tmp_path / "s.zarr")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(store)], env=cli_env(), cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert_bad_input(run_cli("merge", str(_store(tmp_path / "o.zarr", 1)), f"out={store}", "append=true"),
                         f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / ".s.zarr.lock").exists()  # a stale lock file: its process is gone
    result = run_cli("merge", str(tmp_path / "o.zarr"), f"out={store}", "append=true", "progress=false")
    assert result.code == 0, result.stderr
    assert EpisodeStore.open(store).num_episodes == 4 and _siblings(store) == []
    np.testing.assert_array_equal(EpisodeStore.open(store).meta("episode_seed"), [0, 1, 2, 0])
