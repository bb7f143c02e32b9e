"""The synthetic stage's command (loaded whenever the parser is built, so it imports nothing heavy):

    robodream generate wm=runs/wm probe=runs/probe data=data/push.zarr out=data/synthetic.zarr rollouts=64
"""

from __future__ import annotations


def _cmd_generate(ns) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.synthetic.generate import GenerateConfig, generate

    summary = generate(build_from_args(GenerateConfig, ns.args))
    if summary is not None:  # under DDP, rank 0 alone reports
        print("\n".join(summary.lines()))
    return 0


def _cmd_verify(ns) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.synthetic.verify import VerifyConfig, report_lines, verify_synthetic

    print("\n".join(report_lines(verify_synthetic(build_from_args(VerifyConfig, ns.args)))))
    return 0


def add_commands(sub) -> None:
    """Register `generate` and `verify-synthetic`."""
    from robodream.pipeline.cli_args import add_config_command

    add_config_command(sub, "generate", "imagine synthetic episodes with a world model into an episode store",
                       _cmd_generate, "robodream.pipeline.synthetic.generate:GenerateConfig")
    add_config_command(sub, "verify-synthetic", "replay a synthetic store's actions in PyBullet from the same start: "
                       "the precision of its success labels", _cmd_verify,
                       "robodream.pipeline.synthetic.verify:VerifyConfig")
