"""World-model sampling throughput and the sampler's efficiency.

    python benchmarks/world_model.py [--config configs/world_model/standard.yaml] [--batch 32] [--device cpu]

Imagined frames/s at 64x64 with the config's sampling steps, and the sampler's efficiency: the time of the
denoiser's forward passes alone (x steps) over the full time to sample a frame (scheduler, conditioning,
state prediction, conversions included) — target >= 0.9. Also reports WorldModelEnv.step throughput and,
for reference, the training step time. Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from robodream.pipeline.config import build_config
from robodream.world_models.configuration import WorldModelConfig
from robodream.world_models.env import WorldModelEnv
from robodream.world_models.model import WorldModel, frames_to_model

FEATURES = {"observation.images.front": {"dtype": "uint8", "shape": [64, 64, 3], "names": None},
            "observation.state": {"dtype": "float32", "shape": [11], "names": None},
            "action": {"dtype": "float32", "shape": [4], "names": None}}
STATS = {"action": {"min": [-0.04] * 3 + [0.0], "max": [0.04] * 3 + [1.0], "mean": [0.0] * 4, "std": [0.02] * 4},
         "observation.state": {"min": [-1.0] * 11, "max": [1.0] * 11, "mean": [0.0] * 11, "std": [0.5] * 11}}


def timed(fn, repeats: int, device: str) -> float:
    """Median seconds per call after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/world_model/standard.yaml")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train", action="store_true", help="also time a training step")
    args = parser.parse_args()
    cfg = build_config(WorldModelConfig, [], [args.config]).with_data_shapes(FEATURES)
    torch.manual_seed(0)
    model = WorldModel.from_stats(cfg, STATS).to(args.device).eval()
    b, k, steps = args.batch, cfg.context_frames, cfg.num_sampling_steps
    frames = torch.randint(0, 256, (b, k, 64, 64, 3), dtype=torch.uint8, device=args.device)
    actions = torch.zeros(b, k + 1, 4, device=args.device)
    states = torch.zeros(b, k, 11, device=args.device)
    context = frames_to_model(frames)
    noisy = torch.randn(b, 3, 64, 64, device=args.device)
    c_noise = torch.zeros(b, device=args.device)
    zeros = torch.zeros(b, device=args.device)

    @torch.inference_mode()
    def denoiser_forward():
        model.denoiser(noisy, c_noise, context, actions, zeros)

    forward_s = timed(denoiser_forward, args.repeats, args.device)
    sample_s = timed(lambda: model.sample_next(frames, actions, states), args.repeats, args.device)
    env = WorldModelEnv(model, num_envs=b, seed=0)
    env.reset_from(frames.cpu().numpy(), None, states.cpu().numpy())
    step_s = timed(lambda: env.step(torch.zeros(b, 4)), args.repeats, args.device)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"model: {args.config}, {params:.2f}M parameters, {steps} sampling steps, batch {b}, 64x64")
    print(f"denoiser forward       {forward_s * 1000:8.1f} ms  ({b / forward_s:7.1f} samples/s)")
    print(f"sample_next            {sample_s * 1000:8.1f} ms  ({b / sample_s:7.1f} imagined frames/s)")
    print(f"WorldModelEnv.step     {step_s * 1000:8.1f} ms  ({b / step_s:7.1f} imagined frames/s)")
    print(f"sampler efficiency     {forward_s * steps / sample_s:8.2f}   "
          "(forward x steps / sample_next, target >= 0.9)")
    if args.train:
        batch = {"observation.images.front": torch.randint(0, 256, (b, k + 1, 64, 64, 3), dtype=torch.uint8),
                 "observation.images.front_is_pad": torch.zeros(b, k + 1, dtype=torch.bool),
                 "action": torch.zeros(b, k + 1, 4), "observation.state": torch.zeros(b, k + 1, 11)}
        batch = {key: value.to(args.device) for key, value in batch.items()}
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def train_step():
            loss = model.training_loss(batch)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        train_s = timed(train_step, max(2, args.repeats // 2), args.device)
        print(f"training step          {train_s * 1000:8.1f} ms  ({1 / train_s:7.2f} steps/s at batch {b})")


if __name__ == "__main__":
    main()
