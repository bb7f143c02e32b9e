"""`robodream teleop`: the control loop with scripted keys, and the real window under Xvfb driven by xdotool."""

from __future__ import annotations

import io
import itertools
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robodream.datasets.reader import EpisodeStore
from robodream.pipeline.cli import main
from robodream.pipeline.config import build_config
from robodream.pipeline.data.teleop import TeleopConfig, TeleopSession
from robodream.pipeline.data.teleop_window import WINDOW_NAME, Status, render

ENTER, ESC, SPACE = 13, 27, 32
D, X, Y = ord("d"), ord("x"), ord("y")


class ScriptedWindow:
    """Stands in for the OpenCV window: returns the keys of one scripted tick per wait, then Esc."""

    def __init__(self, ticks):
        self.ticks = list(ticks)
        self.shown = 0

    def open(self) -> None:
        pass

    def show(self, canvas, title=None) -> None:
        self.shown += 1

    def wait_keys(self, deadline) -> list[int]:
        return self.ticks.pop(0) if self.ticks else [ESC]

    def close(self) -> None:
        pass


def _config(tmp_path, *overrides) -> TeleopConfig:
    return build_config(TeleopConfig, ["task=pick_place", f"out={tmp_path / 'teleop.zarr'}", *overrides])


def test_keys_record_save_and_discard_episodes(tmp_path):
    # keys gathered while waiting after tick i act at tick i + 1
    script = [[ENTER], [D, D], [D], [SPACE], [Y], [ENTER],  # record 6 steps, close the gripper, mark, save
              [ENTER], [X]]                                  # a second episode, discarded; then Esc
    summary = TeleopSession(_config(tmp_path), ScriptedWindow(script)).run()
    assert (summary.saved, summary.discarded, summary.frames) == (1, 1, 7)
    store = EpisodeStore.open(tmp_path / "teleop.zarr")
    assert store.num_episodes == 1 and store.fps == 10 and store.task == "pick_place"
    assert store.meta("episode_source").tolist() == ["teleop"]
    assert store.meta("episode_success").tolist() == [True]  # marked with y
    assert store.meta("episode_seed").tolist() == [0]
    episode = store.episode(0)
    np.testing.assert_allclose(episode["action"][:, 1], [0, 0.02, 0.01, 0, 0, 0, 0], atol=1e-6)  # +y per d press
    assert episode["action"][:, 3].tolist() == [0, 0, 0, 1, 1, 1, 1]  # gripper closed by space, held
    np.testing.assert_allclose(episode["timestamp"], np.arange(7) / 10, atol=1e-6)
    assert episode["observation.state"][-1, 1] - episode["observation.state"][0, 1] > 0.02  # the arm moved +y

    # resume adds to the store with the next seed
    TeleopSession(_config(tmp_path, "resume=true"), ScriptedWindow([[ENTER], [D], [ENTER]])).run()
    store = EpisodeStore.open(tmp_path / "teleop.zarr")
    assert store.meta("episode_seed").tolist() == [0, 1] and store.meta("episode_success").tolist() == [True, False]


def test_overruns_are_counted_and_reported(tmp_path):
    ticks = itertools.count()
    clock = lambda: next(ticks) * 0.15  # noqa: E731  every reading 150 ms later: no tick fits in 100 ms
    log = io.StringIO()
    summary = TeleopSession(_config(tmp_path), ScriptedWindow([[ENTER], [D], [ENTER]]), clock=clock, log=log).run()
    assert summary.saved == 1 and summary.late_ticks == summary.ticks >= 3
    assert "cannot keep the dataset rate" in log.getvalue()
    assert "late" in summary.lines()[2]


def test_quitting_without_saving_leaves_no_store(tmp_path):
    summary = TeleopSession(_config(tmp_path), ScriptedWindow([[ENTER], [D], [ESC]])).run()
    assert summary.saved == 0 and summary.discarded == 1
    assert not (tmp_path / "teleop.zarr").exists()


