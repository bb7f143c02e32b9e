"""`robodream eval`: evaluate a policy checkpoint (or the scripted expert) on seeded PyBullet episodes.

    robodream eval policy=runs/policy/checkpoints/step_10000 task=push_cube episodes=50 seed=1000 workers=2
    robodream eval policy=expert task=push_cube episodes=50 seed=1000          # the reference on the same seeds
    robodream eval --checkpoints runs/policy task=push_cube episodes=50       # every checkpoint of a run
    robodream eval policy=runs/policy env=world_model imagination.wm=runs/wm imagination.probe=runs/probe
                                                                             # the same loop, in imagination
    robodream eval policy=planner planner=cem planner.wm=runs/wm planner.probe=runs/probe task=push_cube
                                                                             # MPC in the world model (planner.py)

Steps: resolve the checkpoint(s) and check their features against the task env (one line naming any
mismatch) -> run episode i with seed `seed + i` in worker processes, each loading the policy and building
its env once (harness.py) -> eval_info.json (LeRobot's shape, plus the success rate's 95% Wilson interval) +
eval_episode_<n>.mp4 for the first `videos` episodes + eval_success.gif / eval_failure.gif (the first of each)
-> summary. A sweep writes one such folder per checkpoint plus sweep.csv, sweep.json and
success_vs_step.png. Seeds must be held out from training: collection uses 0..N-1, evaluation starts at 1000.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robodream.config_fields import runtime
from robodream.datasets.outputs import check_folder
from robodream.errors import RobodreamError
from robodream.features import IMAGE_PREFIX
from robodream.pipeline.config import save_config
from robodream.pipeline.policy.eval_resume import FinishedEpisodes, evaluation_fingerprint
from robodream.pipeline.policy.harness import EpisodeResult, eval_info, evaluate, planning_totals
from robodream.pipeline.policy.imagination import ImaginationConfig, ImaginedEnvFactory
from robodream.pipeline.policy.planner import PLANNER, PlannerConfig, make_planner
from robodream.pipeline.runtime.interrupt import graceful_interrupt
from robodream.pretrained import resolve_model_dir, run_checkpoints
from robodream.robots.sim.env import EnvConfig
from robodream.robots.sim.experts import ExpertConfig
from robodream.stats import format_success

EXPERT = "expert"
IMAGINED = "imagined, probe-labelled"  # what a success figure from env=world_model is, wherever it is shown
EVAL_MARKERS = ("config.yaml", "eval_info.json", "sweep.json")  # what makes a folder an evaluation's (or a sweep's)


@dataclass
class EvalConfig:
    """What to evaluate, on which task and seeds, and where the results go."""

    #: a checkpoint dir, a training run (its latest checkpoint), "expert", or "planner" (the `planner:` section)
    policy: str | None = runtime(None)
    checkpoints: str | None = runtime(None)  # a training run: evaluate every checkpoints/step_<N> (a sweep)
    task: str | None = None  # shorthand for env.task; default: the task the checkpoint was trained on
    episodes: int = 50
    seed: int = 1000  # episode i uses seed + i; keep clear of the training seeds (collect uses 0..N-1)
    workers: int = runtime(2)  # PyBullet worker processes (0 = this process)
    videos: int = 4  # eval_episode_<n>.mp4 for the first N episodes (per checkpoint in a sweep)
    #: also eval_success.gif and eval_failure.gif: the first successful and the first failed episode, so that a
    #: report can show what the policy does right and wrong whatever the first N episodes were
    examples: bool = True
    video_scale: int = 4  # nearest-neighbour upscaling of the 64x64 camera for viewing
    out: str | None = runtime(None)  # default: <run>/eval/<checkpoint>_<task>_seed<seed>, or runs/eval/...
    num_inference_steps: int | None = None  # override the diffusion policy's DDIM steps
    n_action_steps: int | None = None  # override how many actions are executed before re-planning
    max_steps: int | None = None  # stop an episode after N steps (default: the env's own limit)
    device: str = runtime("cpu")
    progress: bool = runtime(True)
    env: EnvConfig = field(default_factory=EnvConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    #: evaluate in the world model's imagination instead of PyBullet (`env=world_model` on the command line)
    imagine: bool = False
    imagination: ImaginationConfig = field(default_factory=ImaginationConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)  # policy=planner: MPC (planner=cem)

    def __post_init__(self) -> None:
        if self.imagine:
            self.imagination.require()
        if self.policy == PLANNER:
            self.planner.require_models()
        if (self.policy is None) == (self.checkpoints is None):
            raise RobodreamError("name what to evaluate: policy=<checkpoint dir | run dir | expert>, or "
                                 "--checkpoints <run dir> for every checkpoint of a run (not both)")
        if self.episodes < 1 or self.workers < 0 or self.videos < 0 or self.seed < 0:
            raise RobodreamError("episodes must be >= 1, and workers, videos and seed >= 0")
        if self.task is not None and self.task != self.env.task:
            self.env = replace(self.env, task=self.task)  # re-runs EnvConfig's validation


def _probe_env(cfg: EnvConfig):
    from robodream.robots.sim.env import make_env

    env = make_env(cfg)
    try:
        return dict(env.features), env.fps
    finally:
        env.close()


def check_checkpoint(checkpoint: Path, env_cfg: EnvConfig, env_features: dict, env_fps: float) -> dict:
    """Refuse a checkpoint whose features do not match the task env; returns its config.json."""
    from robodream.policies.pretrained import check_features, read_checkpoint_info

    info = read_checkpoint_info(checkpoint)
    image_keys = [k for k in info["features"] if k.startswith(IMAGE_PREFIX)]
    sizes = {tuple(info["features"][k]["shape"][:2]) for k in image_keys}
    fix = f"; evaluate with env.image_size={sizes.pop()[0]}" if len(sizes) == 1 else ""
    check_features(info["features"], env_features, f"checkpoint {checkpoint}",
                   f"task {env_cfg.task} (env.image_size={env_cfg.image_size})", fix)
    trained = info.get("training", {})
    if trained.get("fps") and float(trained["fps"]) != float(env_fps):
        raise RobodreamError(f"checkpoint {checkpoint} was trained at {trained['fps']} fps but task {env_cfg.task} "
                             f"runs at {env_fps} fps")
    if trained.get("task") and trained["task"] != env_cfg.task:
        print(f"note: {checkpoint} was trained on {trained['task']}, evaluating on {env_cfg.task}", file=sys.stderr)
    return info


def _default_out(cfg: EvalConfig, target: Path | None) -> Path:
    suffix = f"{cfg.env.task}{'_imagined' if cfg.imagine else ''}_seed{cfg.seed}"
    if cfg.out:
        return Path(cfg.out)
    if target is None:
        return Path("runs/eval") / f"{_scripted_name(cfg)}_{suffix}"
    if cfg.checkpoints is not None:
        return target / "eval" / f"sweep_{suffix}"
    if target.parent.name == "checkpoints":  # inside a training run
        return target.parent.parent / "eval" / f"{target.name}_{suffix}"
    return Path("runs/eval") / f"{target.name}_{suffix}"


def _scripted_name(cfg: EvalConfig) -> str:
    """The name of an agent that is not a checkpoint: expert, planner_world_model or planner_sim."""
    return f"{PLANNER}_{cfg.planner.dynamics}" if cfg.policy == PLANNER else EXPERT


def _agent_factories(cfg: EvalConfig, checkpoints: list[Path]) -> list:
    if cfg.policy == PLANNER:
        return [partial(make_planner, cfg.planner, cfg.env)]
    if not checkpoints:
        from robodream.robots.sim.experts import make_expert

        return [partial(make_expert, cfg.env.task, cfg.expert)]
    from robodream.policies.runner import load_runner

    threads = 1 if cfg.workers > 0 else None  # one worker process per core
    return [partial(load_runner, str(c), cfg.device, threads, cfg.num_inference_steps, cfg.n_action_steps)
            for c in checkpoints]


def _write_videos(results: list[EpisodeResult], out: Path, fps: float, scale: int,
                  first: int) -> tuple[list[str], dict]:
    """eval_episode_<i>.mp4 for the first `first` episodes; eval_success.gif / eval_failure.gif for the first
    episode of each outcome that has frames. Returns the MP4 paths and {outcome: {episode_ix, seed, gif}}."""
    from robodream.datasets.video import upscale, write_gif, write_mp4

    videos = [str(write_mp4(upscale(r.frames, scale), out / f"eval_episode_{i}.mp4", fps))
              for i, r in enumerate(results[:first]) if r.frames is not None]
    videos += [_side_by_side(r, out / f"eval_episode_{i}_sim_vs_imagined.mp4", fps, scale)
               for i, r in enumerate(results[:first])]
    examples = {}
    for outcome in ("success", "failure"):
        found = next(((i, r) for i, r in enumerate(results)
                      if r.frames is not None and r.success == (outcome == "success")), None)
        if found is not None:
            # 2x is enough to see the cube; the report inlines these GIFs, so they stay small
            gif = write_gif(upscale(found[1].frames, min(scale, 2)), out / f"eval_{outcome}.gif", fps)
            examples[outcome] = {"episode_ix": found[0], "seed": found[1].seed, "gif": str(gif)}
            if outcome == "failure" and found[0] >= first:
                videos.append(_side_by_side(found[1], out / "eval_failure_sim_vs_imagined.mp4", fps, scale))
    return [v for v in videos if v is not None], examples


def _side_by_side(result: EpisodeResult, path: Path, fps: float, scale: int) -> str | None:
    """A planner's episode as it happened (left) beside the frame its model predicted for each executed action
    (right); None for an episode without imagined frames (any other agent, or the oracle planner)."""
    from robodream.datasets.video import upscale, write_mp4

    imagined = (result.extra or {}).get("imagined_frames")
    if result.frames is None or imagined is None:
        return None
    steps = min(len(imagined), len(result.frames) - 1)
    pair = np.concatenate([result.frames[1:1 + steps], imagined[:steps]], axis=2)
    return str(write_mp4(upscale(pair, scale), path, fps))


@dataclass
class EvalResult:
    name: str
    step: int | None
    out: Path
    info: dict[str, Any]

    @property
    def pc_success(self) -> float:
        return self.info["aggregated"]["pc_success"]

    @property
    def success_text(self) -> str:
        """"45/50 = 90% (95% CI 79-96%)": the rate with its n and Wilson interval, as every summary shows it."""
        episodes = self.info["per_episode"]
        return format_success(sum(bool(e["success"]) for e in episodes), len(episodes))


def _targets(cfg: EvalConfig) -> tuple[list[tuple[int | None, Path]], Path | None]:
    """(step, checkpoint) of every policy to evaluate (none for the expert), and the run or checkpoint named."""
    if cfg.checkpoints is not None:
        return run_checkpoints(cfg.checkpoints), Path(cfg.checkpoints)
    if cfg.policy in (EXPERT, PLANNER):
        return [], None
    checkpoint = resolve_model_dir(cfg.policy, "policy")
    return [(None, checkpoint)], checkpoint


@dataclass
class _Evaluation:
    """An evaluation ready to run: the config (task resolved), the checkpoints and their names and steps, the
    env's features and fps, and the output folder (its config.yaml written)."""

    cfg: EvalConfig
    checkpoints: list[Path]
    names: list[str]
    step_of: list[int | None]
    env_features: dict
    fps: float
    out: Path
    forced_past: list[str] = field(default_factory=list)  # gate problems imagination was forced past

    def models(self) -> list[str]:
        """Every model directory the episodes depend on."""
        cfg = self.cfg
        models = [str(c) for c in self.checkpoints]
        if cfg.policy == PLANNER and cfg.planner.dynamics == "world_model":
            models += [cfg.planner.wm, cfg.planner.probe]
        if cfg.imagine:
            models += [cfg.imagination.wm, cfg.imagination.probe]
        return models


