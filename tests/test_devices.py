"""One parser for every `devices` key (trainers, generate, the generate stage of `robodream run`)."""

import pytest

from robodream.errors import RobodreamError
from robodream.pipeline.synthetic.generate import GenerateConfig
from robodream.trainer import DeviceConfig, device_count, parse_devices


def test_devices_parse_as_lightning_takes_them():
    assert parse_devices("auto") == "auto"
    assert parse_devices(" 4 ") == 4
    assert parse_devices(-1) == -1
    assert parse_devices("0,1") == [0, 1]
    assert DeviceConfig(devices="0,2").parsed_devices() == [0, 2]


def test_device_count_is_unknown_for_auto_and_all():
    assert [device_count(d) for d in ("1", "3", "0,1", "auto", "-1")] == [1, 3, 2, None, None]


@pytest.mark.parametrize("make", [lambda: DeviceConfig(devices="two"), lambda: GenerateConfig(devices="gpu0"),
                                  lambda: parse_devices(",")])
def test_bad_devices_fail_when_the_config_is_built(make):
    with pytest.raises(RobodreamError, match="devices must be auto, a count or ids like 0,1"):
        make()
