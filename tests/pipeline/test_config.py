"""Config building: defaults < YAML < overrides, and one clear line for every mistake."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from robodream.errors import RobodreamError
from robodream.pipeline.config import build_config, save_config, to_dict


@dataclass
class Inner:
    light: bool = False
    jitter_m: float = 0.02


@dataclass
class Outer:
    name: str = "x"
    episodes: int = 20
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise RobodreamError(f"episodes must be >= 1, got {self.episodes}")


def test_precedence_defaults_then_files_then_overrides(tmp_path):
    first = tmp_path / "a.yaml"
    first.write_text("episodes: 5\ninner:\n  light: true\n")
    second = tmp_path / "b.yaml"
    second.write_text("episodes: 7\n")
    cfg = build_config(Outer, ["inner.jitter_m=0.05", "limit=3"], [first, second])
    assert cfg == Outer(name="x", episodes=7, limit=3, inner=Inner(light=True, jitter_m=0.05))


def test_yaml_value_for_a_sub_config_merges_the_file(tmp_path):
    part = tmp_path / "inner.yaml"
    part.write_text("light: true\n")
    assert build_config(Outer, [f"inner={part}"]).inner == Inner(light=True)


def test_round_trip_through_saved_yaml(tmp_path):
    cfg = build_config(Outer, ["episodes=3", "inner.light=true"])
    saved = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert build_config(Outer, [], [saved]) == cfg
    assert to_dict(cfg)["inner"] == {"light": True, "jitter_m": 0.02}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["episdes=3"], r"unknown config key 'episdes' .*valid keys here: name, episodes, limit, inner"),
        (["inner.lite=1"], r"unknown config key 'inner.lite' .*valid keys here: light, jitter_m"),
        (["episodes=many"], r"bad value for 'episodes'.*'many'"),
        (["inner.light=maybe"], r"bad value for 'inner.light'"),
        (["episodes=0"], r"episodes must be >= 1, got 0"),
        (["episodes"], r"expected key=value, got 'episodes'"),
        (["inner=missing.yaml"], r"config file missing.yaml does not exist"),
    ],
)
def test_mistakes_give_one_clear_line(overrides, message):
    with pytest.raises(RobodreamError, match=message) as caught:
        build_config(Outer, overrides)
    assert "\n" not in str(caught.value)


def test_unknown_key_inside_a_yaml_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("inner:\n  ligth: true\n")
    with pytest.raises(RobodreamError, match=r"unknown config key 'inner.ligth' \(in .*bad.yaml\)"):
        build_config(Outer, [], [bad])
    broken = tmp_path / "broken.yaml"
    broken.write_text("episodes: [1,\n")
    with pytest.raises(RobodreamError, match="cannot parse"):
        build_config(Outer, [], [broken])
