"""The fault battery: every README command against bad input, kills and honest-looking garbage.

    python benchmarks/faults.py                      # this checkout
    python benchmarks/faults.py --against 8485110    # the same cases against an older commit's code

Runs the cases in tests/faults/ (each one runs the real CLI in a subprocess: exit status 2 with one `error:`
line for bad input and no traceback, unrelated folders untouched, killed commands leaving the old state or the
new one) and prints, per area and in all, "N passed, M failed", with the failing cases named. With `--against REF`
the same cases run against the code (src/) of git commit REF, which is how docs/benchmarks.md ("Reliability")
shows what the battery caught before the fixes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def export_sources(ref: str, into: Path) -> Path:
    """Write the src/ tree of git commit `ref` into `into` and return its src folder."""
    archive = into / "src.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), ref, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run_battery(src: Path, report: Path, extra: list[str]) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(REPO)])
    env["ROBODREAM_FAULTS_SRC"] = str(src)  # tests/faults/conftest.py runs the CLI from these sources
    subprocess.run([sys.executable, "-m", "pytest", "tests/faults", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report}", "--continue-on-collection-errors", *extra], cwd=REPO, env=env, check=False)


def outcomes(report: Path) -> list[tuple[str, str, str]]:
    """(area, case, outcome) per test case of a JUnit report; outcome is passed / failed / skipped."""
    rows = []
    for case in ET.parse(report).getroot().iter("testcase"):
        area = case.get("classname", "").rsplit(".", 1)[-1].removeprefix("test_")
        outcome = "passed"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        rows.append((area, case.get("name", ""), outcome))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REF", help="run the cases against the src/ of this git commit")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (e.g. -k merge)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="robodream-faults-") as tmp:
        src = export_sources(args.against, Path(tmp)) if args.against else REPO / "src"
        report = Path(tmp) / "faults.xml"
        run_battery(src, report, args.pytest_args)
        rows = outcomes(report)
    label = f"commit {args.against}" if args.against else "this checkout"
    print(f"\nfault battery on {label}:")
    for area in sorted({area for area, _, _ in rows}):
        counts = Counter(outcome for a, _, outcome in rows if a == area)
        print(f"  {area:<12} {counts['passed']} passed, {counts['failed']} failed"
              + (f", {counts['skipped']} skipped" if counts["skipped"] else ""))
    for area, name, outcome in rows:
        if outcome == "failed":
            print(f"  failed: {area}: {name}")
    counts = Counter(outcome for _, _, outcome in rows)
    print(f"{counts['passed']} passed, {counts['failed']} failed"
          + (f", {counts['skipped']} skipped" if counts["skipped"] else ""))
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
