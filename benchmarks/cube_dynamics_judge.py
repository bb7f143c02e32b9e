"""Research for issue 18: could a low-dimensional cube-dynamics head judge success better than the probe reading
imagined pixels?

The rank experiment's imagination gives every agent 52-62% because the imagined cube drifts from h8 and the
probe's per-frame success fires on a near-target cube (docs/benchmarks.md, "Imagination you can trust"). This
script measures the alternative before anything is built into the world model: a small MLP learns how the cube
moves given how the end effector moves (translation-invariant inputs: the end effector relative to the cube
before and after the step, its heights, the cube's yaw), trained on the recorded transitions of a store (demos +
play, failures kept). It then rolls the cube forward open loop over whole episodes of several agents recorded in
PyBullet on held-out seeds. The end effector is the recorded one: an upper bound, as if the world model's
predicted end effector were exact. It judges success by the task's own rule (cube centre within 3.5 cm of the
goal in xy).

Output: per agent, success in PyBullet vs judged by the rolled-out cube (both with Wilson intervals), the
cube's position error at horizons 8/16/32, and Spearman / mean absolute error across agents with bootstrap
intervals.

    python benchmarks/cube_dynamics_judge.py --train /work/plan/data/wm.zarr --agents /work/judge/agent_*.zarr
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robodream.datasets.reader import EpisodeStore
from robodream.features import ACTION, ENV_STATE, STATE
from robodream.stats import bootstrap_interval, format_interval, format_success, mean_absolute_error, spearman

TARGET_RADIUS = 0.035  # push_cube's success rule (robots/sim/tasks.py)
HORIZONS = (8, 16, 32)


def _yaw(quaternion: np.ndarray) -> np.ndarray:
    x, y, z, w = np.moveaxis(quaternion, -1, 0)
    return np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def _features(ee: np.ndarray, ee_next: np.ndarray, cube_xy: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Translation-invariant inputs of one step: ee relative to the cube before/after, ee heights, yaw."""
    return np.concatenate([ee[..., :2] - cube_xy, ee_next[..., :2] - cube_xy, 10 * (ee_next - ee), ee[..., 2:3],
                           np.sin(4 * yaw)[..., None], np.cos(4 * yaw)[..., None]], axis=-1).astype(np.float32)


def _episodes(path: str):
    store = EpisodeStore.open(path)
    for i in range(store.num_episodes):
        episode = store.episode(i, [STATE, ENV_STATE, ACTION])
        yield store, i, episode[STATE][:, :3], episode[ENV_STATE]


def transitions(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets): every step of every episode; targets are the cube's (dx, dy) and wrapped dyaw."""
    xs, ys = [], []
    for _, _, ee, env in _episodes(path):
        cube, yaw = env[:, :2], _yaw(env[:, 3:7])
        xs.append(_features(ee[:-1], ee[1:], cube[:-1], yaw[:-1]))
        dyaw = np.angle(np.exp(1j * (yaw[1:] - yaw[:-1])))
        ys.append(np.concatenate([cube[1:] - cube[:-1], dyaw[:, None]], axis=1).astype(np.float32))
    return np.concatenate(xs), np.concatenate(ys)


def windows(path: str, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ee (W, L+1, 3), cube xy (W, L+1, 2), yaw (W, L+1)): every window of L steps of every episode."""
    ees, cubes, yaws = [], [], []
    for _, _, ee, env in _episodes(path):
        for t in range(0, len(ee) - length):
            ees.append(ee[t : t + length + 1])
            cubes.append(env[t : t + length + 1, :2])
            yaws.append(_yaw(env[t : t + length + 1, 3:7]))
    return np.stack(ees).astype(np.float32), np.stack(cubes).astype(np.float32), np.stack(yaws).astype(np.float32)


def _step(net: nn.Module, ee: torch.Tensor, ee_next: torch.Tensor, cube: torch.Tensor, yaw: torch.Tensor):
    x = torch.cat([ee[:, :2] - cube, ee_next[:, :2] - cube, 10 * (ee_next - ee), ee[:, 2:3],
                   torch.sin(4 * yaw)[:, None], torch.cos(4 * yaw)[:, None]], dim=1)
    delta = net(x) * net.scale
    return cube + delta[:, :2], yaw + delta[:, 2]


def train_unrolled(net: nn.Module, path: str, length: int, steps: int, seed: int) -> nn.Module:
    """Fine-tune `net` on its own open-loop rollouts of `length` steps (loss on every step's cube xy, in cm)."""
    ee, cube, yaw = (torch.from_numpy(a) for a in windows(path, length))
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-4, weight_decay=1e-5)
    generator = torch.Generator().manual_seed(seed + 1)
    net.train()
    for _ in range(steps):
        batch = torch.randint(0, len(ee), (256,), generator=generator)
        position, angle, loss = cube[batch, 0], yaw[batch, 0], 0.0
        for t in range(length):
            position, angle = _step(net, ee[batch, t], ee[batch, t + 1], position, angle)
            loss = loss + ((100 * (position - cube[batch, t + 1])) ** 2).sum(1).mean()
        optimiser.zero_grad()
        (loss / length).backward()
        optimiser.step()
    return net.eval()


