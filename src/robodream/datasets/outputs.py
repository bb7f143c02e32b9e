"""The one rule for outputs, used by every command that creates a store or a dataset folder.

1. A command never deletes or empties anything it did not create. An existing output that is not of the kind
   the command writes (an episode store, a LeRobot dataset) is refused with one line, ``overwrite=true``
   included (an empty folder too); ``overwrite=true`` replaces only an output of the same kind.
2. A new output is built in a temporary sibling (``.<name>.partial-<pid>``) and renamed into place at the end,
   so a kill leaves the old state or the new one, plus at most that temporary folder. A replaced output is
   moved aside (``.<name>.old-<pid>``) until the new one is in place; after a kill in between, the next writer
   puts it back.
3. One writer per output: a lock file next to it (``.<name>.lock``, holding the writer's pid) is taken with
   flock(2) for as long as the writer lives. The kernel drops the lock when its process dies, so a stale lock
   file of a killed writer is simply taken over. Whoever holds the lock owns the temporary siblings, so it
   removes the ones a killed run left behind.

Temporary siblings are never locked themselves: their owner holds the lock of the output they become. Locks
are local-filesystem locks; stores at URLs (object stores) are not locked.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from robodream.datasets import layout
from robodream.errors import RobodreamError

KINDS = {"store": "an episode store", "lerobot": "a LeRobot dataset"}
TEMPORARY_MARK = ".partial"


def is_kind(path: Path, kind: str) -> bool:
    """Whether the folder `path` holds an output of `kind`: for "store" a robodream episode store (also one whose
    attributes a crash cut short: they are written last), not any zarr group (a replay buffer is source data)."""
    if kind == "lerobot":
        return (path / "meta" / "info.json").is_file()
    try:
        meta = json.loads((path / "zarr.json").read_text())
        fmt = meta.get("attributes", {}).get("format")
    except (OSError, ValueError, AttributeError):
        return False
    if meta.get("node_type") != "group":
        return False
    return fmt == layout.FORMAT or (fmt is None and (path / layout.META / layout.EPISODE_ENDS / "zarr.json").is_file())


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether `path` is a temporary sibling (or a part of one) that some output's lock holder owns."""
    name = Path(path).name
    return name.startswith(".") and TEMPORARY_MARK in name


def temporary_sibling(target: Path) -> Path:
    """Where `target` is built before it is renamed into place (one per process)."""
    name = target.name if target.name.startswith(".") else f".{target.name}"
    return target.with_name(f"{name}{TEMPORARY_MARK}-{os.getpid()}")


def check_output(target: str | os.PathLike, kind: str = "store", *, overwrite: bool,
                 hint: str = "pass overwrite=true to replace it, or choose another path") -> None:
    """Refuse, with one line, to write `kind` to `target` where that could lose anything (see module doc).

    Passes for a new path, and for an output of the same kind with `overwrite` (which a caller may also pass
    for "append": an existing output of the same kind is then added to, not replaced)."""
    if layout.is_url(target):
        return
    path = layout.local_path(target)
    if not path.exists() and not path.is_symlink():
        return
    what = KINDS[kind]
    if not path.is_dir():
        raise RobodreamError(f"{path} is a file, not {what}; refusing to replace it: choose another output path")
    if is_kind(path, kind):
        if not overwrite:
            raise RobodreamError(f"{path} already exists: {hint}")
        return
    raise RobodreamError(f"{path} exists and is not {what}; refusing to replace it (overwrite=true replaces only "
                         f"{what}): choose another output path")


