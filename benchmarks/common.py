"""What the benchmarks share: the sweep's epochs per budget, reading a budget, and adding rows to a committed
table."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from selfsup import SelfSupError
from selfsup.evaluate import classification_metrics
from selfsup.io import atomic_path
from selfsup.report.data import merged
from selfsup.report.experiments import uncommitted

EPOCHS = {10: 60, 100: 40, 1000: 15}  # the label-efficiency sweep's fine-tuning epochs per budget (docs/results.md)


def parse_budget(text: str) -> int | str:
    """A labels-per-class budget as the command line gives it: an integer, or `all`."""
    return text if text == "all" else int(text)


def check_committed_data(params, out: Path, data: Path, backbones: dict[str, Path] | None = None) -> None:
    """A SelfSupError where the rows would go to a committed table (under metrics/: Fashion-MNIST's, whole, of the
    committed run) but would be measured on something else: another dataset (its rows would sit among
    Fashion-MNIST's, replacing those of the same settings), a subsample (preprocess.fraction below 1: a quick look),
    a recipe other than the committed one (params.yaml or dvc.lock edited), or prepared data (`data`) or backbones
    (`backbones`: pretext -> backbone.pt) other than the outputs dvc.lock records (e.g. pre-trained anew on another
    kind of machine: another pre-training than the committed rows')."""
    if not out.resolve().is_relative_to(Path("metrics").resolve()):
        return
    dataset, fraction = params.data.dataset, params.preprocess.fraction
    if dataset != "fashion_mnist":
        raise SelfSupError(
            f"the tables under metrics/ hold Fashion-MNIST's numbers, and params.yaml's data.dataset is {dataset}: "
            f"its rows would sit among them in {out}; give --out a table outside metrics/ (e.g. my-{out.name}). "
            "Nothing was run")
    if fraction < 1:
        raise SelfSupError(
            f"params.yaml's preprocess.fraction is {fraction:g}, a quick look at {100 * fraction:g}% of the data, "
            f"whose numbers would replace the whole data's in {out}; give --out a table outside metrics/, or set "
            "preprocess.fraction: 1 and rerun `dvc repro preprocess`. Nothing was run")
    if not Path("dvc.lock").is_file():  # not the project's root: no committed table here
        return
    elsewhere = "give --out a table outside metrics/ (e.g. my-{})".format(out.name)
    dirty = uncommitted(Path.cwd())
    if dirty:
        raise SelfSupError(
            f"{' and '.join(dirty)} differ{'s' * (len(dirty) == 1)} from the last commit: rows measured with this "
            f"workspace's recipe would replace the committed run's in {out}; commit them, restore them (git checkout "
            f"HEAD -- {' '.join(dirty)}), or {elsewhere}. Nothing was run")
    inputs = {"preprocess": (Path(data), Path("data/prepared"))}
    inputs.update({f"pretrain@{p}": (Path(path), Path("models/pretrain") / p / "backbone.pt")
                   for p, path in (backbones or {}).items()})
    other = [f"{given} (not {recorded})" for given, recorded in inputs.values() if given.resolve() != recorded.resolve()]
    if other:
        raise SelfSupError(f"the committed tables are measured on the pipeline's own outputs, and this run reads "
                           f"{', '.join(other)}; {elsewhere}, or leave --data and --backbones as they are. Nothing "
                           "was run")
    changed = changed_outputs(list(inputs))
    if changed:
        raise SelfSupError(
            f"{', '.join(changed)} differ{'s' * (len(changed) == 1)} from what dvc.lock records (made with other "
            f"settings, or on a machine, precision or thread count whose float results differ: a backbone pre-trained "
            f"anew is another pre-training than the committed rows'): its rows would replace the committed run's in "
            f"{out}; `dvc checkout` (or `dvc pull`) brings back the recorded outputs, or {elsewhere}. Nothing was run")


def changed_outputs(stages: list[str]) -> list[str]:
    """The outputs of `stages` (of the DVC project in the working folder) that differ from what dvc.lock records,
    or are missing: `dvc status`'s changed outs, with the stage's deps left aside. A SelfSupError for a stage
    dvc.yaml lacks."""
    from dvc.repo import Repo

    with Repo() as repo:
        unknown = sorted(set(stages) - {stage.addressing for stage in repo.index.stages})
        if unknown:
            raise SelfSupError(f"dvc.yaml has no stage {', '.join(unknown)}, so what this run reads is no output of "
                               "the committed run; give a pretext of params.yaml's `pretexts`, or --out a table "
                               "outside metrics/. Nothing was run")
        status = repo.status(targets=stages)
    return sorted({path for entries in status.values() for entry in entries if isinstance(entry, dict)
                   for path in entry.get("changed outs") or {}})


def lost_cells(path: Path, rows: list[dict], keys: list[str]) -> list[str]:
    """The committed cells of the table at `path` that `rows` would empty: "<key values>: <column>" for each column
    in which a row of the same `keys` holds a value and the new row none (e.g. a rerun at fewer budgets)."""
    if not path.is_file():
        return []
    old = pd.read_csv(path, sep="\t", dtype=str)
    if not set(keys) <= set(old.columns):
        return []
    lost = []
    for row in rows:
        same = old[(old[keys] == [str(row[k]) for k in keys]).all(axis=1)]
        for _, committed in same.iterrows():
            lost += [f"{', '.join(str(row[k]) for k in keys)}: {column}" for column in old.columns
                     if column not in keys and pd.notna(committed[column]) and pd.isna(row.get(column))]
    return lost


def refuse_lost_cells(path: Path, rows: list[dict], keys: list[str]) -> None:
    """A SelfSupError where `rows` would empty committed cells of the table at `path` (`lost_cells`)."""
    lost = lost_cells(path, rows, keys)
    if lost:
        raise SelfSupError(
            f"{path} holds values these runs would replace with nothing ({'; '.join(lost[:4])}"
            f"{f'; and {len(lost) - 4} more' if len(lost) > 4 else ''}), so nothing was written to it: measure them "
            "as well (e.g. every budget the table holds), or write to another table with --out")


def write_runs(path: Path, rows: list[dict], keys: list[str]) -> None:
    """Add a benchmark's rows to the table at `path` (earlier runs kept, a rerun of the same `keys` replaces its
    row), written atomically; never a committed cell replaced by nothing (`refuse_lost_cells`)."""
    refuse_lost_cells(path, rows, keys)
    table = merged(path, pd.DataFrame(rows), keys)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6f")
    print(f"{len(rows)} runs written to {path} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")


def worst_class(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> tuple[float, str]:
    """The lowest recall of a class present among `labels` (a class the training starved), and its name."""
    per_class = classification_metrics(labels, logits.argmax(1).cpu(), classes)["per_class"]
    name = min((c for c in per_class if per_class[c]["support"]), key=lambda c: per_class[c]["accuracy"])
    return per_class[name]["accuracy"], name
