"""`robodream collect`: scripted-expert episodes from parallel PyBullet workers into one episode store.

    robodream collect task=push_cube episodes=200 workers=2 out=data/push.zarr

Steps: build the config -> create (or reopen, with resume=true) the store -> run seeds in worker processes
(or Ray actors, executor=ray) -> append each episode in seed order as it arrives (the parent is the only
writer) -> store stats -> summary.
Episode i uses seed `seed + i`; failures are dropped unless keep_failures=true, and seeds continue until
`episodes` episodes are kept (or `max_attempts` seeds were tried). The result depends only on the config,
not on the number of workers.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, replace

from tqdm import tqdm

from robodream.config_fields import runtime
from robodream.datasets import layout
from robodream.datasets.outputs import check_output
from robodream.datasets.writer import EpisodeWriter, open_recording
from robodream.errors import RobodreamError
from robodream.pipeline.config import to_dict, with_defaults
from robodream.pipeline.runtime.interrupt import graceful_interrupt
from robodream.pipeline.runtime.ray_pool import RayConfig
from robodream.pipeline.runtime.seed_pool import WorkerDied
from robodream.pipeline.runtime.workers import EXECUTORS, make_executor
from robodream.robots.sim.env import EnvConfig
from robodream.robots.sim.experts import ExpertConfig
from robodream.robots.sim.jobs import ExpertEpisodes


@dataclass
class CollectConfig:
    """What to record and where."""

    task: str | None = None  # shorthand for env.task
    episodes: int = 20  # episodes to keep in the store
    workers: int = runtime(2)  # PyBullet worker processes (0 = run in this process); with executor=ray, Ray actors
    #: "local": worker processes on this machine; "ray": actors on a Ray cluster (pip install 'robodream[ray]'),
    #: configured by `ray.*`. Either way this process is the only writer of the store.
    executor: str = runtime("local")
    out: str | None = runtime(None)  # store path or fsspec URL; default data/<task>.zarr
    seed: int = 0  # episode i is recorded with seed `seed + i`
    keep_failures: bool = False  # also store episodes the expert failed (episode_success = false)
    max_attempts: int | None = None  # seeds to try at most; default 2 * episodes + 10
    resume: bool = runtime(False)  # add to an existing store made with the same config, skipping its seeds
    overwrite: bool = runtime(False)  # replace an existing store
    env: EnvConfig = field(default_factory=EnvConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    ray: RayConfig = runtime(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if self.task is not None and self.task != self.env.task:
            self.env = replace(self.env, task=self.task)  # replace() re-runs EnvConfig's validation
        self.task = self.env.task
        if self.episodes < 1:
            raise RobodreamError(f"episodes must be >= 1, got {self.episodes}")
        if self.workers < 0:
            raise RobodreamError(f"workers must be >= 0 (0 = no worker processes), got {self.workers}")
        if self.executor not in EXECUTORS:
            raise RobodreamError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.executor == "ray" and self.workers < 1:
            raise RobodreamError("executor=ray needs workers >= 1: the number of Ray actors running episodes")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise RobodreamError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.resume and self.overwrite:
            raise RobodreamError("resume=true and overwrite=true contradict each other: pick one")
        if self.out is None:
            self.out = f"data/{self.env.task}.zarr"


@dataclass
class PlayDataConfig:
    """Cheap play data for world models only: the expert with action noise and a decoy, failures kept.

    Demos alone teach a world model that the cube always ends on the target; play episodes show pushes beside
    the cube (the decoy) and wobbly ones (the noise), so imagination can tell a miss from a success.
    0 episodes: none."""

    episodes: int = 0
    seed: int = 100_000  # clear of the demo seeds (0..) and the evaluation seeds (1000..)
    noise: float = 0.03  # expert.noise (m): wider coverage of states and actions than the clean demos
    decoy: float = 0.0  # expert.decoy (m): std of where the expert believes the cube is (pushes that miss)

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise RobodreamError(f"play.episodes must be >= 0, got {self.episodes}")

    def collect_config(self, demos: CollectConfig, out: str) -> CollectConfig:
        """The collect config of the play store: the demos' env and expert, with this noise and decoy."""
        return replace(demos, episodes=self.episodes, out=out, seed=self.seed, keep_failures=True, max_attempts=None,
                       expert=replace(demos.expert, noise=self.noise, decoy=self.decoy, label="executed"))


def world_model_demos(demos: CollectConfig, out: str) -> CollectConfig | None:
    """The collect config of the demos as a world model must see them, or None when `demos` already records them so.

    DART demos (expert.label=clean) store what the expert meant, not what moved the arm; a world model trained on
    them learns frames that do not follow from their actions, and their actions replayed in PyBullet fail (10 of
    10 N=10 demos, docs/benchmarks.md). The same seeds recorded with label=executed give the same episodes frame
    for frame (the label never changes what is executed), with the actions that made those frames."""
    if demos.expert.label == "executed":
        return None
    return replace(demos, out=out, expert=replace(demos.expert, label="executed"))


@dataclass
class CollectSummary:
    store: str
    episodes_in_store: int
    new_episodes: int
    attempts: int
    successes: int
    new_frames: int
    elapsed_s: float
    stopped: str = ""  # why collection ended early, if it did
    interrupted: bool = False  # stopped by Ctrl-C (the CLI exits 130, as shells expect)

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0

    def lines(self) -> list[str]:
        rate = lambda n: n / self.elapsed_s if self.elapsed_s > 0 else 0.0  # noqa: E731
        lines = [
            f"store          {self.store}",
            f"episodes       {self.episodes_in_store} in store ({self.new_episodes} new)",
            f"expert success {self.successes}/{self.attempts} attempts ({self.success_rate:.0%})",
            f"frames         {self.new_frames} new",
            f"time           {self.elapsed_s:.1f} s ({rate(self.new_episodes):.2f} episodes/s, "
            f"{rate(self.new_frames):.1f} frames/s)",
        ]
        if self.stopped:
            lines.append(f"stopped early  {self.stopped}")
        return lines


