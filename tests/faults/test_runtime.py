"""Faults at run time (issue "Nothing lost", What to build 4-6): dead workers and Ctrl-C during collect, config
names where a section is expected, models that remember their data, teleop without a usable display."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.conftest import REPO, assert_bad_input, cli_env, run_cli, tree_digest

CHEAP_COLLECT = ("task=push_cube", "workers=2", "episodes=30")


# -- collection workers: a dead worker is reported, Ctrl-C exits 130 ------------------------------------------

def _start_collector(out: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "robodream.pipeline.cli", "collect", f"out={out}", *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=cli_env(),
                            start_new_session=True)


def _committed(out: Path) -> int:
    ends = out / "meta" / "episode_ends" / "zarr.json"
    if not ends.exists():
        return 0
    from robodream.datasets.reader import EpisodeStore

    return EpisodeStore.open(out, cache="disk").num_episodes


def _wait_for_episodes(proc: subprocess.Popen, out: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while _committed(out) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no {count} episodes after {timeout} s"
        time.sleep(0.2)


def _children(pid: int) -> list[int]:
    """The worker processes of `pid` (its spawned children; not the resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _writing(pid: int) -> bool:
    """Whether a thread of `pid` is inside write(2) (syscall 1 on x86-64): a result half through the pipe."""
    try:
        return any((task / "syscall").read_text().split()[0] == "1" for task in Path(f"/proc/{pid}/task").iterdir())
    except (OSError, IndexError):
        return False


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the collector hung after its worker died:\n{out}\n{err}")


@pytest.mark.parametrize("moment", ["computing", "half-way through sending its episode"])
def test_a_dead_worker_is_reported_with_its_seed_and_the_rest_is_committed(tmp_path, moment):
    out = tmp_path / "store.zarr"
    proc = _start_collector(out, *CHEAP_COLLECT)
    _wait_for_episodes(proc, out, 1)
    workers = _children(proc.pid)
    assert len(workers) == 2
    victim = workers[0]
    if moment != "computing":
        # Freeze the parent until a worker has an episode half-written into its pipe, then kill that worker:
        # a shared result queue leaves the parent waiting for the rest of that message forever.
        os.kill(proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 60
        while not any(_writing(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        victim = next((pid for pid in workers if _writing(pid)), victim)
    os.kill(victim, signal.SIGKILL)
    os.kill(proc.pid, signal.SIGCONT)
    killed_at = time.monotonic()
    stdout, stderr = _finish(proc, timeout=60)
    assert time.monotonic() - killed_at < 30  # seen at once; at most the episodes issued before it finish
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert f"(pid {victim}) died with exit code -9" in stdout
    lost = int(stdout.split("died with exit code -9 while running seed ", 1)[1].split(";")[0])
    assert "resume=true" in stdout
    from robodream.datasets.reader import EpisodeStore

    store = EpisodeStore.open(out)
    assert 1 <= store.num_episodes < 30 and store.uncommitted_frames == 0
    assert max(store.meta("episode_seed").tolist()) < lost  # seed order kept: resume continues exactly
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists() and
                (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")], "orphaned workers"


def test_ctrl_c_during_collect_exits_130_after_the_current_episode(tmp_path):
    out = tmp_path / "store.zarr"
    proc = _start_collector(out, *CHEAP_COLLECT)
    _wait_for_episodes(proc, out, 1)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends: the whole process group
    stdout, stderr = _finish(proc, timeout=60)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and "interrupted (Ctrl-C)" in stdout
    from robodream.datasets.reader import EpisodeStore

    store = EpisodeStore.open(out)
    assert store.uncommitted_frames == 0 and 1 <= store.num_episodes < 30


# -- config names where a section is expected; --help keys; --show-config ----------------------------------------

@pytest.mark.parametrize("args, expected", [
    (("train-policy", "data=push.zarr", "policy=diffusion"), "type: diffusion"),
    (("train-wm", "world_model=tiny"), "- 8\n    - 16\n    - 32"),  # tiny's unet.block_out_channels
    (("collect", "env=pick_place"), "task: pick_place"),
    (("train-wm", "trainer.max_steps=7"), "max_steps: 7"),
    (("run", "world_model.world_model=tiny"), "      - 8\n      - 16\n      - 32"),  # a pipeline's model section
])
def test_a_section_name_resolves_to_the_shipped_config(args, expected):
    result = run_cli(*args, "--show-config")
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr
    assert expected in result.stdout


@pytest.mark.parametrize("args, hint", [
    (("train-wm", "trainer=fast"), "trainer.max_steps="),
    (("train-policy", "policy=nosuch"), "bc, default, diffusion, tiny"),
    (("collect", "env=moon_landing"), "pick_place, push_cube"),
    (("train-policy", "policy=3"), "policy.type="),
    (("run", "world_model=tiny"), "world_model.world_model=tiny"),  # the pipeline's stage section, not the model
])
def test_a_value_where_a_section_is_expected_says_what_to_write(args, hint):
    assert_bad_input(run_cli(*args), "is a section", hint)


def test_help_lists_the_commands_config_keys_with_defaults():
    result = run_cli("collect", "--help")
    assert result.code == 0, result.stderr
    keys = result.stdout.split("config keys", 1)[1]
    assert " episodes " in keys and " 20 " in keys and "keep_failures" in keys
    assert "pick_place, push_cube" in keys  # env's shipped names


def test_config_names_resolve_in_an_installed_package_outside_the_clone(tmp_path):
    """configs/ ships in the wheel as robodream/configs: a name resolves with no checkout around."""
    import zipfile

    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    source = tmp_path / "source"
    for name in tracked.stdout.splitlines():
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO / name).read_bytes())
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    site = tmp_path / "site"
    zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).extractall(site)
    assert (site / "robodream" / "configs" / "policy" / "diffusion.yaml").is_file()
    env = {**cli_env(), "PYTHONPATH": str(site)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shown = subprocess.run([sys.executable, "-m", "robodream.pipeline.cli", "train-policy", "data=x.zarr",
                            "policy=diffusion", "--show-config"], capture_output=True, text=True, cwd=elsewhere,
                           env=env)
    assert shown.returncode == 0, shown.stderr
    assert "type: diffusion" in shown.stdout


# -- models remember their data: held-out episodes, eval folders, schedule warnings ------------------------------

TINY_WM = [f"world_model={REPO / 'configs' / 'world_model' / 'tiny.yaml'}", "world_model.context_frames=2",
           "trainer.batch_size=8", "trainer.progress_bar=false", "val_fraction=0.5"]


def _tiny_store(path: Path, lengths=(5, 7, 4, 6)) -> Path:
    from robodream.datasets.writer import create_store
    from tests.conftest import TINY_FEATURES, make_episode

    writer = create_store(path, fps=10, features=TINY_FEATURES, robot_type="test", task="tiny")
    for index, length in enumerate(lengths):
        writer.append_episode(make_episode(length, index), source="sim", success=True)
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_wm(tmp_path_factory):
    """A 3-step world model (trainer defaults: warmup_steps=100, val_every_steps=500) and its train-wm result."""
    root = tmp_path_factory.mktemp("wm")
    store = _tiny_store(root / "tiny.zarr")
    run = root / "run"
    result = run_cli("train-wm", f"data={store}", f"out={run}", "trainer.max_steps=3", *TINY_WM)
    assert result.code == 0, result.stderr
    return store, run, result


def _split(run: Path) -> dict:
    import json

    return json.loads((run / "training_data.json").read_text())["stores"][0]


def test_train_wm_warns_about_a_schedule_longer_than_the_run_and_prints_only_what_it_wrote(tiny_wm):
    _, run, result = tiny_wm
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("trainer.warmup_steps=100 >= trainer.max_steps=3" in line for line in warnings), result.stderr
    assert any("trainer.val_every_steps=500 > trainer.max_steps=3" in line for line in warnings), result.stderr
    assert not (run / "val").exists() and "val strips" not in result.stdout  # never written: never printed
    assert f"model      {run / 'model'}" in result.stdout


def test_train_wm_records_its_held_out_episodes_and_the_store(tiny_wm):
    store, run, _ = tiny_wm
    split = _split(run)
    assert sorted(split["train"] + split["held_out"]) == [0, 1, 2, 3] and len(split["held_out"]) == 2
    assert split["episodes"] == 4 and split["path"] == str(store) and len(split["fingerprint"]) == 16


def test_eval_wm_defaults_to_the_held_out_episodes_and_writes_under_eval_store(tiny_wm):
    import json

    store, run, _ = tiny_wm
    result = run_cli("eval-wm", f"ckpt={run}", f"data={store}", "horizon=2")
    assert result.code == 0, result.stderr
    assert "warning:" not in result.stderr
    metrics = json.loads((run / "eval" / "tiny" / "metrics.json").read_text())
    assert metrics["episodes"] == _split(run)["held_out"] and metrics["training_episodes"] == []
    assert not (run / "eval_wm").exists()  # the folder the pipeline's eval-wm stage writes


def test_training_episodes_asked_for_are_marked(tiny_wm, tmp_path):
    import json

    store, run, _ = tiny_wm
    train = _split(run)["train"]
    result = run_cli("eval-wm", f"ckpt={run}", f"data={store}", "episodes=all", "horizon=2", f"out={tmp_path}")
    assert result.code == 0, result.stderr
    assert "warning: eval-wm: episodes " + ", ".join(map(str, train)) in result.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["training_episodes"] == train
    shown = run_cli("dream", f"ckpt={run}", f"data={store}", "--episodes", "0-3", f"out={tmp_path}", "horizon=2")
    assert shown.code == 0, shown.stderr
    assert "warning: dream: episodes" in shown.stderr and "(train)" in shown.stderr


def test_a_pipeline_stage_output_is_never_overwritten(tiny_wm):
    """`robodream run` writes eval_wm/ and dream/ in the model's run folder: eval-wm by hand keeps off them."""
    import json

    store, run, _ = tiny_wm
    stage_dir = run / "eval_wm"
    stage_dir.mkdir(exist_ok=True)
    (stage_dir / "metrics.json").write_text('{"from": "the pipeline"}')
    (run / "eval-wm.stage.json").write_text(json.dumps({"status": "done", "outputs": [
        {"kind": "metrics", "path": str(stage_dir / "metrics.json"), "fingerprint": "x"}]}))
    before = tree_digest(stage_dir)
    try:
        assert run_cli("eval-wm", f"ckpt={run}", f"data={store}", "horizon=2").code == 0
        assert_bad_input(run_cli("eval-wm", f"ckpt={run}", f"data={store}", "horizon=2", f"out={stage_dir}"),
                         "robodream run")
        assert tree_digest(stage_dir) == before
    finally:
        (run / "eval-wm.stage.json").unlink()


def test_train_policy_records_its_data_and_warns_about_a_long_warmup(tiny_store, tmp_path):
    from tests.policies.conftest import train_args

    run = tmp_path / "policy"
    result = run_cli("train-policy", *train_args(tiny_store, run, "bc", 2), "trainer.warmup_steps=5")
    assert result.code == 0, result.stderr
    assert "warning: trainer.warmup_steps=5 >= trainer.max_steps=2" in result.stderr
    split = _split(run)
    assert split["train"] == [0, 1, 2] and split["held_out"] == [] and split["path"] == str(tiny_store)


# -- teleop with a display that points nowhere -------------------------------------------------------------------

def _unused_display() -> int:
    from robodream.pipeline.data.teleop_window import _x_server_answers

    return next(n for n in range(87, 200) if not _x_server_answers(f":{n}") and not _x_server_answers(f"127.0.0.1:{n}"))


@pytest.fixture
def silent_x_server():
    """Something listening where an X server would (127.0.0.1:6000+N) that hangs up at once: the socket answers,
    Qt cannot use it (as with a refused authorisation), and would abort the process."""
    import socket
    import threading

    number = _unused_display()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 6000 + number))
    server.listen()

    def hang_up():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    yield f"127.0.0.1:{number}"
    server.close()


@pytest.mark.parametrize("where", ["no server", "a server that hangs up"])
def test_teleop_with_a_display_that_points_nowhere_is_one_line_and_leaves_no_store(tmp_path, where, request):
    display = f":{_unused_display()}" if where == "no server" else request.getfixturevalue("silent_x_server")
    out = tmp_path / "teleop.zarr"
    env = {**cli_env(), "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    done = subprocess.run([sys.executable, "-m", "robodream.pipeline.cli", "teleop", "task=push_cube", f"out={out}"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    from tests.faults.conftest import CliResult

    assert_bad_input(CliResult(done.returncode, done.stdout, done.stderr), f"DISPLAY={display}")
    assert not out.exists()  # the retry is not blocked by an empty store