def train(x: np.ndarray, y: np.ndarray, steps: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    scale = torch.tensor(y.std(0) + 1e-4)
    net = nn.Sequential(nn.Linear(x.shape[1], 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 3))
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y) / scale
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(0, len(xt), (512,), generator=generator)
        loss = nn.functional.mse_loss(net(xt[batch]), yt[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.scale = scale
    return net.eval()


@torch.no_grad()
def roll_out(net: nn.Module, ee: np.ndarray, cube_xy: np.ndarray, yaw: float) -> np.ndarray:
    """The cube's xy at every frame, from its first position, driven by the recorded end effector."""
    path = [cube_xy.astype(np.float64)]
    for t in range(len(ee) - 1):
        x = torch.from_numpy(_features(ee[t], ee[t + 1], path[-1], np.float64(yaw))[None])
        dx, dy, dyaw = (net(x)[0] * net.scale).numpy()
        path.append(path[-1] + np.array([dx, dy]))
        yaw += dyaw
    return np.stack(path)


def judge_agents(net: nn.Module, paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        real, judged, errors, still = [], [], {h: [] for h in HORIZONS}, {h: [] for h in HORIZONS}
        for _, _, ee, env in _episodes(path):
            goal = env[0, 7:9]
            cube = roll_out(net, ee, env[0, :2], float(_yaw(env[0, 3:7])))
            real.append(bool((np.linalg.norm(env[:, :2] - goal, axis=1) <= TARGET_RADIUS).any()))
            judged.append(bool((np.linalg.norm(cube - goal, axis=1) <= TARGET_RADIUS).any()))
            for h in HORIZONS:
                if h < len(cube):
                    errors[h].append(float(np.linalg.norm(cube[h] - env[h, :2])))
                    still[h].append(float(np.linalg.norm(env[0, :2] - env[h, :2])))  # baseline: it never moves
        n = len(real)
        rows.append({"agent": Path(path).stem, "episodes": n, "sim": 100 * sum(real) / n,
                     "judged": 100 * sum(judged) / n, "sim_text": format_success(sum(real), n),
                     "judged_text": format_success(sum(judged), n),
                     "agree": sum(a == b for a, b in zip(real, judged, strict=True)),
                     "cube_error_cm": {h: round(100 * float(np.mean(e)), 2) if e else None for h, e in errors.items()},
                     "still_cube_error_cm": {h: round(100 * float(np.mean(e)), 2) if e else None
                                             for h, e in still.items()}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", required=True, help="store of recorded transitions (demos + play)")
    parser.add_argument("--agents", nargs="+", required=True, help="one store per agent, failures kept")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unroll", type=int, default=0, help="then fine-tune on open-loop rollouts of this length")
    parser.add_argument("--unroll-steps", type=int, default=1500)
    parser.add_argument("--out", default=None, help="write the rows and correlations as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = transitions(args.train)
    net = train(x, y, args.steps, args.seed)
    if args.unroll:
        net = train_unrolled(net, args.train, args.unroll, args.unroll_steps, args.seed)
    rows = judge_agents(net, sorted(args.agents))
    print(f"trained on {len(x)} transitions of {args.train}; {args.steps} steps"
          + (f", then {args.unroll_steps} steps on {args.unroll}-step open-loop rollouts" if args.unroll else ""))
    print("| agent | PyBullet | judged by the rolled-out cube | per-episode agreement "
          "| cube error h8 / h16 / h32 (cm) | baseline, a cube that never moves (cm) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        e, b = r["cube_error_cm"], r["still_cube_error_cm"]
        print(f"| {r['agent']} | {r['sim_text']} | {r['judged_text']} | {r['agree']}/{r['episodes']} | "
              f"{e[8]} / {e[16]} / {e[32]} | {b[8]} / {b[16]} / {b[32]} |")
    sim, judged = [r["sim"] for r in rows], [r["judged"] for r in rows]
    rho, mae = spearman(sim, judged), mean_absolute_error(sim, judged)
    print(f"Spearman {rho if rho is None else round(rho, 2)}"
          f"{format_interval(bootstrap_interval(spearman, sim, judged))}, mean absolute error {mae:.1f} points"
          f"{format_interval(bootstrap_interval(mean_absolute_error, sim, judged), '{:.1f}')}")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "spearman": rho, "mae": mae}, indent=2))


if __name__ == "__main__":
    main()
