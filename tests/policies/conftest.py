"""Tiny policy configs and helpers shared by the policy tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from robodream.pipeline.config import build_config
from robodream.policies.configuration import PolicyConfig

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "policy" / "tiny.yaml"

# Overrides that make the tiny config fit the conftest `tiny_store` (16x16 frames, 5-7 frame episodes).
SMALL = ["horizon=4", "n_action_steps=2", "encoder.random_shift=1"]


def tiny_config(policy_type: str = "diffusion", *overrides: str) -> PolicyConfig:
    return build_config(PolicyConfig, [f"type={policy_type}", *SMALL, *overrides], [TINY])


def train_args(store, out, policy_type: str = "diffusion", steps: int = 30, *extra: str) -> list[str]:
    """key=value arguments of a tiny train-policy run."""
    return [f"data={store}", f"out={out}", f"policy={TINY}", f"policy.type={policy_type}",
            *[f"policy.{o}" for o in SMALL], f"trainer.max_steps={steps}",
            f"trainer.checkpoint_every_steps={steps}", "trainer.batch_size=8", "trainer.learning_rate=1e-2",
            "trainer.warmup_steps=0", "trainer.ema_decay=0", "trainer.progress_bar=false", "trainer.threads=1", *extra]


@pytest.fixture(params=["diffusion", "bc"])
def policy_type(request) -> str:
    return request.param
