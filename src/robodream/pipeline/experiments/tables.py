"""Result tables of the experiments as CSV and Markdown (plain files any spreadsheet or docs page reads)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_csv(rows: Sequence[dict[str, Any]], path: Path, columns: Sequence[str]) -> Path:
    """`rows` as CSV with a header of `columns` (missing values are left empty)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of `rows` (cells already formatted as strings or numbers)."""
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only: experiments run on headless machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def model_weights(path: str) -> str:
    """What an experiment fingerprints for a model: the exported weights (<run>/model) of a training run, not the
    whole run (its Lightning checkpoints are large); a model directory as given."""
    return str(Path(path) / "model") if (Path(path) / "model" / "config.json").is_file() else path