def check_folder(out: str | os.PathLike, markers: tuple[str, ...], what: str) -> None:
    """The rule for commands that write a folder of files (training runs, evaluations): write only into a new or
    empty folder, or one that already holds one of `markers` (files or folders this kind of command writes) or a
    pipeline stage's stamp (`*.stage.json`, written just before the stage runs), so `out=~` or a typo never writes
    into, or deletes from, a user's own folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RobodreamError(f"{out} is a file, not {what}: choose another out=")
    if out.is_dir() and any(out.iterdir()) and not any((out / m).exists() for m in markers) \
            and not any(out.glob("*.stage.json")):
        raise RobodreamError(f"{out} exists and is not {what} (no {' or '.join(markers)} in it); refusing to write "
                             "into it: choose a new or empty out=")


class OutputLock:
    """A held writer lock on one output (see `lock_output`); `release` is idempotent."""

    def __init__(self, key: str | None):
        self.key = key

    def release(self) -> None:
        key, self.key = self.key, None
        if key is None or key not in _HELD:
            return
        held = _HELD[key]
        held[1] -= 1
        if held[1] == 0:
            del _HELD[key]
            try:
                os.unlink(key)  # while still locked: a waiter that opened it re-checks the inode and retries
            except OSError:
                pass
            os.close(held[0])


# Locks held by this process: lock file -> [fd, count]. flock(2) conflicts between two opens of one file even
# in one process, so a process re-entering its own lock (a stage that reopens the store it writes) just counts.
_HELD: dict[str, list[int]] = {}


def lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def lock_output(target: str | os.PathLike) -> OutputLock:
    """Take the writer lock of `target`, or raise one line naming the output and the pid of its writer."""
    if layout.is_url(target) or is_temporary(target):
        return OutputLock(None)
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no lock
        return OutputLock(None)
    target = layout.local_path(target)
    path = lock_path(target)
    if not path.parent.is_dir():  # nothing there to protect: the caller reports the missing folder its own way
        return OutputLock(None)
    try:
        key = str(path.resolve())
        if key in _HELD:
            _HELD[key][1] += 1
            return OutputLock(key)
        while True:
            fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP):  # a filesystem without locks: go without
                    return OutputLock(None)
                raise RobodreamError(f"{target} is being written by another process (pid {holder}): wait for it "
                                     f"to finish or stop it (its lock is {path})") from None
            try:  # the previous holder may have unlinked the file between our open and our lock
                if os.stat(key).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as exc:
        raise RobodreamError(layout.describe_os_error(exc, target)) from None
    _HELD[key] = [fd, 1]
    return OutputLock(key)


def remove_store(path: str | os.PathLike) -> None:
    """Delete a local store or a partial one (missing is fine): what a run that keeps nothing leaves behind."""
    shutil.rmtree(path, ignore_errors=True)


def remove_stale_temporaries(target: Path) -> None:
    """Clear what a killed run left beside `target` (call only while holding its lock): temporary folders go;
    an old output moved aside by a replace killed before the new one took its place is put back."""
    if not target.parent.is_dir():
        return
    prefix = (target.name if target.name.startswith(".") else f".{target.name}") + TEMPORARY_MARK
    old_prefix = f".{target.name}.old-"
    siblings = sorted(p for p in target.parent.iterdir() if p.name.startswith((prefix, old_prefix)))
    olds = [p for p in siblings if p.name.startswith(old_prefix)]
    if olds and not target.exists() and not target.is_symlink():
        olds[0].rename(target)
        siblings.remove(olds[0])
    for sibling in siblings:
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)


def replace_output(temporary: Path, target: Path) -> None:
    """Move the finished `temporary` to `target`, replacing an output there (checked by `check_output`).

    The old output is moved aside, not deleted, until the new one is in place: a kill between the two renames
    leaves it beside `target`, and the next writer puts it back (`remove_stale_temporaries`)."""
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        temporary.rename(target)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        temporary.rename(target)


def claim_output(target: str | os.PathLike, kind: str = "store", *, overwrite: bool,
                 hint: str = "pass overwrite=true to replace it, or choose another path") -> OutputLock:
    """Check `target` (`check_output`), create its parent, take its writer lock, clear what a killed run left
    beside it, and check again now that no other writer can change it. Returns the held lock."""
    check_output(target, kind, overwrite=overwrite, hint=hint)  # before touching anything
    target = layout.local_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RobodreamError(layout.describe_os_error(exc, target)) from None
    lock = lock_output(target)
    try:
        remove_stale_temporaries(target)  # first: it may put back an old output, which the check must then see
        check_output(target, kind, overwrite=overwrite, hint=hint)
    except BaseException:
        lock.release()
        raise
    return lock


@contextmanager
def atomic_output(target: str | os.PathLike, *, overwrite: bool, kind: str = "store",
                  hint: str = "pass overwrite=true to replace it, or choose another path",
                  lock: OutputLock | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `target`; move it into place only if the block succeeds.

    On any error (or Ctrl-C) the temporary output is removed and `target` is untouched. `target` is claimed
    (`claim_output`) for the duration, unless the caller passes the `lock` of its own claim (kept afterwards)."""
    if layout.is_url(target):
        raise RobodreamError(f"this command writes local outputs, got {target}: write to a local path, then copy "
                             "it to the object store")
    held = lock or claim_output(target, kind, overwrite=overwrite, hint=hint)
    target = layout.local_path(target)
    temporary = temporary_sibling(target)
    try:
        try:
            yield temporary
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        try:
            replace_output(temporary, target)
        except OSError as exc:
            shutil.rmtree(temporary, ignore_errors=True)
            raise RobodreamError(layout.describe_os_error(exc, target)) from None
    finally:
        if lock is None:
            held.release()
