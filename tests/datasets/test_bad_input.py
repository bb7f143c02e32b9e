"""Bad input to the store: one clear error, and the existing store is intact."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.writer import EpisodeWriter, create_store
from robodream.errors import RobodreamError
from tests.conftest import TINY_FEATURES, make_episode


def _assert_intact(path) -> None:
    store = EpisodeStore.open(path)
    assert store.episode_ends.tolist() == [5, 12, 16]
    np.testing.assert_array_equal(store.episode(2)["action"], make_episode(4, 2)["action"])
    assert store.uncommitted_frames == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ep: ep.update({"observation.images.front": np.zeros((4, 32, 32, 3), np.uint8)}),
         r"per-frame shape \(32, 32, 3\) but the store .* holds \(16, 16, 3\)"),
        (lambda ep: ep.update({"action": np.zeros((4, 3), np.float32)}), r"'action' has per-frame shape \(3,\)"),
        (lambda ep: ep["action"].__setitem__((2, 1), np.nan), r"'action' contains NaN or inf \(first at frame 2\)"),
        (lambda ep: ep["observation.state"].__setitem__((3, 0), np.inf), "'observation.state' contains NaN or inf"),
        (lambda ep: ep.pop("observation.state"), r"episode is missing \['observation.state'\]"),
        (lambda ep: ep.update({"observation.depth": np.zeros((4, 2), np.float32)}), "does not hold"),
        (lambda ep: ep.update({"action": np.zeros((3, 2), np.float32)}), "differ in length"),
        (lambda ep: ep.update({"observation.images.front": np.zeros((4, 16, 16, 3), np.float32)}),
         "convert it first"),
    ],
)
def test_invalid_episode_is_refused_before_anything_is_written(tiny_store, change, message):
    episode = {k: v.copy() for k, v in make_episode(4, 5).items()}
    change(episode)
    writer = EpisodeWriter.open(tiny_store)
    with pytest.raises(RobodreamError, match=message):
        writer.append_episode(episode, source="sim")
    _assert_intact(tiny_store)


def test_empty_episode_and_unknown_source_are_refused(tiny_store):
    writer = EpisodeWriter.open(tiny_store)
    with pytest.raises(RobodreamError, match="empty"):
        writer.append_episode(make_episode(0, 0), source="sim")
    with pytest.raises(RobodreamError, match="source must be one of"):
        writer.append_episode(make_episode(2, 0), source="dream")
    _assert_intact(tiny_store)


def test_existing_store_is_not_replaced_without_overwrite(tiny_store):
    with pytest.raises(RobodreamError, match="already exists.*overwrite=true"):
        create_store(tiny_store, fps=10, features=TINY_FEATURES, robot_type="t", task="t")
    _assert_intact(tiny_store)


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(RobodreamError, match="no episode store at"):
        EpisodeStore.open(tmp_path / "nope.zarr")


def test_group_of_another_format_is_refused(tmp_path):
    path = tmp_path / "other.zarr"
    zarr.open_group(str(path), mode="w").attrs["format"] = "lerobot"
    with pytest.raises(RobodreamError, match=r"not a robodream episode store \(format 'lerobot'"):
        EpisodeStore.open(path)
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w")
    with pytest.raises(RobodreamError, match="no 'format' attribute"):
        EpisodeWriter.open(plain)


def test_newer_store_version_is_refused(tiny_store):
    zarr.open_group(str(tiny_store), mode="r+").attrs["version"] = 99
    with pytest.raises(RobodreamError, match="store version 99, newer than this robodream reads"):
        EpisodeStore.open(tiny_store)
    with pytest.raises(RobodreamError, match="newer"):
        EpisodeWriter.open(tiny_store)


def test_zarr_v2_replay_buffer_is_pointed_to_the_importer(tmp_path):
    path = tmp_path / "replay.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("meta/episode_ends", shape=(1,), dtype="i8")
    with pytest.raises(RobodreamError, match="zarr v2 group.*robodream import-zarr"):
        EpisodeStore.open(path)


# -- disks that refuse writes: real kernel errors in a child process ------------------------------------

_APPEND_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    import numpy as np
    from robodream.datasets.writer import EpisodeWriter
    from robodream.errors import RobodreamError
    from tests.conftest import make_episode
    if sys.argv[2] == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))
    episode = make_episode(200, 9)
    episode["observation.images.front"] = np.random.default_rng(0).integers(0, 255, (200, 16, 16, 3), np.uint8)
    try:
        EpisodeWriter.open(sys.argv[1]).append_episode(episode, source="sim")
    except RobodreamError as exc:
        print(exc)
        sys.exit(2)
    sys.exit(0)
    """
)


def _drop_file_capabilities() -> None:
    """Make root obey permission bits in the child: drop DAC override/read-search and FOWNER from the
    capability bounding set before exec (PR_CAPBSET_DROP)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _run_append_child(store: Path, mode: str, drop_capabilities: bool = False) -> subprocess.CompletedProcess:
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-c", _APPEND_CHILD, str(store), mode], capture_output=True, text=True,
                          env=env, cwd=repo, preexec_fn=_drop_file_capabilities if drop_capabilities else None,
                          timeout=120)


def test_full_disk_gives_one_clear_error_and_keeps_the_store(tiny_store):
    result = _run_append_child(tiny_store, "fsize")
    assert result.returncode == 2, result.stderr
    assert "disk full or file size limit" in result.stdout and "Committed episodes are intact" in result.stdout
    _assert_intact(tiny_store)
    EpisodeWriter.open(tiny_store)  # the next append repairs any partial frames
    _assert_intact(tiny_store)


def test_read_only_store_gives_one_clear_error_and_keeps_the_store(tiny_store):
    paths = [tiny_store, *tiny_store.rglob("*")]
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        # Root ignores permission bits unless it gives up its file capabilities, so the child does.
        result = _run_append_child(tiny_store, "ro", drop_capabilities=os.geteuid() == 0)
        assert result.returncode == 2, result.stderr
        assert "cannot write to" in result.stdout and "Permission denied" in result.stdout
    finally:
        for path in paths:
            path.chmod(0o755 if path.is_dir() else 0o644)
    _assert_intact(tiny_store)
