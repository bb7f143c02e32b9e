"""Policy training speed against torch's thread count, on an idle machine and beside another busy process.

    python benchmarks/train_threads.py --store runs/bench/policy/data/push_cube_300.zarr [--steps 300]

Trains the default policy (configs/policy/default.yaml, batch 32) for `--steps` steps with 1 thread and with
`os.cpu_count()` threads, each once on an otherwise idle machine and once while a second process keeps one
core busy (what `robodream run`'s evaluation workers, a second training or any other job do), and prints the
steps/s of each against 1 thread on the idle machine measured in the same run. It is why the policy trainer
defaults to `trainer.threads=1`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from robodream.pipeline.config import build_config
from robodream.pipeline.policy.train import TrainPolicyConfig, train_policy


def _spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def steps_per_s(store: str, threads: int, steps: int, busy: bool) -> float:
    """Train in a fresh process (torch's thread pool is set once per process) and return its steps/s."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    spinner = context.Process(target=_spin, args=(stop,)) if busy else None
    if spinner:
        spinner.start()
    try:
        with context.Pool(1) as pool:
            return pool.apply(_train, (store, threads, steps))
    finally:
        if spinner:
            stop.set()
            spinner.join()


def _train(store: str, threads: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        cfg = build_config(TrainPolicyConfig, [f"data={store}", f"out={Path(out) / 'run'}",
                                               f"trainer.max_steps={steps}", f"trainer.threads={threads}",
                                               "trainer.progress_bar=false", f"trainer.checkpoint_every_steps={steps}"])
        started = time.monotonic()
        summary = train_policy(cfg)
        return summary.steps_per_s if summary.steps_per_s else steps / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    baseline = steps_per_s(args.store, 1, args.steps, busy=False)
    print(f"{'threads':>7} {'machine':<22} {'steps/s':>8} {'vs 1 thread idle':>17}")
    print(f"{1:>7} {'idle':<22} {baseline:>8.2f} {1.0:>17.2f}")
    for threads, busy in ((cores, False), (1, True), (cores, True)):
        rate = steps_per_s(args.store, threads, args.steps, busy)
        print(f"{threads:>7} {'one core busy' if busy else 'idle':<22} {rate:>8.2f} {rate / baseline:>17.2f}",
              flush=True)


if __name__ == "__main__":
    main()
