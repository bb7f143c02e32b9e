"""Fault battery, reads: damaged stores, NaN data, damaged checkpoints and unwritable outputs are each one
`error:` line naming what is wrong (issue "Nothing lost", "Validate what is read, once, at the boundary")."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr

from robodream.datasets.writer import create_store
from tests.conftest import TINY_FEATURES, make_episode
from tests.faults.conftest import assert_bad_input, run_cli

REPO = Path(__file__).resolve().parents[2]
WM_TINY = REPO / "configs" / "world_model" / "tiny.yaml"
POLICY_TINY = REPO / "configs" / "policy" / "tiny.yaml"
WM_ARGS = [f"world_model={WM_TINY}", "world_model.context_frames=2", "trainer.batch_size=8", "trainer.max_steps=2",
           "trainer.val_every_steps=2", "trainer.checkpoint_every_steps=2", "trainer.warmup_steps=1",
           "trainer.progress_bar=false", "trainer.threads=1", "val_fraction=0.5"]
POLICY_ARGS = [f"policy={POLICY_TINY}", "policy.horizon=4", "policy.n_action_steps=2", "trainer.max_steps=2",
               "trainer.checkpoint_every_steps=2", "trainer.batch_size=8", "trainer.warmup_steps=0",
               "trainer.ema_decay=0", "trainer.progress_bar=false", "trainer.threads=1"]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def write_store(path: Path, lengths=(5, 7, 4, 6)) -> Path:
    writer = create_store(path, fps=10, features=TINY_FEATURES, robot_type="test", task="tiny")
    for index, length in enumerate(lengths):
        writer.append_episode(make_episode(length, index), source="sim", success=True, seed=index)
    writer.close()
    return path


def cut(path: Path, size: int = 5) -> None:
    """Truncate a file to `size` bytes, as a kill or a full disk during a copy would."""
    os.truncate(path, size)


@pytest.fixture
def store(tmp_path) -> Path:
    return write_store(tmp_path / "tiny.zarr")


# -- 1. store metadata ------------------------------------------------------------------------------------------
ENDS = Path("meta") / "episode_ends"
DAMAGE = {
    "missing": lambda s: shutil.rmtree(s / ENDS),
    "cut chunk": lambda s: cut(s / ENDS / "c" / "0"),
    "lost chunk": lambda s: (s / ENDS / "c" / "0").unlink(),
    "garbage zarr.json": lambda s: (s / ENDS / "zarr.json").write_text("garbage{"),
}


@pytest.mark.parametrize("command", ["info", "repair"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_episode_ends_is_one_line(store, damage, command):
    DAMAGE[damage](store)
    before = sorted(p.name for p in store.rglob("*"))
    assert_bad_input(run_cli(command, store), str(store), "meta/episode_ends", "damaged")
    assert sorted(p.name for p in store.rglob("*")) == before  # repair did not "repair" it into an empty store


# -- 2. a corrupt data chunk ------------------------------------------------------------------------------------
CHUNK_COMMANDS = {
    "viz": lambda s, out: ["viz", s, "--episodes", "0-2", "--out", out],
    "merge": lambda s, out: ["merge", s, f"out={out / 'merged.zarr'}"],
    "export-lerobot": lambda s, out: ["export-lerobot", s, out / "lerobot"],
}
IMAGES = "observation.images.front"


@pytest.mark.parametrize(("command", "array"), [("viz", IMAGES), ("merge", IMAGES), ("merge", "action"),
                                                ("export-lerobot", IMAGES), ("export-lerobot", "action")])
def test_a_corrupt_data_chunk_names_store_array_and_chunk(store, tmp_path, command, array):
    chunk = next(p for p in (store / "data" / array / "c").rglob("*") if p.is_file())
    cut(chunk, 20)
    result = run_cli(*CHUNK_COMMANDS[command](store, tmp_path / "out"))
    assert_bad_input(result, str(store), f"data/{array} chunk c/0", "frames 0-")


def test_a_chunk_found_damaged_while_training_is_one_line(store, tmp_path):
    """With cache=disk the images are read during training, here in a DataLoader worker process, which re-raises
    the error with the worker's traceback in its message: still one line."""
    cut(store / "data" / IMAGES / "c" / "0" / "0" / "0" / "0", 20)
    result = run_cli("train-wm", f"data={store}", f"out={tmp_path / 'run'}", "cache=disk", "trainer.num_workers=1",
                     *WM_ARGS)
    assert_bad_input(result, str(store), f"data/{IMAGES} chunk c/0/0/0/0")


