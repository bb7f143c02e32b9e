"""Policy quality on push_cube: the default diffusion policy and the BC baseline against the scripted expert.

    python benchmarks/policy.py [--steps 6000] [--demos 100] [--episodes 50] [--out runs/bench/policy]

Steps, each skipped when its output already exists (so an interrupted benchmark resumes):
1. collect `--demos` scripted push_cube demonstrations (seeds 0..demos-1);
2. train configs/policy/diffusion.yaml and configs/policy/bc.yaml on them for `--steps` steps each
   (checkpoints every `--checkpoint-every` steps), timing each run;
3. evaluate every diffusion checkpoint (the success-vs-step curve), the last BC checkpoint and the scripted
   expert on the same `--episodes` held-out seeds starting at 1000;
4. print one table and write results.json next to the runs.
The equivalent CLI commands are printed as they run, so any figure can be reproduced by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from robodream.pipeline.collect import CollectConfig, collect
from robodream.pipeline.config import build_config
from robodream.pipeline.evaluate import EvalConfig, run_evaluation
from robodream.pipeline.train_policy import TrainPolicyConfig, train_policy

REPO = Path(__file__).resolve().parents[1]


def _run(label: str, command: str) -> None:
    print(f"\n== {label}\n   robodream {command}", flush=True)


def train(name: str, store: Path, out: Path, args: argparse.Namespace) -> dict:
    """Train one policy config (or reuse a finished run); returns steps and wall time."""
    run = out / name
    record = run / "train_time.json"
    if record.exists() and (run / "checkpoints" / f"step_{args.steps}").exists():
        return json.loads(record.read_text())
    overrides = [f"data={store}", f"out={run}", f"policy={REPO / 'configs' / 'policy' / f'{name}.yaml'}",
                 f"trainer.max_steps={args.steps}", f"trainer.checkpoint_every={args.checkpoint_every}",
                 f"trainer.lr={args.lr}", f"trainer.threads={args.threads}", "overwrite=true"]
    _run(f"train {name}", "train-policy " + " ".join(overrides))
    summary = train_policy(build_config(TrainPolicyConfig, overrides))
    result = {"steps": summary.steps, "wall_s": summary.elapsed_s, "steps_per_s": summary.steps_per_s,
              "loss": summary.final_loss}
    record.write_text(json.dumps(result, indent=2))
    return result


def evaluate(overrides: list[str]) -> list:
    _run("eval", "eval " + " ".join(overrides))
    return run_evaluation(build_config(EvalConfig, [*overrides, "progress=true"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench/policy")
    parser.add_argument("--demos", type=int, default=100)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training (1 is robust on a "
                        "shared 2-core machine; 2 is faster on an idle one)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-bc", action="store_true")
    parser.add_argument("--expert-noise", type=float, default=0.01,
                        help="std (m) of the noise the expert executes while demonstrating")
    parser.add_argument("--label", default="clean", choices=["clean", "executed"],
                        help="recorded action: the expert's clean action (DART) or the executed noisy one")
    parser.add_argument("--replan-every", type=int, default=4,
                        help="also evaluate the last diffusion checkpoint with this n_action_steps (0: skip)")
    args = parser.parse_args()
    out = Path(args.out)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")

    store = out / f"push_cube_{args.demos}.zarr"
    demo_options = [f"expert.noise={args.expert_noise}", f"expert.label={args.label}"]
    _run("collect demos", f"collect task=push_cube episodes={args.demos} workers=2 out={store} resume=true "
         + " ".join(demo_options))
    collect(build_config(CollectConfig, ["task=push_cube", f"episodes={args.demos}", "workers=2", f"out={store}",
                                         "resume=true", *demo_options]))

    timings = {"diffusion": train("diffusion", store, out, args)}
    if not args.skip_bc:
        timings["bc"] = train("bc", store, out, args)

    common = [f"episodes={args.episodes}", f"seed={args.seed}", f"workers={args.workers}", "task=push_cube"]
    started = time.monotonic()
    sweep = evaluate([f"checkpoints={out / 'diffusion'}", *common, f"out={out / 'eval' / 'diffusion_sweep'}"])
    results = {"diffusion": sweep[-1].pc_success,
               "curve": [{"step": r.step, "pc_success": r.pc_success} for r in sweep]}
    if not args.skip_bc:
        [bc] = evaluate([f"policy={out / 'bc'}", *common, f"out={out / 'eval' / 'bc'}"])
        results["bc"] = bc.pc_success
    if args.replan_every:
        [replan] = evaluate([f"policy={out / 'diffusion'}", *common, f"n_action_steps={args.replan_every}",
                             f"out={out / 'eval' / f'diffusion_n{args.replan_every}'}"])
        results[f"diffusion_n_action_steps_{args.replan_every}"] = replan.pc_success
    [expert] = evaluate(["policy=expert", *common, f"out={out / 'eval' / 'expert'}"])
    results["expert"] = expert.pc_success
    results["eval_s"] = time.monotonic() - started
    results["train"] = timings
    results["seeds"] = [args.seed, args.seed + args.episodes - 1]
    (out / "results.json").write_text(json.dumps(results, indent=2))

    last_seed = args.seed + args.episodes - 1
    print(f"\npush_cube, {args.demos} demos, {args.episodes} held-out seeds {args.seed}..{last_seed}")
    print(f"{'policy':<12} {'success':>8} {'train steps':>12} {'train wall':>11} {'steps/s':>8}")
    for name in ("diffusion", "bc"):
        if name in results:
            t = timings[name]
            print(f"{name:<12} {results[name]:>7.0f}% {t['steps']:>12} {t['wall_s'] / 60:>9.1f} m "
                  f"{t['steps_per_s']:>8.2f}")
    if args.replan_every:
        print(f"{'diffusion, n_action_steps=' + str(args.replan_every):<12} "
              f"{results[f'diffusion_n_action_steps_{args.replan_every}']:>7.0f}%")
    print(f"{'expert':<12} {results['expert']:>7.0f}%")
    print("diffusion success vs step: " + ", ".join(f"{c['step']}: {c['pc_success']:.0f}%" for c in results["curve"]))
    print(f"results: {out / 'results.json'}; curve: {out / 'eval' / 'diffusion_sweep' / 'success_vs_step.png'}")


if __name__ == "__main__":
    main()
