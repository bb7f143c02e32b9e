"""Stage hashes of `robodream run`, `experiment augment` and `experiment rank`: built by the same builders, they
leave runtime-only keys (config_fields.runtime) out and react to model keys, in every one of them.

Hashes are computed from the planned stages with stand-in fingerprints for their inputs: nothing trains or runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from robodream.config_fields import runtime
from robodream.pipeline.config import build_config
from robodream.pipeline.experiments import augment, rank
from robodream.pipeline.run import PipelineConfig, plan
from robodream.pipeline.stages import Stage, hashed, input_hash


def _hashes(stages: list[Stage]) -> dict[str, str]:
    return {s.slug: input_hash(s, {label: "fingerprint" for label in s.inputs}) for s in stages}


def _run(*overrides: str) -> dict[str, str]:
    # rank on too, so that every stage kind of the pipeline is planned; "collect.0.<key>=<value>" edits the first
    # store of the collect list, which dotted overrides cannot reach
    collect = [o.removeprefix("collect.0.").split("=") for o in overrides if o.startswith("collect.0.")]
    cfg = build_config(PipelineConfig, ["rank.enabled=true", *(o for o in overrides if not o.startswith("collect."))])
    first = cfg.collect[0]
    cfg.collect[0] = replace(first, **{key: type(getattr(first, key))(value) for key, value in collect})
    return _hashes(plan(cfg, "robodream run"))


def _augment(*overrides: str) -> dict[str, str]:
    cfg = build_config(augment.AugmentConfig, ["demos=[10]", "seeds=[0]", "play.episodes=4", *overrides])
    return _hashes(augment.plan(cfg))


def _rank(*overrides: str) -> dict[str, str]:
    cfg = build_config(rank.RankConfig, ["imagination.wm=runs/wm", "imagination.probe=runs/probe",
                                         "expert_noise=[0.0,0.02]", *overrides])
    return _hashes(rank.plan(cfg)[1])


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert before.keys() == after.keys()
    return {slug for slug in before if before[slug] != after[slug]}


@dataclass
class _Inner:
    size: int = 1
    threads: int = runtime(4)


@dataclass
class _Outer:
    name: str = "a"
    workers: int = runtime(2)
    inner: _Inner = field(default_factory=_Inner)
    layers: list[_Inner] = field(default_factory=lambda: [_Inner(), _Inner(size=2)])


def test_runtime_keys_are_left_out_at_any_depth():
    assert hashed(_Outer()) == {"name": "a", "inner": {"size": 1}, "layers": [{"size": 1}, {"size": 2}]}
    assert hashed({"section": _Outer(), "task": "push_cube"})["section"]["inner"] == {"size": 1}


RUN_RUNTIME = ["world_model.trainer.threads=3", "world_model.trainer.progress_bar=true",
               "world_model.trainer.num_workers=2", "world_model.trainer.accelerator=cpu",
               "policy.trainer.threads=4", "policy.trainer.progress_bar=true", "probe.trainer.threads=2",
               "collect.0.workers=7", "collect.0.executor=ray", "policy.eval.workers=5", "imagination.workers=3",
               "rank.workers=4", "generate.devices=2", "generate.accelerator=cpu", "generate.progress=false"]


@pytest.mark.parametrize("override", RUN_RUNTIME)
def test_run_runtime_keys_change_no_stage_hash(override):
    assert _changed(_run(), _run(override)) == set()


@pytest.mark.parametrize("override, stages", [
    ("world_model.world_model.unet.block_out_channels=[16,32,64,64]", {"train-wm"}),
    ("world_model.trainer.learning_rate=0.002", {"train-wm"}),
    ("probe.trainer.learning_rate=0.002", {"train-probe"}),
    ("policy.trainer.learning_rate=0.002", {"train-policy", "train-policy-augmented"}),
    ("collect.0.episodes=21", {"collect-push_cube"}),
    ("generate.rollouts=9", {"generate"}),
    ("policy.eval.episodes=5", {"eval-policy", "eval-policy-augmented", "eval-imagined", "eval-imagined-augmented",
                                "rank"}),
])
def test_run_model_keys_change_their_stage_hash(override, stages):
    assert _changed(_run(), _run(override)) == stages


AUGMENT_RUNTIME = ["world_model.trainer.threads=3", "world_model.trainer.num_workers=2", "progress=false",
                   "policy.trainer.threads=4", "policy.trainer.progress_bar=false", "probe.trainer.threads=2",
                   "real.workers=5", "eval.workers=7", "synthetic.devices=2", "synthetic.accelerator=cpu",
                   "world_model.trainer.accelerator=cpu"]


@pytest.mark.parametrize("override", AUGMENT_RUNTIME)
def test_augment_runtime_keys_change_no_stage_hash(override):
    assert _changed(_augment(), _augment(override)) == set()


@pytest.mark.parametrize("override, stages", [
    ("world_model.world_model.unet.block_out_channels=[16,32,64,64]", {"train-wm-N10-s0"}),
    ("world_model.trainer.learning_rate=0.002", {"train-wm-N10-s0"}),
    ("probe.trainer.learning_rate=0.002", {"train-probe-N10-s0"}),
    ("policy.trainer.learning_rate=0.002", {"train-policy-real-N10-s0", "train-policy-mixed-N10-s0",
                                            "train-policy-synthetic-N10-s0"}),
    ("synthetic.rollouts=9", {"generate-N10-s0"}),
    ("synthetic.weight=0.3", {"train-policy-mixed-N10-s0"}),
    ("play.noise=0.05", {"collect-play"}),
    ("eval.episodes=5", {"eval-real-N10-s0", "eval-mixed-N10-s0", "eval-synthetic-N10-s0"}),
])
def test_augment_model_keys_change_their_stage_hash(override, stages):
    assert _changed(_augment(), _augment(override)) == stages


@pytest.mark.parametrize("override", ["workers=5", "progress=false", "imagination.threads=3"])
def test_rank_runtime_keys_change_no_stage_hash(override):
    assert _changed(_rank(), _rank(override)) == set()


def test_rank_model_keys_change_their_stage_hash():
    imagined = {slug for slug in _rank() if slug.endswith("-imagined")}
    assert _changed(_rank(), _rank("imagination.success_threshold=0.7")) == imagined
    assert _changed(_rank(), _rank("episodes=10")) == set(_rank())


def test_run_and_augment_hash_the_same_keys_for_the_same_stage():
    """One builder per stage kind: the hashed configs of run and augment differ only in what each adds."""
    run = {s.slug: s for s in plan(build_config(PipelineConfig, ["rank.enabled=true"]), "robodream run")}
    experiment = {s.slug: s for s in augment.plan(build_config(augment.AugmentConfig, ["demos=[10]", "seeds=[0]"]))}
    pairs = [("collect-push_cube", "collect-real-N10", set()), ("train-wm", "train-wm-N10-s0", {"task"}),
             ("train-probe", "train-probe-N10-s0", {"task"}), ("train-policy", "train-policy-real-N10-s0", {"task"}),
             ("eval-policy", "eval-real-N10-s0", set()), ("generate", "generate-N10-s0", {"out"})]
    for ours, theirs, added in pairs:
        assert set(hashed(run[ours].config)) - added == set(hashed(experiment[theirs].config)), ours
