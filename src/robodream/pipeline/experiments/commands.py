"""`robodream experiment augment|rank|plan`: the experiments built from the stage builders.

    robodream experiment augment configs/experiment/augment.yaml
    robodream experiment rank configs/experiment/rank.yaml policy_run=runs/policy imagination.wm=runs/wm ...
    robodream experiment plan configs/experiment/plan.yaml wm=runs/wm probe=runs/probe

Both take YAML files and key=value overrides like every config-driven command; see pipeline/experiments/.
"""

from __future__ import annotations

import argparse


def _cmd_augment(ns: argparse.Namespace) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.experiments.augment import AugmentConfig, run_augment

    files = run_augment(build_from_args(AugmentConfig, ns.args))
    print("\n".join(f"{kind:<9}{path}" for kind, path in files.items()))
    return 0


def _cmd_rank(ns: argparse.Namespace) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.experiments.rank import RankConfig, run_rank

    run_rank(build_from_args(RankConfig, ns.args))
    return 0


def _cmd_plan(ns: argparse.Namespace) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.experiments.plan import PlanExperimentConfig, run_plan_experiment

    run_plan_experiment(build_from_args(PlanExperimentConfig, ns.args))
    return 0


def add_commands(sub) -> None:
    """Add `experiment` with its experiments to the `robodream` parser."""
    from robodream.pipeline.cli_args import add_config_command

    experiment = sub.add_parser("experiment", help="run an experiment: augment, rank or plan",
                                description="run a synthetic-data experiment; a re-run skips finished sub-steps")
    kinds = experiment.add_subparsers(dest="experiment", required=True, metavar="experiment")
    add_config_command(kinds, "augment", "train policies on N real demos with and without synthetic rollouts and "
                       "compare their held-out success (table + plot)", _cmd_augment,
                       "robodream.pipeline.experiments.augment:AugmentConfig")
    add_config_command(kinds, "rank", "evaluate checkpoints and noisy experts in PyBullet and in imagination and "
                       "correlate the success rates (Pearson, Spearman, scatter plot)", _cmd_rank,
                       "robodream.pipeline.experiments.rank:RankConfig")
    add_config_command(kinds, "plan", "evaluate the CEM planner with the world model and with PyBullet as its "
                       "dynamics on the same seeds: the planning gap, its interval and a verdict", _cmd_plan,
                       "robodream.pipeline.experiments.plan:PlanExperimentConfig")
