"""`robodream experiment augment` and `robodream experiment rank` end to end at tiny size, and their statistics.

The experiments run for real (PyBullet, Zarr, Lightning) on 16x16 frames with models trained for a few steps:
these tests check the machinery (sub-steps, resuming, tables, plots, errors), not the figures.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from robodream.datasets.reader import EpisodeStore
from robodream.pipeline.cli import main
from robodream.pipeline.experiments.augment_report import RUN_COLUMNS, SUMMARY_COLUMNS
from robodream.pipeline.experiments.rank import COLUMNS as RANK_COLUMNS
from robodream.pipeline.experiments.rank import correlation
from robodream.stats import mean_std, pearson, rankdata, spearman

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
AUGMENT_STAGES = 15  # collect real (clean labels) + real (executed actions) + play, merge, train-wm, eval-wm,
#                     train-probe, generate, verify,
#                     3 x (train-policy + eval)


def _augment_args(out: Path, *extra: str) -> list[str]:
    return ["experiment", "augment", str(CONFIGS / "experiment" / "augment.yaml"),
            str(CONFIGS / "experiment" / "augment_tiny.yaml"),
            f"world_model.world_model={CONFIGS / 'world_model' / 'tiny.yaml'}",
            f"policy.policy={CONFIGS / 'policy' / 'tiny.yaml'}", "play.episodes=2", f"out={out}", *extra]


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open() as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err  # one clear line, no traceback
    return err


def test_the_one_session_sitting_config_plans_one_n_and_seed_labelled_by_pybullet():
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.experiments.augment import AugmentConfig, plan

    cfg = build_from_args(AugmentConfig, [str(CONFIGS / "experiment" / name)
                                          for name in ("augment.yaml", "augment_sitting.yaml")] + ["out=/tmp/sit"])
    assert (cfg.demos, cfg.seeds, cfg.world_model.trainer.max_steps, cfg.synthetic.rollouts) == ([10], [0], 3000, 300)
    assert cfg.synthetic.filter.replay_in_sim and not cfg.synthetic.filter.success_only
    slugs = [stage.slug for stage in plan(cfg)]
    assert slugs[:2] == ["collect-real-N10", "collect-real-N10-executed"] and slugs[-1] == "eval-synthetic-N10-s0"


def test_the_standard_size_config_plans_shared_models_three_seeds_and_the_expert_recipe():
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.experiments.augment import AugmentConfig, plan

    cfg = build_from_args(AugmentConfig, [str(CONFIGS / "experiment" / name)
                                          for name in ("augment.yaml", "augment_standard.yaml")] + ["out=/tmp/std"])
    assert (cfg.demos, cfg.seeds, cfg.world_model.trainer.max_steps, cfg.synthetic.rollouts) == ([10], [0, 1, 2],
                                                                                                  5000, 500)
    assert (cfg.synthetic.source, cfg.synthetic.starts, cfg.shared_world_model) == ("expert", "demos+play", True)
    assert cfg.synthetic.filter.replay_in_sim and not cfg.synthetic.filter.success_only
    slugs = [stage.slug for stage in plan(cfg)]
    assert slugs.count("train-wm-N10-shared") == 1 and slugs[-1] == "eval-synthetic-N10-s2"


@pytest.fixture(scope="module")
def augment_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiments") / "augment"
    assert main(_augment_args(out)) == 0
    return out


# -- statistics ---------------------------------------------------------------------------------------------------

def test_correlations_of_perfectly_ranked_reversed_and_tied_success_rates():
    assert pearson([10, 20, 30, 40], [15, 25, 35, 45]) == pytest.approx(1.0)
    assert spearman([10, 20, 30, 40], [1, 4, 9, 100]) == pytest.approx(1.0)  # monotone: rho 1, r below 1
    assert pearson([10, 20, 30, 40], [1, 4, 9, 100]) < 0.95
    assert pearson([0, 50, 100], [90, 50, 10]) == pytest.approx(-1.0)
    assert spearman([0, 50, 100], [90, 40, 10]) == pytest.approx(-1.0)
    assert pearson([1, 2, 3, 4, 5], [2, 4, 5, 4, 5]) == pytest.approx(0.7745966692414834)
    # ties take the average of the ranks they span (scipy.stats.spearmanr gives 0.9486832980505138)
    assert list(rankdata([10, 20, 20, 30])) == [1, 2.5, 2.5, 4]
    assert list(rankdata([50, 0, 50, 50])) == [3, 1, 3, 3]
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    # Wikipedia's worked example (IQ vs hours of TV): rho = -29/165
    iq = [106, 100, 86, 101, 99, 103, 97, 113, 112, 110]
    tv = [7, 27, 2, 50, 28, 29, 20, 12, 6, 17]
    assert spearman(iq, tv) == pytest.approx(-29 / 165)
    # undefined: a constant sequence carries no ranking, one point no correlation
    assert pearson([0, 0, 0], [10, 20, 30]) is None and spearman([20, 20], [1, 2]) is None
    assert spearman([5], [5]) is None


def test_mean_and_sample_std_over_seeds():
    assert mean_std([10, 20, 30]) == (pytest.approx(20.0), pytest.approx(10.0))
    assert mean_std([40.0]) == (40.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


# -- augment ------------------------------------------------------------------------------------------------------

def test_the_uplift_is_paired_per_held_out_seed_with_a_bootstrap_interval():
    from robodream.pipeline.experiments.augment_report import paired_differences, summary_rows

    def info(successes: dict[int, bool]) -> dict:
        return {"per_episode": [{"seed": seed, "success": won} for seed, won in successes.items()]}

    # listed in another order, and one seed only the real arm met: pairs are matched by seed, unmatched left out
    real = info({1002: False, 1000: True, 1001: False, 1003: True})
    mixed = info({1000: True, 1001: True, 1002: False})
    assert paired_differences(real, mixed) == [0, 1, 0]

    def row(seed: int, differences: list[int]) -> dict:
        return {"n_demos": 10, "seed": seed, "real_success": 20.0, "mixed_success": 20.0 + 100 * sum(differences)
                / len(differences), "synthetic_success": 0.0, "real_wins": 10, "mixed_wins": 10, "synthetic_wins": 0,
                "delta": 100 * sum(differences) / len(differences), "eval_episodes": len(differences),
                "synthetic_kept": 100, "paired_delta": differences}

    gains = summary_rows([row(0, [1] * 10 + [0] * 40), row(1, [1] * 8 + [-1] * 2 + [0] * 40)])[0]
    low, high = (float(v) for v in gains["delta_ci95"].split(".."))
    assert 0 < low < gains["delta_mean"] < high  # 18 wins, 2 losses in 100 pairs: clearly above zero
    even = summary_rows([row(0, [1] * 5 + [-1] * 5 + [0] * 40)])[0]
    low, high = (float(v) for v in even["delta_ci95"].split(".."))
    assert low < 0 < high and even["delta_mean"] == 0


def test_augment_pooled_wilson_bars_stay_within_0_and_100_and_skip_unevaluated_seeds(tmp_path):
    """The plot's error bars: an arm at 0 of 150 episodes gets a bar from 0% up (a ± std bar over seeds at 0, 2 and
    28% dips below 0), and a seed that has not evaluated an arm yet does not count as 50 failures."""
    from robodream.pipeline.experiments.augment_report import plot_success_vs_demos, pooled_wilson_percent, summary_rows

    def row(seed: int, synthetic_wins: int | None) -> dict:
        return {"n_demos": 10, "seed": seed, "real_success": 0.0, "real_wins": 0, "eval_episodes": 50,
                "mixed_success": 20.0, "mixed_wins": 10, "delta": 20.0, "paired_delta": [1] * 10 + [0] * 40,
                "synthetic_success": None if synthetic_wins is None else 2.0 * synthetic_wins,
                "synthetic_wins": synthetic_wins}

    rows = [row(0, 1), row(1, 14), row(2, None)]
    low, high = pooled_wilson_percent(rows, 10, "real")
    assert low == 0.0 and 0 < high < 5  # 0 of 150
    low, high = pooled_wilson_percent(rows, 10, "synthetic")
    assert 8 < low < 15 < high < 25  # 15 of 100 (9-23%; seed 2 left out), not 15 of 150 (6-16%)
    summary = summary_rows(rows)
    assert summary[0]["synthetic_seeds"] == 2 and summary[0]["synthetic_mean"] == 15.0
    png = plot_success_vs_demos(summary, rows, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_augment_writes_the_tables_and_the_plot(augment_run):
    out = augment_run
    columns, rows = _read_csv(out / "results.csv")
    assert columns == list(RUN_COLUMNS)
    assert [(r["n_demos"], r["seed"]) for r in rows] == [("3", "0")]
    row = rows[0]
    assert all(0 <= float(row[f"{arm}_success"]) <= 100 for arm in ("real", "mixed", "synthetic"))
    assert float(row["synthetic_success"]) == pytest.approx(100 * int(row["synthetic_wins"]) / 2)
    assert float(row["delta"]) == pytest.approx(float(row["mixed_success"]) - float(row["real_success"]))
    assert row["synthetic_kept"] == "4" and row["eval_episodes"] == "2" and row["eval_seed"] == "1000"
    columns, summary = _read_csv(out / "summary.csv")
    assert columns == list(SUMMARY_COLUMNS) and summary[0]["seeds"] == "1" and summary[0]["real_std"] == "0.0"
    markdown = (out / "summary.md").read_text()
    assert "| real demos N | seeds | real only | real + synthetic | synthetic only |" in markdown
    assert "± 0.0" in markdown and summary[0]["synthetic_ci95"].count("-") == 1  # a Wilson interval per arm
    assert summary[0]["delta_ci95"].count("..") == 1 and "bootstrap over the paired held-out episodes" in markdown
    # the kept rollouts were replayed in PyBullet: the precision of their success labels, per run and per N
    verified = json.loads((out / "N3" / "seed0" / "synthetic" / "verify.json").read_text())
    assert verified["episodes"] == 4 and int(row["kept_labelled_success"]) == verified["labelled_success"]
    assert int(row["kept_replayed_success"]) == verified["replayed_success"] <= verified["labelled_success"]
    assert summary[0]["label_precision"] == verified["precision_text"]
    assert (out / "success_vs_demos.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "results.json").read_text())["summary"][0]["n_demos"] == 3
    # every sub-step in its own directory, with its stamp
    seed_dir = out / "N3" / "seed0"
    for stamp in ["data/collect-real-N3", "data/collect-real-N3-executed", "data/collect-play", "data/merge-N3",
                  "N3/seed0/world_model/train-wm-N3-s0",
                  "N3/seed0/probe/train-probe-N3-s0", "N3/seed0/synthetic/generate-N3-s0",
                  "N3/seed0/policy_mixed/eval/eval-mixed-N3-s0"]:
        assert json.loads((out / f"{stamp}.stage.json").read_text())["status"] == "done"
    # the world model saw the real demos and the play data (failures kept); the policies only the real demos
    assert OmegaConf.load(seed_dir / "world_model" / "config.yaml")["data"] == str(out / "data" / "real_N3+play.zarr")
    assert EpisodeStore.open(out / "data" / "real_N3+play.zarr").num_episodes == 3 + 2
    # ... the demos with the actions that moved the arm, not their clean DART labels: the same seeds, frame for
    # frame, recorded once more (labels replayed in PyBullet fail; a world model learns frames they did not make)
    clean, executed, merged = (EpisodeStore.open(out / "data" / f"{name}.zarr")
                               for name in ("real_N3", "real_N3_executed", "real_N3+play"))
    for i in range(3):
        assert executed.episode_meta(i)["seed"] == clean.episode_meta(i)["seed"]
        labelled, moved = clean.episode(i, ["observation.state", "action"]), \
            executed.episode(i, ["observation.state", "action"])
        assert np.array_equal(labelled["observation.state"], moved["observation.state"])
        assert not np.allclose(labelled["action"], moved["action"])
        assert np.array_equal(merged.episode(i, ["action"])["action"], moved["action"])
    trained_on = json.loads((seed_dir / "policy_mixed" / "checkpoints" / "step_4" / "config.json").read_text())
    assert [d["path"] for d in trained_on["training"]["data"]] == [str(out / "data" / "real_N3.zarr"),
                                                                    str(seed_dir / "synthetic" / "synthetic.zarr")]
    assert [d["weight"] for d in trained_on["training"]["data"]] == [0.5, 0.5]
    # the synthetic-only arm trained on the synthetic store alone, its imagined frames only
    trained_on = json.loads((seed_dir / "policy_synthetic" / "checkpoints" / "step_4" / "config.json").read_text())
    assert trained_on["training"]["data"] == [{"path": str(seed_dir / "synthetic" / "synthetic.zarr"), "weight": 1.0,
                                               "imagined_only": True, "episodes": 4, "frames": 4 * 4}]  # not 4 x 8
    [record] = json.loads((seed_dir / "policy_synthetic" / "training_data.json").read_text())["stores"]
    assert record["frames"] == "imagined only"


def test_the_synthetic_only_policy_never_reads_a_real_frame(augment_run, tmp_path, monkeypatch):
    """Asserted on the frames the training actually gathers: every image the synthetic-only policy reads is an
    imagined frame of a synthetic episode (never one of the K real context frames it starts from), and it reads
    nothing from any other store."""
    synthetic = augment_run / "N3" / "seed0" / "synthetic" / "synthetic.zarr"
    store = EpisodeStore.open(synthetic)
    real_frames = set()
    for i in range(store.num_episodes):
        k = json.loads(store.episode_meta(i)["origin"])["context_frames"]
        real_frames |= set(range(int(store.episode_starts[i]), int(store.episode_starts[i]) + k))
    read: list[tuple[str, str, set[int]]] = []
    gather = EpisodeStore.gather

    def recording_gather(self, key, frame_indices):
        read.append((str(self.location), key, {int(f) for f in np.asarray(frame_indices).ravel()}))
        return gather(self, key, frame_indices)

    monkeypatch.setattr(EpisodeStore, "gather", recording_gather)
    assert main(["train-policy", f"data=[{{path: '{synthetic}', imagined_only: true}}]",
                 f"policy={CONFIGS / 'policy' / 'tiny.yaml'}", f"out={tmp_path / 'p'}", "trainer.max_steps=6",
                 "trainer.batch_size=4", "trainer.warmup_steps=1", "trainer.checkpoint_every_steps=6",
                 "trainer.progress_bar=false"]) == 0
    images = [frames for location, key, frames in read if key.startswith("observation.images.")]
    assert images and {location for location, _, _ in read} == {str(synthetic)}
    assert not set().union(*images) & real_frames
    assert set().union(*images) - real_frames  # it did read imagined frames
    # its normalisation too: the image statistics are the imagined frames', not the whole store's
    from robodream.datasets.imagined import imagined_stats
    from robodream.policies.pretrained import load_pretrained

    image_key = next(k for k in store.features if k.startswith("observation.images."))
    policy = load_pretrained(str(tmp_path / "p" / "checkpoints" / "step_6"))
    offset = policy.normalizer._get(image_key).offset.numpy()
    np.testing.assert_allclose(offset, imagined_stats(store, [image_key])["features"][image_key]["mean"], rtol=1e-5)
    assert not np.allclose(offset, store.stats()["features"][image_key]["mean"], rtol=1e-5)


def test_augment_rerun_skips_finished_sub_steps_and_reruns_only_what_changed(augment_run, capsys):
    capsys.readouterr()
    weights = augment_run / "N3" / "seed0" / "policy_real" / "checkpoints" / "step_4" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert main(_augment_args(augment_run)) == 0
    assert capsys.readouterr().out.count("skipped: inputs and config unchanged") == AUGMENT_STAGES
    assert weights.stat().st_mtime_ns == before
    # a new mixing ratio re-trains and re-evaluates the mixed policy only
    assert main(_augment_args(augment_run, "synthetic.weight=0.25")) == 0
    printed = capsys.readouterr().out
    assert printed.count("skipped: inputs and config unchanged") == AUGMENT_STAGES - 2
    assert "train-policy mixed N3-s0" in printed and weights.stat().st_mtime_ns == before


def test_augment_continues_an_interrupted_training_from_its_checkpoint(augment_run, capsys):
    """A crash in the middle of a world-model or policy training (hours on a CPU) loses only the steps since the
    last checkpoint: the re-run resumes those sub-steps instead of training them from scratch."""
    seed_dir = augment_run / "N3" / "seed0"
    stamps = [*(seed_dir / "world_model").glob("train-wm-*.stage.json"),
              *(seed_dir / "policy_real").glob("train-policy-*.stage.json"),
              *(seed_dir / "policy_synthetic").glob("train-policy-*.stage.json")]
    assert len(stamps) == 3
    for path in stamps:  # what a killed run leaves: the stamp of an attempt at the same config, still running
        path.write_text(json.dumps({**json.loads(path.read_text()), "status": "running"}))
    capsys.readouterr()
    assert main(_augment_args(augment_run)) == 0
    printed = capsys.readouterr().out
    assert printed.count("(resumed)") == 3
    assert all(json.loads(path.read_text())["status"] == "done" for path in stamps)


def test_augment_only_runs_the_matching_sub_steps_and_writes_no_tables_before_an_evaluation(tmp_path, capsys):
    """only=[patterns]: what lets independent seeds run side by side in separate processes (docs/benchmarks.md)."""
    out = tmp_path / "augment"
    assert main(_augment_args(out, "only=['collect-real-*']")) == 0
    printed = capsys.readouterr().out
    assert "ran 2 sub-steps matching only=['collect-real-*']" in printed
    assert "no policy evaluation has finished yet: no tables" in printed
    stamps = sorted(p.name for p in out.rglob("*.stage.json"))
    assert stamps == ["collect-real-N3-executed.stage.json", "collect-real-N3.stage.json"]
    assert not (out / "results.csv").exists()
    assert "matches no sub-step" in _error(_augment_args(out, "only=[nothing-*]"), capsys)


def test_augment_only_refuses_a_generation_whose_world_model_eval_wm_has_not_finished(tmp_path, capsys):
    """generate's gate reads the fidelity record eval-wm writes into the world model's run: a sitting split by only=
    that leaves eval-wm out fails before any sub-step runs, naming what to run first, instead of inside generate."""
    out = tmp_path / "augment"
    err = _error(_augment_args(out, "only=['generate-*']"), capsys)
    assert "generate-N3-s0" in err and all(f"{step}-N3-s0" in err for step in ("train-wm", "eval-wm", "train-probe"))
    assert not list(out.rglob("*.stage.json"))  # refused before anything ran
    assert main(_augment_args(out, "only=['collect-*','merge-*','train-wm-*','train-probe-*']")) == 0
    capsys.readouterr()  # the trainings' own log lines
    err = _error(_augment_args(out, "only=['generate-*']"), capsys)
    assert "eval-wm-N3-s0" in err and "train-wm-N3-s0" not in err and "train-probe-N3-s0" not in err
    assert "fidelity record" in err  # why eval-wm, not a training, is named
    assert main(_augment_args(out, "only=['eval-wm-*','generate-*']")) == 0
    stamp = out / "N3" / "seed0" / "synthetic" / "generate-N3-s0.stage.json"
    assert json.loads(stamp.read_text())["status"] == "done"


def test_augment_only_gives_generates_gate_as_the_reason_only_when_eval_wm_is_missing(tmp_path):
    """With the world model trained and evaluated and only the probe missing, the refusal names the probe and not
    eval-wm's fidelity record (stamps written as a finished run leaves them; nothing trains)."""
    from robodream.errors import RobodreamError
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.experiments.augment import AugmentConfig, chosen_stages, plan

    cfg = build_from_args(AugmentConfig, [str(CONFIGS / "experiment" / name)
                                          for name in ("augment.yaml", "augment_tiny.yaml")] + [f"out={tmp_path}"])
    stages = plan(cfg)
    for stage in stages:
        if stage.slug.startswith(("train-wm-", "eval-wm-")):
            stage.out.mkdir(parents=True, exist_ok=True)
            stage.stamp_path.write_text(json.dumps({"status": "done"}))
    with pytest.raises(RobodreamError) as refused:
        chosen_stages(stages, ["generate-*"])
    assert "train-probe-N3-s0" in str(refused.value) and "eval-wm-N3-s0" not in str(refused.value)
    assert "fidelity record" not in str(refused.value)


