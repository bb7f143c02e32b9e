"""train-wm / dream / eval-wm end to end on a tiny store: outputs, resume, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from robodream.datasets.video import read_video
from robodream.datasets.writer import create_store
from robodream.pipeline.cli import main
from tests.conftest import make_episode

TINY_YAML = Path(__file__).resolve().parents[2] / "configs" / "world_model" / "tiny.yaml"
FAST = ["world_model.context_frames=2", "trainer.batch_size=8", "trainer.val_every_steps=2",
        "trainer.checkpoint_every_steps=2", "trainer.progress_bar=false", "trainer.warmup_steps=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the tests of this module."""
    from tests.conftest import TINY_FEATURES

    root = tmp_path_factory.mktemp("wm")
    store = root / "tiny.zarr"
    writer = create_store(store, fps=10, features=TINY_FEATURES, robot_type="test", task="tiny")
    for index, length in enumerate((5, 7, 4, 6)):
        writer.append_episode(make_episode(length, index), source="sim", success=True)
    writer.close()
    out = root / "run"
    assert main(["train-wm", f"data={store}", f"world_model={TINY_YAML}", f"out={out}", "trainer.max_steps=4",
                 "val_fraction=0.5", *FAST]) == 0
    return store, out


def test_training_writes_model_strips_checkpoints_and_config(trained):
    store, out = trained
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["image_size"] == 16 and config["action_dim"] == 2 and config["state_dim"] == 3
    assert (out / "val" / "step_0000002.png").exists() and (out / "val" / "step_0000004.gif").exists()
    assert (out / "checkpoints" / "last.ckpt").exists()
    assert "val/loss" in json.loads((out / "train_summary.json").read_text())["metrics"]
    assert "image_size: 16" in (out / "config.yaml").read_text()  # resolved from the data


def test_resume_continues_and_mismatches_are_refused(trained, capsys):
    store, out = trained
    args = ["train-wm", f"data={store}", f"world_model={TINY_YAML}", f"out={out}", "val_fraction=0.5", *FAST]
    assert main([*args, "trainer.max_steps=6"]) == 2
    assert "already holds a training run: pass resume=true" in capsys.readouterr().err
    assert main([*args, "trainer.max_steps=6", "resume=true"]) == 0
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 6
    assert main([*args, "trainer.max_steps=8", "resume=true", "world_model.num_sampling_steps=5"]) == 2
    assert "the world_model config differs in ['num_sampling_steps']" in capsys.readouterr().err


def test_a_copied_run_resumes_from_its_own_last_checkpoint(trained, tmp_path):
    """Copying a run to branch an experiment, then resuming the copy twice, continues from the copy's latest step."""
    import torch

    store, out = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    steps = json.loads((copy / "train_summary.json").read_text())["steps"]
    args = ["train-wm", f"data={store}", f"world_model={TINY_YAML}", f"out={copy}", "val_fraction=0.5", *FAST,
            "resume=true"]
    for more in (2, 4):
        assert main([*args, f"trainer.max_steps={steps + more}"]) == 0
        last = torch.load(copy / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert last["global_step"] == steps + more
    assert not list((copy / "checkpoints").glob("last-v*.ckpt"))


def test_an_interrupted_training_resumes_to_the_uninterrupted_weights(trained, tmp_path, monkeypatch):
    """Killed after its step-4 checkpoint (a validation followed it), resumed: the weights of a run that never
    stopped, exactly: the same windows in the same order and the same noise (ExactResume)."""
    import torch
    from safetensors.torch import load_file

    from robodream.world_models.training import WorldModelSystem

    store, _ = trained
    args = ["train-wm", f"data={store}", f"world_model={TINY_YAML}", "val_fraction=0.5", *FAST,
            "trainer.max_steps=8", "trainer.checkpoint_every_steps=4", "trainer.threads=1"]
    assert main([*args, f"out={tmp_path / 'whole'}"]) == 0
    original = WorldModelSystem.training_step

    class Killed(Exception):
        pass

    def training_step(self, batch, batch_idx):
        if self.global_step == 4:
            raise Killed
        return original(self, batch, batch_idx)

    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(WorldModelSystem, "training_step", training_step)
        main([*args, f"out={tmp_path / 'resumed'}"])
    assert main([*args, f"out={tmp_path / 'resumed'}", "resume=true"]) == 0
    whole, resumed = (load_file(next((tmp_path / run / "model").glob("*.safetensors")))
                      for run in ("whole", "resumed"))
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)


def test_dream_writes_side_by_side_videos(trained, tmp_path, capsys):
    store, out = trained
    assert main(["dream", f"ckpt={out}", f"data={store}", "--episodes", "0-1", f"out={tmp_path}", "scale=2"]) == 0
    mp4 = tmp_path / "dream_ep0-1.mp4"
    frames = read_video(mp4)
    assert len(frames) == 7  # the longer episode, context included
    assert (tmp_path / "dream_ep0-1.gif").exists() and str(mp4) in capsys.readouterr().out


def test_eval_wm_writes_metrics_against_both_baselines(trained, tmp_path, capsys):
    store, out = trained
    # every episode, the training ones included (the default is the held-out ones: tests/faults/test_runtime.py)
    assert main(["eval-wm", f"ckpt={out}", f"data={store}", "episodes=all", "horizon=4", f"out={tmp_path}"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["horizons"] == [1, 2, 3, 4]
    assert metrics["count"] == [4, 4, 3, 2]  # episodes of 5, 7, 4, 6 frames minus 2 context frames
    for name in ("model", "copy_last_frame", "shuffled_actions"):
        assert len(metrics[name]["psnr"]) == 4 and all(np.isfinite(v) for v in metrics[name]["ssim"])
    assert (tmp_path / "fidelity.png").stat().st_size > 10_000
    assert "shuffled act." in capsys.readouterr().out


def test_a_store_that_does_not_fit_the_model_is_one_clear_error(trained, tmp_path, capsys):
    _, out = trained
    features = {"observation.images.front": {"dtype": "uint8", "shape": [32, 32, 3], "names": None},
                "observation.state": {"dtype": "float32", "shape": [3], "names": None},
                "action": {"dtype": "float32", "shape": [2], "names": None}}
    other = tmp_path / "big.zarr"
    writer = create_store(other, fps=10, features=features, robot_type="test", task="tiny")
    writer.append_episode(make_episode(5, 0, features), source="sim")
    assert main(["eval-wm", f"ckpt={out}", f"data={other}"]) == 2
    err = capsys.readouterr().err
    assert "the model has image_size=16 but the data has 32" in err and err.count("\n") == 1
    assert main(["dream", f"ckpt={tmp_path}", f"data={other}"]) == 2
    assert "no world model at" in capsys.readouterr().err


def test_bf16_mixed_precision_trains_on_cpu(trained, tmp_path):
    store, _ = trained
    out = tmp_path / "bf16"
    assert main(["train-wm", f"data={store}", f"world_model={TINY_YAML}", f"out={out}", "trainer.max_steps=2",
                 "trainer.precision=bf16-mixed", *FAST]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2 and np.isfinite(summary["metrics"]["val/loss"])
