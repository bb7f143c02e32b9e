"""The bookkeeping every seeded pool shares (local worker processes in workers.py, Ray actors in ray_pool.py):
seeds go to the least busy worker, results come back in the order the seeds were issued, and a dead worker
stops the pool after the seeds issued before its own."""

from __future__ import annotations

import collections
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from robodream.errors import RobodreamError

# Seeds queued per worker beyond the one it is running, so that no worker waits for the parent.
PREFETCH = 1
POLL_S = 0.2


class WorkerDied(RobodreamError):
    """A worker process exited unexpectedly (killed, crashed in native code, out of memory)."""


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
