"""Models saved by an earlier robodream still load and compute what they computed then.

tests/fixtures/models/ holds a tiny world model, probe and two policies (one in the layout written before
bc.layer_norm existed) as robodream wrote them before issue 17 (see make_models.py there), each with the inputs
and outputs of one forward pass made before saving. They load here from a model directory and from the run
directory a training run would leave around it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures" / "models"


def _io(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}_io.npz") as data:
        return dict(data)


def _as_run(tmp_path: Path, name: str, inside: str) -> Path:
    """A training run directory holding the fixture at `inside` (e.g. model/ or checkpoints/step_1/)."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / name, run / inside)
    return run


@pytest.mark.parametrize("where", ["model", "run"])
def test_a_saved_world_model_loads_and_samples_as_before(tmp_path, where):
    from robodream.world_models.model import WorldModel

    path = FIXTURES / "world_model" if where == "model" else _as_run(tmp_path, "world_model", "model")
    model = WorldModel.from_pretrained(path)
    io = _io("world_model")
    frames, _ = model.sample_next(torch.from_numpy(io["frames"]), torch.from_numpy(io["actions"]),
                                  generator=torch.Generator().manual_seed(5))
    difference = np.abs(frames.numpy().astype(int) - io["expected"].astype(int))
    assert difference.max() <= 1  # 8-bit rounding of floats that may differ in their last bits


@pytest.mark.parametrize("where", ["model", "run"])
def test_a_saved_probe_loads_and_predicts_as_before(tmp_path, where):
    from robodream.world_models.probe import StateSuccessProbe

    path = FIXTURES / "probe" if where == "model" else _as_run(tmp_path, "probe", "model")
    probe = StateSuccessProbe.from_pretrained(path)
    io = _io("probe")
    predicted = probe.predict(io["frames"])
    assert sorted(predicted) == sorted(k.removeprefix("expected_") for k in io if k.startswith("expected_"))
    for key, values in predicted.items():
        np.testing.assert_allclose(values, io[f"expected_{key}"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["policy_diffusion", "policy_bc_before_layer_norm"])
@pytest.mark.parametrize("where", ["model", "run"])
def test_a_saved_policy_loads_and_acts_as_before(tmp_path, name, where):
    from robodream.policies.pretrained import load_pretrained

    path = FIXTURES / name if where == "model" else _as_run(tmp_path, name, "checkpoints/step_1")
    policy = load_pretrained(path)
    io = _io(name)
    window = {key.removeprefix("window_"): value for key, value in io.items() if key.startswith("window_")}
    actions = policy.predict_action(window, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(actions.numpy(), io["expected"], rtol=1e-5, atol=1e-6)
    assert policy.training_info["step"] == 1
    if name.endswith("before_layer_norm"):
        assert policy.config.bc.layer_norm is False
