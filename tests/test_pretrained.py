"""robodream.pretrained: one resolver for model and run directories, one loader with one-line refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from robodream.errors import RobodreamError
from robodream.pretrained import resolve_model_dir

FIXTURES = Path(__file__).parent / "fixtures" / "models"


def _model_dir(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_a_model_directory_resolves_to_itself_and_a_run_to_its_export(tmp_path):
    assert resolve_model_dir(_model_dir(tmp_path / "m")) == tmp_path / "m"
    assert resolve_model_dir(_model_dir(tmp_path / "wm_run" / "model").parent) == tmp_path / "wm_run" / "model"


def test_a_policy_run_resolves_to_its_latest_checkpoint_by_step_number(tmp_path):
    run = tmp_path / "run"
    for step in (2, 10, 9):
        _model_dir(run / "checkpoints" / f"step_{step}")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert resolve_model_dir(run) == run / "checkpoints" / "step_10"


@pytest.mark.parametrize("case, message", [
    ("missing", "no policy at {path}: it does not exist"),
    ("empty", "no policy at {path}: it has no config.json, nor model/ or checkpoints/step_<N>/ holding one"),
    ("ckpt", "is a Lightning training checkpoint; pass the run directory or its model export"),
])
def test_what_is_not_a_model_is_refused_in_one_line(tmp_path, case, message):
    path = {"missing": tmp_path / "nowhere", "empty": tmp_path, "ckpt": tmp_path / "last.ckpt"}[case]
    if case == "ckpt":
        path.write_bytes(b"")
    with pytest.raises(RobodreamError) as error:
        resolve_model_dir(path, "policy")
    assert message.format(path=path) in str(error.value) and "\n" not in str(error.value)


def test_an_export_without_its_weights_is_refused_before_anything_is_built(tmp_path):
    from robodream.world_models.probe import StateSuccessProbe

    shutil.copytree(FIXTURES / "probe", tmp_path / "probe")
    (tmp_path / "probe" / "model.safetensors").unlink()
    with pytest.raises(RobodreamError, match="lacks model.safetensors: the probe export is incomplete"):
        StateSuccessProbe.from_pretrained(tmp_path / "probe")


def test_a_model_of_another_kind_or_type_is_refused(tmp_path):
    from robodream.policies.diffusion import DiffusionPolicy
    from robodream.world_models.model import WorldModel
    from robodream.world_models.probe import StateSuccessProbe

    with pytest.raises(RobodreamError, match="is not a robodream probe"):
        StateSuccessProbe.from_pretrained(FIXTURES / "world_model")
    with pytest.raises(RobodreamError, match="not a robodream world model"):
        WorldModel.from_pretrained(FIXTURES / "probe")
    with pytest.raises(RobodreamError, match="is not a robodream policy checkpoint"):
        DiffusionPolicy.from_pretrained(FIXTURES / "probe")
    with pytest.raises(RobodreamError, match="holds a bc policy, not a diffusion one: load it with"):
        DiffusionPolicy.from_pretrained(FIXTURES / "policy_bc_before_layer_norm")


def test_saving_replaces_an_earlier_export_and_round_trips(tmp_path):
    from robodream.policies.pretrained import load_pretrained

    policy = load_pretrained(FIXTURES / "policy_bc_before_layer_norm")
    first = policy.save_pretrained(tmp_path / "export", training={"step": 3})
    again = load_pretrained(policy.save_pretrained(first, training={"step": 4}))
    assert again.training_info == {"step": 4} and sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    for key, value in policy.state_dict().items():
        assert (again.state_dict()[key] == value).all(), key
