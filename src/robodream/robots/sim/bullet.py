"""pybullet, imported without the "pybullet build time: ..." line it prints on import.

That line is printed from C (to stderr) by every process that imports pybullet, each collection worker
too, and lands in the middle of progress bars. It is swallowed by pointing file descriptors 1 and 2 at
/dev/null for the duration of the import; nothing else runs meanwhile.
"""

from __future__ import annotations

import ctypes
import os
import sys


def _import_quietly():
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in saved:
            os.dup2(devnull, fd)
        import pybullet

        ctypes.CDLL(None).fflush(None)  # anything still in C's stdio buffers goes to /dev/null too
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)
    return pybullet


p = _import_quietly()
