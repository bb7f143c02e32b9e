"""Policy quality per task: the default image policy, BC and the diffusion policy against the scripted expert.

    python benchmarks/policy.py                         # everything (about 2 hours on 2 CPU cores), resumable
    python benchmarks/policy.py --only push_cube/default --only curve   # a subset (names as in the table)
    python benchmarks/policy.py --eval-seed 5000        # validation seeds, for choosing settings

What runs (each job skipped when its output exists, so an interrupted benchmark resumes where it stopped; jobs
run in `--lanes` parallel processes of one torch thread each):
1. DART demonstrations per task (`expert.noise=0.01 expert.label=clean`, seeds 0..N-1): 300 per task, and 25, 50
   and 100 on push_cube for the success-vs-demos curve;
2. per task, train configs/policy/default.yaml (the dataclass defaults: image encoder + observation.state, an
   MLP head, the per-task time layout), configs/policy/bc.yaml (the same head with Diffusion Policy's fixed
   layout: 2 observations, chunk 16, execute 8) and configs/policy/diffusion.yaml, on the 300 demos; and the
   default policy on 25/50/100 push_cube demos. Each training's CPU time (user + system, all threads) and wall
   time are measured from the outside (`os.wait4`);
3. evaluate every policy and the scripted expert on the same `--episodes` held-out seeds from `--eval-seed`
   (1000: never used for choosing anything; collection uses 0..299);
4. write results.json and results.md (success with n and 95% Wilson interval, CPU-minutes, wall) next to the runs.
The exact `robodream` command of every job is printed before it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from robodream.stats import format_success, wilson_interval

REPO = Path(__file__).resolve().parents[1]
POLICIES = REPO / "configs" / "policy"
TASKS = ("push_cube", "pick_place")
DEMOS = 300
CURVE = (25, 50, 100)  # push_cube, default policy (300 is the main run)
DART = ["expert.noise=0.01", "expert.label=clean"]
#: training steps per policy config: each fits the issue's budget of 30 CPU-minutes on one core
STEPS = {"default": 10_000, "bc": 10_000, "diffusion": 6_000}


@dataclass
class Job:
    name: str
    args: list[str]  # robodream arguments
    done: Path  # the file that exists once the job has finished
    needs: list[str] = field(default_factory=list)
    timing: Path | None = None  # where to record CPU and wall time


def _robodream(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "robodream.pipeline.cli", *args]


def plan(out: Path, eval_seed: int, episodes: int) -> list[Job]:
    """Every job of the benchmark, in an order that respects `needs`."""
    jobs: list[Job] = []
    stores = {}
    for task in TASKS:
        for n in (DEMOS, *(CURVE if task == "push_cube" else ())):
            store = out / "data" / f"{task}_{n}.zarr"
            stores[task, n] = store
            done = store.with_suffix(".collect_time.json")  # written once the collection has finished
            jobs.append(Job(f"collect {task} {n}", ["collect", f"task={task}", f"episodes={n}", "workers=1",
                                                     f"out={store}", "resume=true", *DART], done, timing=done))
    runs = [(task, name, DEMOS) for task in TASKS for name in STEPS] + [("push_cube", "default", n) for n in CURVE]
    for task, name, n in runs:
        run = out / "runs" / f"{task}_{name}_{n}"
        steps = STEPS[name]
        jobs.append(Job(f"train {task}/{name}/{n}",
                        ["train-policy", f"data={stores[task, n]}", f"policy={POLICIES / f'{name}.yaml'}",
                         f"out={run}", f"trainer.max_steps={steps}", "trainer.threads=1", "trainer.progress_bar=false",
                         "resume=true" if (run / "checkpoints" / "last.ckpt").exists() else "overwrite=true"],
                        run / "checkpoints" / f"step_{steps}" / "model.safetensors", [f"collect {task} {n}"],
                        timing=run / "train_time.json"))
        jobs.append(_eval_job(f"eval {task}/{name}/{n}", run / "checkpoints" / f"step_{steps}", task,
                              out / "eval" / f"seed{eval_seed}" / f"{task}_{name}_{n}", eval_seed, episodes,
                              [f"train {task}/{name}/{n}"]))
    for task in TASKS:
        folder = out / "eval" / f"seed{eval_seed}" / f"{task}_expert"
        jobs.append(_eval_job(f"eval {task}/expert", "expert", task, folder, eval_seed, episodes, []))
    return jobs


def _eval_job(name: str, policy, task: str, folder: Path, seed: int, episodes: int, needs: list[str]) -> Job:
    return Job(name, ["eval", f"policy={policy}", f"task={task}", f"episodes={episodes}", f"seed={seed}", "workers=1",
                      "videos=1", "progress=false", f"out={folder}"], folder / "eval_info.json", needs,
               timing=folder / "eval_time.json")


def run_jobs(jobs: list[Job], lanes: int, log_dir: Path) -> None:
    """Run the unfinished jobs, `lanes` at a time, each after the jobs it needs."""
    finished = {j.name for j in jobs if j.done.exists()}
    pending = [j for j in jobs if j.name not in finished]
    running: dict[int, tuple[Job, subprocess.Popen, float, object]] = {}
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core per lane: no OpenMP spin-waiting between lanes
    while pending or running:
        ready = [j for j in pending if all(n in finished for n in j.needs)]
        while ready and len(running) < lanes:
            job = ready.pop(0)
            pending.remove(job)
            print(f"[start] {job.name}\n        robodream {' '.join(job.args)}", flush=True)
            log = open(log_dir / f"{job.name.replace('/', '_').replace(' ', '_')}.log", "w")  # noqa: SIM115
            process = subprocess.Popen(_robodream(job.args), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
            running[process.pid] = (job, process, time.monotonic(), log)
        if not running:
            raise SystemExit(f"jobs wait for failed jobs: {[j.name for j in pending]}")
        pid, status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        job, process, started, log = running.pop(pid)
        log.close()
        wall = time.monotonic() - started
        code = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
        if code == 0 and job.timing is not None:  # (a collection's timing file is also its "done" marker)
            job.timing.parent.mkdir(parents=True, exist_ok=True)
            job.timing.write_text(json.dumps({"wall_s": wall, "cpu_s": cpu}, indent=2))
        if code != 0 or not job.done.exists():
            print(f"[FAILED] {job.name} (exit {code}); see {log.name}", flush=True)
            continue
        finished.add(job.name)
        print(f"[done]  {job.name}: {wall / 60:.1f} min wall, {cpu / 60:.1f} CPU-min", flush=True)


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def results(out: Path, eval_seed: int) -> dict:
    """Gather every finished evaluation and training time into one record."""
    rows = []
    for folder in sorted((out / "eval" / f"seed{eval_seed}").glob("*")):
        info = _read(folder / "eval_info.json")
        if info is None:
            continue
        episodes = info["per_episode"]
        wins = sum(bool(e["success"]) for e in episodes)
        task = next(t for t in TASKS if folder.name.startswith(t))
        name, _, n = folder.name[len(task) + 1:].partition("_")
        train = _read(out / "runs" / folder.name / "train_time.json") or {}
        timing = _read(folder / "eval_time.json") or {}
        rows.append({"task": task, "policy": name, "demos": int(n) if n else None, "successes": wins,
                     "episodes": len(episodes), "pc_success": 100.0 * wins / len(episodes),
                     "ci95": [100 * b for b in wilson_interval(wins, len(episodes))],
                     "train_cpu_min": train.get("cpu_s", float("nan")) / 60,
                     "train_wall_min": train.get("wall_s", float("nan")) / 60,
                     "eval_wall_min": timing.get("wall_s", float("nan")) / 60,
                     "steps": STEPS.get(name)})
    return {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "seeds": [eval_seed, eval_seed + max((r["episodes"] for r in rows), default=1) - 1], "rows": rows}


def table(record: dict) -> str:
    """The Markdown table for docs/benchmarks.md."""
    lines = ["| task | policy | demos | success (n, 95% Wilson interval) | training | train CPU-min | train wall |",
             "|---|---|---|---|---|---|---|"]
    order = {"default": 0, "bc": 1, "diffusion": 2, "expert": 3}
    for r in sorted(record["rows"], key=lambda r: (r["task"], order.get(r["policy"], 9), -(r["demos"] or 0))):
        steps = f"{r['steps']} steps" if r["steps"] else "-"
        cpu = f"{r['train_cpu_min']:.1f}" if r["steps"] else "-"
        wall = f"{r['train_wall_min']:.1f} min" if r["steps"] else "-"
        lines.append(f"| {r['task']} | {r['policy']} | {r['demos'] or '-'} | "
                     f"{format_success(r['successes'], r['episodes'])} | {steps} | {cpu} | {wall} |")
    return "\n".join(lines)


def _selected(jobs: list[Job], only: list[str]) -> list[Job]:
    """The jobs whose name contains one of `only` ("curve": the push_cube runs on fewer demos), and what they need."""
    def wanted(job: Job) -> bool:
        return any(o in job.name or (o == "curve" and any(job.name.endswith(f"/{n}") for n in CURVE)) for o in only)

    by_name = {j.name: j for j in jobs}
    keep = {j.name for j in jobs if wanted(j)}
    todo = list(keep)
    while todo:
        for need in by_name[todo.pop()].needs:
            if need not in keep:
                keep.add(need)
                todo.append(need)
    return [j for j in jobs if j.name in keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench/policy")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--eval-seed", type=int, default=1000)
    parser.add_argument("--lanes", type=int, default=2, help="jobs at a time (one core each)")
    parser.add_argument("--only", action="append", default=[],
                        help="run only jobs whose name contains this (e.g. push_cube/default, curve, expert)")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    jobs = plan(out, args.eval_seed, args.episodes)
    if args.only:
        jobs = _selected(jobs, args.only)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; {len(jobs)} jobs, {args.lanes} lanes -> {out}", flush=True)
    run_jobs(jobs, args.lanes, out / "logs")
    record = results(out, args.eval_seed)
    (out / f"results_seed{args.eval_seed}.json").write_text(json.dumps(record, indent=2))
    text = table(record)
    (out / f"results_seed{args.eval_seed}.md").write_text(text + "\n")
    print(f"\n{args.episodes} held-out seeds from {args.eval_seed}\n{text}")


if __name__ == "__main__":
    main()
