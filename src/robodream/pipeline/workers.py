"""Seeded jobs in parallel worker processes, results handed back in seed order.

Used by collection (and later by evaluation): each worker builds its own simulator once (PyBullet clients
are per process) and runs one job per seed; the parent is the single writer. Results come back in the order
the seeds were issued whatever order the workers finish in, so a parallel run writes exactly what a serial
run writes.

Robustness:
- workers ignore SIGINT: Ctrl-C reaches the parent, which finishes the write in progress and stops them;
- workers die with the parent (PR_SET_PDEATHSIG, plus a parent-pid check), so a SIGKILLed collector leaves
  no orphans;
- a worker that dies (SIGKILL, a native crash, the OOM killer) is seen within POLL_S: each worker sends its
  results through its own pipe whose write end only the worker holds, so a death mid-message reads as
  end-of-file instead of blocking the parent forever (a shared multiprocessing.Queue did: the parent waited
  for the rest of a half-written episode, and the other workers for the lock the dead one held). The pool
  stops issuing seeds, yields the results of seeds issued before the dead worker's (still in seed order),
  then raises `WorkerDied` naming the worker and its seed.
"""

from __future__ import annotations

import collections
import ctypes
import itertools
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from robodream.errors import RobodreamError

# Seeds queued per worker beyond the one it is running, so that no worker waits for the parent.
PREFETCH = 1
POLL_S = 0.2


class WorkerDied(RobodreamError):
    """A worker process exited unexpectedly (killed, crashed in native code, out of memory)."""


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass  # the parent-pid check in the loop still catches it