def _prepare(cfg: EvalConfig) -> _Evaluation:
    """Resolve what to evaluate and refuse a mismatch (features, fps, n_action_steps) before any work."""
    steps_paths, target = _targets(cfg)
    checkpoints = [p for _, p in steps_paths]
    if cfg.task is None and checkpoints:  # default to the task the policy was trained on
        from robodream.policies.pretrained import read_checkpoint_info

        trained = read_checkpoint_info(checkpoints[-1]).get("training", {}).get("task")
        if trained and trained != cfg.env.task:
            cfg = replace(cfg, env=replace(cfg.env, task=trained))
    forced_past = cfg.imagination.gates("eval env=world_model") if cfg.imagine else []
    env_features, fps = _probe_env(cfg.env)
    infos = [check_checkpoint(c, cfg.env, env_features, fps) for c in checkpoints]
    if cfg.n_action_steps is not None:  # refuse an execution horizon the policies cannot give, before any work
        from robodream.policies.configuration import PolicyConfig
        from robodream.policies.runner import override_n_action_steps

        for info in infos:
            override_n_action_steps(PolicyConfig.from_dict(info["policy"]), cfg.n_action_steps)
    out = _default_out(cfg, target)
    check_folder(out, EVAL_MARKERS, "an evaluation folder")  # never into (and over the config.yaml of) a user's folder
    save_config(cfg, out / "config.yaml")
    names = [p.name for p in checkpoints] or [_scripted_name(cfg)]
    step_of = [s if s is not None else info.get("training", {}).get("step")
               for (s, _), info in zip(steps_paths, infos, strict=True)] or [None]
    return _Evaluation(cfg, checkpoints, names, step_of, env_features, fps, out, forced_past)


