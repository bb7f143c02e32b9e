"""Lightning pieces of `robodream generate`: rollout specs as predict data, the generator as a module, and a
prediction writer that stores each device's episodes in its own shard and merges them at the end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader
from tqdm import tqdm

from robodream.datasets.merge import merge_stores
from robodream.datasets.reader import EpisodeStore
from robodream.datasets.writer import create_store
from robodream.pipeline.synthetic.rollouts import GenerationSettings, RolloutGenerator, RolloutSpec

COUNTS = ("generated", "kept", "successes", "dropped_not_success", "dropped_uncertain", "dropped_sim_failure")


def rollout_specs(rollouts: int, episodes: list[int], seed: int) -> list[RolloutSpec]:
    """Rollout i starts from a real episode drawn with the run's seed (every episode used before any repeats)."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < rollouts:
        order.extend(rng.permutation(episodes).tolist())
    return [RolloutSpec(index=i, start_episode=int(order[i])) for i in range(rollouts)]


class GenerationDataModule(L.LightningDataModule):
    """Batches of rollout specs; device r of n takes batches r, r+n, r+2n, ... (no duplicates, no padding)."""

    def __init__(self, rollouts: int, episodes: list[int], seed: int, batch_size: int):
        super().__init__()
        specs = rollout_specs(rollouts, episodes, seed)
        self.batches = [specs[i : i + batch_size] for i in range(0, len(specs), batch_size)]

    def predict_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        mine = self.batches[rank::world]
        return DataLoader(mine, batch_size=None, collate_fn=lambda batch: batch)


class GenerationModule(L.LightningModule):
    """predict_step: one batch of rollouts -> kept episodes + counts (see pipeline/synthetic/rollouts.py)."""

    def __init__(self, model, probe, store: EpisodeStore, settings: GenerationSettings, policy=None):
        super().__init__()
        self.model, self.probe, self.policy = model, probe, policy
        self.store, self.settings = store, settings
        self.replayer = None  # PyBullet, made on first use: only the replay_in_sim filter needs it

    def predict_step(self, batch: list[RolloutSpec], batch_idx: int):
        if self.settings.replay_in_sim and self.replayer is None:
            from robodream.pipeline.synthetic.verify import SimReplayer

            self.replayer = SimReplayer()
        generator = RolloutGenerator(self.model.eval(), self.probe.eval(), self.store, self.settings,
                                     self.policy.eval() if self.policy is not None else None, self.replayer)
        return generator.generate(batch)

    def on_predict_end(self) -> None:
        if self.replayer is not None:
            self.replayer.close()
            self.replayer = None


def _shard(path: Path, rank: int, world_size: int) -> Path:
    return path if world_size == 1 else path.with_name(f"{path.name}.rank{rank}")


class ShardWriter(BasePredictionWriter):
    """Appends each batch's kept episodes to this device's shard store (single writer per shard)."""

    def __init__(self, partial: Path, real: EpisodeStore, image_key: str, total: int, progress: bool):
        super().__init__(write_interval="batch")
        self.partial, self.real, self.image_key = partial, real, image_key
        self.total, self.progress = total, progress
        self.writer = None
        self.counts = dict.fromkeys(COUNTS, 0)
        self.bar = None

    def _open(self, trainer, episode: dict) -> None:
        features = {k: v for k, v in self.real.features.items() if k in episode["data"] or k == "timestamp"}
        self.writer = create_store(_shard(self.partial, trainer.global_rank, trainer.world_size), fps=self.real.fps,
                                   features=features, robot_type=self.real.robot_type, task=self.real.task,
                                   cameras={k: v for k, v in self.real.cameras.items()
                                            if f"observation.images.{k}" in features}, overwrite=True,
                                   extra_attrs={"generation": json.loads(episode["origin"])})

    def on_predict_start(self, trainer, pl_module) -> None:
        # Opened before the first batch, so that its rate and ETA count the first batch's time too.
        if self.progress and trainer.is_global_zero and self.bar is None:
            self.bar = tqdm(total=self.total, desc="generate", unit="rollout", file=sys.stderr, dynamic_ncols=True)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        episodes, counts = prediction
        for name in COUNTS:
            self.counts[name] += counts[name]
        for episode in episodes:
            if self.writer is None:
                self._open(trainer, episode)
            self.writer.append_episode(episode["data"], source="synthetic", success=episode["success"],
                                       seed=episode["seed"], origin=episode["origin"])
        if self.bar is not None:
            # Rank 0 sees its own shard; with n devices the others advance at the same pace.
            self.bar.update(counts["generated"] * trainer.world_size)
            self.bar.set_postfix_str(f"kept {self.counts['kept'] / max(1, self.counts['generated']):.0%}")

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
        shard = _shard(self.partial, trainer.global_rank, trainer.world_size)
        if self.writer is not None:
            self.writer.close(compute_stats=trainer.world_size == 1)
        (shard.parent / f"{shard.name}.counts.json").write_text(json.dumps(self.counts))

    def finish(self, out: Path, world_size: int, summary) -> None:
        """Rank 0, after every device finished: merge shards in rank order and move the result into place."""
        from robodream.datasets.layout import describe_os_error
        from robodream.datasets.outputs import remove_store, replace_output
        from robodream.errors import RobodreamError

        shards = [_shard(self.partial, r, world_size) for r in range(world_size)]
        for shard in shards:
            counts = json.loads((shard.parent / f"{shard.name}.counts.json").read_text())
            for name in COUNTS:
                setattr(summary, name, getattr(summary, name) + counts[name])
        present = [s for s in shards if s.exists()]
        if not present:
            self.discard(world_size)
            raise RobodreamError(f"all {summary.generated} rollouts were filtered out ({summary.dropped_not_success} "
                                 f"not successes, {summary.dropped_uncertain} uncertain, {summary.dropped_sim_failure} "
                                 "failing when replayed in PyBullet); nothing to store (relax the filters or generate "
                                 "more)")
        if world_size > 1:
            merged = self.partial.with_name(self.partial.name + ".merged")
            merge_stores([str(s) for s in present], merged, overwrite=True)
            for shard in present:
                remove_store(shard)
            present = [merged]
        try:  # moves an old store (checked by generate: an episode store, with overwrite=true) aside first
            replace_output(present[0], out)
        except OSError as exc:
            raise RobodreamError(describe_os_error(exc, out)) from None
        self._remove_counts(shards)

    def discard(self, world_size: int) -> None:
        from robodream.datasets.outputs import remove_store

        shards = [_shard(self.partial, r, world_size) for r in range(world_size)]
        for shard in shards:
            remove_store(shard)
        self._remove_counts(shards)

    @staticmethod
    def _remove_counts(shards: list[Path]) -> None:
        for shard in shards:
            (shard.parent / f"{shard.name}.counts.json").unlink(missing_ok=True)
