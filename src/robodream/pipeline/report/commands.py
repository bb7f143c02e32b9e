"""The report's command (loaded whenever the parser is built, so it imports nothing heavy):

    robodream report runs/quickstart
"""

from __future__ import annotations


def _cmd_report(ns) -> int:
    from robodream.pipeline.report.build import write_report

    html_path, md_path = write_report(ns.run_dir, ns.out)
    print(f"html     {html_path}\nmarkdown {md_path}")
    return 0


def add_commands(sub) -> None:
    """Register `robodream report`."""
    cmd = sub.add_parser("report", help="write the HTML + Markdown report of a pipeline run",
                         description="write <run>/report/report.html (self-contained) and report.md")
    cmd.add_argument("run_dir", help="the `out` directory of a `robodream run`")
    cmd.add_argument("--out", default=None, help="output folder (default: <run_dir>/report)")
    cmd.set_defaults(handler=_cmd_report)