# -- 3. NaN / inf in float training features --------------------------------------------------------------------
@pytest.mark.parametrize("command", [
    lambda s, out: ["train-wm", f"data={s}", f"out={out}", *WM_ARGS],
    lambda s, out: ["train-policy", f"data={s}", f"out={out}", *POLICY_ARGS],
], ids=["train-wm", "train-policy"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_in_actions_is_refused_before_training(store, tmp_path, command, value):
    actions = zarr.open_group(store, mode="r+")["data/action"]
    actions[7, 1] = value  # episode 1 starts at frame 5: its frame 2; the stored stats do not know
    out = tmp_path / "run"
    assert_bad_input(run_cli(*command(store, out)), str(store), "data/action", "NaN or inf", "episode 1 at frame 2")
    assert not out.exists()  # refused before anything was written


def test_stored_stats_that_are_not_finite_are_recomputed(store):
    """Stats another tool stored with NaN in them would normalise everything to NaN: computed afresh instead."""
    from robodream.datasets.reader import EpisodeStore

    group = zarr.open_group(store, mode="r+")
    stats = group.attrs["stats"]
    stats["features"]["action"]["std"] = [float("nan")] * 2
    group.attrs["stats"] = stats
    fresh = EpisodeStore.open(store).stats()["features"]["action"]
    assert np.isfinite(fresh["std"]).all() and fresh["min"] == [0.0, 1.0]


# -- 4. checkpoints ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A world model and a policy trained 2 steps on one tiny store (in this process: cheaper than the CLI)."""
    from robodream.pipeline.cli import main

    root = tmp_path_factory.mktemp("runs")
    data = write_store(root / "tiny.zarr")
    assert main(["train-wm", f"data={data}", f"out={root / 'wm'}", *WM_ARGS]) == 0
    assert main(["train-policy", f"data={data}", f"out={root / 'policy'}", *POLICY_ARGS]) == 0
    return {"data": data, "wm": root / "wm", "policy": root / "policy"}


@pytest.fixture
def copied(runs, tmp_path) -> dict[str, Path]:
    """Copies of the runs that a test may damage."""
    return {"data": runs["data"], **{k: shutil.copytree(runs[k], tmp_path / k) for k in ("wm", "policy")}}


CUT_CHECKPOINTS = {
    "dream": ("wm/model/model.safetensors",
              lambda r, out: ["dream", f"ckpt={r['wm']}", f"data={r['data']}", "--episodes", "0", f"out={out}"]),
    "eval": ("policy/checkpoints/step_2/model.safetensors",
             lambda r, out: ["eval", f"policy={r['policy']}/checkpoints/step_2", "episodes=1", "workers=0",
                             f"out={out}"]),
    "train-wm resume": ("wm/checkpoints/last.ckpt",
                        lambda r, out: ["train-wm", f"data={r['data']}", f"out={r['wm']}", *WM_ARGS,
                                        "trainer.max_steps=4", "resume=true"]),
    "train-policy resume": ("policy/checkpoints/last.ckpt",
                            lambda r, out: ["train-policy", f"data={r['data']}", f"out={r['policy']}", *POLICY_ARGS,
                                            "trainer.max_steps=4", "resume=true"]),
}


@pytest.mark.parametrize("case", list(CUT_CHECKPOINTS))
def test_a_cut_checkpoint_is_damaged_not_a_traceback(copied, tmp_path, case):
    relative, command = CUT_CHECKPOINTS[case]
    damaged = tmp_path / relative
    cut(damaged, damaged.stat().st_size // 2)
    result = run_cli(*command(copied, tmp_path / "out"))
    assert_bad_input(result, f"damaged checkpoint {damaged}", "re-export or resume from an earlier one")


def test_a_garbage_model_config_is_a_damaged_checkpoint(copied, tmp_path):
    (copied["wm"] / "model" / "config.json").write_text("{garbage")
    result = run_cli("dream", f"ckpt={copied['wm']}", f"data={copied['data']}", "--episodes", "0",
                     f"out={tmp_path / 'out'}")
    assert_bad_input(result, f"damaged checkpoint {copied['wm'] / 'model' / 'config.json'}")


def test_model_exports_are_written_whole_or_not_at_all(runs, tmp_path, monkeypatch):
    """A failed export (here: disk full while writing the weights) leaves the previous export as it was and no
    temporary folder, for the world model, the probe and the policy alike (they share one save_pretrained)."""
    import safetensors.torch

    from robodream.policies.pretrained import load_pretrained
    from robodream.world_models.model import WorldModel
    from robodream.world_models.probe import ProbeConfig, StateSuccessProbe
    from tests.faults.conftest import tree_digest

    saves = {
        "wm": lambda d: WorldModel.from_pretrained(runs["wm"]).save_pretrained(d),
        "policy": lambda d: load_pretrained(runs["policy"] / "checkpoints" / "step_2").save_pretrained(d),
        "probe": lambda d: StateSuccessProbe(ProbeConfig(image_size=16, channels=[8, 8], hidden=8)).save_pretrained(d),
    }
    targets = {name: save(tmp_path / name / "model") for name, save in saves.items()}
    before = {name: tree_digest(target.parent) for name, target in targets.items()}

    def disk_full(tensors, path, *args, **kwargs):  # the first bytes land, then the disk is full
        Path(path).write_bytes(b"\x00" * 16)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)  # robodream.pretrained imports it when saving
    for name, save in saves.items():
        with pytest.raises(OSError):
            save(targets[name])
        assert tree_digest(targets[name].parent) == before[name], name
        assert [p.name for p in targets[name].parent.iterdir()] == ["model"], name


def test_an_export_never_replaces_a_folder_of_other_files(runs, tmp_path):
    from robodream.errors import RobodreamError
    from robodream.world_models.model import WorldModel

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me\n")
    with pytest.raises(RobodreamError, match="refusing to replace"):
        WorldModel.from_pretrained(runs["wm"]).save_pretrained(folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


# -- 5. outputs that cannot be written --------------------------------------------------------------------------
OUT_COMMANDS = {
    "train-wm": lambda s, out: ["train-wm", f"data={s}", f"out={out}", *WM_ARGS],
    "export-lerobot": lambda s, out: ["export-lerobot", s, out / "lerobot"],
    "viz": lambda s, out: ["viz", s, "--episodes", "0-1", "--out", out],
}


@pytest.mark.parametrize("command", list(OUT_COMMANDS))
def test_an_output_under_a_file_is_one_line(store, tmp_path, command):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    out = blocker if command == "train-wm" else blocker / "sub"  # train-wm out=<existing file>
    assert_bad_input(run_cli(*OUT_COMMANDS[command](store, out)), str(blocker), "is a file, not a")
    assert blocker.read_text() == "not a folder\n"


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody can write into: chmod 555, or for root (who ignores permissions) a read-only bind mount."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if not AS_ROOT:
        folder.chmod(0o555)
        yield folder, "Permission denied"
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"root ignores file permissions and cannot bind-mount read-only here: {mounted.stderr!r}")
    try:
        yield folder, "Read-only file system"
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("command", list(OUT_COMMANDS))
def test_a_read_only_output_is_one_line(store, read_only, command):
    folder, reason = read_only
    result = run_cli(*OUT_COMMANDS[command](store, folder / "run" if command == "train-wm" else folder))
    assert_bad_input(result, str(folder), reason)
