"""Policy checkpoints: save_pretrained-style directories, loadable without Lightning.

    step_5000/
      config.json          {"format": "robodream.policy", "version": 1, "type", "policy": PolicyConfig,
                            "features": {key: {dtype, shape, names}}, "normalizer": {modes, sizes},
                            "training": {step, task, fps, robot_type, data}}
      model.safetensors    the weights (EMA weights when training used EMA) and the normaliser buffers

`features` records what the policy reads and writes, so that an env or a store that does not provide them is
refused with a message naming the mismatch (`check_features`) before anything runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robodream.checkpoints import check_weights, load_weights, read_config, write_model_dir
from robodream.errors import RobodreamError
from robodream.features import ACTION, Feature
from robodream.policies.configuration import PolicyConfig

FORMAT = "robodream.policy"
VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def make_policy(config: PolicyConfig, features: Mapping[str, Feature], stats: Mapping[str, Any] | None = None):
    """Build the policy class named by `config.type` (stats: store stats()["features"], None when loading)."""
    if config.type == "diffusion":
        from robodream.policies.diffusion import DiffusionPolicy

        return DiffusionPolicy(config, features, stats)
    from robodream.policies.bc import BCPolicy

    return BCPolicy(config, features, stats)


def save_pretrained(policy, directory: str | os.PathLike, training: Mapping[str, Any] | None = None) -> Path:
    """Write config.json + model.safetensors; the directory is written to a temporary name and renamed, so
    a crash never leaves a half-written checkpoint."""
    from safetensors.torch import save_file

    info = {
        "format": FORMAT, "version": VERSION, "type": policy.config.type,
        "policy": policy.config.to_dict(), "features": policy.features,
        "normalizer": policy.normalizer.config(),
        "num_parameters": sum(p.numel() for p in policy.parameters()),
        "training": dict(training or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}

    def write(tmp: Path) -> None:
        (tmp / CONFIG_NAME).write_text(json.dumps(info, indent=2))
        save_file(state, str(tmp / WEIGHTS_NAME))

    return write_model_dir(directory, write)


def read_checkpoint_info(directory: str | os.PathLike) -> dict[str, Any]:
    """config.json of a policy checkpoint (no torch needed); one-line errors for anything else."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        hint = " (a training run? pass one of its checkpoints/step_<N> directories)" \
            if (directory / "checkpoints").is_dir() else ""
        raise RobodreamError(f"{directory} is not a policy checkpoint: it has no {CONFIG_NAME}{hint}")
    info = read_config(path)
    if info.get("format") != FORMAT:
        raise RobodreamError(f"{directory} is not a robodream policy checkpoint (format {info.get('format')!r})")
    if info.get("version", 0) > VERSION:
        raise RobodreamError(f"{directory} was written by a newer robodream (checkpoint version "
                             f"{info['version']} > {VERSION}); upgrade robodream")
    if not (directory / WEIGHTS_NAME).is_file():
        raise RobodreamError(f"{directory} lacks {WEIGHTS_NAME}: the checkpoint is incomplete")
    check_weights(directory / WEIGHTS_NAME)  # before anyone relies on it (eval checks this before starting workers)
    return info


def load_pretrained(directory: str | os.PathLike, device: str = "cpu"):
    """Load a policy checkpoint (eval-ready, on `device`)."""
    info = read_checkpoint_info(directory)
    config = PolicyConfig.from_dict(info["policy"])
    policy = make_policy(config, info["features"])
    state = load_weights(Path(directory) / WEIGHTS_NAME)
    missing, unexpected = policy.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RobodreamError(f"{directory}: weights do not match the config (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]}); the checkpoint is damaged or from another version")
    policy.training_info = info.get("training", {})
    return policy.to(device).eval()


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
