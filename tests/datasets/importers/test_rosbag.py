"""import-bag on real bag files written with the rosbags writers: episode counts, lengths, resampled values, images,
and the bad-input contract (one clear line, nothing left behind)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robodream.datasets.importers.rosbag import import_bags
from robodream.datasets.importers.rosbag_mapping import BagImportConfig
from robodream.datasets.reader import EpisodeStore
from robodream.errors import RobodreamError
from robodream.pipeline.cli import main
from robodream.pipeline.config import build_config
from tests.datasets.importers.bags import JOINTS, T0, BagSpec, colour, joint_positions, write_bag

pytest.importorskip("rosbags")

MAPPING = [
    "state.topic=/joint_states",
    "action.topic=/command",
    "cameras.front.topic=/camera/image_raw",
    "cameras.wrist.topic=/wrist/image/compressed",
    "image_size=16",
]


def _config(out: Path, *overrides: str) -> BagImportConfig:
    return build_config(BagImportConfig, [*MAPPING, f"out={out}", *overrides])


def _nearest(times: np.ndarray, t: float) -> int:
    return int(np.argmin(np.abs(times - t)))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_ros2_bag_resamples_every_stream_onto_the_store_clock(tmp_path, storage):
    bag = write_bag(tmp_path / "bag", BagSpec(), storage=storage)
    summary = import_bags([bag], _config(tmp_path / "out.zarr"), progress=False)
    store = EpisodeStore.open(tmp_path / "out.zarr")
    assert store.num_episodes == 1 and store.fps == 10
    assert store.meta("episode_source").tolist() == ["import"] and store.meta("episode_origin")[0] == str(bag)
    # every stream covers [0.05 (the latest first message: wrist camera), 1.95 (its last)]: 20 frames at 10 fps
    episode = store.episode(0)
    grid = 0.05 + np.arange(20) / 10
    assert len(episode["timestamp"]) == 20
    np.testing.assert_allclose(episode["timestamp"], grid - 0.05, atol=1e-5)
    # linear interpolation of positions that are linear in time is exact
    np.testing.assert_allclose(episode["observation.state"], joint_positions(grid), atol=1e-5)
    assert store.features["observation.state"]["names"] == JOINTS
    # commands (20 Hz from 0.02 s, value 100 + t) are held: the latest command at or before each frame
    command_times = 0.02 + np.arange(40) / 20
    held = np.array([command_times[command_times <= t + 1e-9][-1] for t in grid])
    np.testing.assert_allclose(episode["action"], np.stack([100 + held, -held], axis=1), atol=1e-4)
    # cameras: the nearest message's flat colour, cropped and resized to 16x16
    camera_times = 0.03 + np.arange(30) / 15
    wrist_times = 0.05 + np.arange(20) / 10
    for k, t in enumerate(grid):
        assert tuple(episode["observation.images.front"][k, 8, 8]) == colour(_nearest(camera_times, t))
        assert tuple(episode["observation.images.wrist"][k, 8, 8]) == colour(_nearest(wrist_times, t))
    assert episode["observation.images.front"].shape == (20, 16, 16, 3)
    # the report accounts for every topic: 50 Hz state into 10 fps drops messages, nothing is duplicated
    report = "\n".join(summary.lines())
    assert "/joint_states" in report and "50.0 Hz" in report and "/wrist/image/compressed" in report


def test_markers_split_a_bag_into_episodes_and_next_state_actions(tmp_path):
    # markers fall between state messages (50 Hz), so which messages an episode holds is unambiguous
    spec = BagSpec(duration=3.0, markers=[(0.19, True), (0.99, False), (1.49, True)])
    bag = write_bag(tmp_path / "bag", spec, storage="mcap")
    cfg = build_config(BagImportConfig, [f"out={tmp_path / 'out.zarr'}", "state.topic=/joint_states",
                                         "episodes.split=marker", "episodes.topic=/episode",
                                         "action.source=next_state"])
    import_bags([bag], cfg, progress=False)
    store = EpisodeStore.open(tmp_path / "out.zarr")
    assert store.num_episodes == 2
    # episode 0: [0.19, 0.99) -> states 0.2..0.98 -> frames 0.2..0.9: 8; episode 1: 1.5..2.98 -> 15 frames
    assert store.episode_lengths.tolist() == [8, 15]
    assert [o.rsplit("#", 1)[1] for o in store.meta("episode_origin")] == ["0", "1"]
    first = store.episode(0)
    np.testing.assert_allclose(first["observation.state"], joint_positions(0.2 + np.arange(8) / 10), atol=1e-5)
    # next_state: the action of frame t is the state of frame t + 1; the last frame holds still
    np.testing.assert_allclose(first["action"][:-1], first["observation.state"][1:])
    np.testing.assert_allclose(first["action"][-1], first["observation.state"][-1])
    assert store.features["action"]["names"] == [f"next_{j}" for j in JOINTS]


def test_ros1_bag_and_cli(tmp_path, capsys):
    bag = write_bag(tmp_path / "rec.bag", BagSpec(camera_encoding="bgr8", compressed_format="jpeg"), storage="ros1")
    mapping = tmp_path / "map.yaml"
    mapping.write_text("state:\n  topic: /joint_states\n  joints: [j3, j1]\naction:\n  topic: /command\n"
                       "cameras:\n  front: {topic: /camera/image_raw}\n  wrist: {topic: /wrist/image/compressed}\n")
    assert main(["import-bag", str(bag), "--map", str(mapping), f"out={tmp_path / 'out.zarr'}", "image_size=8",
                 "image_width=12", "image_fit=pad"]) == 0
    assert "episodes   1   frames 20" in capsys.readouterr().out
    store = EpisodeStore.open(tmp_path / "out.zarr")
    episode = store.episode(0)
    assert store.features["observation.state"]["names"] == ["j3", "j1"]
    np.testing.assert_allclose(episode["observation.state"], joint_positions(0.05 + np.arange(20) / 10)[:, [2, 0]],
                               atol=1e-5)
    # bgr8 comes out RGB; 24x32 into 8x12 with padding: scaled to 8x11, one black column on the right
    assert episode["observation.images.front"].shape == (20, 8, 12, 3)
    assert tuple(episode["observation.images.front"][0, 4, 6]) == colour(0)
    assert tuple(episode["observation.images.front"][0, 4, 11]) == (0, 0, 0)
    jpeg = episode["observation.images.wrist"][0, 4, 6].astype(int)
    assert np.abs(jpeg - colour(0)).max() <= 6  # jpeg is lossy


def test_depth_and_mono_images_decode(tmp_path):
    from rosbags.typesys import Stores, get_typestore

    from robodream.datasets.importers.ros_messages import decode_image

    ts = get_typestore(Stores.ROS2_HUMBLE)
    header = ts.types["std_msgs/msg/Header"](stamp=ts.types["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
                                             frame_id="")
    depth_mm = np.array([[0, 1000], [2000, 4000]], dtype="<u2")
    msg = ts.types["sensor_msgs/msg/Image"](header=header, height=2, width=2, encoding="16UC1", is_bigendian=0,
                                            step=4, data=depth_mm.view(np.uint8).reshape(-1))
    grey = decode_image(msg, "/depth", depth_max_m=2.0)
    assert grey.shape == (2, 2, 3) and grey[:, :, 0].tolist() == [[0, 128], [255, 255]]
    mono = ts.types["sensor_msgs/msg/Image"](header=header, height=1, width=2, encoding="mono8", is_bigendian=0,
                                             step=2, data=np.array([10, 20], np.uint8))
    assert decode_image(mono, "/mono").tolist() == [[[10, 10, 10], [20, 20, 20]]]


def _refused(tmp_path, bag, match, *overrides) -> None:
    out = tmp_path / "out.zarr"
    with pytest.raises(RobodreamError, match=match):
        import_bags([bag], _config(out, *overrides), progress=False)
    # nothing half-written: neither the store nor its temporary sibling
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.zarr")]


def test_bag_without_the_mapped_topic_names_it(tmp_path):
    bag = write_bag(tmp_path / "bag", BagSpec(duration=0.5))
    _refused(tmp_path, bag, r"has no topic '/arm/joint_states' \(mapped as state.topic\); its topics are",
             "state.topic=/arm/joint_states")


def test_unknown_image_encoding_names_topic_and_encoding(tmp_path):
    bag = write_bag(tmp_path / "bag", BagSpec(duration=0.5, camera_encoding="bayer_rggb8"))
    _refused(tmp_path, bag, r"topic /camera/image_raw: unknown image encoding 'bayer_rggb8'")


def test_header_stamps_going_backwards_are_refused_with_a_way_out(tmp_path):
    bag = write_bag(tmp_path / "bag", BagSpec(duration=1.0, backwards_at=10))
    _refused(tmp_path, bag, r"topic /joint_states: timestamps go backwards at message 10 .*clock=receive")
    import_bags([bag], _config(tmp_path / "ok.zarr", "clock=receive"), progress=False)  # the suggested fix works
    assert EpisodeStore.open(tmp_path / "ok.zarr").num_episodes == 1


def test_empty_episode_is_refused_or_skipped(tmp_path):
    bag = write_bag(tmp_path / "bag", BagSpec(duration=1.0, empty_topics=("/command",)))
    _refused(tmp_path, bag, r"topic /command \(action\) has no messages in the whole bag; the bag.s topics")
    spec = BagSpec(duration=2.0, markers=[(0.1, True), (1.0, True), (1.97, True)])  # no camera frame after 1.97 s
    marked = write_bag(tmp_path / "marked", spec)
    _refused(tmp_path, marked, r"episode 2 .*topic /camera/image_raw \(image front\) has no messages in it; "
             "set episodes.skip_short=true", "episodes.split=marker", "episodes.topic=/episode")
    _refused(tmp_path, marked, r"episode 0 .*\d+ frames at 10 fps, fewer than episodes.min_frames=10",
             "episodes.split=marker", "episodes.topic=/episode", "episodes.min_frames=10")
    summary = import_bags([marked], _config(tmp_path / "out.zarr", "episodes.split=marker", "episodes.topic=/episode",
                                            "episodes.skip_short=true"), progress=False)
    assert summary.episodes == 2 and any(n.startswith("skipped:") for n in summary.notes)


def test_truncated_bag_names_the_file(tmp_path):
    bag = write_bag(tmp_path / "bag", BagSpec(duration=1.0), storage="mcap")
    file = bag / "bag.mcap"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    _refused(tmp_path, file, r"cannot open .*bag\.mcap: .*(complete ROS bag|truncated)")


def test_existing_store_is_kept_unless_overwrite(tmp_path):
    bag = write_bag(tmp_path / "bag", BagSpec(duration=0.5))
    out = tmp_path / "out.zarr"
    import_bags([bag], _config(out), progress=False)
    with pytest.raises(RobodreamError, match="already exists: pass overwrite=true"):
        import_bags([bag], _config(out), progress=False)
    import_bags([bag], _config(out, "overwrite=true", "fps=5"), progress=False)
    assert EpisodeStore.open(out).fps == 5


def test_mapping_mistakes_are_one_line(tmp_path):
    with pytest.raises(RobodreamError, match="state.topic is empty"):
        build_config(BagImportConfig, [])
    with pytest.raises(RobodreamError, match="resample='cubic'"):
        build_config(BagImportConfig, ["state.topic=/js", "action.topic=/c", "resample=cubic"])
    with pytest.raises(RobodreamError, match="episodes.split=marker needs episodes.topic"):
        build_config(BagImportConfig, ["state.topic=/js", "action.topic=/c", "episodes.split=marker"])
    assert T0 > 0  # (bags are stamped in the epoch range, like recorded ones)


@pytest.mark.parametrize("name", ["widowx200.yaml", "ros2_example.yaml"])
def test_shipped_mappings_are_valid(name):
    path = Path(__file__).resolve().parents[3] / "configs" / "import" / name
    cfg = build_config(BagImportConfig, [], [path])
    assert cfg.state.topic and (cfg.action.topic or cfg.action.source == "next_state")
