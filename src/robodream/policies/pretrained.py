"""Policy checkpoints: save_pretrained-style directories, loadable without Lightning.

    step_5000/
      config.json          {"format": "robodream.policy", "version": 1, "type", "policy": PolicyConfig,
                            "features": {key: {dtype, shape, names}}, "normalizer": {modes, sizes},
                            "training": {step, task, fps, robot_type, data}}
      model.safetensors    the weights (EMA weights when training used EMA) and the normaliser buffers

Written by `policy.save_pretrained(directory, training=...)` (robodream.pretrained.PretrainedMixin, as the world
model and the probe). Here: building the policy class a config names, loading whichever type a checkpoint holds,
and reading a checkpoint's config.json without torch.

`features` records what the policy reads and writes, so that an env or a store that does not provide them is
refused with a message naming the mismatch (`check_features`) before anything runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robodream.errors import RobodreamError
from robodream.features import ACTION, Feature
from robodream.policies.configuration import PolicyConfig, check_checkpoint_info
from robodream.pretrained import read_model_config


def policy_class(policy_type: str):
    """The Policy subclass that implements `policy_type` ("diffusion" or "bc")."""
    if policy_type == "diffusion":
        from robodream.policies.diffusion import DiffusionPolicy

        return DiffusionPolicy
    from robodream.policies.bc import BCPolicy

    return BCPolicy


def make_policy(config: PolicyConfig, features: Mapping[str, Feature], stats: Mapping[str, Any] | None = None):
    """Build the policy class named by `config.type` (stats: store stats()["features"], None when loading)."""
    return policy_class(config.type)(config, features, stats)


def read_checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """config.json of a policy checkpoint (or of a training run's latest one), after checking that its
    weights are whole; no torch needed. One-line errors for anything else."""
    directory, info = read_model_config(path, "policy")
    return check_checkpoint_info(info, directory)


def load_pretrained(path: str | os.PathLike, device: str = "cpu"):
    """Load a policy checkpoint, or a training run's latest one, of whichever type it holds (eval-ready)."""
    return policy_class(read_checkpoint_info(path)["type"]).from_pretrained(Path(path), device)


def check_features(expected: Mapping[str, Feature], available: Mapping[str, Feature], what: str,
                   where: str, fix: str = "") -> None:
    """Refuse when `available` (an env's or a store's features) does not give every feature of `expected`
    (a checkpoint's) with the same shape. `what`/`where` name both sides in the message."""
    for key, feature in expected.items():
        if key not in available:
            raise RobodreamError(f"{what} needs {key!r} but {where} has no such feature (it has "
                                 f"{sorted(available)}){fix}")
        if list(available[key]["shape"]) != list(feature["shape"]):
            kind = "produces" if key == ACTION else "expects"
            raise RobodreamError(f"{what} {kind} {key} of shape {list(feature['shape'])} but {where} has "
                                 f"{list(available[key]['shape'])}{fix}")
        names, theirs = feature.get("names"), available[key].get("names")
        if key == ACTION and names and theirs and list(names) != list(theirs):
            raise RobodreamError(f"{what} produces actions {names} but {where} takes {theirs}{fix}")