def store_features(env_features: dict) -> dict:
    """The features a recorder stores for a PyBullet env: its own, plus the per-frame reward (success)."""
    features = dict(env_features)
    features["reward"] = {"dtype": "float32", "shape": [], "names": None}
    return features


def _open_writer(cfg: CollectConfig) -> EpisodeWriter:
    from robodream.robots.sim.env import make_env

    provenance = {"env": to_dict(cfg.env), "expert": to_dict(cfg.expert)}

    def same_config(writer: EpisodeWriter) -> None:
        recorded = writer.attrs.get("collection", {})
        for part, current in (("env", cfg.env), ("expert", cfg.expert)):
            # a store recorded before a config field existed was recorded with that field's default
            if with_defaults(type(current), recorded.get(part)) != provenance[part]:
                raise RobodreamError(
                    f"cannot resume {cfg.out}: it was recorded with {part} config {json.dumps(recorded.get(part))}, "
                    f"this run has {json.dumps(provenance[part])}; use the same config or another out="
                )

    if not (cfg.resume and layout.store_exists(cfg.out)):
        # The output rule, before starting PyBullet: an existing out= that is not an episode store is refused.
        # create_store checks again, builds the empty store in a temporary sibling and renames it into place.
        check_output(cfg.out, overwrite=cfg.overwrite,
                     hint="pass overwrite=true to replace it, or resume=true to add to it")
    probe = make_env(cfg.env)  # only to read features, fps and camera of the task
    try:
        writer, _ = open_recording(
            cfg.out, store_features(probe.features), resume=cfg.resume, check=same_config,
            recorder=f"task {cfg.env.task}", fix="use the same env config or another out=", fps=probe.fps,
            robot_type=probe.robot_type, task=cfg.env.task, cameras=probe.cameras,
            extra_attrs={"collection": provenance}, overwrite=cfg.overwrite)
        return writer
    finally:
        probe.close()


def collect(cfg: CollectConfig, progress: bool = True) -> CollectSummary:
    """Record episodes as configured; returns a summary (also on Ctrl-C or a dead worker)."""
    writer = _open_writer(cfg)
    done_seeds = {int(s) for s in writer.meta("episode_seed")}
    target = cfg.episodes
    max_attempts = cfg.max_attempts or 2 * cfg.episodes + 10
    summary = CollectSummary(str(cfg.out), writer.num_episodes, 0, 0, 0, 0, 0.0)
    if writer.num_episodes >= target:
        summary.stopped = f"the store already holds {writer.num_episodes} episodes"
        return summary

    candidate = cfg.seed
    issued = 0
    pool = None

    def next_seed() -> int | None:
        nonlocal candidate, issued
        if issued >= max_attempts or writer.num_episodes + pool.num_outstanding >= target:
            return None
        while candidate in done_seeds:
            candidate += 1
        issued += 1
        candidate += 1
        return candidate - 1

    bar = tqdm(total=target, initial=writer.num_episodes, desc=f"collect {cfg.env.task}", unit="ep",
               disable=not progress, dynamic_ncols=True, file=sys.stderr)
    start = time.monotonic()
    try:
        jobs = ExpertEpisodes(cfg.env, cfg.expert)
        with graceful_interrupt() as stop, make_executor(cfg.executor, cfg.workers, jobs, cfg.ray) as pool:
            for seed, record in pool.imap(next_seed, should_stop=stop):
                summary.attempts += 1
                summary.successes += int(record.success)
                if (record.success or cfg.keep_failures) and writer.num_episodes < target:
                    writer.append_episode(record.data, source="sim", success=record.success, seed=seed,
                                          origin=f"expert:{cfg.env.task}")
                    summary.new_episodes += 1
                    summary.new_frames += record.num_frames
                    bar.update(1)
                elapsed = time.monotonic() - start
                bar.set_postfix_str(f"{summary.new_episodes / elapsed:.2f} ep/s, "
                                    f"{summary.new_frames / elapsed:.0f} frames/s, "
                                    f"success {summary.success_rate:.0%}")
            if stop.requested:
                pool.terminate()  # the episodes still running would be dropped anyway: don't wait for them
                summary.interrupted = True
                summary.stopped = "interrupted (Ctrl-C); re-run with resume=true to continue"
    except WorkerDied as exc:
        summary.stopped = f"{exc}; re-run with resume=true to continue"
    finally:
        bar.close()
        summary.elapsed_s = time.monotonic() - start
        summary.episodes_in_store = writer.num_episodes
    if not summary.stopped and writer.num_episodes < target:
        summary.stopped = (f"only {writer.num_episodes}/{target} episodes after {summary.attempts} attempts "
                           f"(max_attempts={max_attempts}); raise max_attempts or set keep_failures=true")
    writer.close()
    return summary


def run_collect(cfg: CollectConfig) -> int:
    """CLI entry: collect, print the summary; exit status 130 after Ctrl-C, 1 when stopped early otherwise."""
    summary = collect(cfg)
    for line in summary.lines():
        print(line)
    size = layout.store_size_bytes(cfg.out)
    if size:
        print(f"size on disk   {size / 1e6:.1f} MB")
    if summary.interrupted:
        return 130
    return 1 if summary.stopped and summary.episodes_in_store < cfg.episodes else 0
