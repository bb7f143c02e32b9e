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

from tests.faults.conftest import REPO, assert_bad_input, cli_env, run_cli

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
