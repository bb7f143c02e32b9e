"""Counterfactual action fidelity: the same actions, from the same start, in PyBullet and in the world model.

    robodream eval-wm ckpt=runs/wm data=data/push.zarr counterfactual.probe=runs/probe \
        counterfactual.expert_noise=[0.0,0.01,0.03] counterfactual.checkpoints=[runs/policy]

PSNR against recorded episodes only tells how well the model replays the behaviour it was trained on. Validating
policies in imagination needs more: when a *different* agent acts (a noisy expert, an early policy checkpoint,
random actions), does the imagined cube go where PyBullet's goes, and does the episode end the same way? For
each agent and each held-out seed, the agent acts in PyBullet (its actions, frames and the true cube are
recorded); then the world model replays exactly those actions open loop from the same first frame (repeated K
times, as imagination starts), and the probe reads the imagined cube and success. Per agent and horizon: the
cube error (imagined vs true, next to the probe's own error on the real frames, its floor), and the success
outcome in both worlds with Wilson intervals: where imagination is optimistic, this says for which behaviour.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.features import ENV_STATE, STATE
from robodream.stats import format_success

RANDOM = "random"
HORIZONS = (1, 4, 8, 16, 32)


@dataclass
class CounterfactualConfig:
    """Which agents act, on which held-out seeds; off unless `probe` is given."""

    probe: str | None = runtime(None)  # a train-probe directory: reads cube and success from imagined frames
    task: str = "push_cube"
    episodes: int = 20  # seeds per agent
    seed: int = 1000  # held-out seeds seed..seed+episodes-1 (collection uses 0..N-1)
    max_steps: int = 40
    expert_noise: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.03])  # scripted expert levels (m)
    checkpoints: list[str] = field(default_factory=list)  # policy checkpoints (or runs: their latest) as agents
    random: bool = True  # uniformly random actions within the task's action limits
    success_threshold: float = 0.5  # the probe's success probability that counts as a success
    batch_size: int = 32  # imagined rollouts per forward

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.max_steps < 1 or self.batch_size < 1:
            raise RobodreamError("counterfactual.episodes, max_steps and batch_size must be >= 1")


@dataclass
class Recorded:
    """One agent's episodes in PyBullet, padded to max_steps (valid marks the real steps)."""

    label: str
    first_frames: np.ndarray  # (N, H, W, 3)
    first_states: np.ndarray  # (N, S)
    actions: np.ndarray  # (N, T, A): exactly what PyBullet executed
    cube: np.ndarray  # (N, T, 3): the true cube after each action
    frames: np.ndarray  # (N, T, H, W, 3): PyBullet's frame after each action (for the probe's own error)
    goal: np.ndarray  # (N, 3)
    valid: np.ndarray  # (N, T) bool
    success: np.ndarray  # (N,) bool: PyBullet's info["success"] at any step


def _agents(cfg: CounterfactualConfig) -> list[tuple[str, object]]:
    """(label, factory) of every agent: expert levels, checkpoints, random."""
    from functools import partial

    from robodream.policies.runner import load_runner
    from robodream.pretrained import checkpoint_label, resolve_model_dir
    from robodream.robots.sim.experts import ExpertConfig, make_expert

    agents = [(f"expert noise={noise:g}", partial(make_expert, cfg.task, ExpertConfig(noise=noise)))
              for noise in cfg.expert_noise]
    for given in cfg.checkpoints:
        path = resolve_model_dir(given, "policy")
        agents.append((checkpoint_label(path), partial(load_runner, str(path), "cpu", 1)))
    if cfg.random:
        agents.append((RANDOM, None))
    if not agents:
        raise RobodreamError("counterfactual replay needs agents: expert_noise=[...], checkpoints=[...] or random=true")
    return agents


def record_in_sim(cfg: CounterfactualConfig, image_key: str, image_size: int, label: str, make_agent) -> Recorded:
    """Run one agent on the held-out seeds in PyBullet, recording what the replay in imagination needs."""
    from robodream.robots.sim.env import EnvConfig, make_env

    env = make_env(EnvConfig(task=cfg.task, image_size=image_size))
    agent = make_agent() if make_agent is not None else None
    n, t, a = cfg.episodes, cfg.max_steps, env.action_space.shape[0]
    out = {"actions": np.zeros((n, t, a), np.float32), "cube": np.zeros((n, t, 3), np.float32),
           "frames": np.zeros((n, t, image_size, image_size, 3), np.uint8), "valid": np.zeros((n, t), bool)}
    firsts, states, goals, success = [], [], [], np.zeros(n, bool)
    try:
        for i in range(n):
            seed = cfg.seed + i
            obs, _ = env.reset(seed=seed)
            firsts.append(obs[image_key])
            states.append(obs[STATE])
            goals.append(obs[ENV_STATE][7:10])
            rng = np.random.default_rng(seed)
            if agent is not None:
                agent.reset(seed)
            for step in range(t):
                action = agent.act(obs) if agent is not None else rng.uniform(env.action_space.low,
                                                                               env.action_space.high)
                obs, _, terminated, truncated, info = env.step(np.asarray(action, np.float32))
                out["actions"][i, step], out["cube"][i, step] = action, obs[ENV_STATE][:3]
                out["frames"][i, step], out["valid"][i, step] = obs[image_key], True
                success[i] |= bool(info.get("success", False))
                if terminated or truncated:
                    break
    finally:
        env.close()
    return Recorded(label, np.stack(firsts), np.stack(states).astype(np.float32), out["actions"], out["cube"],
                    out["frames"], np.stack(goals).astype(np.float32), out["valid"], success)