def _worker_main(worker_id: int, job_factory: Callable[[], Callable[[int], Any]], tasks: mp.Queue,
                 results: mp_connection.Connection, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    try:
        job = job_factory()
    except BaseException:
        results.send(("error", worker_id, None, traceback.format_exc()))
        return
    while True:
        try:
            seed = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return
            continue
        if seed is None:
            return
        try:
            outcome = ("ok", worker_id, seed, job(seed))
        except BaseException as exc:
            message = str(exc) if isinstance(exc, RobodreamError) else traceback.format_exc()
            results.send(("error", worker_id, seed, message))
            return
        try:
            results.send(outcome)
        except (BrokenPipeError, ConnectionError):
            return  # the parent is gone or closed the pool


class SeedOrderedPool:
    """The bookkeeping every pool shares: each seed goes to the least busy worker (PREFETCH ahead of the one it
    runs), and results are yielded in the order the seeds were issued. Subclasses say how a seed reaches a
    worker (`_submit`) and how results come back (`_receive`, which calls `_finished`)."""

    def __init__(self, num_workers: int):
        self._inflight: list[collections.deque[int]] = [collections.deque() for _ in range(num_workers)]
        self._order: collections.deque[int] = collections.deque()  # issued, not yet yielded
        self._done: dict[int, Any] = {}  # finished, waiting for earlier seeds
        self._deaths: list[str] = []  # what happened to each dead worker, first first
        self._lost: set[int] = set()  # seeds that were in flight on a dead worker

    @property
    def num_outstanding(self) -> int:
        """Seeds issued whose results have not been yielded yet."""
        return len(self._order)

    def imap(self, next_seed: Callable[[], int | None] | Iterable[int],
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[int, Any]]:
        """Yield (seed, result) in the order the seeds were issued.

        `next_seed` is called whenever a worker has room and returns the next seed, or None when there is
        nothing to issue right now (it is asked again after the next result); an iterable of seeds works
        too. Ends when nothing is outstanding and no seed is issued, or as soon as `should_stop()` is true.
        If a worker dies, no more seeds are issued, the seeds issued before its seed are still yielded, then
        WorkerDied is raised.
        """
        if not callable(next_seed):
            iterator = iter(next_seed)
            next_seed = lambda: next(iterator, None)  # noqa: E731
        while not should_stop():
            if not self._deaths:
                self._dispatch(next_seed)
            elif not self._order or self._order[0] in self._lost:
                raise WorkerDied(self._deaths[0])  # nothing before the lost seed is left to wait for
            if not self._order:
                return
            self._receive()
            while self._order and self._order[0] in self._done:
                seed = self._order.popleft()
                yield seed, self._done.pop(seed)

    def _dispatch(self, next_seed: Callable[[], int | None]) -> None:
        while True:
            worker = min(range(len(self._inflight)), key=lambda i: len(self._inflight[i]))
            if len(self._inflight[worker]) > PREFETCH:
                return
            seed = next_seed()
            if seed is None:
                return
            self._submit(worker, seed)
            self._inflight[worker].append(seed)
            self._order.append(seed)

    def _finished(self, worker: int, seed: int, result: Any) -> None:
        self._inflight[worker].remove(seed)
        self._done[seed] = result

    def _died(self, worker: int, message: str) -> None:
        """Record a dead worker: its in-flight seeds are lost, and imap stops once the seeds before them are in."""
        lost = list(self._inflight[worker])
        self._inflight[worker].clear()
        self._lost.update(lost)
        self._deaths.append(f"{message} " + (f"while running seed {lost[0]}" if lost else "between seeds"))
        waiting = [seed for seed in itertools.takewhile(lambda s: s not in self._lost, self._order)
                   if seed not in self._done]
        if len(self._deaths) == 1 and waiting:
            print(f"warning: {self._deaths[0]}; finishing seeds {', '.join(map(str, waiting))} issued before it",
                  file=sys.stderr, flush=True)

    def _submit(self, worker: int, seed: int) -> None:
        raise NotImplementedError

    def _receive(self) -> None:
        """Wait briefly (POLL_S) for results and hand each to `_finished`; raise if a worker failed."""
        raise NotImplementedError


class WorkerPool(SeedOrderedPool):
    """N worker processes, each running `job_factory()` once and then `job(seed)` per seed."""

    def __init__(self, num_workers: int, job_factory: Callable[[], Callable[[int], Any]]):
        if num_workers < 1:
            raise RobodreamError(f"workers must be >= 1, got {num_workers}")
        super().__init__(num_workers)
        context = mp.get_context("spawn")  # fork + PyBullet/torch threads is fragile; spawn is clean
        self._tasks = [context.Queue() for _ in range(num_workers)]
        self._conns: list[mp_connection.Connection] = []
        self._procs = []
        for i in range(num_workers):
            reader, writer = context.Pipe(duplex=False)
            proc = context.Process(target=_worker_main, args=(i, job_factory, self._tasks[i], writer, os.getpid()),
                                   name=f"robodream-worker-{i}", daemon=True)
            proc.start()
            writer.close()  # the worker holds the only write end: its death reads as end-of-file here
            self._conns.append(reader)
            self._procs.append(proc)
        self._alive = set(range(num_workers))
        self._closed = False

    def _submit(self, worker: int, seed: int) -> None:
        self._tasks[worker].put(seed)

    def _receive(self) -> None:
        waitables = [self._conns[i] for i in self._alive] + [self._procs[i].sentinel for i in self._alive]
        ready = mp_connection.wait(waitables, timeout=POLL_S)
        for i in sorted(self._alive):
            if self._conns[i] in ready or self._procs[i].sentinel in ready:
                self._read(i)

    def _read(self, worker: int) -> None:
        """Every complete message the worker sent; end of file (even mid-message) means it died."""
        conn, proc = self._conns[worker], self._procs[worker]
        while True:
            try:
                if not conn.poll():
                    return  # alive, nothing more to read now
                status, _, seed, payload = conn.recv()
            except (EOFError, OSError):
                break
            if status == "error":
                where = f" on seed {seed}" if seed is not None else " while starting"
                raise RobodreamError(f"worker {worker} failed{where}: {payload.strip()}")
            self._finished(worker, seed, payload)
        proc.join(timeout=1.0)  # reap it, for its exit code
        self._alive.discard(worker)
        self._died(worker, f"worker {worker} (pid {proc.pid}) died with exit code {proc.exitcode}")

    def close(self, timeout: float = 5.0) -> None:
        """Stop all workers (politely, then by force), reading and dropping results nobody will use."""
        if self._closed:
            return
        self._closed = True
        for tasks, proc in zip(self._tasks, self._procs, strict=True):
            if proc.is_alive():
                tasks.put(None)
        deadline = time.monotonic() + timeout
        running = [i for i, proc in enumerate(self._procs) if proc.is_alive()]
        while running and time.monotonic() < deadline:
            waitables = [self._conns[i] for i in running] + [self._procs[i].sentinel for i in running]
            for conn in mp_connection.wait(waitables, timeout=max(0.0, deadline - time.monotonic())):
                if conn in self._conns:
                    self._drop_pending(conn)
            running = [i for i in running if self._procs[i].is_alive()]
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
            proc.join()
        for tasks in self._tasks:
            tasks.cancel_join_thread()
            tasks.close()
        for conn in self._conns:
            conn.close()

    @staticmethod
    def _drop_pending(conn: mp_connection.Connection) -> None:
        try:
            while conn.poll():
                conn.recv_bytes()
        except (EOFError, OSError):
            pass

    def terminate(self) -> None:
        """Stop all workers now, abandoning their current jobs."""
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
        self.close(timeout=1.0)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()


class InProcessPool:
    """The same interface, running every job in this process (workers=0: for debugging and profiling)."""

    def __init__(self, job_factory: Callable[[], Callable[[int], Any]]):
        self._job = job_factory()
        self.num_outstanding = 0

    def imap(self, next_seed: Callable[[], int | None] | Iterable[int],
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[int, Any]]:
        if not callable(next_seed):
            iterator = iter(next_seed)
            next_seed = lambda: next(iterator, None)  # noqa: E731
        while not should_stop():
            seed = next_seed()
            if seed is None:
                return
            yield seed, self._job(seed)

    def close(self) -> None:
        pass

    terminate = close

    def __enter__(self) -> InProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_pool(num_workers: int, job_factory: Callable[[], Callable[[int], Any]]) -> WorkerPool | InProcessPool:
    """`num_workers` processes, or the calling process itself when it is 0."""
    return InProcessPool(job_factory) if num_workers == 0 else WorkerPool(num_workers, job_factory)


EXECUTORS = ("local", "ray")


def make_executor(executor: str, num_workers: int, job_factory: Callable[[], Callable[[int], Any]], ray_cfg: Any):
    """`make_pool` for executor="local"; for executor="ray", `num_workers` Ray actors configured by `ray_cfg`
    (a `ray_pool.RayConfig`). All have the same seed-ordered `imap`, so the caller stays the only writer."""
    if executor == "ray":
        from robodream.pipeline.ray_pool import RayPool  # Ray is an optional extra: imported only when asked for

        return RayPool(num_workers, job_factory, ray_cfg)
    if executor != "local":
        raise RobodreamError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    return make_pool(num_workers, job_factory)