def test_augment_can_start_rollouts_from_play_data_and_let_the_expert_act_in_the_dream(tmp_path):
    """synthetic.starts=demos+play with source=expert: rollouts start from the merged store's episodes too (more
    start states than N demos), and PyBullet can still replay them (the merged store's sources share one env).
    synthetic.expert_cube reaches generation (the dead-reckoning expert: sitting C in docs/benchmarks.md)."""
    out = tmp_path / "augment"
    assert main(_augment_args(out, "synthetic.starts=demos+play", "synthetic.source=expert",
                              "synthetic.expert_cube=start")) == 0
    synthetic = EpisodeStore.open(out / "N3" / "seed0" / "synthetic" / "synthetic.zarr")
    origins = [json.loads(synthetic.episode_meta(i)["origin"]) for i in range(synthetic.num_episodes)]
    assert {o["data"] for o in origins} == {str(out / "data" / "real_N3+play.zarr")}
    assert {o["source"] for o in origins} == {"expert"} and {o["expert_cube"] for o in origins} == {"start"}
    verified = json.loads((out / "N3" / "seed0" / "synthetic" / "verify.json").read_text())
    assert verified["verified"] == verified["episodes"] == synthetic.num_episodes


def test_augment_tables_of_an_unfinished_run_say_which_arms_have_not_run(augment_run, tmp_path):
    """A sitting stopped before every arm was evaluated still gets its tables, with the gaps stated."""
    import shutil

    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.experiments.augment import AugmentConfig
    from robodream.pipeline.experiments.augment_report import write_augment_results

    partial = tmp_path / "partial"
    for arm in ("real", "mixed"):  # the synthetic-only arm and seed 1 have not run
        target = partial / "N3" / "seed0" / f"policy_{arm}" / "eval" / "eval_info.json"
        target.parent.mkdir(parents=True)
        shutil.copy(augment_run / "N3" / "seed0" / f"policy_{arm}" / "eval" / "eval_info.json", target)
    cfg = build_from_args(AugmentConfig, _augment_args(partial, "seeds=[0,1]")[2:])
    files = write_augment_results(cfg, partial)
    _, summary = _read_csv(files["summary"])
    assert (summary[0]["seeds"], summary[0]["real_seeds"], summary[0]["synthetic_seeds"]) == ("1", "1", "0")
    assert summary[0]["synthetic_mean"] == "" and summary[0]["delta_mean"] != ""
    text = files["markdown"].read_text()
    assert "| not run |" in text and "Unfinished:" in text