def run_evaluation(cfg: EvalConfig) -> list[EvalResult]:
    """Evaluate as configured; returns one result per evaluated policy (one, or one per checkpoint).

    Every finished episode is kept in <out>/episodes.partial/ (eval_resume.py): an interrupted evaluation
    re-run with the same command runs only the episodes it had not finished."""
    from robodream.pipeline.stages import hashed
    from robodream.robots.sim.env import make_env

    ev = _prepare(cfg)
    cfg = ev.cfg
    kept = FinishedEpisodes(ev.out, evaluation_fingerprint(hashed(cfg), ev.models()))
    seeds = [cfg.seed + i for i in range(cfg.episodes)]
    per_agent: list[dict[int, EpisodeResult]] = [{} for _ in ev.names]
    for (agent_ix, episode_ix), result in kept.load().items():
        per_agent[agent_ix][episode_ix] = result
    video_key = f"{IMAGE_PREFIX}front" if f"{IMAGE_PREFIX}front" in ev.env_features else None
    evaluated: list[EvalResult] = []
    bar = tqdm(total=len(ev.names) * len(seeds), initial=sum(map(len, per_agent)), desc=f"eval {ev.names[0]}",
               unit="ep", disable=not cfg.progress, dynamic_ncols=True, file=sys.stderr)
    started = agent_started = time.monotonic()

    def finish_if_complete(agent_ix: int) -> None:
        nonlocal agent_started
        if len(per_agent[agent_ix]) == len(seeds):
            now = time.monotonic()
            folder = ev.out / ev.names[agent_ix] if cfg.checkpoints is not None else ev.out
            results = [per_agent[agent_ix][i] for i in range(len(seeds))]
            evaluated.append(_finish(ev, agent_ix, results, kept.agent_seconds(agent_ix, now - agent_started), folder))
            agent_started = now

    for agent_ix in range(len(ev.names)):  # agents an earlier sitting finished completely
        finish_if_complete(agent_ix)
    with graceful_interrupt("stopping after the current episodes (Ctrl-C again to abort now)") as stop:
        make_task_env = ImaginedEnvFactory(cfg.env, cfg.imagination) if cfg.imagine else partial(make_env, cfg.env)
        done_before = {(a, e) for a, episodes in enumerate(per_agent) for e in episodes}
        for agent_ix, episode_ix, result in evaluate(
                make_task_env, _agent_factories(cfg, ev.checkpoints), seeds, cfg.workers,
                cfg.videos if video_key else 0, video_key, cfg.max_steps, should_stop=stop,
                every_video=cfg.examples and video_key is not None, done=done_before):
            done = per_agent[agent_ix]
            if episode_ix >= cfg.videos and any(r.success == result.success and r.frames is not None
                                                for r in done.values()):
                result.frames = None  # only the first success and the first failure are kept beyond the first N
            done[episode_ix] = result
            kept.save(agent_ix, episode_ix, result, time.monotonic() - agent_started)
            wins = sum(r.success for r in done.values())
            bar.update(1)
            bar.set_description(f"eval {ev.names[agent_ix]}")
            bar.set_postfix_str(f"success {wins}/{len(done)} ({wins / len(done):.0%})"
                                + _planning_rate(list(done.values())))
            finish_if_complete(agent_ix)
    bar.close()
    if stop.requested:
        raise RobodreamError(f"evaluation interrupted after {sum(map(len, per_agent))} episodes; the finished ones "
                             f"are kept in {kept.folder}: run the same command again to resume "
                             f"(finished: {[e.name for e in evaluated]})")
    kept.clear()
    if cfg.checkpoints is not None:
        write_sweep(evaluated, ev.out, time.monotonic() - started)
    return evaluated


