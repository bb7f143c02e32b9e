"""Model files on disk: written whole or not at all, and checked before they are used.

World models, probes and policies are save_pretrained-style directories (config.json + model.safetensors),
written and read by robodream/pretrained.py with the helpers here; training runs keep Lightning's
`checkpoints/last.ckpt` for `resume=true`. A kill while writing, a full disk or a partial copy leaves truncated
files that torch and safetensors report as tracebacks deep inside loading ("incomplete metadata, file not fully
covered", "failed finding central directory"); here they become one line.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robodream.errors import RobodreamError


def damaged(path: str | os.PathLike, reason: str = "") -> RobodreamError:
    detail = f" ({reason})" if reason else ""
    return RobodreamError(f"damaged checkpoint {path}{detail}: re-export or resume from an earlier one")


def write_model_dir(directory: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Fill a fresh temporary sibling of `directory` with `write(tmp)`, then rename it into place, so that a
    kill or a full disk never leaves a half-written model directory (at worst a `<name>.tmp` folder that the
    next save removes). An existing `directory` is replaced only when it holds nothing but the files written
    now (an earlier export of the same kind): it is moved aside, and removed once the new one is in place."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        if directory.exists() and not directory.is_dir():
            raise RobodreamError(f"cannot write a model to {directory}: it is a file; choose another folder")
        others = sorted({p.name for p in directory.iterdir()} - {p.name for p in tmp.iterdir()}) \
            if directory.exists() else []
        if others:
            raise RobodreamError(f"refusing to replace {directory}: it holds {others} besides a model export; "
                                 "choose another folder")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(directory)
    return directory


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """A model directory's config.json as a dict; a missing, cut or garbage file is a damaged checkpoint."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(path, str(exc)) from None
    if not isinstance(config, dict):
        raise damaged(path, "not a JSON object")
    return config


def check_weights(path: str | os.PathLike) -> Path:
    """Check a model.safetensors file before use without loading it: its header must parse and its tensors
    must cover the file exactly (a cut file fails here). No torch needed."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except (SafetensorError, OSError) as exc:
        raise damaged(path, str(exc).splitlines()[0]) from None
    return Path(path)


def load_weights(path: str | os.PathLike, device: str = "cpu") -> dict[str, Any]:
    """The tensors of a model.safetensors file; a cut or garbage file is a damaged checkpoint."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise damaged(path, str(exc).splitlines()[0]) from None


def check_lightning_checkpoint(path: str | os.PathLike) -> Path:
    """Check that a Lightning/torch checkpoint (a zip archive) is complete before a resume depends on it: every
    member is read and its CRC compared, which costs one read of the file (seconds for large checkpoints)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise damaged(path, str(exc)) from None
    if bad is not None:
        raise damaged(path, f"{bad} fails its checksum")
    return path
