"""Single-key operator input from the terminal for `robodream deploy` and `robodream record-ros`.

On a terminal, stdin is switched to cbreak mode (keys arrive without Enter, Ctrl-C still works) and restored
on exit; from a pipe (scripts, tests) characters are read as they come. A daemon thread reads the keys and
calls ``on_key(char)``; nothing blocks the control loop. Without stdin (CI, a service) there are no keys
and everything else works.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Callable


class KeyReader:
    """Reads single characters from ``stream`` in a daemon thread and hands each to ``on_key``."""

    def __init__(self, on_key: Callable[[str], None], stream=None):
        self.on_key = on_key
        self.stream = sys.stdin if stream is None else stream
        self._fd: int | None = None
        self._saved_tty = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> KeyReader:
        try:
            self._fd = self.stream.fileno()
        except (AttributeError, ValueError, OSError):
            return self  # no usable stdin: no keys
        if os.isatty(self._fd):
            import termios
            import tty

            self._saved_tty = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        self._thread = threading.Thread(target=self._run, name="robodream-keys", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._fd], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(self._fd, 64)
            except OSError:
                return
            if not data:  # EOF: the pipe was closed
                return
            for char in data.decode(errors="ignore"):
                self.on_key(char)

    def stop(self) -> None:
        """Stop reading and restore the terminal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=0.5)
        if self._saved_tty is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None

    def __enter__(self) -> KeyReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
