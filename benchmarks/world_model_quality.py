"""World-model quality on push_cube: train the standard config on CPU, evaluate open loop on held-out episodes.

    python benchmarks/world_model_quality.py [--out runs/bench_wm] [--train-episodes 300] [--max-steps 4500]

Steps (each skipped when its output already exists, so the script can be re-run after an interruption):
1. collect training episodes (seeds 0..) and held-out episodes (seeds 1000..) with a noisy expert
   (expert.noise=0.01, failures kept): noise makes actions vary independently of the state, which is what
   lets a model — and this benchmark — tell whether it uses its actions;
2. robodream train-wm with configs/world_model/standard.yaml (CPU budget: <= 60 minutes);
3. robodream eval-wm on the held-out store, horizon 32.
Targets: model PSNR above copy-last-frame at every horizon 1..16, and >= 2 dB above the shuffled-actions
ablation at horizon 8.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(args: list[str]) -> float:
    print("$ robodream " + " ".join(args), flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "robodream.pipeline.cli", *args], check=True, cwd=REPO)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench_wm")
    parser.add_argument("--train-episodes", type=int, default=300)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=4500)
    parser.add_argument("--config", default="configs/world_model/standard.yaml")
    parser.add_argument("--extra", nargs="*", default=[], help="more train-wm overrides")
    args = parser.parse_args()
    out = Path(args.out)
    data = {"train": (out / "push_train.zarr", args.train_episodes, 0),
            "heldout": (out / "push_heldout.zarr", args.eval_episodes, 1000)}
    timings = {}
    for name, (path, episodes, seed) in data.items():
        if not path.exists():
            timings[f"collect_{name}_s"] = run(["collect", "task=push_cube", f"episodes={episodes}", f"seed={seed}",
                                                "workers=2", f"out={path}", "expert.noise=0.01", "keep_failures=true"])
    model_dir = out / "wm"
    if not (model_dir / "train_summary.json").exists():
        resume = ["resume=true"] if (model_dir / "checkpoints" / "last.ckpt").exists() else []
        timings["train_s"] = run(["train-wm", f"data={data['train'][0]}", f"world_model={args.config}",
                                  f"out={model_dir}", f"trainer.max_steps={args.max_steps}", "trainer.batch_size=32",
                                  "trainer.learning_rate=3e-4", "trainer.val_every_steps=500",
                                  "trainer.checkpoint_every_steps=500", "trainer.progress_bar=false",
                                  *resume, *args.extra])
    timings["eval_s"] = run(["eval-wm", f"ckpt={model_dir}", f"data={data['heldout'][0]}", "horizon=32",
                             f"out={out / 'eval'}"])
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    model, copy, shuffled = (metrics[k]["psnr"] for k in ("model", "copy_last_frame", "shuffled_actions"))
    beats_copy = all(model[h] > copy[h] for h in range(16))
    margin8 = model[7] - shuffled[7]
    summary = json.loads((model_dir / "train_summary.json").read_text())
    print(f"training: {summary['steps']} steps in {summary['elapsed_s'] / 60:.1f} min")
    print(f"beats copy-last-frame at every horizon 1..16: {beats_copy}")
    print(f"horizon 8: model {model[7]:.2f} dB, shuffled actions {shuffled[7]:.2f} dB, margin {margin8:.2f} dB "
          "(target >= 2)")
    (out / "quality.json").write_text(json.dumps({"beats_copy_last_1_16": beats_copy, "margin_h8_db": margin8,
                                                   "train_steps": summary["steps"],
                                                   "train_minutes": summary["elapsed_s"] / 60, **timings}, indent=2))


if __name__ == "__main__":
    main()
