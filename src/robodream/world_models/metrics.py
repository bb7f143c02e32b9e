"""Fidelity of imagined rollouts: PSNR and SSIM per horizon step, against two baselines in the same run.

- copy-last-frame: predict that nothing moves (the last context frame, forever);
- shuffled actions: the same model, with each episode's future actions taken from another episode. If
  this scores as well as the real actions, the model ignores its actions — the failure DIAMOND and Cosmos
  users report with continuous actions.

torch and the model import inside the functions that compute: `fidelity_table` (the metrics as text, for
eval-wm, `robodream run` and the report) and `plot_fidelity` need neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from robodream.errors import RobodreamError

if TYPE_CHECKING:
    from robodream.datasets.reader import EpisodeStore
    from robodream.world_models.model import WorldModel

#: identical frames would give infinite PSNR; the MSE floor caps it at 100 dB
MSE_FLOOR = 1e-10


def psnr(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB of uint8 frames (..., H, W, 3), with pixel values scaled to [0, 1]."""
    diff = real.astype(np.float64) / 255.0 - fake.astype(np.float64) / 255.0
    mse = np.maximum((diff**2).mean(axis=(-3, -2, -1)), MSE_FLOOR)
    return 10.0 * np.log10(1.0 / mse)


def ssim(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Per-frame SSIM (Wang et al. 2004, 11x11 Gaussian window) of uint8 frames (N, H, W, 3)."""
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    to_t = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    kernel = min(11, real.shape[1] - (1 - real.shape[1] % 2))  # odd, no larger than the frame
    values = structural_similarity_index_measure(to_t(fake), to_t(real), data_range=1.0, reduction="none",
                                                 kernel_size=kernel)
    return values.numpy()


def derangement(count: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation with no fixed point: every episode gets another episode's actions."""
    if count < 2:
        raise RobodreamError("the shuffled-actions baseline needs at least 2 episodes")
    order = rng.permutation(count)
    result = np.empty(count, dtype=np.int64)
    result[order] = np.roll(order, -1)
    return result


def _per_horizon(real: np.ndarray, fake: np.ndarray, valid: np.ndarray) -> dict[str, list[float | None]]:
    batch, horizon = valid.shape
    p = psnr(real, fake)
    s = ssim(real.reshape(-1, *real.shape[2:]), fake.reshape(-1, *fake.shape[2:])).reshape(batch, horizon)
    out: dict[str, list[float | None]] = {"psnr": [], "ssim": []}
    for h in range(horizon):
        mask = valid[:, h]
        out["psnr"].append(float(p[mask, h].mean()) if mask.any() else None)
        out["ssim"].append(float(s[mask, h].mean()) if mask.any() else None)
    return out


def evaluate_fidelity(model: WorldModel, store: EpisodeStore, episodes: list[int], horizon: int = 32,
                      seed: int = 0, num_sampling_steps: int | None = None) -> dict:
    """Open-loop replay of `episodes` from their first K frames; PSNR/SSIM per step 1..horizon for the
    model, copy-last-frame and shuffled actions. Steps past an episode's end are left out (`count`)."""
    from robodream.world_models.rollout import imagine, load_clips

    cfg = model.config
    cfg.with_data_shapes(store.features)  # refuses a store whose image/action/state sizes differ
    k = cfg.context_frames
    clips = load_clips(store, episodes, k, horizon, cfg.image_key, cfg.predict_state)
    real = clips.frames[:, k:]
    imagined = imagine(model, clips, horizon, seed=seed, num_sampling_steps=num_sampling_steps)
    if len(episodes) >= 2:
        shuffled_actions = clips.actions.copy()
        shuffled_actions[:, k:] = clips.actions[derangement(len(episodes), np.random.default_rng(seed)), k:]
        shuffled = _per_horizon(real, imagine(model, clips, horizon, seed=seed, actions=shuffled_actions,
                                              num_sampling_steps=num_sampling_steps), clips.valid)
    else:  # one episode has nobody to swap actions with: the ablation is reported as unavailable
        shuffled = {"psnr": [None] * horizon, "ssim": [None] * horizon}
    copy_last = np.repeat(clips.frames[:, k - 1 : k], horizon, axis=1)
    return {
        "horizons": list(range(1, horizon + 1)),
        "count": clips.valid.sum(axis=0).tolist(),
        "episodes": list(episodes),
        "context_frames": k,
        "num_sampling_steps": num_sampling_steps or cfg.num_sampling_steps,
        "seed": seed,
        "model": _per_horizon(real, imagined, clips.valid),
        "copy_last_frame": _per_horizon(real, copy_last, clips.valid),
        "shuffled_actions": shuffled,
    }


def fidelity_table(metrics: dict, horizons: tuple[int, ...] = (1, 2, 4, 8, 16, 32)) -> list[str]:
    """A few horizons of `evaluate_fidelity`'s metrics as text lines (PSNR dB / SSIM)."""
    lines = [f"{'horizon':>8} {'model':>14} {'shuffled act.':>14} {'copy last':>14} {'n':>4}"]
    for h in horizons:
        if h > len(metrics["horizons"]):
            break
        i = h - 1
        cells = []
        for name in ("model", "shuffled_actions", "copy_last_frame"):
            p, s = metrics[name]["psnr"][i], metrics[name]["ssim"][i]
            cells.append(" " * 14 if p is None else f"{p:6.2f}/{s:5.3f}".rjust(14))
        lines.append(f"{h:>8} {' '.join(cells)} {metrics['count'][i]:>4}")
    return lines


def plot_fidelity(metrics: dict, path) -> None:
    """PSNR and SSIM against horizon for the model and both baselines, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = {"model": ("world model", "C0", "-"), "shuffled_actions": ("shuffled actions", "C3", "--"),
              "copy_last_frame": ("copy last frame", "C7", ":")}
    for ax, metric, unit in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        for name, (label, colour, style) in styles.items():
            values = [np.nan if v is None else v for v in metrics[name][metric]]
            ax.plot(metrics["horizons"], values, style, color=colour, label=label, linewidth=2)
        ax.set_xlabel("horizon (steps, open loop)")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"world-model fidelity on {len(metrics['episodes'])} held-out episodes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
