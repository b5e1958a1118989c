"""What the benchmarks share: the sweep's epochs per budget, reading a budget, and adding rows to a committed
table."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from selfsup.evaluate import classification_metrics
from selfsup.io import atomic_path
from selfsup.report.data import merged

EPOCHS = {10: 60, 100: 40, 1000: 15}  # the label-efficiency sweep's fine-tuning epochs per budget (docs/results.md)


def parse_budget(text: str) -> int | str:
    """A labels-per-class budget as the command line gives it: an integer, or `all`."""
    return text if text == "all" else int(text)


def write_runs(path: Path, rows: list[dict], keys: list[str]) -> None:
    """Add a benchmark's rows to the table at `path` (earlier runs kept, a rerun of the same `keys` replaces its
    row), written atomically."""
    table = merged(path, pd.DataFrame(rows), keys)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6f")
    print(f"{len(rows)} runs written to {path} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")


def worst_class(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> tuple[float, str]:
    """The lowest recall of a class present among `labels` (a class the training starved), and its name."""
    per_class = classification_metrics(labels, logits.argmax(1).cpu(), classes)["per_class"]
    name = min((c for c in per_class if per_class[c]["support"]), key=lambda c: per_class[c]["accuracy"])
    return per_class[name]["accuracy"], name