def _planning_rate(results: list[EpisodeResult]) -> str:
    """", 0.9 plans/s, 345 frames/s" for a planner's episodes so far (model frames per second of planning)."""
    planning = [r.extra["planning"] for r in results if r.extra and "planning" in r.extra]
    if not planning:
        return ""
    totals = planning_totals(planning)
    return f", {totals['plans_per_s']:.2f} plans/s, {totals['model_steps_per_s']:.0f} frames/s"


def _finish(ev: _Evaluation, agent_ix: int, results: list[EpisodeResult], eval_s: float,
            folder: Path) -> EvalResult:
    cfg, checkpoints, step = ev.cfg, ev.checkpoints, ev.step_of[agent_ix]
    videos, examples = _write_videos(results, folder, ev.fps, cfg.video_scale, cfg.videos)
    info = eval_info(results, eval_s, videos, info={
        "policy": str(checkpoints[agent_ix]) if checkpoints else _scripted_name(cfg), "step": step,
        "task": cfg.env.task, "env": "world_model" if cfg.imagine else "pybullet",
        **({"world_model": cfg.imagination.wm, "probe": cfg.imagination.probe, "success_from": IMAGINED,
            "forced_past_gates": ev.forced_past} if cfg.imagine else {"success_from": "pybullet"}),
        "seeds": [cfg.seed, cfg.seed + cfg.episodes - 1], "workers": cfg.workers,
        "mean_episode_steps": sum(r.steps for r in results) / len(results), "examples": examples})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval_info.json").write_text(json.dumps(info, indent=2))
    return EvalResult(ev.names[agent_ix], step, folder, info)


