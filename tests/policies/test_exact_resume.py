"""A training interrupted and resumed from its checkpoint ends with the weights of one that never stopped."""

from __future__ import annotations

import shutil

import pytest
import torch

from robodream.pipeline.config import build_config
from robodream.pipeline.policy.train import TrainPolicyConfig, train_policy
from robodream.policies.pretrained import load_pretrained
from robodream.policies.system import PolicySystem

from .conftest import train_args

STEPS = 10


class Interrupted(Exception):
    pass


def _weights(run) -> dict[str, torch.Tensor]:
    return load_pretrained(run / "checkpoints" / f"step_{STEPS}").state_dict()


def _train(args: list[str]) -> None:
    train_policy(build_config(TrainPolicyConfig, args))


def _train_interrupted(args: list[str], stop_after: int, monkeypatch) -> None:
    """Train until the step after `stop_after` starts, as a killed process would stop (last.ckpt at stop_after)."""
    original = PolicySystem.training_step

    def training_step(self, batch, batch_idx):
        if self.global_step == stop_after:
            raise Interrupted
        return original(self, batch, batch_idx)

    with monkeypatch.context() as patch:
        patch.setattr(PolicySystem, "training_step", training_step)
        with pytest.raises(Interrupted):
            _train(args)


# 16 windows in batches of 5 (the last one dropped): 3 batches an epoch. A checkpoint every 4 steps is taken
# mid-epoch (step 4); every 3 steps, at an epoch's end (step 6). Two stores: the weighted mixture's sampler.
@pytest.mark.parametrize(("every", "stop_after", "mixture"), [(4, 4, False), (3, 6, False), (4, 8, True)])
def test_resumed_training_ends_with_the_uninterrupted_weights(tiny_store, tmp_path, monkeypatch, every,
                                                              stop_after, mixture):
    data = []
    if mixture:
        shutil.copytree(tiny_store, tmp_path / "other.zarr")
        data = [f"data=[{{path: {tiny_store}, weight: 0.7}}, {{path: {tmp_path / 'other.zarr'}, weight: 0.3}}]"]

    def args(out):
        return [*train_args(tiny_store, tmp_path / out, "diffusion", STEPS, "trainer.batch_size=5",
                            f"trainer.checkpoint_every_steps={every}", "trainer.ema_decay=0.99"), *data]

    _train(args("whole"))
    _train_interrupted(args("resumed"), stop_after, monkeypatch)
    assert not (tmp_path / "resumed" / "checkpoints" / f"step_{STEPS}").exists()
    _train([*args("resumed"), "resume=true"])
    whole, resumed = _weights(tmp_path / "whole"), _weights(tmp_path / "resumed")
    assert all(torch.equal(whole[key], resumed[key]) for key in whole), [
        key for key in whole if not torch.equal(whole[key], resumed[key])]


def test_a_fresh_run_draws_what_it_always_drew(tiny_store, tmp_path):
    # Wrapping the loaders' samplers for resumes changes no fresh run: two runs of one seed agree exactly, and a
    # run of another seed does not (the check can fail).
    for out, seed in (("a", 0), ("b", 0), ("c", 1)):
        _train(train_args(tiny_store, tmp_path / out, "diffusion", STEPS, f"trainer.seed={seed}"))
    a, b, c = (_weights(tmp_path / out) for out in "abc")
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not all(torch.equal(a[key], c[key]) for key in a)