def test_augment_tables_join_the_rows_of_earlier_sittings(augment_run, tmp_path):
    """earlier_results=[results.json of another N]: an experiment run one N per session ends in one table."""
    earlier = json.loads((augment_run / "results.json").read_text())
    for row in earlier["runs"]:
        row["n_demos"] = 7
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(earlier))
    assert main(_augment_args(augment_run, f"earlier_results=[{path}]")) == 0
    _, summary = _read_csv(augment_run / "summary.csv")
    assert [row["n_demos"] for row in summary] == ["3", "7"]
    runs = json.loads((augment_run / "results.json").read_text())["runs"]
    assert [(r["n_demos"], r.get("from_results")) for r in runs] == [(3, None), (7, str(path))]
    assert main(_augment_args(augment_run)) == 0  # leave the fixture's tables as they were


def test_augment_bad_input_is_one_clear_error_line(tmp_path, capsys):
    assert "demos=[]" in _error(_augment_args(tmp_path / "a", "demos=[]"), capsys)
    assert "overlap the real demos seeds" in _error(_augment_args(tmp_path / "b", "eval.seed=5"), capsys)
    assert "synthetic.weight" in _error(_augment_args(tmp_path / "c", "synthetic.weight=1.0"), capsys)
    assert "needs play data" in _error(_augment_args(tmp_path / "d", "synthetic.starts=demos+play",
                                                     "play.episodes=0"), capsys)
    assert "is not a results.json" in _error(_augment_args(tmp_path / "e", f"earlier_results=[{tmp_path / 'no.json'}]"),
                                             capsys)
    assert not (tmp_path / "a").exists() and not (tmp_path / "e").exists()


