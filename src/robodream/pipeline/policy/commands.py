"""CLI commands for policies: `robodream train-policy` and `robodream eval` (registered in cli.py)."""

from __future__ import annotations

import argparse


def _cmd_train_policy(ns: argparse.Namespace) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.policy.train import TrainPolicyConfig, run_train_policy

    return run_train_policy(build_from_args(TrainPolicyConfig, ns.args))


def _cmd_eval(ns: argparse.Namespace) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.policy.evaluate import EvalConfig, run_eval

    args = [*ns.args, f"checkpoints={ns.checkpoints}"] if ns.checkpoints else list(ns.args)
    # `env=world_model` / `env=pybullet` pick where the episodes run; `env.*` keys still configure the task env
    args = [_ENV_ALIASES.get(a, a) for a in args]
    return run_eval(build_from_args(EvalConfig, args))


_ENV_ALIASES = {"env=world_model": "imagine=true", "env=pybullet": "imagine=false"}


def add_commands(sub) -> None:
    """Add train-policy and eval to the `robodream` parser."""
    from robodream.pipeline.cli_args import add_config_command

    add_config_command(sub, "train-policy", "train a diffusion or BC policy on episode stores (Lightning, EMA, "
                       "kept checkpoints, resume=true)", _cmd_train_policy,
                       "robodream.pipeline.policy.train:TrainPolicyConfig")
    evaluate = add_config_command(sub, "eval", "evaluate a policy checkpoint (or policy=expert) on seeded PyBullet "
                                  "episodes, or in imagination with env=world_model; writes eval_info.json and "
                                  "videos", _cmd_eval, "robodream.pipeline.policy.evaluate:EvalConfig")
    evaluate.add_argument("--checkpoints", metavar="RUN", default=None,
                          help="evaluate every checkpoints/step_<N> of a training run: table + success-vs-step plot")
