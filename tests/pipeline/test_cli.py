"""The store tools of the CLI (info, viz, repair) and its error contract: one line, exit status 2."""

from __future__ import annotations

import subprocess
import sys

import zarr

from robodream.datasets.video import read_video
from robodream.pipeline.cli import main


def test_info_summarises_a_store(tiny_store, capsys):
    assert main(["info", str(tiny_store)]) == 0
    out = capsys.readouterr().out
    assert "episodes    3   frames 16" in out
    assert "success     2/3 (67%)" in out
    assert "observation.images.front" in out and "16x16x3" in out
    assert "sources     sim 3" in out


def test_viz_writes_playable_mp4_and_gif(tiny_store, tmp_path, capsys):
    assert main(["viz", str(tiny_store), "--episodes", "0-2", "--out", str(tmp_path / "viz"), "--scale", "2"]) == 0
    mp4 = tmp_path / "viz" / "tiny_ep0-2.mp4"
    gif = tmp_path / "viz" / "tiny_ep0-2.gif"
    assert mp4.exists() and gif.exists()
    frames = read_video(mp4)
    assert len(frames) == 7  # the longest episode; the others hold their last frame
    assert str(mp4) in capsys.readouterr().out


def test_repair_reports_what_it_dropped(tiny_store, capsys):
    zarr.open_group(str(tiny_store), mode="r+")["data/action"].resize((19, 2))
    assert main(["repair", str(tiny_store)]) == 0
    assert "dropped 3 uncommitted frames" in capsys.readouterr().out
    assert main(["repair", str(tiny_store)]) == 0
    assert "is consistent: 3 episodes, 16 frames" in capsys.readouterr().out


def test_errors_are_one_line_with_status_2(tiny_store, tmp_path, capsys):
    assert main(["viz", str(tiny_store), "--episodes", "2-9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: episodes [3, 4, 5, 6, 7, 8, 9] do not exist") and err.count("\n") == 1
    assert main(["info", str(tmp_path / "missing.zarr")]) == 2
    assert "no episode store at" in capsys.readouterr().err
    assert main(["collect", "taks=push_cube"]) == 2
    assert "unknown config key 'taks'" in capsys.readouterr().err
    assert main(["collect", "task=stack_cubes"]) == 2
    assert "unknown task 'stack_cubes': choose one of push_cube, pick_place" in capsys.readouterr().err


def test_console_script_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "robodream.pipeline.cli", "--help"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0 and "collect" in result.stdout and "viz" in result.stdout


def test_every_command_splits_its_words_one_way(capsys):
    from robodream.pipeline.cli_args import split_config_args

    split = split_config_args(["a.zarr", "base.yaml", "out=x.zarr", "more.yml", "b.zarr", "note=c.yaml"])
    assert split.files == ["base.yaml", "more.yml"]
    assert split.overrides == ["out=x.zarr", "note=c.yaml"]
    assert split.others == ["a.zarr", "b.zarr"]
    # a config command refuses a word that is neither, with one line
    assert main(["collect", "episodes=1", "push_cube"]) == 2
    assert "error: expected key=value, got 'push_cube'" in capsys.readouterr().err
    # and the key=value-only importers name themselves
    assert main(["import-zarr", "replay.zarr", "fps=10", "stray"]) == 2
    assert "error: import-zarr: expected key=value options after the paths, got 'stray'" in capsys.readouterr().err
