"""The report's data: where each table lives, how it is read, and the DVC experiments collected into the sweep
tables (metrics/comparison.tsv: the fine-tuned model of every experiment; metrics/distilled.tsv: the distilled ones,
beside their teachers)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from selfsup import SelfSupError
from selfsup.params import floor_lengthens, parse_params

RECIPE = Path("metrics/recipe.tsv")  # written by benchmarks/recipe.py
DISTILL_RECIPE = Path("metrics/distill_recipe.tsv")  # written by benchmarks/distill.py
PRETEXT_COMPUTE = Path("metrics/pretext_compute.tsv")  # written by benchmarks/pretext.py
SCHEDULE = Path("metrics/schedule.tsv")  # written by benchmarks/recipe.py --base defaults
TUNING = Path("metrics/tuning.tsv")  # written by benchmarks/recipe.py --base tuning
CONSISTENCY = Path("metrics/consistency.tsv")  # written by benchmarks/recipe.py --base consistency
BALANCE = Path("metrics/distill_balance.tsv")  # written by benchmarks/distill.py --out metrics/distill_balance.tsv
COMPARISON = Path("metrics/comparison.tsv")  # the fine-tuned model of every experiment
# the sweep's rows of the pretexts whose default views changed, fine-tuned from backbones pre-trained with the
# papers' views (rotation 4, exemplar 6), as collected before the change; comparison.tsv now holds the defaults'
REFERENCE_VIEWS = Path("metrics/comparison_reference_views.tsv")
DISTILLED = Path("metrics/distilled.tsv")  # the experiments whose delivered model was distilled, with their teacher's
DISTILLED_PLOT = Path("metrics/distillation.svg")
README = Path("README.md")  # the sweep's answer and the research tables
RESULTS_DOC = Path("docs/results.md")  # the committed run and the probes
PLOT = Path("metrics/label_efficiency.svg")
GAIN_PLOT = Path("metrics/label_gain.svg")  # the paired gains over `none`, with their intervals
SAVING_PLOT = Path("metrics/labels_saved.svg")  # the share of the labels each pretext saves, with its interval


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


def read_shown(root: Path, path: Path, read) -> tuple[pd.DataFrame, dict]:
    """(the rows of the sweep table `path` of the repository at `root` that the report may show, params.yaml):
    those of params.yaml's dataset run with their commit's recipe (no `variant`: another recipe's rows are kept in
    the file, never pooled with these)."""
    table = read_sweep(root, path, read)
    params = yaml.safe_load(read(root / "params.yaml")) or {}
    dataset = dataset_of(params)
    return table[(table.variant == "") & ((table.dataset == dataset) if dataset else True)], params


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


def finished_experiments(commit: dict) -> list[dict]:
    """The finished experiments of one commit of `dvc exp show --json` (queued and running ones carry their
    baseline's metrics files: only finished ones count)."""
    return [exp for exp in commit.get("experiments") or []
            if (exp.get("executor") or {}).get("state", "success") == "success"]


def effective_min_steps(finetune: dict, labelled: int | None) -> int:
    """finetune.min_steps where it lengthened the schedule of `labelled` images, else 0: a floor that the epochs
    alone exceed changes nothing (the same batches as without it), so such a run is the run without it
    (`floor_lengthens`); unknown `labelled` or batch size: the param."""
    min_steps, batch_size = finetune.get("min_steps", 0), finetune.get("batch_size")
    if not min_steps or labelled is None or batch_size is None:
        return min_steps
    return min_steps if floor_lengthens(labelled, batch_size, finetune["epochs"], min_steps) else 0


PER_CLASS = Path("metrics/evaluate/per_class.csv")  # the delivered model's recall per class, committed with each run


def weakest_class(per_class: pd.DataFrame | None) -> tuple[str | None, float]:
    """The class the model recognises least often, and its recall (NaN with no per-class table)."""
    if per_class is None or per_class.empty:
        return None, float("nan")
    weakest = per_class.loc[per_class.accuracy.idxmin()]
    return weakest["class"], float(weakest.accuracy)


RECIPE_FILES = ("params.yaml", "dvc.lock")  # the recipe the pages are drawn for, and the run metrics/ holds


def uncommitted(root: Path) -> list[str]:
    """Which of params.yaml and dvc.lock differ from the last commit of the git repository at `root` (none outside
    one)."""
    try:
        proc = subprocess.run(["git", "status", "--porcelain", "--", *RECIPE_FILES], cwd=root, capture_output=True,
                              text=True)
    except OSError:  # no git
        return []
    return sorted(line[3:].strip() for line in proc.stdout.splitlines()) if proc.returncode == 0 else []


def git_reader(root: Path, path: Path, parse):
    """A reader of the file `path` as committed with a revision (an experiment's commit) of the repository at
    `root`, parsed from its text by `parse`: None where that revision has none."""
    def read(rev: str):
        proc = subprocess.run(["git", "show", f"{rev}:{path.as_posix()}"], cwd=root, capture_output=True, text=True)
        return parse(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None

    return read


def git_per_class(root: Path):
    """A reader of the per-class table committed with a revision of the repository at `root` (`git_reader`)."""
    return git_reader(root, PER_CLASS, lambda text: pd.read_csv(io.StringIO(text)))


def git_lock(root: Path):
    """A reader of the dvc.lock committed with a revision of the repository at `root` (`git_reader`)."""
    return git_reader(root, Path("dvc.lock"), yaml.safe_load)


def same_value(a, b) -> bool:
    """Whether a param's value in dvc.lock and in params.yaml agree (a float may be written either way: 1e-05)."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def stale_stages(lock: dict | None, params: dict) -> list[str]:
    """The stages of `lock` (a revision's dvc.lock) that record a param other than `params` (its params.yaml) holds:
    their outputs were made with other settings. `dvc exp run -S ... <stage>` runs up to <stage> only and leaves
    the later stages' metrics from the run before."""
    mine = flat(params)
    return [stage for stage, entry in ((lock or {}).get("stages") or {}).items()
            if any(not same_value(value, mine.get(key))
                   for key, value in flat(((entry or {}).get("params") or {}).get("params.yaml") or {}).items())]


def remade_stages(lock: dict | None, base: dict | None) -> list[str]:
    """The stages that `lock` (an experiment's dvc.lock) records with the command, params and inputs `base` (its
    commit's) records for them, but with other outputs: remade where the commit's were not at hand, on a machine,
    precision or thread count whose float results differ (a backbone pre-trained anew is another pre-training)."""
    def hashes(entry: dict, key: str) -> dict:
        return {item.get("path"): item.get("md5") for item in entry.get(key) or []}

    theirs = (base or {}).get("stages") or {}
    return [stage for stage, entry in ((lock or {}).get("stages") or {}).items()
            if stage in theirs and entry.get("cmd") == theirs[stage].get("cmd")
            and (entry.get("params") or {}) == (theirs[stage].get("params") or {})
            and hashes(entry, "deps") == hashes(theirs[stage], "deps")
            and hashes(entry, "outs") != hashes(theirs[stage], "outs")]


# the params a sweep varies, each a column of its rows (distill's: DISTILL_KEYS and the distilled table), and those
# that change no fine-tuned model: a difference from the commit's params elsewhere is the row's `variant`
SWEPT = ("pretext", "pretexts", "data.dataset", "finetune.protocol", "finetune.labels_per_class", "finetune.epochs",
         "finetune.min_steps", "finetune.seed", "distill.", "export.")


def flat(params: dict, prefix: str = "") -> dict:
    """Nested params as {"finetune.lr": 0.01, ...} (lists are values)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def variant(params: dict, base: dict) -> str:
    """How an experiment's params differ from its commit's, outside what a sweep varies (SWEPT): e.g.
    "finetune.unlabelled=consistency"; empty for the commit's own recipe."""
    mine, theirs = flat(params), flat(base)
    swept = (lambda k: any(k == s or (s.endswith(".") and k.startswith(s)) for s in SWEPT))
    changed = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k) and not swept(k))
    return ",".join(f"{k}={mine[k] if isinstance(mine.get(k), str) else json.dumps(mine.get(k))}" for k in changed)


def experiment_rows(show: list, per_class=lambda rev: None, lock=lambda rev: None,
                    stale=lambda name, stages: None, remade=lambda name, stages: None) -> pd.DataFrame:
    """One row per commit or finished experiment of `dvc exp show --json` that has evaluate metrics and ran on its
    commit's data (not a quick look at a fraction of it: preprocess.fraction other than the commit's), with its
    `variant` of the commit's recipe and the delivered model's weakest class (`per_class` maps a revision to its
    per-class table, e.g. `git_per_class`). One whose dvc.lock (`lock` maps a revision to it, e.g. `git_lock`)
    records other params than its params.yaml (`stale_stages`) has no row: `stale(name, stages)` is told instead;
    nor has an experiment that remade a stage of its commit with other results (`remade_stages`): `remade(name,
    stages)` is told."""
    def all_params(entry: dict) -> dict:
        return ((entry.get("data") or {}).get("params", {}).get("params.yaml", {}).get("data")) or {}

    def fraction(entry: dict):
        return all_params(entry).get("preprocess", {}).get("fraction", 1.0)

    rows = []
    for commit in show:
        entries = [commit] + [rev for exp in finished_experiments(commit) for rev in exp.get("revs", [])]
        for entry in entries:
            data = entry.get("data") or {}
            params = data.get("params", {}).get("params.yaml", {}).get("data")
            metrics = data.get("metrics", {}).get("metrics/evaluate/metrics.json", {}).get("data")
            if entry.get("rev") == "workspace" or not params or not metrics:
                continue
            if fraction(entry) != fraction(commit):  # a quick look at a part of its commit's data
                continue
            name = entry.get("name") or entry["rev"][:7]
            stages = stale_stages(lock(entry["rev"]), params)
            if stages:  # its metrics are not (all) its own params'
                stale(name if entry is not commit else f"{name}, the commit itself", stages)
                continue
            stages = [] if entry is commit else remade_stages(lock(entry["rev"]), lock(commit["rev"]))
            if stages:  # e.g. its backbone pre-trained anew: not the commit's, which its other rows share
                remade(name, stages)
                continue
            ft, distill = params["finetune"], params.get("distill") or {}
            summary = data.get("metrics", {}).get("metrics/finetune/metrics.json", {}).get("data") or {}
            finetuned = metrics.get("finetuned", metrics["test"])  # before distillation (the same model when off)
            worst_class, worst_recall = weakest_class(per_class(entry["rev"]))
            rows.append({
                "experiment": name, "timestamp": data.get("timestamp"),
                "commit": commit["rev"][:7], "dataset": params["data"]["dataset"], "pretext": params["pretext"],
                "protocol": ft["protocol"], "labels_per_class": str(ft["labels_per_class"]), "epochs": ft["epochs"],
                "min_steps": effective_min_steps(ft, summary.get("labelled_images")), "seed": ft["seed"],
                "variant": variant(params, all_params(commit)),
                "distilled": bool(metrics.get("distilled", False)),
                "distill_epochs": distill.get("epochs"), "distill_init": distill.get("init"),
                "distill_threshold": distill.get("threshold"), "distill_per_class": distill.get("per_class", 0),
                "distill_rounds": distill.get("rounds", 1),
                "test_accuracy": metrics["test"]["accuracy"], "macro_f1": metrics["test"]["macro_f1"],
                "finetuned_accuracy": finetuned["accuracy"], "finetuned_macro_f1": finetuned["macro_f1"],
                "worst_class": worst_class, "worst_recall": worst_recall,
            })
    table = pd.DataFrame(rows, columns=["experiment", "timestamp", "commit", *EXPERIMENT_KEYS, *DISTILL_KEYS,
                                        "test_accuracy", "macro_f1", "finetuned_accuracy", "finetuned_macro_f1",
                                        *WORST])
    # the same settings run twice (a commit and its experiment): keep the newest
    return (table.sort_values("timestamp").drop_duplicates([*EXPERIMENT_KEYS, *DISTILL_KEYS], keep="last")
            .drop(columns="timestamp"))


EXPERIMENT_KEYS = ["dataset", "pretext", "protocol", "labels_per_class", "epochs", "min_steps", "seed", "variant"]
WORST = ["worst_class", "worst_recall"]  # the delivered model's weakest class and its recall
DISTILL_KEYS = ["distilled", "distill_epochs", "distill_init", "distill_threshold", "distill_per_class", "distill_rounds"]


def sweep_tables(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(comparison, distilled) of experiment_rows: the fine-tuned model of every experiment (a distilled one's
    teacher), and the distilled experiments with their teacher's accuracy beside the student's. The weakest class
    is the delivered model's: in the comparison where fine-tuning's model was delivered, else the student's."""
    finetuned = rows.assign(test_accuracy=rows.finetuned_accuracy, macro_f1=rows.finetuned_macro_f1)
    finetuned.loc[finetuned.distilled, WORST] = None  # the student's, not this model's
    comparison = finetuned[["experiment", "commit", *EXPERIMENT_KEYS, "test_accuracy", "macro_f1", *WORST]]
    comparison = comparison.drop_duplicates(EXPERIMENT_KEYS, keep="last")
    distilled = rows[rows.distilled].drop(columns=["distilled", "finetuned_macro_f1"])
    return comparison, distilled


def merged(path: Path, new: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The table at `path` with `new`'s rows added; a row of the same `keys` is replaced by the new one."""
    if not path.is_file():
        return new
    budget = {"labels_per_class": str} if "labels_per_class" in new else {}
    old = pd.read_csv(path, sep="\t", dtype=TEXT)
    if "min_steps" in new:  # a sweep table: the columns recorded since its rows were collected
        old = with_old_columns(old)
    return pd.concat([old, new.astype(budget)]).drop_duplicates(keys, keep="last")


def collect(root: Path, rev: str, replace: bool) -> dict[Path, str]:
    """The sweep tables (COMPARISON, DISTILLED) with the finished DVC experiments of `rev` in them, as text: added to
    the tables as committed (a row of the same settings replaced, every other row kept), or (`replace`) instead of
    them. A SelfSupError when there is nothing to collect."""
    try:
        proc = subprocess.run(["dvc", "exp", "show", "--json", "--rev", rev], check=True, capture_output=True,
                              text=True, cwd=root)
    except (OSError, subprocess.CalledProcessError) as err:
        why = (getattr(err, "stderr", None) or str(err)).strip().splitlines()
        raise SelfSupError(f"`dvc exp show --rev {rev}` failed ({why[-1] if why else err}); run this in the "
                           "project's git repository, with the revision the experiments were queued from") from None
    show = json.loads(proc.stdout)
    if not any(finished_experiments(commit) for commit in show):
        raise SelfSupError(
            f"no finished DVC experiments of {rev} to collect, so nothing was written. Experiments live in the "
            "repository that ran them (a fresh clone has none; `dvc exp pull <remote>` fetches shared ones) and "
            "belong to the commit they were queued from: after a later commit, pass --rev <that commit>")
    left_out, remade = [], []
    rows = experiment_rows(show, git_per_class(root), git_lock(root),
                           lambda name, stages: left_out.append(f"{name} ({', '.join(stages)})"),
                           lambda name, stages: remade.append(f"{name} ({', '.join(stages)})"))
    if left_out:
        one = len(left_out) == 1
        print(f"left out {len(left_out)} run{'' if one else 's'} whose dvc.lock records params other than "
              f"{'its' if one else 'their'} params.yaml's for the stages named, so {'its' if one else 'their'} "
              f"metrics were not (all) made with {'its' if one else 'their'} settings: {'; '.join(left_out)}. A "
              f"`dvc exp run` given a stage runs up to that stage only; run {'it' if one else 'them'} again without "
              f"one to collect {'it' if one else 'them'} (a commit itself: `dvc repro` there, and commit dvc.lock)",
              file=sys.stderr)
    if remade:
        one = len(remade) == 1
        print(f"left out {len(remade)} run{'' if one else 's'} that remade stages of {'its' if one else 'their'} "
              f"commit with its params and inputs and got other outputs (made on a machine, precision or thread count "
              f"whose float results differ: a backbone pre-trained anew is another pre-training than the one the "
              f"other rows share): {'; '.join(remade)}. Fetch the commit's outputs before running (`dvc pull`, from "
              f"the remote the machine that made them pushed to), or rerun on that machine",
              file=sys.stderr)
    comparison, distilled = sweep_tables(rows)
    if not replace:  # earlier commits' rows stay; a rerun of the same settings replaces its row
        comparison = merged(root / COMPARISON, comparison, EXPERIMENT_KEYS)
    tables = {root / COMPARISON: comparison.to_csv(sep="\t", index=False, float_format="%.6f")}
    if len(distilled) or replace:  # no distilled experiment collected: the table stays as it is, unless replaced
        if not replace:
            distilled = merged(root / DISTILLED, distilled, [*EXPERIMENT_KEYS, *DISTILL_KEYS[1:]])
        tables[root / DISTILLED] = distilled.to_csv(sep="\t", index=False, float_format="%.6f")
    return tables
