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

import ctypes
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
from robodream.pipeline.runtime.seed_pool import POLL_S, SeedOrderedPool


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
        from robodream.pipeline.runtime.ray_pool import (
            RayPool,  # Ray is an optional extra: imported only when asked for
        )

        return RayPool(num_workers, job_factory, ray_cfg)
    if executor != "local":
        raise RobodreamError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    return make_pool(num_workers, job_factory)