def replay_in_imagination(model, probe, recorded: Recorded, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The recorded actions, open loop in the world model from each episode's first frame: the probe's cube and
    success probability per imagined step, (N, T, 3) and (N, T)."""
    from robodream.world_models.env import WorldModelEnv

    k = model.config.context_frames
    n, t = recorded.actions.shape[:2]
    cube, prob = np.zeros((n, t, 3), np.float32), np.zeros((n, t), np.float32)
    for start in range(0, n, batch_size):
        rows = slice(start, min(n, start + batch_size))
        count = rows.stop - rows.start
        world = WorldModelEnv(model, num_envs=count, max_steps=10**9, seed=seed + start)
        states = np.repeat(recorded.first_states[rows, None], k, axis=1) if model.config.predict_state else None
        world.reset_from(np.repeat(recorded.first_frames[rows, None], k, axis=1), None, states)
        for step in range(t):
            frame = world.step(recorded.actions[rows, step])[0][model.config.image_key]
            seen = probe.predict(frame)
            cube[rows, step], prob[rows, step] = seen["cube"], seen["success_prob"]
        world.close()
    return {"cube": cube, "success_prob": prob}


def _per_horizon(error: np.ndarray, valid: np.ndarray) -> dict[str, list]:
    return {"horizons": [h for h in HORIZONS if h <= error.shape[1]],
            "cube_error_cm": [float(100 * error[valid[:, h - 1], h - 1].mean()) if valid[:, h - 1].any() else None
                              for h in HORIZONS if h <= error.shape[1]],
            "count": [int(valid[:, h - 1].sum()) for h in HORIZONS if h <= error.shape[1]]}


def agent_fidelity(recorded: Recorded, imagined: dict[str, np.ndarray], probe, threshold: float) -> dict:
    """Cube error per horizon (imagined, and the probe on PyBullet's frames), success in both worlds."""
    valid = recorded.valid
    imagined_error = np.linalg.norm(imagined["cube"][..., :2] - recorded.cube[..., :2], axis=-1)
    real_cube = probe.predict(recorded.frames.reshape(-1, *recorded.frames.shape[2:]))["cube"]
    probe_error = np.linalg.norm(real_cube.reshape(recorded.cube.shape)[..., :2] - recorded.cube[..., :2], axis=-1)
    imagined_success = ((imagined["success_prob"] > threshold) & valid).any(axis=1)
    n = len(valid)
    return {"agent": recorded.label, "episodes": n,
            "sim_success": int(recorded.success.sum()), "imagined_success": int(imagined_success.sum()),
            "sim_success_text": format_success(int(recorded.success.sum()), n),
            "imagined_success_text": format_success(int(imagined_success.sum()), n),
            "agreement": format_success(int((recorded.success == imagined_success).sum()), n),
            "imagined_only": int((imagined_success & ~recorded.success).sum()),  # optimism: imagined, not real
            "imagined": _per_horizon(imagined_error, valid), "probe_on_sim_frames": _per_horizon(probe_error, valid)}


def counterfactual_report(model, cfg: CounterfactualConfig, out: Path) -> dict:
    """Every agent recorded in PyBullet and replayed in imagination; writes counterfactual.json (+ .png)."""
    from tqdm import tqdm

    from robodream.world_models.probe import StateSuccessProbe

    probe = StateSuccessProbe.from_pretrained(cfg.probe)
    rows = []
    for label, make_agent in tqdm(_agents(cfg), desc="counterfactual replay", unit="agent"):
        recorded = record_in_sim(cfg, model.config.image_key, model.config.image_size, label, make_agent)
        rows.append(agent_fidelity(recorded, replay_in_imagination(model, probe, recorded, cfg.batch_size), probe,
                                   cfg.success_threshold))
    report = {"task": cfg.task, "seeds": [cfg.seed, cfg.seed + cfg.episodes - 1], "max_steps": cfg.max_steps,
              "probe": cfg.probe, "agents": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "counterfactual.json").write_text(json.dumps(report, indent=2))
    plot_counterfactual(report, out / "counterfactual.png")
    return report


def counterfactual_lines(report: dict) -> list[str]:
    """The per-agent table: success in both worlds, where imagination alone succeeds, cube error by horizon."""
    horizons = report["agents"][0]["imagined"]["horizons"]
    width = max(len(r["agent"]) for r in report["agents"])
    lines = [f"{'agent':<{width}}  {'PyBullet':<30} {'imagined (probe)':<30} {'imagined only':>13}  "
             + " ".join(f"{'cube h' + str(h):>8}" for h in horizons) + "  (cm; probe on real frames)"]
    for r in report["agents"]:
        cells = " ".join(f"{v:8.1f}" if v is not None else " " * 8 for v in r["imagined"]["cube_error_cm"])
        floor = r["probe_on_sim_frames"]["cube_error_cm"]
        lines.append(f"{r['agent']:<{width}}  {r['sim_success_text']:<30} {r['imagined_success_text']:<30} "
                     f"{r['imagined_only']:>13}  {cells}  ({np.nanmean([v for v in floor if v is not None]):.1f})")
    return lines


def plot_counterfactual(report: dict, path: Path) -> None:
    """Imagined cube error against horizon per agent, with the probe's own error as a dashed floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    for i, r in enumerate(report["agents"]):
        colour = f"C{i % 10}"
        values = [np.nan if v is None else v for v in r["imagined"]["cube_error_cm"]]
        floor = [np.nan if v is None else v for v in r["probe_on_sim_frames"]["cube_error_cm"]]
        ax.plot(r["imagined"]["horizons"], values, "-o", color=colour, label=r["agent"])
        ax.plot(r["imagined"]["horizons"], floor, ":", color=colour, linewidth=1)
    ax.set(xlabel="horizon (steps, open loop)", ylabel="cube error (cm, xy)",
           title="same actions, imagined vs PyBullet (dotted: probe on real frames)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
