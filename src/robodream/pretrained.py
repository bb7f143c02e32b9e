"""One way to save, find and load a model: `PretrainedMixin`, for the world model, the probe and every policy.

A saved model is a directory of two files, written together or not at all (`checkpoints.write_model_dir`):

    <model>/config.json          what the class needs to rebuild the network (its own keys; see each class)
    <model>/model.safetensors    the weights, normaliser buffers included

As in diffusers' ModelMixin/ConfigMixin and LeRobot's PreTrainedPolicy, the class decides what its config.json
holds (`pretrained_config`) and how an untrained module is built from it (`_from_pretrained_config`); the mixin
does the rest the same way for every kind: it writes both files atomically, finds the model directory inside a
training run (`resolve_model_dir`), checks both files before building anything, and loads the weights strictly.
Each kind keeps the config.json keys it has always written, so every directory saved before still loads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from robodream.checkpoints import check_weights, load_weights, read_config, write_model_dir
from robodream.errors import RobodreamError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: a run's model export: the world model's and the probe's `<run>/model/`
MODEL_SUBDIR = "model"
#: a run's kept checkpoints: the policy's `<run>/checkpoints/step_<N>/`
CHECKPOINTS_SUBDIR = "checkpoints"
STEP_DIR = re.compile(r"^step_(\d+)$")


def run_checkpoints(run: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every `checkpoints/step_<N>/` of a training run, by step."""
    folder = Path(run) / CHECKPOINTS_SUBDIR
    found = sorted((int(m.group(1)), p) for p in folder.glob("step_*") if (m := STEP_DIR.match(p.name)) and p.is_dir())
    if not found:
        raise RobodreamError(f"{run} holds no checkpoints (expected {folder}/step_<N>/): train with "
                             "robodream train-policy out=... first")
    return found


def run_dir_of(model_dir: Path) -> Path:
    """Where a model's training record and evaluations live: the run directory of `<run>/model`, else the model
    directory itself (a model exported on its own)."""
    return model_dir.parent if model_dir.name == MODEL_SUBDIR else model_dir


def checkpoint_label(path: Path) -> str:
    """How tables name a checkpoint: "<run>/step_<N>" for a run's checkpoint, "<parent>/<name>" otherwise."""
    run = path.parent.parent.name if path.parent.name == CHECKPOINTS_SUBDIR else path.parent.name
    return f"{run}/{path.name}"


def resolve_model_dir(path: str | os.PathLike, kind: str = "model", hint: str = "") -> Path:
    """The model directory that `path` names: `path` itself when it holds a config.json, else the run
    directory's `model/` export, else its latest `checkpoints/step_<N>/`. `kind` and `hint` complete the error."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        return path
    if (path / MODEL_SUBDIR / CONFIG_FILE).is_file():
        return path / MODEL_SUBDIR
    checkpoints = path / CHECKPOINTS_SUBDIR
    if checkpoints.is_dir() and any(STEP_DIR.match(p.name) and p.is_dir() for p in checkpoints.iterdir()):
        return run_checkpoints(path)[-1][1]
    if path.suffix == ".ckpt":
        raise RobodreamError(f"{path} is a Lightning training checkpoint; pass the run directory or its model "
                             f"export ({CONFIG_FILE} + {WEIGHTS_FILE}) instead")
    where = "it does not exist" if not path.exists() else \
        f"it has no {CONFIG_FILE}, nor {MODEL_SUBDIR}/ or {CHECKPOINTS_SUBDIR}/step_<N>/ holding one"
    raise RobodreamError(f"no {kind} at {path}: {where}{hint}")


def read_model_config(path: str | os.PathLike, kind: str = "model", hint: str = "") -> tuple[Path, dict[str, Any]]:
    """(model directory, its config.json) for a model or run directory, after checking that both files are
    there and whole. Needs no torch, so a command can refuse a bad model before it starts any work."""
    directory = resolve_model_dir(path, kind, hint)
    config = read_config(directory / CONFIG_FILE)
    if not (directory / WEIGHTS_FILE).is_file():
        raise RobodreamError(f"{directory} lacks {WEIGHTS_FILE}: the {kind} export is incomplete")
    check_weights(directory / WEIGHTS_FILE)
    return directory, config


class PretrainedMixin:
    """`save_pretrained` / `from_pretrained` for an nn.Module. Subclasses set `model_kind` (for messages) and
    implement `pretrained_config` and `_from_pretrained_config`."""

    model_kind: ClassVar[str] = "model"
    #: appended to "no <kind> at <path>": how to get one
    missing_hint: ClassVar[str] = ""

    def pretrained_config(self, **metadata: Any) -> dict[str, Any]:
        """The config.json of this model (`metadata`: what the caller records with it, e.g. training info)."""
        raise NotImplementedError

    @classmethod
    def _from_pretrained_config(cls, config: dict[str, Any], directory: Path):
        """An untrained module built from a config.json (checked and refused with one line when it does not
        describe this kind of model); `from_pretrained` fills in the weights."""
        raise NotImplementedError

    def save_pretrained(self, directory: str | os.PathLike, **metadata: Any) -> Path:
        """Write config.json + model.safetensors as `directory` (created, or replacing an earlier export of the
        same kind); a temporary sibling is renamed into place, so a crash never leaves a half-written model."""
        from safetensors.torch import save_file

        config = self.pretrained_config(**metadata)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

        def write(tmp: Path) -> None:
            save_file(state, str(tmp / WEIGHTS_FILE))
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2))

        return write_model_dir(directory, write)

    @classmethod
    def resolve_model_dir(cls, path: str | os.PathLike) -> Path:
        """The model directory `path` names (a model directory, or a run holding one); see `resolve_model_dir`."""
        return resolve_model_dir(path, cls.model_kind, cls.missing_hint)

    @classmethod
    def read_pretrained_config(cls, path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
        """(model directory, config.json) for a model or run directory; see `read_model_config`."""
        return read_model_config(path, cls.model_kind, cls.missing_hint)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: Any = "cpu"):
        """Load a model directory written by `save_pretrained` (or the one a training run directory holds),
        eval-ready on `device`."""
        directory, config = cls.read_pretrained_config(path)
        model = cls._from_pretrained_config(config, directory)
        model._load_pretrained_weights(directory, device)
        return model.to(device).eval()

    def _load_pretrained_weights(self, directory: Path, device: Any = "cpu") -> None:
        """Fill this module with `directory`'s weights; one line when they do not fit its config."""
        state: Mapping[str, Any] = load_weights(directory / WEIGHTS_FILE, device=str(device))
        try:
            self.load_state_dict(state)
        except RuntimeError as exc:
            raise RobodreamError(f"the {self.model_kind} weights in {directory} do not fit its {CONFIG_FILE} "
                                 f"(another version or architecture?): {str(exc).splitlines()[0]}") from None
