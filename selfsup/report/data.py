"""The report's data: where each table lives and how it is read, and how rows are added to one (the DVC
experiments collected into the sweep tables: report.experiments)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pandas as pd
import yaml

from selfsup.params import parse_params

RECIPE = Path("metrics/recipe.tsv")  # written by benchmarks/recipe.py
DISTILL_RECIPE = Path("metrics/distill_recipe.tsv")  # written by benchmarks/distill.py
PRETEXT_COMPUTE = Path("metrics/pretext_compute.tsv")  # written by benchmarks/pretext.py
SCHEDULE = Path("metrics/schedule.tsv")  # written by benchmarks/recipe.py --base defaults
TUNING = Path("metrics/tuning.tsv")  # written by benchmarks/recipe.py --base tuning
CONSISTENCY = Path("metrics/consistency.tsv")  # written by benchmarks/recipe.py --base consistency
BALANCE = Path("metrics/distill_balance.tsv")  # written by benchmarks/distill.py --out metrics/distill_balance.tsv
COMPARISON = Path("metrics/comparison.tsv")  # the fine-tuned model of every experiment
# the sweep's rows of the pretexts whose default views changed, fine-tuned from backbones pre-trained with the
# papers' views (rotation 4, exemplar 6) or an earlier default's (exemplar 2), as collected before the change (a
# `views` column); comparison.tsv now holds the defaults', and those of experiments queued with other views
# (`-S pretrain.<pretext>.views=N`, their variant), the views table too
REFERENCE_VIEWS = Path("metrics/comparison_reference_views.tsv")
DISTILLED = Path("metrics/distilled.tsv")  # the experiments whose delivered model was distilled, with their teacher's
DISTILLED_PLOT = Path("metrics/distillation.svg")
README = Path("README.md")  # the sweep's answer and the research tables
RESULTS_DOC = Path("docs/results.md")  # the committed run and the probes
PLOT = Path("metrics/label_efficiency.svg")
GAIN_PLOT = Path("metrics/label_gain.svg")  # the paired gains over `none`, with their intervals
SAVING_PLOT = Path("metrics/labels_saved.svg")  # the share of the labels each pretext saves, with its interval
# the columns of the sweep tables' rows (report.experiments)
EXPERIMENT_KEYS = ["dataset", "pretext", "protocol", "labels_per_class", "epochs", "min_steps", "seed", "variant"]
WORST = ["worst_class", "worst_recall"]  # the delivered model's weakest class and its recall
DISTILL_KEYS = ["distilled", "distill_epochs", "distill_init", "distill_threshold", "distill_per_class", "distill_rounds"]
PER_CLASS = Path("metrics/evaluate/per_class.csv")  # the delivered model's recall per class, committed with each run


def link(path: Path, page: Path) -> str:
    """A Markdown link to `path` (from the repository's root) as written on `page`."""
    return Path(os.path.relpath(path, page.parent)).as_posix()


def pretexts(root: Path, read) -> list[str]:
    """params.yaml's `pretexts`, in its order (the order of every table's rows)."""
    return yaml.safe_load(read(root / "params.yaml"))["pretexts"]


def with_old_columns(table: pd.DataFrame) -> pd.DataFrame:
    """A sweep table with the columns added since its rows were collected: min_steps (before finetune.min_steps, 0)
    and variant (before it was recorded, the commit's own recipe: empty)."""
    if "min_steps" not in table:
        table.insert(list(table.columns).index("epochs") + 1, "min_steps", 0)
    if "variant" not in table:
        table.insert(list(table.columns).index("seed") + 1, "variant", "")
    table["variant"] = table["variant"].fillna("")
    return table


# Columns read as text: "all" among integers; a commit or experiment name of digits alone ("0440123") as it is
TEXT = {"labels_per_class": str, "variant": str, "experiment": str, "commit": str}


def read_sweep(root: Path, path: Path, read=lambda p: p.read_text()) -> pd.DataFrame:
    """A sweep table (COMPARISON, DISTILLED, REFERENCE_VIEWS) of the repository at `root`; `read` maps a path to
    its text. Rows from before a column was recorded get its old value (`with_old_columns`)."""
    return with_old_columns(read_table(root, path, read, dtype=TEXT))


def on_schedule(table: pd.DataFrame, min_steps: int) -> pd.DataFrame:
    """The rows the answer shows, one fine-tuning schedule per budget: those fine-tuned with at least `min_steps`
    optimizer steps (params.yaml's schedule) where the budget has any, else the budget's rows as they are; of these,
    where a budget ran more than one schedule (epochs, min_steps), the one `most_run` keeps (the one that ran `none`
    and the most pretexts, then the most runs). Never two schedules in one budget's mean or pair (the comparison
    table names each budget's schedule)."""
    ran = set(table[table.min_steps == min_steps].labels_per_class)
    return most_run(table[(table.min_steps == min_steps) | ~table.labels_per_class.isin(ran)], ["epochs", "min_steps"])


def most_run(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The rows of one setting (the values of `keys`) per budget: where a budget ran more than one, the one that
    ran `none` and the most pretexts, then the most runs (of equal counts, the larger values)."""
    groups = table.groupby(["labels_per_class", *keys], dropna=False)
    runs = groups.pretext.agg(runs="size", pretexts="nunique",
                              none=lambda p: (p == "none").any()).reset_index()
    chosen = runs.sort_values(["none", "pretexts", "runs", *keys]).drop_duplicates("labels_per_class", keep="last")
    chosen = chosen.drop(columns=["runs", "pretexts", "none"])
    return table.merge(chosen, on=["labels_per_class", *keys])[table.columns]


def read_table(root: Path, path: Path, read=lambda p: p.read_text(), dtype: dict | None = None,
               sep: str = "\t") -> pd.DataFrame:
    """A committed TSV table (a benchmark's, or a sweep's through `read_sweep`; with `sep` ",", a CSV one) of the
    repository at `root`."""
    return pd.read_csv(io.StringIO(read(root / path)), sep=sep, dtype=dtype)


FASHION_MNIST_TRAIN_PER_CLASS = 6000  # Fashion-MNIST's official training set: 60,000 images, 6,000 of each class


def all_labels_per_class(root: Path, read) -> int | None:
    """The labelled images per class that `finetune.labels_per_class: all` fine-tunes on in the sweep's rows of
    the dataset of params.yaml (of the repository at `root`), where every class has as many: Fashion-MNIST's 6,000
    training images less the preprocess.val_fraction held out as val (rounded as `stratified_split` rounds). None
    for another dataset, or a subsample (preprocess.fraction below 1)."""
    parsed = parse_params(yaml.safe_load(read(root / "params.yaml")))
    if parsed.data.dataset != "fashion_mnist" or parsed.preprocess.fraction < 1:
        return None
    val = max(1, round(parsed.preprocess.val_fraction * FASHION_MNIST_TRAIN_PER_CLASS))
    return FASHION_MNIST_TRAIN_PER_CLASS - val


def read_dataset(root: Path, path: Path, read) -> tuple[pd.DataFrame, dict]:
    """(the rows of the sweep table `path` of the repository at `root` of params.yaml's dataset, every recipe,
    params.yaml)."""
    table = read_sweep(root, path, read)
    params = yaml.safe_load(read(root / "params.yaml")) or {}
    dataset = dataset_of(params)
    return (table[table.dataset == dataset] if dataset else table), params


def read_shown(root: Path, path: Path, read) -> tuple[pd.DataFrame, dict]:
    """(the rows of the sweep table `path` of the repository at `root` that the report may show, params.yaml):
    those of params.yaml's dataset run with their commit's recipe (no `variant`: another recipe's rows are kept in
    the file, never pooled with these)."""
    table, params = read_dataset(root, path, read)
    return table[table.variant == ""], params


def dataset_of(params: dict) -> str | None:
    """params.yaml's data.dataset (None where it names none)."""
    return (params.get("data") or {}).get("dataset")


def no_rows(root: Path, path: Path, read) -> str:
    """A block's text where the sweep table at `path` holds no row of params.yaml's dataset (and commit's recipe)."""
    dataset = dataset_of(yaml.safe_load(read(root / "params.yaml")) or {})
    text = (f"No rows of `{dataset}` with this recipe in `{path.as_posix()}` yet: run the sweep (docs/results.md, "
            "The label-efficiency sweep), then `python -m selfsup.report --experiments`.")
    table = read_sweep(root, path, read)
    others = table[(table.dataset == dataset) & (table.variant != "")] if dataset else table[:0]
    if len(others):  # e.g. a folder swept with `-S data.folder.root=...` from a commit whose params.yaml has none
        text += (f" It holds {len(others)} row{'s' * (len(others) > 1)} of `{dataset}` run with settings other than "
                 f"this commit's params.yaml (first: `{others.variant.iloc[0]}`), never shown with its recipe: "
                 "commit those settings in params.yaml before queuing the sweep (docs/data.md, The answer on your "
                 "images).")
    return text


def read_comparison(root: Path, read=lambda p: p.read_text(), every: bool = False) -> pd.DataFrame:
    """metrics/comparison.tsv of the repository at `root`: the rows `read_shown` keeps, of params.yaml's schedule
    (`on_schedule`), or (`every`) of every schedule."""
    table, params = read_shown(root, COMPARISON, read)
    if every:
        return table
    return on_schedule(table, (params.get("finetune") or {}).get("min_steps", 0))


def read_distilled(root: Path, read=lambda p: p.read_text()) -> pd.DataFrame:
    """metrics/distilled.tsv of the repository at `root`: the rows `read_shown` keeps, one protocol, teachers'
    schedule and distillation setting per budget (`most_run`), never two pooled in a mean."""
    return most_run(read_shown(root, DISTILLED, read)[0], ["protocol", "epochs", "min_steps", *DISTILL_KEYS[1:]])


def read_probes(root: Path, read=lambda p: p.read_text()) -> dict[str, dict]:
    """Each pretext's probe detail (metrics/probe/<pretext>/detail.json)."""
    return {p: json.loads(read(root / f"metrics/probe/{p}/detail.json")) for p in pretexts(root, read)}




def merged(path: Path, new: pd.DataFrame, keys: list[str], carry: list[str] = (), same: list[str] = ()
           ) -> pd.DataFrame:
    """The table at `path` with `new`'s rows added; a row of the same `keys` is replaced by the new one. A new row
    with no value in the `carry` columns keeps those of the row it replaces where both record the same `same`
    columns (to the table's 6 decimals): the same model collected again, e.g. a distilled experiment's fine-tuned
    model that DVC's run cache gave back from a run whose evaluate recorded the student's per-class table alone."""
    if not path.is_file():
        return new
    budget = {"labels_per_class": str} if "labels_per_class" in new else {}
    old = pd.read_csv(path, sep="\t", dtype=TEXT)
    if "min_steps" in new:  # a sweep table: the columns recorded since its rows were collected
        old = with_old_columns(old)
    new = new.astype(budget)
    if carry and set(carry) <= set(old):
        new = carried_over(old, new, keys, list(carry), list(same))
    return pd.concat([old, new]).drop_duplicates(keys, keep="last")


def carried_over(old: pd.DataFrame, new: pd.DataFrame, keys: list[str], carry: list[str], same: list[str]
                 ) -> pd.DataFrame:
    """`new` with the `carry` values of `old`'s row of the same `keys` where `new` has none and both rows record the
    same `same` values (`merged`)."""
    def scores(row):
        return tuple(round(float(row[column]), 6) for column in same)

    known = {tuple(row[keys]): row for _, row in old.dropna(subset=carry).iterrows()}
    new = new.copy()
    for index, row in new.iterrows():
        committed = known.get(tuple(row[keys]))
        if row[carry].isna().all() and committed is not None and scores(row) == scores(committed):
            new.loc[index, carry] = committed[carry].tolist()
    return new
