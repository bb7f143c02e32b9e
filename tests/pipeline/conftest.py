"""Shared fixtures of the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from robodream.pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY_WM = REPO / "configs" / "world_model" / "tiny.yaml"
QUIET = ["trainer.progress_bar=false", "trainer.warmup_steps=1", "trainer.threads=1"]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """A small real store (push_cube, 16x16), a tiny world model and a tiny probe trained on it."""
    root = tmp_path_factory.mktemp("synthetic")
    store = root / "push.zarr"
    assert main(["collect", "task=push_cube", "episodes=4", "workers=1", "env.image_size=16", f"out={store}"]) == 0
    wm = root / "wm"
    assert main(["train-wm", f"data={store}", f"world_model={TINY_WM}", f"out={wm}", "trainer.max_steps=3",
                 "trainer.batch_size=8", "trainer.val_every_steps=3", "trainer.checkpoint_every_steps=3",
                 "val_fraction=0.25", *QUIET]) == 0
    probe = root / "probe"
    assert main(["train-probe", f"data={store}", f"out={probe}", "trainer.max_steps=3", "trainer.batch_size=16",
                 "trainer.val_every_steps=3", "trainer.checkpoint_every_steps=3", "probe.channels=[8,16]",
                 "probe.hidden=32", "val_fraction=0.25", *QUIET]) == 0
    return store, wm, probe
