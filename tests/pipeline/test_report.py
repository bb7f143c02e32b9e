"""The run report: self-contained HTML + Markdown twin, sections that say when their inputs are absent, and a
real headless Chromium that renders the page with every image loaded."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from robodream.pipeline.cli import main
from robodream.pipeline.report.build import write_report
from tests.pipeline.pipeline_util import tiny_pipeline_args

SECTIONS = ("Datasets", "World-model fidelity against horizon", "Real vs imagined", "Policy success", "Training curves",
            "Sim vs imagination ranking", "Stage timings", "Reproduce")
CHROMIUM = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("report") / "run"
    # The synthetic-data stages' rows in the report are checked in test_run.py; here they would only add time.
    off = ("probe", "generate", "augmented", "imagination", "rank")
    assert main(tiny_pipeline_args(run, *(f"{section}.enabled=false" for section in off))) == 0
    return run


def test_run_writes_a_self_contained_report_and_its_markdown_twin(tiny_run):
    html = (tiny_run / "report" / "report.html").read_text()
    markdown = (tiny_run / "report" / "report.md").read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html and f"## {title}" in markdown
    # Self-contained: every src is a data URI, nothing links out, no external style sheet or script.
    sources = re.findall(r'\bsrc="([^"]*)"', html)
    # 2 episode GIFs, 1 dream GIF, the fidelity plot, the success chart, the policy's one evaluation episode (the
    # first success and the first failure are shown; one episode is one of them), plus one training-curves figure per
    # model that logged a loss row (the tiny runs are shorter than the log interval except one)
    curves = re.findall(r"!\[training curves of [^\]]*\]\((curves_[^)]+)\)", markdown)
    assert len(curves) >= 1 and all((tiny_run / "report" / c).exists() for c in curves)
    assert len(sources) == 6 + len(curves)
    assert all(s.startswith(("data:image/png;base64,", "data:image/gif;base64,")) for s in sources)
    assert "href=" not in html and "<link" not in html and "url(" not in html
    assert "push_cube.zarr" in html and "policy/checkpoints/step_4" in html and "robodream run " in html
    # The Markdown twin links the same images by relative path, and they exist.
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == 6 + len(curves) and all((tiny_run / "report" / link).exists() for link in links)
    assert sum(link.endswith(("eval_success.gif", "eval_failure.gif")) for link in links) == 1
    assert "1/1 = 100% (95% CI 21-100%)" in markdown or "0/1 = 0% (95% CI 0-79%)" in markdown


def test_report_command_says_which_sections_have_no_inputs(tiny_run, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(tiny_run / "data", partial / "data")  # only the stores: no world model, policy, run.json
    assert main(["report", str(partial)]) == 0
    assert str(partial / "report" / "report.html") in capsys.readouterr().out
    markdown = (partial / "report" / "report.md").read_text()
    assert "No world-model evaluation in this run" in markdown and "No dream GIF" in markdown
    assert "No eval_info.json in this run" in markdown and "No run.json in this directory" in markdown
    assert "pick_place.zarr" in markdown
    assert main(["report", str(tmp_path / "nope")]) == 2


def _chromium() -> str | None:
    return next((path for name in CHROMIUM if (path := shutil.which(name))), None)


@pytest.mark.skipif(_chromium() is None, reason="no Chromium binary on PATH (Debian: apt-get install "
                                                "chromium-headless-shell, or chromium)")
def test_report_renders_in_headless_chromium_with_every_image_loaded(tiny_run, tmp_path):
    page = tmp_path / "report.html"
    # A probe script appended to a copy of the page records, once loading finished, how many images decoded.
    probe = ("<script>addEventListener('load', () => { const images = [...document.images]; "
             "document.body.dataset.loaded = images.filter(i => i.complete && i.naturalWidth > 0).length + '/' "
             "+ images.length; });</script>")
    page.write_text((tiny_run / "report" / "report.html").read_text().replace("</body>", probe + "</body>"))
    # --no-sandbox: test machines often run as root, where Chromium's sandbox refuses to start.
    common = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    images = len(re.findall(r"<img ", (tiny_run / "report" / "report.html").read_text()))
    assert images >= 7 and f'data-loaded="{images}/{images}"' in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1100,1400", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1400, 1100) and np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0).shape[0] > 50


def _eval_info(folder: Path, policy: str, env: str, pc_success: float) -> None:
    folder.mkdir(parents=True)
    wins = round(pc_success / 10)  # 10 episodes
    record = {"per_episode": [{"episode_ix": i, "sum_reward": 0.0, "max_reward": 0.0, "success": i < wins,
                               "seed": 1000 + i} for i in range(10)],
              "aggregated": {"pc_success": pc_success, "eval_s": 1.0},
              "info": {"policy": policy, "task": "push_cube", "env": env}}
    (folder / "eval_info.json").write_text(json.dumps(record))


def test_policies_evaluated_in_sim_and_imagination_get_a_rank_correlation(tmp_path):
    for name, sim, imagined in (("real_only", 20.0, 30.0), ("augmented", 60.0, 70.0), ("bc", 40.0, 10.0)):
        _eval_info(tmp_path / name / "sim", name, "pybullet", sim)
        _eval_info(tmp_path / name / "imagination", name, "world_model", imagined)
    html_path, md_path = write_report(tmp_path)
    markdown = md_path.read_text()
    # "-": no checkpoint to read data from; every rate with its n and 95% Wilson interval
    assert "| augmented | - | push_cube | imagination (probe-labelled) | 10 | 7/10 = 70% (95% CI 40-89%) |" in markdown
    assert "| policy | training data | task | success in sim | success in imagination (probe-labelled) |" in markdown
    assert "| augmented | - | push_cube | 6/10 = 60% (95% CI 31-83%) | 7/10 = 70% (95% CI 40-89%) |" in markdown
    assert "Spearman rank correlation over 3 policies: +0.50" in markdown
    # eval_info files from before the gates say nothing about them: the report says they were not checked
    assert "augmented/imagination, bc/imagination, real_only/imagination was evaluated before robodream checked" in \
        markdown
    assert (tmp_path / "report" / "rank_scatter.png").exists() and "data:image/png" in html_path.read_text()
