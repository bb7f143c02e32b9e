"""The teleop window: the camera scaled up with a status overlay and key help, and key collection (OpenCV highgui).

`render` is a pure function (RGB frame + status -> BGR canvas) so the overlay can be tested and looked at
without a display. `OpenCVWindow` shows canvases and gathers every key pressed until a deadline, which is how
the control loop both waits for its next tick and reads the keyboard.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from robodream.errors import RobodreamError

WINDOW_NAME = "robodream teleop"
PANEL_WIDTH = 320
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts")


@dataclass
class Status:
    """What the overlay shows."""

    task: str
    store: str
    episode: int  # number of the episode being (or about to be) recorded
    saved: int
    recording: bool
    elapsed_s: float  # length of the episode being recorded
    fps: float  # measured control-loop rate
    target_fps: float
    late_ticks: int  # ticks that overran their period
    gripper: float  # 0 open .. 1 closed (the command)
    task_success: bool  # the task's own success test now
    mark: bool | None  # operator's success/failure mark, None = use the task's test
    message: str = ""


def render(image: np.ndarray, status: Status, help_lines: list[str], scale: int) -> np.ndarray:
    """The window content: the camera frame scaled by ``scale`` (nearest) with a status line, and a side panel."""
    import cv2

    view = cv2.cvtColor(image.repeat(scale, axis=0).repeat(scale, axis=1), cv2.COLOR_RGB2BGR)
    height = max(view.shape[0], 24 * (len(help_lines) + 12))
    canvas = np.full((height, view.shape[1] + PANEL_WIDTH, 3), 32, np.uint8)
    canvas[: view.shape[0], : view.shape[1]] = view
    canvas[:34, : view.shape[1]] = (canvas[:34, : view.shape[1]] * 0.35).astype(np.uint8)  # dark band: text readable
    if status.recording:
        cv2.circle(canvas, (18, 18), 8, (0, 0, 255), -1)
        _text(canvas, f"REC  episode {status.episode}  {status.elapsed_s:5.1f} s", (32, 24), (80, 80, 255))
    else:
        _text(canvas, f"READY  episode {status.episode}: Enter to record", (10, 24), (0, 220, 0))

    outcome = {True: "marked success", False: "marked failure", None: "task " + ("succeeded" if status.task_success
                                                                                  else "not done")}[status.mark]
    lines = [
        (f"task     {status.task}", (230, 230, 230)),
        (f"episode  {status.episode}   saved {status.saved}", (230, 230, 230)),
        (f"time     {status.elapsed_s:.1f} s" if status.recording else "time     -", (230, 230, 230)),
        (f"fps      {status.fps:4.1f} / {status.target_fps:g}   late {status.late_ticks}",
         (80, 80, 255) if status.late_ticks and status.fps < 0.9 * status.target_fps else (230, 230, 230)),
        (f"gripper  {'closed' if status.gripper > 0.5 else 'open'}", (230, 230, 230)),
        (f"outcome  {outcome}", (0, 220, 0) if status.mark or (status.mark is None and status.task_success)
         else (230, 230, 230)),
        ("", None),
        *[(line, (200, 200, 120)) for line in help_lines],
        ("", None),
        (status.message, (0, 200, 255)),
    ]
    x = view.shape[1] + 10
    for i, (line, colour) in enumerate(lines):
        if line:
            _text(canvas, line, (x, 24 + 22 * i), colour)
    return canvas


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], colour) -> None:
    import cv2

    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)


def _x_server_socket(display: str) -> tuple[int, object] | None:
    """(address family, address) of the X server a DISPLAY value names ("[host]:N[.screen]"); None: unparsable."""
    host, sep, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not sep or not number.isdigit():
        return None
    if host.startswith("/"):  # a socket path (XQuartz: /private/tmp/com.apple.launchd.../org.xquartz:0)
        return socket.AF_UNIX, display
    if host in ("", "unix"):
        return socket.AF_UNIX, f"/tmp/.X11-unix/X{number}"
    return socket.AF_INET, (host, 6000 + int(number))


def _x_server_answers(display: str) -> bool:
    target = _x_server_socket(display)
    if target is None:
        return False
    family, address = target
    candidates = [address]
    if family == socket.AF_UNIX and sys.platform.startswith("linux"):
        candidates.append("\0" + str(address))  # Xorg/Xvfb also listen on the abstract socket of that name
    for candidate in candidates:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(2.0)
                sock.connect(candidate)
            return True
        except OSError:
            continue
    return False


# Opens and closes a window in a child process: Qt calls abort() when it cannot use the display (no server,
# refused authorisation, a missing xcb library), which would kill teleop itself without a word of explanation.
_PROBE = "import cv2; cv2.namedWindow('robodream probe'); cv2.waitKey(1); cv2.destroyAllWindows()"


def display_problem() -> str | None:
    """Why no teleop window can open here, in one line; None when a display answers. Checked before teleop
    creates its store, so that a failed start leaves nothing behind."""
    if os.name != "posix":
        return None
    display, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
    if not display and not wayland:
        return "teleop needs a display: run it on a desktop, over ssh -X, or under xvfb-run"
    if not display:
        return None  # Wayland only: left to the window system
    if not _x_server_answers(display):
        return (f"teleop cannot reach the display DISPLAY={display}: no X server answers there; start one, fix "
                "DISPLAY (e.g. DISPLAY=:0), or run under xvfb-run")
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None  # slow, not broken: let the real window try
    if probe.returncode != 0:
        lines = [line.strip() for line in probe.stderr.splitlines() if line.strip()]
        why = next((line for line in lines if "connect" in line or "authoriz" in line.lower()), lines[0] if lines
                   else f"exit status {probe.returncode}")
        return f"teleop cannot open a window on DISPLAY={display} ({why}); check the display, or run under xvfb-run"
    return None


class OpenCVWindow:
    """A highgui window. `wait_keys(deadline)` pumps events until ``deadline`` and returns the keys pressed."""

    def __init__(self, name: str = WINDOW_NAME):
        self.name = name
        self.closed = True  # until open() succeeds
        self._title = name

    def open(self) -> None:
        """Create the window, or raise a RobodreamError saying why there can be none."""
        problem = display_problem()
        if problem:
            raise RobodreamError(problem)
        # The Qt build of opencv-python ships no fonts; point it at the system's to keep its log quiet.
        for folder in FONT_DIRS:
            if os.path.isdir(folder):
                os.environ.setdefault("QT_QPA_FONTDIR", folder)
                break
        import cv2

        try:
            cv2.namedWindow(self.name, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as exc:
            raise RobodreamError(f"OpenCV cannot open a window ({str(exc).strip().splitlines()[-1]}): install "
                                 "opencv-python, not opencv-python-headless") from None
        self.closed = False

    def show(self, canvas: np.ndarray, title: str | None = None) -> None:
        """Draw ``canvas``; ``title`` (the window title, e.g. "robodream teleop - REC - 0 saved") is set when it
        changes, so the recording state is visible in the task bar and to window tools (xdotool)."""
        import cv2

        cv2.imshow(self.name, canvas)
        if title and title != self._title:
            cv2.setWindowTitle(self.name, title)
            self._title = title

    def wait_keys(self, deadline: float) -> list[int]:
        """Keys pressed until ``deadline`` (time.monotonic), in order; closing the window reads as Esc."""
        import cv2

        keys = []
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            key = cv2.waitKeyEx(max(1, remaining_ms))
            if key != -1:
                keys.append(key)
            if cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) < 1:
                self.closed = True
                keys.append(27)
                return keys
            if time.monotonic() >= deadline:
                return keys

    def close(self) -> None:
        import cv2

        if not self.closed:
            cv2.destroyWindow(self.name)
            cv2.waitKey(1)  # let the backend process the destroy
        self.closed = True
