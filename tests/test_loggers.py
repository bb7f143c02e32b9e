"""Training curves: loggers chosen by name in the one trainer, and the report's plots of what they logged."""

from __future__ import annotations

import importlib.util

import pytest

from robodream.errors import RobodreamError
from robodream.pipeline.report.curves import curves_section, logged_curves
from robodream.pipeline.report.render import Image, Text
from robodream.trainer import TrainerConfig, make_loggers


def test_csv_is_the_default_logger_and_writes_under_the_run(tmp_path):
    assert TrainerConfig().loggers == ["csv"]
    (logger,) = make_loggers(["csv"], tmp_path)
    logger.log_metrics({"train/loss": 0.5}, step=3)
    logger.save()
    assert logged_curves(tmp_path) == {"train/loss": [(3, 0.5)]}


def test_unknown_or_missing_loggers_are_one_line():
    with pytest.raises(RobodreamError, match=r"name one or more of \['csv', 'mlflow', 'tensorboard', 'wandb'\]"):
        TrainerConfig(loggers=["tb"])
    with pytest.raises(RobodreamError, match="name one or more"):
        TrainerConfig(loggers=[])
    absent = [name for name in ("tensorboard", "mlflow", "wandb") if importlib.util.find_spec(name) is None]
    if not absent:
        pytest.skip("every optional logger is installed here")
    with pytest.raises(RobodreamError, match=f"{absent[0]} needs the {absent[0]} package: pip install {absent[0]}"):
        make_loggers(["csv", absent[0]], "unused")


def test_the_report_plots_every_models_losses_joining_resumed_versions(tmp_path):
    run = tmp_path / "run"
    first = run / "world_model" / "logs" / "version_0" / "metrics.csv"
    resumed = run / "world_model" / "logs" / "version_1" / "metrics.csv"
    for path in (first, resumed):
        path.parent.mkdir(parents=True)
    first.write_text("epoch,step,train/loss,val/loss,val/psnr\n0,24,0.9,,\n0,49,0.7,0.8,21.0\n")
    resumed.write_text("epoch,step,train/loss\n1,74,0.5\n")
    (run / "policy" / "logs").mkdir(parents=True)  # a model without logged rows: no figure, no error
    assert logged_curves(run / "world_model") == {"train/loss": [(24, 0.9), (49, 0.7), (74, 0.5)],
                                                  "val/loss": [(49, 0.8)]}  # psnr is not a loss
    section = curves_section([first, resumed], run, tmp_path / "report")
    (image,) = section.blocks
    assert isinstance(image, Image) and image.path.exists() and "world_model" in image.alt
    assert isinstance(curves_section([], run, tmp_path / "report").blocks[0], Text)
