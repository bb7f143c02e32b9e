"""Fault battery, importers and per-episode metadata: recordings made elsewhere must come in right or not at all.

Each case failed before issue 16: float 0..255 replay-buffer images imported white, a damaged replay buffer gave a
traceback, ROS joint names and field sizes were not checked, legacy ROS 1 definitions and empty topics gave
misleading errors, a receive-clock grid lost its last frame, merges relabelled every episode with the first store's
task, and episodes of unknown outcome were shown and exported as failures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from robodream.datasets.reader import EpisodeStore
from tests.faults.conftest import assert_bad_input, run_cli

# -- Diffusion Policy replay buffers ----------------------------------------------------------------------------


def _replay_buffer(path: Path, img: np.ndarray, ends=(3, 6)) -> Path:
    n = ends[-1]
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array("data/img", data=img, chunks=(2, *img.shape[1:]))
    root.create_array("data/state", data=np.arange(n * 2, dtype=np.float32).reshape(n, 2))
    root.create_array("data/action", data=np.ones((n, 2), np.float32))
    root.create_array("meta/episode_ends", data=np.asarray(ends, np.int64))
    return path


def _grey_frames(levels: np.ndarray, size: int = 8) -> np.ndarray:
    return np.broadcast_to(levels[:, None, None, None], (len(levels), size, size, 3)).astype(np.float32).copy()


def test_float_replay_images_in_0_255_keep_their_values(tmp_path):
    # the original PushT buffer: img float32 in 0..255 (it used to be clipped to 0..1, i.e. pure white)
    levels = np.array([0, 40, 80, 120, 160, 200], np.float32)
    source = _replay_buffer(tmp_path / "pusht.zarr", _grey_frames(levels))
    result = run_cli("import-zarr", source, f"out={tmp_path / 'out.zarr'}", "image_size=null")
    assert result.code == 0, result.stderr
    assert "img is float32 in 0..255 (read from the data" in result.stdout
    frames = np.concatenate([EpisodeStore.open(tmp_path / "out.zarr").episode(e)["observation.images.front"]
                             for e in range(2)])
    assert frames[:, 4, 4, 0].tolist() == levels.astype(int).tolist()


def test_float_replay_images_in_0_1_and_an_explicit_scale(tmp_path):
    levels = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], np.float32)
    source = _replay_buffer(tmp_path / "unit.zarr", _grey_frames(levels))
    result = run_cli("import-zarr", source, f"out={tmp_path / 'out.zarr'}", "image_size=null")
    assert result.code == 0 and "img is float32 in 0..1 (read from the data" in result.stdout, result.stderr
    frames = EpisodeStore.open(tmp_path / "out.zarr").episode(1)["observation.images.front"]
    assert frames[:, 4, 4, 0].tolist() == [153, 204, 255]
    # a dark 0..255 buffer looks like 0..1: image_scale says what it is
    result = run_cli("import-zarr", source, f"out={tmp_path / 'dark.zarr'}", "image_size=null", "image_scale=255")
    assert result.code == 0 and "img is float32 in 0..255 (given)" in result.stdout, result.stderr
    assert EpisodeStore.open(tmp_path / "dark.zarr").episode(1)["observation.images.front"][2, 0, 0, 0] == 1
    # a first episode in 0..1 and a later one in 0..255: refused, not clipped to white
    mixed = _replay_buffer(tmp_path / "mixed.zarr", _grey_frames(np.array([0, 0.5, 1, 0, 100, 200], np.float32)))
    assert_bad_input(run_cli("import-zarr", mixed, f"out={tmp_path / 'mixed_out.zarr'}"), "data/img episode 1",
                     "image_scale=255")
    assert not (tmp_path / "mixed_out.zarr").exists()


@pytest.mark.parametrize("damage", ["array metadata", "image chunk", "episode_ends chunk"])
def test_damaged_replay_buffer_is_one_line(tmp_path, damage):
    source = _replay_buffer(tmp_path / "buffer.zarr", np.zeros((6, 8, 8, 3), np.uint8))
    target, text, named = {"array metadata": ("data/img/.zarray", b"{garbage", "data/img"),
                           "image chunk": ("data/img/0.0.0.0", b"\x00not blosc" * 8, "data/img"),
                           "episode_ends chunk": ("meta/episode_ends/0", b"xx", "meta/episode_ends")}[damage]
    (source / target).write_bytes(text)
    result = run_cli("import-zarr", source, f"out={tmp_path / 'out.zarr'}")
    assert_bad_input(result, named, str(source))
    assert not (tmp_path / "out.zarr").exists()


# -- ROS bags ---------------------------------------------------------------------------------------------------

T0_NS = 1_700_000_000_123_456_789  # an epoch stamp where float seconds put exact grid times off the grid


def _joint_state(ts, names: list[str], values, ros1: bool, velocity=None):
    extra = {"seq": 0} if ros1 else {}
    header = ts.types["std_msgs/msg/Header"](stamp=ts.types["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
                                             frame_id="", **extra)
    return ts.types["sensor_msgs/msg/JointState"](
        header=header, name=list(names), position=np.asarray(values, np.float64),
        velocity=np.zeros(len(names)) if velocity is None else velocity, effort=np.zeros(0))


def _joint_bag(path: Path, state: list[str], command: list[str] | None = None, count: int = 20,
               legacy: bool = False) -> Path:
    """/joint_states (JointState named `state`) and /joint_commands (JointState named `command`) at 10 Hz,
    received exactly on a 10 fps grid (zero header stamps, as many drivers leave them). `legacy`: a ROS 1 bag
    whose definitions use the pre-Groovy `roslib/Header`."""
    from rosbags.typesys import Stores, get_typestore

    ros1 = path.suffix == ".bag"
    ts = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    msgtype = "sensor_msgs/msg/JointState"
    topics = {"/joint_states": state, **({"/joint_commands": command} if command else {})}
    if ros1:
        from rosbags.rosbag1 import Writer

        msgdef, md5 = ts.generate_msgdef(msgtype)
        if legacy:
            msgdef = msgdef.replace("std_msgs/Header header", "Header header").replace("MSG: std_msgs/Header",
                                                                                        "MSG: roslib/Header")
        writer, add = Writer(path), {"msgdef": msgdef, "md5sum": md5}
        serialize = ts.serialize_ros1
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        writer, add, serialize = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP), {"typestore": ts}, \
            ts.serialize_cdr
    with writer:
        connections = {topic: writer.add_connection(topic, msgtype, **add) for topic in topics}
        for k in range(count):
            for topic, names in topics.items():
                message = _joint_state(ts, names, np.arange(len(names)) + k, ros1)
                writer.write(connections[topic], T0_NS + k * 100_000_000, serialize(message, msgtype))
    return path


def _mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "map.yaml"
    path.write_text(text)
    return path


COMMANDS = "state: {topic: /joint_states}\naction: {topic: /joint_commands}\n"


def test_ros_joint_names_disagreeing_between_state_and_action_are_refused(tmp_path):
    bag = _joint_bag(tmp_path / "bag", ["q0", "q1", "q2"], ["q1", "q2", "q3"])
    result = run_cli("import-bag", bag, "--map", _mapping(tmp_path, COMMANDS), f"out={tmp_path / 'out.zarr'}")
    assert_bad_input(result, "/joint_commands", "['q1', 'q2', 'q3']", "['q0', 'q1', 'q2']", "['q3']")
    assert not (tmp_path / "out.zarr").exists()


def test_ros_joints_in_another_order_are_matched_by_name_and_printed(tmp_path):
    bag = _joint_bag(tmp_path / "bag", ["q0", "q1", "q2"], ["q2", "q0", "q1"])
    result = run_cli("import-bag", bag, "--map", _mapping(tmp_path, COMMANDS), f"out={tmp_path / 'out.zarr'}")
    assert result.code == 0, result.stderr
    assert "joints     state /joint_states: q0, q1, q2; action /joint_commands: q0, q1, q2 (action reordered" \
        in result.stdout
    store = EpisodeStore.open(tmp_path / "out.zarr")
    assert store.features["action"]["names"] == ["q0", "q1", "q2"]
    episode = store.episode(0)
    # commands [q2, q0, q1] = [0, 1, 2] + k: by name q0 = 1 + k, q1 = 2 + k, q2 = k
    np.testing.assert_allclose(episode["action"][0], [1, 2, 0])


def test_ros_fields_with_the_wrong_number_of_values_are_refused(tmp_path):
    bag = _joint_bag(tmp_path / "bag", ["q0", "q1", "q2"])  # effort is empty, as many drivers publish it
    mapping = _mapping(tmp_path, "state: {topic: /joint_states, fields: [position, velocity, effort]}\n"
                                 "action: {source: next_state}\n")
    result = run_cli("import-bag", bag, "--map", mapping, f"out={tmp_path / 'out.zarr'}")
    assert_bad_input(result, "/joint_states", "'effort' has 0 values", "3 joints")
    assert not (tmp_path / "out.zarr").exists()


def test_ros1_bag_with_legacy_roslib_header_decodes_with_the_bundled_types(tmp_path):
    bag = _joint_bag(tmp_path / "old.bag", ["q0", "q1"], legacy=True)
    mapping = _mapping(tmp_path, "state: {topic: /joint_states}\naction: {source: next_state}\n")
    result = run_cli("import-bag", bag, "--map", mapping, f"out={tmp_path / 'out.zarr'}")
    assert result.code == 0, result.stderr
    assert "decoded with the bundled ROS 1 (Noetic) types" in result.stdout
    np.testing.assert_allclose(EpisodeStore.open(tmp_path / "out.zarr").episode(0)["observation.state"][5], [5, 6])


def test_ros_receive_clock_keeps_the_last_frame_on_the_grid(tmp_path):
    bag = _joint_bag(tmp_path / "bag", ["q0", "q1"], count=20)  # 20 messages at exactly 0.0, 0.1, ... 1.9 s
    mapping = _mapping(tmp_path, "state: {topic: /joint_states}\naction: {source: next_state}\n")
    result = run_cli("import-bag", bag, "--map", mapping, f"out={tmp_path / 'out.zarr'}", "clock=receive")
    assert result.code == 0, result.stderr
    store = EpisodeStore.open(tmp_path / "out.zarr")
    assert store.num_frames == 20
    assert store.episode(0)["observation.state"][-1].tolist() == [19, 20]


def test_ros_mapped_topic_without_messages_says_so(tmp_path):
    from tests.datasets.importers.bags import BagSpec, write_bag

    bag = write_bag(tmp_path / "bag", BagSpec(duration=1.0, empty_topics=("/command",)))
    result = run_cli("import-bag", bag, "--map", _mapping(tmp_path, "state: {topic: /joint_states}\n"
                                                                    "action: {topic: /command}\n"),
                     f"out={tmp_path / 'out.zarr'}")
    assert_bad_input(result, "/command (action) has no messages in the whole bag", "/joint_states (50)")
    assert "skip_short" not in result.stderr


# -- merge keeps a task per episode; unknown outcomes ----------------------------------------------------------

FEATURES = {"observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
            "action": {"dtype": "float32", "shape": [2], "names": ["dx", "dy"]}}


def _store(path: Path, task: str, outcomes: list[bool | None]) -> Path:
    from robodream.datasets.writer import create_store

    writer = create_store(path, fps=10, features=FEATURES, robot_type="panda", task=task)
    for k, success in enumerate(outcomes):
        values = np.full((4, 2), k, np.float32)
        writer.append_episode({"observation.state": values, "action": values}, source="sim", success=success, seed=k)
    writer.close()
    return path


def test_merging_stores_of_two_tasks_is_refused_without_mixed_tasks(tmp_path):
    push = _store(tmp_path / "push.zarr", "push_cube", [True, False])
    pick = _store(tmp_path / "pick.zarr", "pick_place", [True])
    result = run_cli("merge", push, pick, f"out={tmp_path / 'all.zarr'}", "progress=false")
    assert_bad_input(result, "'pick_place'", "'push_cube'", "mixed_tasks=true")
    assert not (tmp_path / "all.zarr").exists()


def test_mixed_task_merge_keeps_each_task_and_exports_several(tmp_path):
    import pyarrow.parquet as pq

    push = _store(tmp_path / "push.zarr", "push_cube", [True, False])
    pick = _store(tmp_path / "pick.zarr", "pick_place", [True])
    out = tmp_path / "all.zarr"
    result = run_cli("merge", push, pick, f"out={out}", "mixed_tasks=true", "progress=false")
    assert result.code == 0, result.stderr
    assert "tasks      push_cube 2, pick_place 1" in result.stdout
    merged = EpisodeStore.open(out)
    assert merged.episode_tasks() == ["push_cube", "push_cube", "pick_place"]
    assert merged.task == "push_cube | pick_place"
    assert "tasks       push_cube 2, pick_place 1" in run_cli("info", out).stdout
    # appending a third task keeps the earlier episodes' tasks
    _store(tmp_path / "stack.zarr", "stack", [False])
    assert run_cli("merge", tmp_path / "stack.zarr", f"out={out}", "append=true", "mixed_tasks=true",
                   "progress=false").code == 0
    assert EpisodeStore.open(out).episode_tasks() == ["push_cube", "push_cube", "pick_place", "stack"]
    exported = run_cli("export-lerobot", out, tmp_path / "lerobot")
    assert exported.code == 0 and "tasks 3" in exported.stdout, exported.stderr
    tasks = pq.read_table(tmp_path / "lerobot" / "meta" / "tasks.parquet").to_pylist()
    index = {row["__index_level_0__"]: row["task_index"] for row in tasks}  # pandas keeps tasks in the index
    assert set(index) == {"push_cube", "pick_place", "stack"}
    frames = pq.read_table(tmp_path / "lerobot" / "data" / "chunk-000" / "file-000.parquet").to_pydict()
    per_episode = dict(zip(frames["episode_index"], frames["task_index"], strict=True))
    assert per_episode == {0: index["push_cube"], 1: index["push_cube"], 2: index["pick_place"], 3: index["stack"]}
    # and back: import-lerobot restores a task per episode
    assert run_cli("import-lerobot", tmp_path / "lerobot", f"out={tmp_path / 'back.zarr'}").code == 0
    assert EpisodeStore.open(tmp_path / "back.zarr").episode_tasks() == merged.episode_tasks() + ["stack"]


def test_unknown_success_is_shown_as_unknown_and_not_exported_as_failure(tmp_path, monkeypatch):
    source = _replay_buffer(tmp_path / "pusht.zarr", np.zeros((6, 8, 8, 3), np.uint8))
    imported = tmp_path / "imported.zarr"
    assert run_cli("import-zarr", source, f"out={imported}", "image_size=8").code == 0
    assert EpisodeStore.open(imported).episode_meta(0)["success"] is None
    assert "success     unknown (2 episodes: no outcome recorded)" in run_cli("info", imported).stdout
    exported = run_cli("export-lerobot", imported, tmp_path / "lerobot")
    assert exported.code == 0 and "next.success left out: 2 of 2 episodes" in exported.stdout, exported.stderr
    info = json.loads((tmp_path / "lerobot" / "meta" / "info.json").read_text())
    assert "next.success" not in info["features"]
    # a store of known and unknown outcomes counts them apart
    known = _store(tmp_path / "known.zarr", "", [True, None, False])
    assert "success     1/2 (50%), 1 unknown" in run_cli("info", known).stdout
    # viz labels the tile "unknown", not "fail"
    import robodream.pipeline.data.viz as viz

    shown: list[str] = []
    monkeypatch.setattr(viz, "tile_episodes", lambda frames, labels=(), **kw: shown.extend(labels) or frames[0])
    monkeypatch.setattr(viz, "write_mp4", lambda grid, path, fps: path)
    monkeypatch.setattr(viz, "write_gif", lambda grid, path, fps: path)
    viz.visualize(str(imported), episodes="0-1", out_dir=str(tmp_path))
    assert shown == ["#0 unknown", "#1 unknown"]


def test_stores_with_boolean_success_still_open_and_append(tmp_path, monkeypatch):
    from robodream.datasets import layout
    from robodream.datasets.writer import EpisodeWriter

    with monkeypatch.context() as patch:  # a store written before unknown existed: episode_success is bool
        patch.setitem(layout.EPISODE_META, "episode_success", (bool, False))
        patch.setattr(layout, "FORMAT_VERSION", 1)
        old = _store(tmp_path / "old.zarr", "push_cube", [True, False])
    assert EpisodeStore.open(old).group["meta/episode_success"].dtype == bool
    assert EpisodeStore.open(old).group.attrs["version"] == 1
    assert "success     1/2 (50%)" in run_cli("info", old).stdout
    values = np.zeros((3, 2), np.float32)
    EpisodeWriter.open(old).append_episode({"observation.state": values, "action": values}, source="import")
    store = EpisodeStore.open(old)
    assert store.outcomes().tolist() == [1, 0, 0]  # bool stores cannot say unknown: as before
    assert [store.episode_meta(i)["success"] for i in range(3)] == [True, False, False]
