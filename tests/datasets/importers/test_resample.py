"""Resampling streams onto frame times, image fitting, and the atomic output helper."""

from __future__ import annotations

import numpy as np
import pytest

from robodream.datasets.importers.common import fit_image
from robodream.datasets.importers.resample import StreamReport, check_increasing, frame_times, resample
from robodream.datasets.outputs import atomic_output
from robodream.errors import RobodreamError


def test_nearest_linear_and_hold():
    times = np.array([0.0, 0.1, 0.3])
    values = np.array([[0.0], [10.0], [30.0]])
    grid = np.array([0.0, 0.04, 0.06, 0.19, 0.3])
    nearest, used = resample(times, values, grid, "nearest")
    assert nearest[:, 0].tolist() == [0, 0, 10, 10, 30] and used.tolist() == [0, 0, 1, 1, 2]
    linear, _ = resample(times, values, grid, "linear")
    np.testing.assert_allclose(linear[:, 0], [0, 4, 6, 19, 30])
    hold, _ = resample(times, values, grid, "hold")
    assert hold[:, 0].tolist() == [0, 0, 0, 10, 30]


def test_frame_times_include_the_end_despite_rounding():
    assert len(frame_times(0.05, 1.95, 10)) == 20
    assert len(frame_times(1.0, 0.5, 10)) == 0


def test_backwards_times_name_the_message():
    check_increasing(np.array([0.0, 0.0, 1.0]), "topic /a")  # repeats are fine
    with pytest.raises(RobodreamError, match=r"topic /a: timestamps go backwards at message 2"):
        check_increasing(np.array([0.0, 1.0, 0.5]), "topic /a")


def test_report_counts_duplicates_drops_and_gaps():
    report = StreamReport("/cam", "image front")
    times = np.array([0.0, 0.1, 0.2, 0.9, 1.0])  # a 0.7 s gap
    report.add_stream(times, fps=10)
    grid = frame_times(0.0, 1.0, 10)
    _, used = resample(times, times[:, None], grid, "nearest")
    report.add_episode(times, grid, used)
    assert report.gaps == 1 and report.longest_gap_s == pytest.approx(0.7)
    assert report.frames == 11 and report.duplicated == 6 and report.dropped == 0
    assert "gaps 1 (longest 0.70 s)" in report.line()


def test_fit_image_crops_or_pads_keeping_aspect():
    image = np.zeros((36, 64, 3), np.uint8)
    image[:, :12] = 255  # a white band on the left, cut away by a centre crop
    cropped = fit_image(image, 16, 16, "crop")
    assert cropped.shape == (16, 16, 3) and cropped.max() == 0
    padded = fit_image(np.full((36, 64, 3), 200, np.uint8), 16, 16, "pad")
    assert padded.shape == (16, 16, 3)
    assert (padded[0] == 0).all() and (padded[8] == 200).all()  # black bars above and below the 16x9 picture


def test_atomic_output_leaves_nothing_on_failure_and_never_replaces_other_folders(tmp_path):
    target = tmp_path / "out.zarr"
    with pytest.raises(ValueError):
        with atomic_output(target, overwrite=False) as temporary:
            temporary.mkdir()
            (temporary / "zarr.json").write_text("{}")
            raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(target, overwrite=False) as temporary:
        temporary.mkdir()
        (temporary / "zarr.json").write_text("{}")
    assert (target / "zarr.json").exists()
    notes = tmp_path / "notes"
    notes.mkdir()
    with pytest.raises(RobodreamError, match="is not an episode store; refusing to replace it"):
        with atomic_output(notes, overwrite=True):
            pass
