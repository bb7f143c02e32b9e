"""robodream merge: stores recorded apart (real PyBullet collection) joined into one; incompatible stores refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.writer import create_store
from robodream.pipeline.cli import main
from robodream.pipeline.config import build_config
from robodream.pipeline.data.collect import CollectConfig, collect
from robodream.pipeline.data.merge import MergeConfig, merge

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory):
    """Two stores as two machines would record them: same task and config, their own seed ranges."""
    root = tmp_path_factory.mktemp("fleet")
    stores = []
    for name, seed in (("arm0.zarr", 0), ("arm1.zarr", 10)):
        cfg = build_config(CollectConfig, [f"out={root / name}", "episodes=2", "workers=0", f"seed={seed}",
                                           "env.image_size=16"])
        assert collect(cfg, progress=False).episodes_in_store == 2
        stores.append(root / name)
    return stores


def test_merge_joins_episodes_frames_and_metadata_in_order(two_machines, tmp_path, capsys):
    a, b = two_machines
    out = tmp_path / "all.zarr"
    assert main(["merge", str(a), str(b), f"out={out}", "progress=false"]) == 0
    printed = capsys.readouterr().out
    assert "merged     4 episodes" in printed and "sources    sim 4" in printed and "warning" not in printed
    merged, first, second = (EpisodeStore.open(p) for p in (out, a, b))
    assert merged.num_episodes == 4 and merged.num_frames == first.num_frames + second.num_frames
    assert merged.meta("episode_seed").tolist() == [0, 1, 10, 11]
    assert merged.meta("episode_source").tolist() == ["sim"] * 4
    assert merged.meta("episode_origin").tolist() == ["expert:push_cube"] * 4
    for index, (store, source_index) in enumerate([(first, 0), (first, 1), (second, 0), (second, 1)]):
        left, right = merged.episode(index), store.episode(source_index)
        for key in store.keys:
            np.testing.assert_array_equal(left[key], right[key], err_msg=f"episode {index} {key}")
    assert merged.attrs["stats"]["num_frames"] == merged.num_frames  # fresh stats over the merged frames
    assert merged.fps == first.fps and merged.cameras == first.cameras and merged.task == "push_cube"


def test_append_adds_to_an_existing_store_and_flags_repeated_seeds(two_machines, tmp_path, capsys):
    a, b = two_machines
    out = tmp_path / "all.zarr"
    assert main(["merge", str(a), str(b), f"out={out}", "progress=false"]) == 0
    assert main(["merge", str(b), f"out={out}", "progress=false"]) == 2
    assert "already exists: pass append=true" in capsys.readouterr().err
    assert main(["merge", str(b), f"out={out}", "append=true", "progress=false"]) == 0
    printed = capsys.readouterr().out
    assert "episodes   6 in store" in printed
    assert "recorded more than once with seeds 10, 11" in printed
    assert EpisodeStore.open(out).meta("episode_seed").tolist() == [0, 1, 10, 11, 10, 11]


def test_incompatible_stores_are_one_clear_error_and_nothing_is_written(two_machines, tmp_path, capsys):
    a, _ = two_machines
    recorded = EpisodeStore.open(a)
    features = {k: v for k, v in recorded.features.items() if k != "timestamp"}
    slow = tmp_path / "slow.zarr"  # the same features recorded at another rate
    writer = create_store(slow, fps=5, features=features, robot_type="panda", task="push_cube")
    writer.append_episode(recorded.episode(0), source="sim", seed=99)
    writer.close()
    big = tmp_path / "big.zarr"  # the same rate, larger images
    big_features = {**features, "observation.images.front": {**features["observation.images.front"],
                                                             "shape": [32, 32, 3]}}
    writer = create_store(big, fps=recorded.fps, features=big_features, robot_type="panda", task="push_cube")
    episode = recorded.episode(0)
    episode["observation.images.front"] = np.zeros((len(episode["action"]), 32, 32, 3), np.uint8)
    writer.append_episode(episode, source="sim", seed=98)
    writer.close()

    out = tmp_path / "out.zarr"
    assert main(["merge", str(a), str(slow), f"out={out}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{slow} records at 5 fps but {a} at 10" in err
    assert main(["merge", str(a), str(big), f"out={out}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hold different features (observation.images.front: " in err
    assert "(16, 16, 3)" in err and "(32, 32, 3)" in err
    assert not out.exists()
    assert main(["merge", str(a), f"out={a}"]) == 2
    assert "is also one of the stores to merge" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "missing.zarr"), f"out={out}"]) == 2
    assert "no episode store at" in capsys.readouterr().err


def test_the_fleet_config_example_is_valid():
    cfg = build_config(MergeConfig, [], [REPO / "configs" / "merge" / "fleet.yaml"])
    assert len(cfg.stores) == 2 and cfg.out and not cfg.append


def test_merge_reads_and_writes_fsspec_urls(two_machines):
    a, b = two_machines
    summary = merge(MergeConfig(stores=[str(a), str(b)], out="memory://fleet/all.zarr", progress=False))
    assert summary.episodes == 4
    merge(MergeConfig(stores=["memory://fleet/all.zarr"], out="memory://fleet/copy.zarr", progress=False))
    assert EpisodeStore.open("memory://fleet/copy.zarr").meta("episode_seed").tolist() == [0, 1, 10, 11]
