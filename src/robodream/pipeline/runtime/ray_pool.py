"""Seeded jobs on a Ray cluster (`executor=ray`), with the interface and ordering of `workers.WorkerPool`.

    robodream collect task=push_cube episodes=5000 workers=64 executor=ray ray.address=auto out=s3://b/push.zarr

Each Ray actor builds its simulator once (`job_factory()`, like a local worker process) and then runs one job
per seed; the results (EpisodeRecords: plain numpy arrays) travel back through Ray's object store to the
driver, which yields them in the order the seeds were issued. Only the driver writes the store, so the
commit protocol and the "the store depends only on the config" guarantee are those of local collection: an
executor=ray run writes exactly what a workers=0 run writes.

Ray is an optional extra (`pip install 'robodream[ray]'`) imported only here, inside the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robodream.errors import RobodreamError
from robodream.pipeline.runtime.seed_pool import POLL_S, SeedOrderedPool, WorkerDied


@dataclass
class RayConfig:
    """Where the Ray actors run (used when executor=ray)."""

    #: None: the cluster in RAY_ADDRESS, else the one last started on this machine (`ray start`), else a Ray
    #: started for this run (stopped after it); "auto": the same but never starts one; "local": always a fresh
    #: local Ray; "ray://<head>:10001": a remote cluster through Ray Client (ray.init's address resolution).
    #: A Ray already initialised in this process (ray.init in Python) is used as is and left running.
    address: str | None = None
    #: CPUs Ray reserves per actor: one PyBullet simulator renders on one core
    num_cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        if self.num_cpus_per_worker <= 0:
            raise RobodreamError(f"ray.num_cpus_per_worker must be > 0, got {self.num_cpus_per_worker}")


class _SeedActor:
    """One Ray actor: the job built once by the factory, then one call per seed (calls run in order)."""

    def __init__(self, job_factory: Callable[[], Callable[[int], Any]]):
        self._job = job_factory()

    def run(self, seed: int) -> Any:
        return self._job(seed)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RobodreamError("executor=ray needs Ray on this machine: pip install 'robodream[ray]' (or use "
                             "executor=local)") from None
    return ray


class RayPool(SeedOrderedPool):
    """`num_workers` Ray actors, each running `job_factory()` once and then `job(seed)` per seed."""

    def __init__(self, num_workers: int, job_factory: Callable[[], Callable[[int], Any]], cfg: RayConfig):
        if num_workers < 1:
            raise RobodreamError(f"executor=ray needs workers >= 1 (the number of Ray actors), got {num_workers}")
        super().__init__(num_workers)
        ray = self._ray = _import_ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            try:
                ray.init(address=cfg.address, include_dashboard=False, logging_level=logging.WARNING)
            except ConnectionError as exc:
                where = f"ray.address={cfg.address}" if cfg.address else "RAY_ADDRESS"
                raise RobodreamError(f"cannot reach the Ray cluster ({where}): {_first_lines(exc)}; start it with "
                                     "`ray start`, or fix the address") from None
        actor = ray.remote(num_cpus=cfg.num_cpus_per_worker, max_restarts=0)(_SeedActor)
        self._actors = [actor.remote(job_factory) for _ in range(num_workers)]
        self._pending: dict[Any, tuple[int, int]] = {}  # object ref -> (actor index, seed)

    def _submit(self, worker: int, seed: int) -> None:
        # Calls on one actor run one after the other, so the PREFETCH queued ahead keep it busy.
        self._pending[self._actors[worker].run.remote(seed)] = (worker, seed)

    def _receive(self) -> None:
        ray = self._ray
        # Short waits keep the driver responsive to Ctrl-C (should_stop) while actors run.
        ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=POLL_S)
        for ref in ready:
            worker, seed = self._pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                if exc.actor_init_failed:
                    raise RobodreamError(f"ray worker {worker} failed while starting: {_first_lines(exc)}") from None
                raise WorkerDied(f"ray worker {worker} died while running seed {seed}: {_first_lines(exc)}") from None
            except ray.exceptions.RayTaskError as exc:
                # A RobodreamError raised by the job is a user-facing message; anything else keeps its traceback.
                cause = exc.cause if isinstance(exc.cause, RobodreamError) else exc
                raise RobodreamError(f"ray worker {worker} failed on seed {seed}: {str(cause).strip()}") from None
            self._finished(worker, seed, result)

    def close(self) -> None:
        """Stop the actors (abandoning jobs still queued) and the Ray this pool started, if it did."""
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors, self._pending = [], {}
        if self._owns_ray:
            self._ray.shutdown()

    terminate = close

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_lines(exc: BaseException, lines: int = 3) -> str:
    return " ".join(str(exc).strip().splitlines()[:lines])