# -- rank ---------------------------------------------------------------------------------------------------------

def _rank_args(augment: Path, out: Path, *extra: str) -> list[str]:
    models = augment / "N3" / "seed0"
    return ["experiment", "rank", str(CONFIGS / "experiment" / "rank.yaml"), f"policy_run={models / 'policy_real'}",
            f"checkpoints=[{models / 'policy_mixed'}]", "expert_noise=[0.0,0.03]",
            f"imagination.wm={models / 'world_model'}", f"imagination.probe={models / 'probe'}", "env.image_size=16",
            "episodes=2", "workers=0", "max_steps=4", "progress=false", f"out={out}", "imagination.force=true", *extra]


def test_rank_evaluates_every_agent_in_both_worlds_and_correlates(augment_run, tmp_path, capsys):
    out = tmp_path / "rank"
    assert main(_rank_args(augment_run, out)) == 0
    columns, rows = _read_csv(out / "rank.csv")
    assert columns == list(RANK_COLUMNS)
    assert [r["agent"] for r in rows] == ["policy_real/step_2", "policy_real/step_4", "policy_mixed/step_4",
                                          "expert noise=0", "expert noise=0.03"]
    assert [r["kind"] for r in rows] == ["checkpoint"] * 3 + ["expert"] * 2
    for row in rows:
        sim, imagined = (json.loads(Path(row[f"{w}_eval"]).read_text()) for w in ("sim", "imagined"))
        assert sim["info"]["env"] == "pybullet" and imagined["info"]["env"] == "world_model"
        assert [e["seed"] for e in sim["per_episode"]] == [e["seed"] for e in imagined["per_episode"]] == [1000, 1001]
    report = json.loads((out / "rank.json").read_text())
    expected = correlation([{k: float(r[k]) for k in ("sim_success", "imagined_success")} for r in rows])
    assert report["agents"] == 5 and report["pearson"] == expected["pearson"]
    assert report["spearman"] == expected["spearman"]
    assert (out / "rank_scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(_rank_args(augment_run, out)) == 0
    assert capsys.readouterr().out.count("skipped: inputs and config unchanged") == 10


def test_rank_without_its_models_or_agents_is_one_clear_error_line(augment_run, tmp_path, capsys):
    message = _error(["experiment", "rank", "expert_noise=[0.0,0.01]", f"out={tmp_path}"], capsys)
    assert "imagination.wm=<world-model run> and imagination.probe=<probe run>" in message
    models = augment_run / "N3" / "seed0"
    message = _error(["experiment", "rank", "expert_noise=[0.0]", f"imagination.wm={models / 'world_model'}",
                      f"imagination.probe={models / 'probe'}", f"out={tmp_path / 'r'}"], capsys)
    assert "at least 2 agents" in message
    assert "noise" in _error(["experiment", "rank", "expert_noise=[0.5]", "imagination.wm=a", "imagination.probe=b"],
                             capsys)
