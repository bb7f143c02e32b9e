"""Multi-device training on CPU: train-wm under Lightning DDP with 2 processes (gloo), as on several GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from robodream.world_models.model import WorldModel
from tests.pipeline.test_world_model_cli import FAST, TINY_YAML


def test_world_model_trains_with_ddp_on_two_cpu_processes(tiny_store, tmp_path):
    store, out = tiny_store, tmp_path / "run"
    # Lightning's DDP launcher re-runs this command line for rank 1, so it must be a real command, not pytest.
    command = [sys.executable, "-m", "robodream.pipeline.cli", "train-wm", f"data={store}", f"world_model={TINY_YAML}",
               f"out={out}", "trainer.max_steps=2", "val_fraction=0.5", *FAST, "trainer.accelerator=cpu",
               "trainer.devices=2", "trainer.strategy=ddp", "trainer.threads=1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "distributed_backend=gloo" in output and "Starting with 2 processes" in output
    # Rank 0 alone reports and writes the summary, the model and the validation strips.
    assert result.stdout.count("training world model:") == 1 and result.stdout.count("done: 2 steps") == 1
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    model = WorldModel.from_pretrained(out / "model")
    assert model.config.image_size == 16 and model.config.context_frames == 2
    assert (out / "val" / "step_0000002.png").exists() and (out / "checkpoints" / "last.ckpt").exists()


def test_policy_trains_with_ddp_on_two_cpu_processes(tiny_store, tmp_path):
    from robodream.policies.pretrained import load_pretrained
    from tests.policies.conftest import train_args

    out = tmp_path / "policy"
    # Two stores mixed per sample: under DDP each rank samples the mixture through a DistributedSampler.
    args = [a for a in train_args(tiny_store, out, "bc", 4) if not a.startswith("data=")]
    mixture = f"data={tiny_store}:0.5,{tiny_store}:0.5"
    command = [sys.executable, "-m", "robodream.pipeline.cli", "train-policy", mixture, *args,
               "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # rank 0 alone prints the summary, and counts the 2 training processes
    assert result.stdout.count("steps        4") == 1 and "devices      2" in result.stdout
    assert (out / "checkpoints" / "last.ckpt").exists()
    policy = load_pretrained(out / "checkpoints" / "step_4")
    assert policy.config.type == "bc"