def write_sweep(results: list[EvalResult], out: Path, eval_s: float) -> None:
    """sweep.json + sweep.csv (one row per checkpoint) and success_vs_step.png."""
    rows = [{"checkpoint": r.name, "step": r.step, "pc_success": r.pc_success,
             "avg_sum_reward": r.info["aggregated"]["avg_sum_reward"], "eval_s": r.info["aggregated"]["eval_s"],
             "eval_info": str(r.out / "eval_info.json")} for r in results]
    (out / "sweep.json").write_text(json.dumps({"rows": rows, "eval_s": eval_s}, indent=2))
    header = list(rows[0])
    (out / "sweep.csv").write_text("\n".join([",".join(header)] + [",".join(str(r[h]) for h in header)
                                                                    for r in rows]) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot([r["step"] for r in rows], [r["pc_success"] for r in rows], marker="o")
    ax.set(xlabel="training step", ylabel="success (%)", ylim=(-3, 103), title=f"success vs step ({out.name})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "success_vs_step.png")
    plt.close(fig)


def summary_lines(results: list[EvalResult]) -> list[str]:
    """One screen: a line per evaluated policy, then where the files are."""
    lines = [f"{'policy':<14} {'step':>7} {'success (n, 95% Wilson interval)':<34} {'avg_sum_reward':>15} "
             f"{'eval_s':>8} {'ep/s':>6}"]
    for r in results:
        agg = r.info["aggregated"]
        n = len(r.info["per_episode"])
        lines.append(f"{r.name:<14} {r.step if r.step is not None else '-':>7} {r.success_text:<34} "
                     f"{agg['avg_sum_reward']:>15.3f} {agg['eval_s']:>8.1f} {n / max(agg['eval_s'], 1e-9):>6.2f}")
    info = results[-1].info["info"] if results else {}
    if results:
        lines.append(f"task {info['task']}, seeds {info['seeds'][0]}..{info['seeds'][1]}; success "
                     f"{info.get('success_from', 'pybullet')}")
        if info.get("forced_past_gates"):
            lines.insert(0, f"FORCED past the gates: {'; '.join(info['forced_past_gates'])}: these imagined "
                            "figures are not evidence about the policy")
        out = results[0].out.parent if len(results) > 1 else results[0].out
        lines.append(f"eval_info    {results[0].out / 'eval_info.json'}" if len(results) == 1 else
                     f"sweep        {out / 'sweep.csv'}, {out / 'success_vs_step.png'}")
        for video in results[0].info["video_paths"][:1]:
            lines.append(f"videos       {video} (+{len(results[0].info['video_paths']) - 1} more)")
    return lines


def run_eval(cfg: EvalConfig) -> int:
    """CLI entry: evaluate, print the summary."""
    print("\n".join(summary_lines(run_evaluation(cfg))))
    return 0