def test_teleop_without_a_display_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["teleop", "task=push_cube", f"out={tmp_path / 't.zarr'}"]) == 2
    assert "error: teleop needs a display" in capsys.readouterr().err
    assert not (tmp_path / "t.zarr").exists()


def test_overlay_shows_recording_state_and_help():
    image = np.full((64, 64, 3), 128, np.uint8)
    status = Status(task="push_cube", store="x.zarr", episode=2, saved=2, recording=True, elapsed_s=1.5, fps=9.8,
                    target_fps=10, late_ticks=0, gripper=1.0, task_success=False, mark=None)
    canvas = render(image, status, ["Enter  start / save"], scale=4)
    assert canvas.shape[1] == 64 * 4 + 320 and canvas.shape[0] >= 256
    assert (canvas[18, 18] == (0, 0, 255)).all()  # the red REC dot (BGR)


def _start_xvfb() -> tuple[subprocess.Popen, str]:
    """Xvfb on a free display: -displayfd makes the server pick one and write its number to a pipe."""
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    data, deadline = b"", time.monotonic() + 20
    while not data.endswith(b"\n") and time.monotonic() < deadline:  # it writes "N\n"; closing early kills it
        if select.select([read_fd], [], [], 1)[0]:
            chunk = os.read(read_fd, 64)
            if not chunk:
                break
            data += chunk
    os.close(read_fd)
    number = data.decode().strip()
    if not number:
        server.kill()
        pytest.fail("Xvfb did not report a display number within 20 s")
    return server, f":{number}"


@pytest.mark.slow
def test_teleop_window_records_an_episode_under_xvfb(tmp_path):
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install xvfb xdotool; .ci/run installs them)")
    server, display = _start_xvfb()
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    env.pop("WAYLAND_DISPLAY", None)
    out = tmp_path / "teleop.zarr"
    teleop = subprocess.Popen([sys.executable, "-m", "robodream.pipeline.cli", "teleop", "task=pick_place",
                               f"out={out}", "seed=3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[2])

    def xdotool(*args: str, timeout: float = 30) -> str:
        return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, check=True,
                              timeout=timeout).stdout

    try:
        try:
            window = xdotool("search", "--sync", "--name", WINDOW_NAME, timeout=90).split()[0]
        except subprocess.TimeoutExpired:
            teleop.kill()
            pytest.fail(f"the teleop window never appeared; teleop said: {teleop.communicate()[1][-2000:]}")
        xdotool("windowfocus", "--sync", window)  # no window manager: give the window the keyboard ourselves

        def title_shows(text: str, seconds: float) -> bool:  # the title says "ready"/"REC" and the saved count
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if text in xdotool("getwindowname", window):
                    return True
                time.sleep(0.1)
            return False

        # keys sent while the app is still starting up may never reach it: press Enter until recording starts
        assert any(xdotool("key", "Return") is not None and title_shows("REC", 3) for _ in range(5)), \
            "Enter never started a recording"
        for keys in (["d"] * 6, ["space"], ["y"]):
            xdotool("key", "--delay", "60", *keys)
            time.sleep(0.4)
        xdotool("key", "Return")
        assert title_shows("1 saved", 10), "Enter never saved the episode"
        xdotool("key", "Escape")
        stdout, stderr = teleop.communicate(timeout=60)
    finally:
        if teleop.poll() is None:
            teleop.kill()
        server.terminate()
        server.wait(timeout=10)
    assert teleop.returncode == 0, stderr
    assert "1 saved" in stdout
    store = EpisodeStore.open(out)
    assert store.num_episodes == 1 and store.meta("episode_source").tolist() == ["teleop"]
    assert store.meta("episode_success").tolist() == [True] and store.meta("episode_seed").tolist() == [3]
    episode = store.episode(0)
    assert episode["action"][:, 1].sum() > 0.03  # six presses of d: +y
    assert episode["action"][-1, 3] == 1.0  # gripper closed with space
    assert episode["observation.state"][-1, 1] - episode["observation.state"][0, 1] > 0.02
