"""The fault battery (issue "Nothing lost"): every README command against bad input, kills and honest-looking
garbage. Each test runs the real CLI in a subprocess, as a user would, and checks what a user relies on: exit
status 2 and one `error:` line for bad input (never a traceback), unrelated folders untouched, a killed command
leaving either the old state or the new one. benchmarks/faults.py runs this folder and prints "N passed, M failed".
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: this checkout's sources first, one thread, no display."""
    env = dict(os.environ)
    # benchmarks/faults.py --against REF points ROBODREAM_FAULTS_SRC at an older commit's sources
    src = os.environ.get("ROBODREAM_FAULTS_SRC", str(REPO / "src"))
    env["PYTHONPATH"] = os.pathsep.join([src, str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("DISPLAY", None)
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> CliResult:
    """Run `robodream <args>` in a subprocess and return its exit status and output."""
    done = subprocess.run([sys.executable, "-m", "robodream.pipeline.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=cli_env(), timeout=timeout)
    return CliResult(done.returncode, done.stdout, done.stderr)


def assert_bad_input(result: CliResult, *fragments: str) -> None:
    """Bad input: exit status 2, exactly one `error:` line (naming each of `fragments`), no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == 2, (result.code, result.stderr)
    assert len(result.error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.error_lines[0], (fragment, result.error_lines[0])


def tree_digest(folder: Path) -> str:
    """A digest of every file's relative path and bytes under `folder`: equal digests = folder untouched."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def unrelated_folder(tmp_path) -> Path:
    """A folder of a user's own files that no robodream command may delete, empty or write into."""
    folder = tmp_path / "my_files"
    (folder / "notes").mkdir(parents=True)
    (folder / "thesis.tex").write_text("months of work\n")
    (folder / "notes" / "todo.txt").write_text("back up the thesis\n")
    return folder
