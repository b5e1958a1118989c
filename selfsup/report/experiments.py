"""The DVC experiments collected into the sweep tables (metrics/comparison.tsv: the fine-tuned model of every
experiment; metrics/distilled.tsv: the distilled ones, beside their teachers): which runs count, and their rows."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from selfsup import SelfSupError
from selfsup.params import floor_lengthens
from selfsup.report.data import COMPARISON, DISTILL_KEYS, DISTILLED, EXPERIMENT_KEYS, PER_CLASS, WORST, merged


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


def weakest_class(per_class: pd.DataFrame | None, column: str = "accuracy") -> tuple[str | None, float]:
    """The class the model recognises least often, and its recall (`column` of the per-class table: `accuracy`, the
    delivered model's; `finetuned_accuracy`, the fine-tuned model's); NaN with no such table or column."""
    if per_class is None or per_class.empty or column not in per_class:
        return None, float("nan")
    weakest = per_class.loc[per_class[column].idxmin()]
    return weakest["class"], float(weakest[column])


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


FINETUNED_WORST = ["finetuned_worst_class", "finetuned_worst_recall"]  # a distilled run's teacher's WORST

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
    `variant` of the commit's recipe and the weakest class of the delivered model and of the fine-tuned one (the
    same model unless distilled; `per_class` maps a revision to its per-class table, e.g. `git_per_class`). One
    whose dvc.lock (`lock` maps a revision to it, e.g. `git_lock`) records other params than its params.yaml
    (`stale_stages`) has no row: `stale(name, stages)` is told instead; nor has an experiment that remade a stage
    of its commit with other results (`remade_stages`): `remade(name, stages)` is told."""
    def all_params(entry: dict) -> dict:
        return ((entry.get("data") or {}).get("params", {}).get("params.yaml", {}).get("data")) or {}

    def fraction(entry: dict):
        return all_params(entry).get("preprocess", {}).get("fraction", 1.0)

    rows = []
    for commit in show:
        entries = [commit] + [rev for exp in finished_experiments(commit) for rev in exp.get("revs", [])]
        base = lock(commit["rev"])  # the commit's dvc.lock: its own row's, and what its experiments may remake
        for entry in entries:
            data = entry.get("data") or {}
            params = data.get("params", {}).get("params.yaml", {}).get("data")
            metrics = data.get("metrics", {}).get("metrics/evaluate/metrics.json", {}).get("data")
            if entry.get("rev") == "workspace" or not params or not metrics:
                continue
            if fraction(entry) != fraction(commit):  # a quick look at a part of its commit's data
                continue
            name = entry.get("name") or entry["rev"][:7]
            mine = base if entry is commit else lock(entry["rev"])
            stages = stale_stages(mine, params)
            if stages:  # its metrics are not (all) its own params'
                stale(name if entry is not commit else f"{name}, the commit itself", stages)
                continue
            stages = [] if entry is commit else remade_stages(mine, base)
            if stages:  # e.g. its backbone pre-trained anew: not the commit's, which its other rows share
                remade(name, stages)
                continue
            ft, distill = params["finetune"], params.get("distill") or {}
            summary = data.get("metrics", {}).get("metrics/finetune/metrics.json", {}).get("data") or {}
            finetuned = metrics.get("finetuned", metrics["test"])  # before distillation (the same model when off)
            recalls = per_class(entry["rev"])
            worst = weakest_class(recalls)
            distilled = bool(metrics.get("distilled", False))
            # the fine-tuned model's: evaluate records it beside the student's (a run before that did not: unknown)
            teachers = weakest_class(recalls, "finetuned_accuracy") if distilled else worst
            rows.append({
                "experiment": name, "timestamp": data.get("timestamp"),
                "commit": commit["rev"][:7], "dataset": params["data"]["dataset"], "pretext": params["pretext"],
                "protocol": ft["protocol"], "labels_per_class": str(ft["labels_per_class"]), "epochs": ft["epochs"],
                "min_steps": effective_min_steps(ft, summary.get("labelled_images")), "seed": ft["seed"],
                "variant": variant(params, all_params(commit)),
                "distilled": distilled,
                "distill_epochs": distill.get("epochs"), "distill_init": distill.get("init"),
                "distill_threshold": distill.get("threshold"), "distill_per_class": distill.get("per_class", 0),
                "distill_rounds": distill.get("rounds", 1),
                "test_accuracy": metrics["test"]["accuracy"], "macro_f1": metrics["test"]["macro_f1"],
                "finetuned_accuracy": finetuned["accuracy"], "finetuned_macro_f1": finetuned["macro_f1"],
                **dict(zip(WORST, worst)), **dict(zip(FINETUNED_WORST, teachers)),
            })
    table = pd.DataFrame(rows, columns=["experiment", "timestamp", "commit", *EXPERIMENT_KEYS, *DISTILL_KEYS,
                                        "test_accuracy", "macro_f1", "finetuned_accuracy", "finetuned_macro_f1",
                                        *WORST, *FINETUNED_WORST])
    # the same settings run twice (a commit and its experiment): keep the newest
    return (table.sort_values("timestamp").drop_duplicates([*EXPERIMENT_KEYS, *DISTILL_KEYS], keep="last")
            .drop(columns="timestamp"))


def sweep_tables(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(comparison, distilled) of experiment_rows: the fine-tuned model of every experiment (a distilled one's
    teacher), and the distilled experiments with their teacher's accuracy beside the student's. The weakest class
    is each table's model's: in the comparison the fine-tuned one's, in the distilled table the student's."""
    finetuned = rows.assign(test_accuracy=rows.finetuned_accuracy, macro_f1=rows.finetuned_macro_f1,
                            **{mine: rows[theirs] for mine, theirs in zip(WORST, FINETUNED_WORST)})
    comparison = finetuned[["experiment", "commit", *EXPERIMENT_KEYS, "test_accuracy", "macro_f1", *WORST]]
    comparison = comparison.drop_duplicates(EXPERIMENT_KEYS, keep="last")
    distilled = rows[rows.distilled].drop(columns=["distilled", "finetuned_macro_f1", *FINETUNED_WORST])
    return comparison, distilled


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
        comparison = merged(root / COMPARISON, comparison, EXPERIMENT_KEYS,  # a distilled rerun keeps its model's
                            carry=WORST, same=["test_accuracy", "macro_f1"])  # weakest class
    tables = {root / COMPARISON: comparison.to_csv(sep="\t", index=False, float_format="%.6f")}
    if len(distilled) or replace:  # no distilled experiment collected: the table stays as it is, unless replaced
        if not replace:
            distilled = merged(root / DISTILLED, distilled, [*EXPERIMENT_KEYS, *DISTILL_KEYS[1:]])
        tables[root / DISTILLED] = distilled.to_csv(sep="\t", index=False, float_format="%.6f")
    return tables
