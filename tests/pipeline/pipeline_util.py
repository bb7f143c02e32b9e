"""The tiny pipeline the run and report tests share: 16x16 frames, 2 episodes per store, a few training steps."""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_pipeline_args(out: Path, *extra: str) -> list[str]:
    """`robodream run` arguments for the quickstart config shrunk to seconds on 2 CPU cores."""
    return ["run", str(CONFIGS / "pipeline" / "quickstart.yaml"), f"out={out}",
            "collect=[{task: push_cube, episodes: 2, workers: 2, env: {image_size: 16}}, "
            "{task: pick_place, episodes: 2, workers: 0, env: {image_size: 16}}]",
            "play.episodes=2", "viz.episodes=2", "viz.scale=2", "policy.trainer.max_steps=4",
            "policy.trainer.checkpoint_every_steps=2",
            "policy.trainer.batch_size=8", "policy.trainer.progress_bar=false", "policy.eval.episodes=1",
            "policy.eval.workers=0", "policy.eval.videos=1",
            "world_model.trainer.max_steps=2", "world_model.trainer.val_every_steps=2",
            "world_model.trainer.checkpoint_every_steps=2", "world_model.trainer.batch_size=8",
            "world_model.val_fraction=0.5", "world_model.dream_episodes=1", "world_model.eval_horizon=2",
            "probe.trainer.max_steps=2", "probe.trainer.val_every_steps=2", "probe.trainer.checkpoint_every_steps=2",
            "probe.trainer.batch_size=8", "probe.probe.channels=[8,16]", "probe.probe.hidden=16",
            "probe.val_fraction=0.5",
            # An untrained probe calls nothing a success, so the tiny run keeps every rollout.
            "generate.rollouts=2", "generate.horizon=4", "generate.batch_size=2", "generate.filter.success_only=false",
            "generate.stop_at_success=false",  # 2 x 4 imagined frames: one batch for the synthetic-only policy
            "generate.progress=false", "generate.accelerator=cpu",
            "imagination.workers=0", "imagination.max_steps=3", "imagination.episodes=1", "rank.episodes=1",
            "rank.expert_noise=[0.0]", "rank.workers=0", "rank.max_steps=3", *extra]
