"""The README's results sections, rendered from the committed metrics/ and params.yaml.

`python -m selfsup.report` rewrites the parts between the results markers of README.md (the answer of the
label-efficiency sweep) and docs/results.md (the default run, the frozen-feature probes of metrics/probe/)
and draws their pictures from the stages' data: metrics/label_efficiency.svg and
metrics/probe/<pretext>/embedding.svg
(restyling a chart reruns no stage); `python -m selfsup.report --experiments [--rev COMMIT]` first collects
every finished DVC experiment of HEAD (or of the commit they were queued from) into metrics/comparison.tsv (the
fine-tuned models) and metrics/distilled.tsv (the distilled ones, beside their teachers), keeping every committed
row it does not replace (`--replace`: the collected ones alone). Everything is computed before anything is written.
Tests check that both pages agree with the files committed beside them.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from selfsup import SelfSupError
from selfsup.cli import run_stage
from selfsup.io import atomic_path
from selfsup.statistics import excludes_zero, labels_to_match, paired_interval, t975  # noqa: F401 (t975: tests)
from selfsup.svg import COLOURS, line_chart, scatter

START, END = "<!-- results:start -->", "<!-- results:end -->"
CMP_START, CMP_END = "<!-- comparison:start -->", "<!-- comparison:end -->"
DISTILL_START, DISTILL_END = "<!-- distill:start -->", "<!-- distill:end -->"
PROBE_START, PROBE_END = "<!-- probe:start -->", "<!-- probe:end -->"
RECIPE_START, RECIPE_END = "<!-- recipe:start -->", "<!-- recipe:end -->"
EPOCHS_START, EPOCHS_END = "<!-- epochs:start -->", "<!-- epochs:end -->"
RECIPE = Path("metrics/recipe.tsv")  # written by benchmarks/recipe.py
DISTILL_RECIPE = Path("metrics/distill_recipe.tsv")  # written by benchmarks/distill.py
DISTILL_RECIPE_START, DISTILL_RECIPE_END = "<!-- distill-recipe:start -->", "<!-- distill-recipe:end -->"
PRETEXT_COMPUTE = Path("metrics/pretext_compute.tsv")  # written by benchmarks/pretext.py
PRETEXT_COMPUTE_START, PRETEXT_COMPUTE_END = "<!-- pretext-compute:start -->", "<!-- pretext-compute:end -->"
SCHEDULE = Path("metrics/schedule.tsv")  # written by benchmarks/recipe.py --base defaults
SCHEDULE_START, SCHEDULE_END = "<!-- schedule:start -->", "<!-- schedule:end -->"
COMPARISON = Path("metrics/comparison.tsv")  # the fine-tuned model of every experiment
# the sweep's rows of the pretexts whose default views changed, fine-tuned from backbones pre-trained with the
# papers' views (rotation 4, exemplar 6), as collected before the change; comparison.tsv now holds the defaults'
REFERENCE_VIEWS = Path("metrics/comparison_reference_views.tsv")
VIEWS_START, VIEWS_END = "<!-- views:start -->", "<!-- views:end -->"
DISTILLED = Path("metrics/distilled.tsv")  # the experiments whose delivered model was distilled, with their teacher's
DISTILLED_PLOT = Path("metrics/distillation.svg")
RESULTS_DOC = Path("docs/results.md")  # the committed run and the probes; the sweep's answer is on the README
PLOT = Path("metrics/label_efficiency.svg")
GAIN_PLOT = Path("metrics/label_gain.svg")  # the paired gains over `none`, with their intervals
# AML19-SelfSupervised's supervised CifarNet (the project this one reimplements), test accuracy (DeepFashion: on its own subset of the benchmark).
SEED_SUPERVISED = {"fashion_mnist": 0.9033, "deepfashion": 0.4573}


def results_markdown(params: dict, finetune: dict, evaluate: dict, per_class: pd.DataFrame) -> str:
    """Markdown for one evaluated run: headline row, then one row per class (test images, accuracy, F1)."""
    test = evaluate["test"]
    ft = params["finetune"]
    dataset = params["data"]["dataset"]
    anchor = SEED_SUPERVISED.get(dataset)
    lines = [
        "| dataset | pretext | protocol | labels per class | labelled images | kept epoch | test accuracy "
        "| balanced accuracy | macro-F1 | AML19 supervised |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {dataset} | {params['pretext']} | {ft['protocol']} | {ft['labels_per_class']} "
        f"| {finetune['labelled_images']} | {finetune['kept_epoch']} of {ft['epochs']} "
        f"| **{100 * test['accuracy']:.2f}%** | {100 * test['balanced_accuracy']:.2f}% | {test['macro_f1']:.4f} "
        f"| {'—' if anchor is None else f'{100 * anchor:.2f}%'} |",
        "",
        "| class | test images | test accuracy | F1 |",
        "|---|---|---|---|",
        *(f"| {c['class']} | {c['support']} | {100 * c['accuracy']:.1f}% | {c['f1']:.3f} |"
          for c in per_class.to_dict("records")),
    ]
    return "\n".join(lines)


def render(root: Path, read=lambda p: p.read_text()) -> str:
    """The results block for the repository at `root`; `read` maps a path to its text."""
    params = yaml.safe_load(read(root / "params.yaml"))
    finetune = json.loads(read(root / "metrics/finetune/metrics.json"))
    evaluate = json.loads(read(root / "metrics/evaluate/metrics.json"))
    per_class = pd.read_csv(io.StringIO(read(root / "metrics/evaluate/per_class.csv")), keep_default_na=False)
    return f"{START}\n{results_markdown(params, finetune, evaluate, per_class)}\n{END}"


def finished_experiments(commit: dict) -> list[dict]:
    """The finished experiments of one commit of `dvc exp show --json` (queued and running ones carry their
    baseline's metrics files: only finished ones count)."""
    return [exp for exp in commit.get("experiments") or []
            if (exp.get("executor") or {}).get("state", "success") == "success"]


def experiment_rows(show: list) -> pd.DataFrame:
    """One row per commit or finished experiment of `dvc exp show --json` that has evaluate metrics."""
    rows = []
    for commit in show:
        entries = [commit] + [rev for exp in finished_experiments(commit) for rev in exp.get("revs", [])]
        for entry in entries:
            data = entry.get("data") or {}
            params = data.get("params", {}).get("params.yaml", {}).get("data")
            metrics = data.get("metrics", {}).get("metrics/evaluate/metrics.json", {}).get("data")
            if entry.get("rev") == "workspace" or not params or not metrics:
                continue
            ft, distill = params["finetune"], params.get("distill") or {}
            finetuned = metrics.get("finetuned", metrics["test"])  # before distillation (the same model when off)
            rows.append({
                "experiment": entry.get("name") or entry["rev"][:7], "timestamp": data.get("timestamp"),
                "commit": commit["rev"][:7], "dataset": params["data"]["dataset"], "pretext": params["pretext"],
                "protocol": ft["protocol"], "labels_per_class": str(ft["labels_per_class"]), "epochs": ft["epochs"],
                "min_steps": ft.get("min_steps", 0), "seed": ft["seed"],
                "distilled": bool(metrics.get("distilled", False)),
                "distill_epochs": distill.get("epochs"), "distill_init": distill.get("init"),
                "distill_threshold": distill.get("threshold"), "distill_rounds": distill.get("rounds", 1),
                "test_accuracy": metrics["test"]["accuracy"], "macro_f1": metrics["test"]["macro_f1"],
                "finetuned_accuracy": finetuned["accuracy"], "finetuned_macro_f1": finetuned["macro_f1"],
            })
    table = pd.DataFrame(rows, columns=["experiment", "timestamp", "commit", *EXPERIMENT_KEYS, *DISTILL_KEYS,
                                        "test_accuracy", "macro_f1", "finetuned_accuracy", "finetuned_macro_f1"])
    # the same settings run twice (a commit and its experiment): keep the newest
    return (table.sort_values("timestamp").drop_duplicates([*EXPERIMENT_KEYS, *DISTILL_KEYS], keep="last")
            .drop(columns="timestamp"))


EXPERIMENT_KEYS = ["dataset", "pretext", "protocol", "labels_per_class", "epochs", "min_steps", "seed"]
DISTILL_KEYS = ["distilled", "distill_epochs", "distill_init", "distill_threshold", "distill_rounds"]


def sweep_tables(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(comparison, distilled) of experiment_rows: the fine-tuned model of every experiment (a distilled one's
    teacher), and the distilled experiments with their teacher's accuracy beside the student's."""
    finetuned = rows.assign(test_accuracy=rows.finetuned_accuracy, macro_f1=rows.finetuned_macro_f1)
    comparison = finetuned[["experiment", "commit", *EXPERIMENT_KEYS, "test_accuracy", "macro_f1"]]
    comparison = comparison.drop_duplicates(EXPERIMENT_KEYS, keep="last")
    distilled = rows[rows.distilled].drop(columns=["distilled", "finetuned_macro_f1"])
    return comparison, distilled


def merged(path: Path, new: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The table at `path` with `new`'s rows added; a row of the same `keys` is replaced by the new one."""
    if not path.is_file():
        return new
    budget = {"labels_per_class": str} if "labels_per_class" in new else {}  # "all" among integers: text
    old = pd.read_csv(path, sep="\t", dtype=budget)
    if "min_steps" in new and "min_steps" not in old:  # rows from before finetune.min_steps: it was 0
        old.insert(list(new.columns).index("min_steps"), "min_steps", 0)
    return pd.concat([old, new.astype(budget)]).drop_duplicates(keys, keep="last")


def _budget_order(budgets) -> list[str]:
    return sorted(budgets, key=lambda c: (c == "all", int(c) if c.isdigit() else 0))


def _pretext_order(names, order) -> list[str]:
    """`names` in the order of `order` (params.yaml's `pretexts`), any others after them, sorted."""
    return [p for p in order if p in names] + sorted(p for p in names if p not in order)


def budget_grid(frame: pd.DataFrame, corner: str, header: str, cell, order=()) -> list[str]:
    """A Markdown table of `frame`'s rows, one line per pretext (in `order`) and one column per budget (named
    by `header`, a format of the budget): `cell(row)` of the row of that pretext and budget, "—" where none."""
    budgets = _budget_order(frame.labels_per_class.unique())
    cells = {(r.pretext, r.labels_per_class): r for r in frame.itertuples()}
    lines = [f"| {corner} | " + " | ".join(header.format(b) for b in budgets) + " |",
             "|---" * (len(budgets) + 1) + "|"]
    for pretext in _pretext_order(frame.pretext.unique(), order):
        row = [cell(cells[(pretext, b)]) if (pretext, b) in cells else "—" for b in budgets]
        lines.append(f"| {pretext} | " + " | ".join(row) + " |")
    return lines


def budget_positions(budgets) -> dict[str, int]:
    """Where a chart draws each budget on its log axis: `all` one decade right of the largest number."""
    numeric = [int(b) for b in budgets if b.isdigit()]
    return {b: int(b) if b.isdigit() else 10 * max(numeric or [1]) for b in budgets}


def seed_std(values) -> float:
    """The spread over seeds: the sample std, 0 for a single run."""
    return values.std(ddof=1) if len(values) > 1 else 0.0


def signed(points: float) -> str:
    """A difference in percentage points with its sign, two decimals; one that rounds to zero is +0.00, not -0.00."""
    return f"{round(points, 2) or 0.0:+.2f}"


def mean_std(values) -> str:
    """Fractions as "mean ± std" in percent, over seeds."""
    return f"{100 * values.mean():.2f} ± {100 * seed_std(values):.2f}"


def paired_gains(table: pd.DataFrame, protocol: str = "full") -> pd.DataFrame:
    """Per pretext (not `none`), budget and epochs: the test accuracy's difference from `none` paired by seed (a
    seed draws the same labelled images, head and batch order for every pretext), over the seeds both ran: seeds,
    mean, and its 95% confidence interval (t over seeds; NaN for one seed)."""
    keys = ["labels_per_class", "epochs", "min_steps", "seed"]
    rows = table[table.protocol == protocol]
    base = rows[rows.pretext == "none"][[*keys, "test_accuracy"]].rename(columns={"test_accuracy": "none"})
    pairs = rows[rows.pretext != "none"].merge(base, on=keys)
    out = []
    for (pretext, budget, epochs, _), group in pairs.groupby(["pretext", *keys[:-1]], sort=False):
        n, mean, low, high = paired_interval(group.test_accuracy - group.none)
        out.append({"pretext": pretext, "labels_per_class": budget, "epochs": epochs, "seeds": n, "gain": mean,
                    "low": low, "high": high})
    return pd.DataFrame(out, columns=["pretext", "labels_per_class", "epochs", "seeds", "gain", "low", "high"])


def gain_text(r) -> str:
    """A paired gain in points with its interval, in words: "+4.56 points (95% CI +2.91 to +6.21, 3 seeds)"."""
    if r.seeds < 2:
        return f"{signed(100 * r.gain)} points (one seed: no interval)"
    return f"{signed(100 * r.gain)} points (95% CI {signed(100 * r.low)} to {signed(100 * r.high)}, {r.seeds} seeds)"


def is_finding(r) -> bool:
    """Whether a paired gain's 95% interval excludes 0 (one seed never is)."""
    return excludes_zero(r.seeds, r.low, r.high)


def sweep_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (over seeds) and runs of test accuracy per protocol, pretext, label budget and schedule."""
    grouped = table.groupby(["protocol", "pretext", "labels_per_class", "epochs", "min_steps"]).test_accuracy
    summary = grouped.agg(mean="mean", std=seed_std, runs="count")
    return summary.reset_index()


def comparison_markdown(table: pd.DataFrame, order=()) -> str:
    """Test accuracy, mean ± std over seeds (runs), per pretext (rows, in `order`) and label budget (columns)."""
    summary = sweep_summary(table)
    lines = []
    for protocol, part in summary.groupby("protocol"):
        budgets = _budget_order(part.labels_per_class.unique())
        lines += [f"Protocol `{protocol}`; fine-tuning schedule per budget: {budget_schedules(part)}.", "",
                  *budget_grid(part, "pretext", "{} labels per class",
                               lambda r: f"{100 * r.mean:.2f} ± {100 * r.std:.2f} ({r.runs} runs)", order)]
        if part.runs.nunique() > 1:
            lines += ["", f"Cells with fewer than {part.runs.max()} runs ran fewer seeds (one run's std is 0)."]
        lines.append("")
    return "\n".join(lines).strip()


def schedule_text(epochs: int, min_steps: int) -> str:
    """A fine-tuning schedule in words: "60 epochs, at least 500 steps"."""
    return f"{epochs} epochs" + (f", at least {min_steps} steps" if min_steps else "")


def budget_schedules(table: pd.DataFrame) -> str:
    """The fine-tuning schedules of a sweep table's rows per budget: "10: 60 epochs, at least 500 steps; 1000: 15
    epochs"."""
    return "; ".join(f"{b}: " + ", ".join(schedule_text(*s) for s in sorted(set(zip(part.epochs, part.min_steps))))
                     for b, part in ((b, table[table.labels_per_class == b])
                                     for b in _budget_order(table.labels_per_class.unique())))


def on_schedule(table: pd.DataFrame, min_steps: int) -> pd.DataFrame:
    """The rows the answer shows: per budget, those fine-tuned with at least `min_steps` optimizer steps (params.yaml's
    schedule) where the budget has any, else the budget's rows as they are (the comparison table names each budget's
    schedule)."""
    ran = set(table[table.min_steps == min_steps].labels_per_class)
    return table[(table.min_steps == min_steps) | ~table.labels_per_class.isin(ran)]


def answer_markdown(table: pd.DataFrame, order=(), protocol: str = "full",
                    matched: pd.DataFrame | None = None) -> str:
    """The answer in one line per budget: every pretext's test accuracy and its gain over `none` paired by seed with
    the 95% interval (bold where the interval excludes 0), and the labels `none` needs to match the best one
    (`matched`: `matching` of `table`, computed when not given)."""
    summary = sweep_summary(table[table.protocol == protocol])
    budgets = _budget_order(summary.labels_per_class.unique())
    mean = {(r.pretext, r.labels_per_class): r for r in summary.itertuples()}
    gains = {(r.pretext, r.labels_per_class): r for r in paired_gains(table, protocol).itertuples()}
    matched = matching(table, protocol) if matched is None else matched
    saves = {(r.pretext, r.labels_per_class): r for r in matched.itertuples()}
    largest = matched.largest.max() if len(matched) else 0
    lines = []
    for b in budgets:
        rows = [mean[(p, b)] for p in _pretext_order(summary.pretext.unique(), order)
                if (p, b) in mean and (p, b) in gains and p != "none"]
        base = mean.get(("none", b))
        if not rows or base is None:
            continue
        parts = []
        for r in rows:
            gain = gains[(r.pretext, b)]
            text = gain_text(gain)
            verdict = f"**{text}**" if is_finding(gain) else text + (", too close to tell from `none`"
                                                                    if gain.seeds > 1 else "")
            parts.append(f"`{r.pretext}` {100 * r.mean:.2f}%, {verdict}")
        line = f"- **{b} labels per class** (`none` {100 * base.mean:.2f}%): " + "; ".join(parts) + "."
        best = max(rows, key=lambda r: r.mean)
        if best.mean > base.mean and (best.pretext, b) in saves:
            line += f" {saving_text(saves[(best.pretext, b)], largest)}."
        lines.append(line)
    return "\n".join(lines)


def matching(table: pd.DataFrame, protocol: str = "full") -> pd.DataFrame:
    """`labels_to_match` of the rows of `protocol`."""
    return labels_to_match(table[table.protocol == protocol])


def labels_cell(labels: float, largest: int) -> str:
    return f"more than {largest}" if labels == float("inf") else f"{labels:.0f}"


def saving_text(r, largest: int) -> str:
    """How many labels `none` needs to match a pretext, in words, with the share saved and their 95% intervals."""
    b = int(r.labels_per_class)
    if r.labels == float("inf"):
        return (f"`none` does not match `{r.pretext}` at {b} labels per class even with {largest}: it saves "
                f"more than {100 * (1 - b / largest):.0f}% of the labels")
    share = (lambda n: f"{100 * max(0.0, 1 - b / n):.0f}%")
    return (f"`{r.pretext}` with {b} labels per class does as well as `none` with {r.labels:.0f} (95% CI "
            f"{labels_cell(r.low, largest)} to {labels_cell(r.high, largest)}): it saves {share(r.labels)} of the "
            f"labels (95% CI {share(r.low)} to {'more than ' if r.high == float('inf') else ''}"
            f"{share(min(r.high, largest))})")


def labels_markdown(matched: pd.DataFrame, order=()) -> str:
    """The labels per class `none` needs to match each pretext (rows) at each budget (columns), with the 95%
    interval and the share of labels saved."""
    largest = matched.largest.max() if len(matched) else 0

    def cell(r):
        if r.low == float("inf"):
            return labels_cell(r.labels, largest)
        saved = f"; saves {100 * r.saved:.0f}%" if r.labels > int(r.labels_per_class) else ""
        return (f"{labels_cell(r.labels, largest)} ({labels_cell(r.low, largest)} to "
                f"{labels_cell(r.high, largest)}{saved})")
    return "\n".join(budget_grid(matched, "labels `none` needs", "{} labels per class", cell, order))


def gains_markdown(table: pd.DataFrame, order=(), protocol: str = "full") -> str:
    """The paired gains over `none` per pretext (rows) and budget (columns), points with their 95% interval, bold
    where the interval excludes 0."""
    return "\n".join(budget_grid(paired_gains(table, protocol), "gain over `none`", "{} labels per class",
                                 interval_cell, order))


def gain_svg(table: pd.DataFrame, order=(), protocol: str = "full") -> str:
    """The paired gain over `none` against labels per class, one line per pretext, error bars its 95% interval;
    each pretext in its colour of label_efficiency_svg."""
    gains = paired_gains(table, protocol)
    budgets = _budget_order(gains.labels_per_class.unique())
    position = budget_positions(budgets)
    names = _pretext_order([*gains.pretext.unique(), "none"], order)
    series, colours = {}, {}
    for pretext in _pretext_order(gains.pretext.unique(), order):
        part = sorted(gains[gains.pretext == pretext].itertuples(), key=lambda r: position[r.labels_per_class])
        series[pretext] = [(position[r.labels_per_class], 100 * r.gain,
                            0.0 if r.seeds < 2 else 100 * (r.high - r.gain)) for r in part]
        colours[pretext] = COLOURS[names.index(pretext) % len(COLOURS)]
    return line_chart(series, [(position[b], b) for b in budgets],
                      f"Gain over none, paired by seed, with 95% CI ({protocol})", "labels per class",
                      "test accuracy gain (points)", colours=colours, zero_line=True, dodge=6)


def targets_markdown(table: pd.DataFrame, protocol: str = "full", gaps: pd.DataFrame | None = None,
                     matched: pd.DataFrame | None = None) -> str:
    """The project's accuracy targets (mean over seeds, full test set), each met or missed, with the number; with
    `gaps` (`probe_gaps`), whether the fine-tuned model is at least as accurate as its backbone's linear probe; with
    `matched` (`matching`), whether the best pretext at 10 per class saves two thirds of the labels."""
    summary = sweep_summary(table[table.protocol == protocol])
    mean = {(r.pretext, r.labels_per_class): r.mean for r in summary.itertuples()}

    def best(b):
        rows = {p: m for (p, c), m in mean.items() if c == b and p != "none"}
        return max(rows.items(), key=lambda kv: kv[1]) if rows else (None, float("nan"))

    lines = ["| target | measured | |", "|---|---|---|"]

    def add(target, measured, met):
        lines.append(f"| {target} | {measured} | {'met' if met else '**missed**'} |")

    if ("none", "all") in mean:
        add("all labels: `none` ≥ 93.0%", f"{100 * mean['none', 'all']:.2f}%", mean["none", "all"] >= 0.93)
    for b, floor in (("all", 0.935), ("100", 0.87), ("10", 0.78)):
        name, value = best(b)
        if name is not None:
            add(f"{b} per class: best pretext ≥ {100 * floor:.1f}%", f"`{name}` {100 * value:.2f}%", value >= floor)
    if ("none", "100") in mean:
        below = [p for (p, c), m in mean.items() if c == "100" and p != "none" and m <= mean["none", "100"]]
        add("100 per class: every pretext above `none`", "all above" if not below else
            ", ".join(f"`{p}` {signed(100 * (mean[p, '100'] - mean['none', '100']))}" for p in below), not below)
    gains = {r.pretext: r for r in paired_gains(table, protocol).itertuples() if r.labels_per_class == "10"}
    if gains:
        top = max(gains.values(), key=lambda r: r.gain)
        add("10 per class: best pretext ≥ `none` + 6 points, its 95% CI excluding 0",
            f"`{top.pretext}` {gain_text(top)}", top.gain >= 0.06 and is_finding(top))
    ten = None if matched is None else matched[matched.labels_per_class == "10"]
    if ten is not None and len(ten):
        top = ten.loc[ten.labels.idxmax()]
        add("10 per class: best pretext matches `none` with ≥ 3× the labels (saves ≥ 67%), by the lower end of "
            "its 95% CI", f"`{top.pretext}`: `none` needs {labels_cell(top.labels, top.largest)}"
            f" (95% CI {labels_cell(top.low, top.largest)} to {labels_cell(top.high, top.largest)})", top.low >= 30)
    if gaps is not None and len(gaps):
        below = gaps[gaps.gain < 0]
        worst = below.sort_values("gain").head(3)
        add("every budget: fine-tuned ≥ the frozen linear probe of its backbone",
            "always" if below.empty else f"below at {len(below)} of {len(gaps)} (pretext, budget): "
            + ", ".join(f"`{r.pretext}` at {r.labels_per_class} {signed(100 * r.gain)}" for r in worst.itertuples())
            + (", ..." if len(below) > 3 else ""), below.empty)
    return "\n".join(lines)


def label_efficiency_svg(table: pd.DataFrame, order=(), protocol: str = "full") -> str:
    """Test accuracy against labels per class, one line per pretext, error bars one std over seeds."""
    summary = sweep_summary(table[table.protocol == protocol])
    budgets = _budget_order(summary.labels_per_class.unique())
    position = budget_positions(budgets)
    series = {}
    for pretext in _pretext_order(summary.pretext.unique(), order):
        part = summary[summary.pretext == pretext]
        series[pretext] = [(position[r.labels_per_class], 100 * r.mean, 100 * r.std)
                           for r in sorted(part.itertuples(), key=lambda r: position[r.labels_per_class])]
    ticks = [(position[b], b) for b in budgets]
    return line_chart(series, ticks, f"Fashion-MNIST test accuracy after fine-tuning ({protocol})",
                      "labels per class", "test accuracy (%)")


def read_sweep(root: Path, path: Path, read=lambda p: p.read_text()) -> pd.DataFrame:
    """A sweep table (COMPARISON, DISTILLED, REFERENCE_VIEWS) of the repository at `root`; `read` maps a path to
    its text. Rows from before finetune.min_steps ran with none: 0."""
    table = pd.read_csv(io.StringIO(read(root / path)), sep="\t", dtype={"labels_per_class": str})
    if "min_steps" not in table:
        table.insert(list(table.columns).index("epochs") + 1, "min_steps", 0)
    return table


def read_comparison(root: Path, read=lambda p: p.read_text(), every: bool = False) -> pd.DataFrame:
    """metrics/comparison.tsv of the repository at `root`: the rows of params.yaml's schedule (`on_schedule`), or
    (`every`) every row."""
    table = read_sweep(root, COMPARISON, read)
    return table if every else on_schedule(table, yaml.safe_load(read(root / "params.yaml"))["finetune"]["min_steps"])


GAINS_NOTE = ("A gain is the difference from `none` seed by seed: a seed draws the same labelled images, new head "
              "and batch order for every pretext, so the luck of the draw cancels. Its 95% confidence interval (t over "
              "the seeds) is where the gain over many more seeds would likely lie. **Bold**: the interval excludes 0, "
              "a gain these seeds show; the others are too close to tell from `none` with these seeds.")


LABELS_NOTE = ("How many labels per class `none` needs to do as well as each pretext: where `none`'s mean accuracy "
               "curve reaches the pretext's mean, read between the budgets on a log scale, with a 95% interval from "
               "resampling the seeds of every budget (a pretext's seeds paired with `none`'s); \"more than\": "
               "beyond the largest budget measured (`all` is not on the curve).")


def comparison_block(table: pd.DataFrame, order=(), gaps: pd.DataFrame | None = None) -> str:
    gains = (f"{GAINS_NOTE}\n\n{gains_markdown(table, order)}\n\n![gain over none]({GAIN_PLOT.as_posix()})\n\n"
             if len(paired_gains(table)) else "")
    matched = matching(table)
    labels = f"{LABELS_NOTE}\n\n{labels_markdown(matched, order)}\n\n" if len(matched) else ""
    return (f"{CMP_START}\n{answer_markdown(table, order, matched=matched)}\n\n{gains}{labels}"
            f"Test accuracy, mean ± std over seeds:\n\n{comparison_markdown(table, order)}\n\n"
            f"![label efficiency]({PLOT.as_posix()})\n\nAgainst the targets (mean over seeds, the full test set):\n\n"
            f"{targets_markdown(table, gaps=gaps, matched=matched)}\n{CMP_END}")


def views_markdown(reference: pd.DataFrame, current: pd.DataFrame, params: dict, protocol: str = "full") -> str:
    """Per pretext and budget of `reference` (REFERENCE_VIEWS), the fine-tuned test accuracy (mean ± std over seeds)
    from the backbone pre-trained with the reference's views and from the one with params.yaml's, and the change."""
    keys = ["pretext", "labels_per_class", "epochs", "min_steps"]
    ref = sweep_summary(reference[reference.protocol == protocol]).set_index(keys)
    cur = sweep_summary(current[current.protocol == protocol]).set_index(keys)
    views = reference.groupby("pretext").views.first()
    lines = ["| pretext | labels per class | reference views | test accuracy | default views | test accuracy | change |",
             "|---" * 7 + "|"]
    for pretext in _pretext_order(views.index, params.get("pretexts", ())):
        part = ref.loc[pretext]
        for budget in _budget_order(part.index.get_level_values("labels_per_class").unique()):
            for schedule, r in part.loc[budget].iterrows():
                c = cur.loc[(pretext, budget, *schedule)] if (pretext, budget, *schedule) in cur.index else None
                now = "—" if c is None else f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f} ({c['runs']})"
                change = "—" if c is None else signed(100 * (c['mean'] - r['mean']))
                lines.append(f"| {pretext} | {budget} | {views[pretext]} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f}"
                             f" ({r['runs']}) | {params['pretrain'][pretext]['views']} | {now} | {change} |")
    return "\n".join(lines) + ("\n\nFine-tuned model (before distillation), mean ± std (runs) over the same seeds, "
                               "hence the same labelled images; the same recipe and fine-tuning epochs.")


def render_views(root: Path, read=lambda p: p.read_text()) -> str:
    """The README block comparing the sweep on the reference's backbones with the sweep on the defaults'."""
    markdown = views_markdown(read_sweep(root, REFERENCE_VIEWS, read), read_comparison(root, read, every=True),
                              yaml.safe_load(read(root / "params.yaml")))
    return f"{VIEWS_START}\n{markdown}\n{VIEWS_END}"


def distilled_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per pretext and budget: mean and std over seeds of the fine-tuned (teacher) and distilled test accuracy."""
    grouped = table.groupby(["pretext", "labels_per_class"])
    return grouped.agg(finetuned=("finetuned_accuracy", "mean"), finetuned_std=("finetuned_accuracy", seed_std),
                       distilled=("test_accuracy", "mean"), distilled_std=("test_accuracy", seed_std),
                       runs=("test_accuracy", "count")).reset_index()


def distilled_markdown(table: pd.DataFrame, order=()) -> str:
    """Fine-tuned → distilled test accuracy per pretext and budget (mean ± std over seeds), the gain, and the
    distillation targets, each met or missed."""
    summary = distilled_summary(table)
    lines = budget_grid(summary, "pretext", "{} labels per class: fine-tuned → distilled",
                        lambda r: f"{100 * r.finetuned:.2f} ± {100 * r.finetuned_std:.2f} → **{100 * r.distilled:.2f}**"
                                  f" ± {100 * r.distilled_std:.2f} ({signed(100 * (r.distilled - r.finetuned))}; "
                                  f"{r.runs} runs)", order)
    settings = table.iloc[0]
    lines += ["", f"Distillation: {int(settings.distill_rounds)} round(s) of {int(settings.distill_epochs)} epochs "
                  "over every training image, the student "
                  f"starting from the {settings.distill_init}"
                  + (f", confident (≥ {settings.distill_threshold:g}) pseudo-labels" if settings.distill_threshold
                     else ", the teacher's soft probabilities")
              + f". The teachers' fine-tuning: {budget_schedules(table)}.", "",
              "| target | measured | |", "|---|---|---|"]
    for b, floor in (("10", 0.80), ("100", 0.88)):
        at = summary[summary.labels_per_class == b]
        if len(at):
            best = at.loc[at.distilled.idxmax()]
            lines.append(f"| {b} per class: best pipeline ≥ {100 * floor:.1f}% | `{best.pretext}` {100 * best.distilled:.2f}% "
                         f"| {'met' if best.distilled >= floor else '**missed**'} |")
            others = at[at.pretext != "none"]
            if (at.pretext == "none").any() and len(others):
                base = at[at.pretext == "none"].distilled.iloc[0]
                top = others.loc[others.distilled.idxmax()]
                lines.append(f"| {b} per class, distilled: best pretext above `none` | `{top.pretext}` "
                             f"{signed(100 * (top.distilled - base))} | {'met' if top.distilled > base else '**missed**'} |")
    return "\n".join(lines)


def distillation_svg(table: pd.DataFrame, order=()) -> str:
    """Test accuracy against labels per class: each pretext fine-tuned and distilled, one std over seeds."""
    summary = distilled_summary(table)
    budgets = _budget_order(summary.labels_per_class.unique())
    position = budget_positions(budgets)
    series = {}
    for pretext in _pretext_order(summary.pretext.unique(), order):
        part = sorted(summary[summary.pretext == pretext].itertuples(), key=lambda r: position[r.labels_per_class])
        series[f"{pretext}, fine-tuned"] = [(position[r.labels_per_class], 100 * r.finetuned, 100 * r.finetuned_std)
                                            for r in part]
        series[f"{pretext}, distilled"] = [(position[r.labels_per_class], 100 * r.distilled, 100 * r.distilled_std)
                                           for r in part]
    return line_chart(series, [(position[b], b) for b in budgets],
                      "Fashion-MNIST test accuracy, fine-tuned and distilled", "labels per class", "test accuracy (%)")


def read_distilled(root: Path, read=lambda p: p.read_text()) -> pd.DataFrame:
    return read_sweep(root, DISTILLED, read)


def render_distilled(root: Path, read=lambda p: p.read_text()) -> str:
    table = read_distilled(root, read)
    return (f"{DISTILL_START}\n{distilled_markdown(table, _pretexts(root, read))}\n\n"
            f"![fine-tuned and distilled]({DISTILLED_PLOT.as_posix()})\n{DISTILL_END}")


def _pretexts(root: Path, read) -> list[str]:
    return yaml.safe_load(read(root / "params.yaml"))["pretexts"]


def render_comparison(root: Path, table: pd.DataFrame, read=lambda p: p.read_text()) -> str:
    """The README's answer block from the sweep `table`, with the fine-tuned models paired with their probes."""
    return comparison_block(table, _pretexts(root, read), probe_gaps(table, probe_draws(read_probes(root, read))))


def probe_markdown(probes: dict[str, dict]) -> str:
    """Frozen-feature test accuracy per pretext: linear probe per label budget (mean ± std, and the layers its
    draws chose), kNN with all labels."""
    budgets = _budget_order(next(iter(probes.values()))["test"])
    lines = ["| pretext | " + " | ".join(f"linear, {b} per class (layer)" for b in budgets) + " | kNN, all |",
             "|---" * (len(budgets) + 2) + "|"]
    for pretext, m in probes.items():
        cells = [f"{100 * m['test'][b]['linear']['mean']:.2f} ± {100 * m['test'][b]['linear']['std']:.2f} ("
                 + ", ".join(layer + (f" ×{n}" if n > 1 else "") for layer, n in m["test"][b]["layers"].items()) + ")"
                 for b in budgets]
        knn = m["test"].get("all", m["test"][budgets[-1]])["knn"]["mean"]
        lines.append(f"| {pretext} | " + " | ".join(cells) + f" | {100 * knn:.2f} |")
    return "\n".join(lines)


def probe_draws(probes: dict[str, dict]) -> pd.DataFrame:
    """The linear probe's test accuracy per pretext, budget and seed (a probe's label draw i is seed i's, the
    labelled images finetune draws with finetune.seed i; `all` has one draw, seed 0)."""
    rows = [{"pretext": pretext, "labels_per_class": budget, "seed": seed, "probe": draw["linear"]}
            for pretext, detail in probes.items() for budget, draws in detail["draws"].items()
            for seed, draw in enumerate(draws)]
    return pd.DataFrame(rows, columns=["pretext", "labels_per_class", "seed", "probe"])


def probe_gaps(table: pd.DataFrame, draws: pd.DataFrame, protocol: str | None = "full") -> pd.DataFrame:
    """Per pretext and budget: the fine-tuned model's test accuracy minus the frozen linear probe's of the same
    backbone on the same labelled images, paired by seed, with its 95% interval (`paired_interval`); of the rows of
    `protocol`, or (None) of every row."""
    rows = table if protocol is None else table[table.protocol == protocol]
    rows = rows.merge(draws, on=["pretext", "labels_per_class", "seed"])
    out = []
    for (pretext, budget), group in rows.groupby(["pretext", "labels_per_class"], sort=False):
        n, mean, low, high = paired_interval(group.test_accuracy - group.probe)
        out.append({"pretext": pretext, "labels_per_class": budget, "seeds": n, "gain": mean, "low": low, "high": high})
    return pd.DataFrame(out, columns=["pretext", "labels_per_class", "seeds", "gain", "low", "high"])


def interval_cell(r) -> str:
    """A paired difference as a table cell: points, bold where its 95% interval excludes 0, with the interval."""
    if r.seeds < 2:
        return f"{signed(100 * r.gain)} (1 seed)"
    value = f"**{signed(100 * r.gain)}**" if is_finding(r) else signed(100 * r.gain)
    return f"{value} ({signed(100 * r.low)} to {signed(100 * r.high)}; {r.seeds} seeds)"


def probe_gap_markdown(gaps: pd.DataFrame, order=()) -> str:
    return "\n".join(budget_grid(gaps, "fine-tuned − probe", "{} labels per class", interval_cell, order))


def read_probes(root: Path, read=lambda p: p.read_text()) -> dict[str, dict]:
    return {p: json.loads(read(root / f"metrics/probe/{p}/detail.json")) for p in _pretexts(root, read)}


def render_probe(root: Path, read=lambda p: p.read_text(), exists=lambda p: p.is_file()) -> str:
    probes = read_probes(root, read)
    gaps = ""
    if exists(root / COMPARISON):
        table = probe_gaps(read_comparison(root, read), probe_draws(probes))
        if len(table):
            gaps = ("\n\nThe fine-tuned model (the sweep's, before distillation) against the linear probe of the same "
                    "backbone on the same labelled images, test accuracy, paired by seed, with its 95% interval "
                    "(**bold**: it excludes 0):\n\n" + probe_gap_markdown(table, list(probes)))
    return f"{PROBE_START}\n{probe_markdown(probes)}{gaps}\n{PROBE_END}"


def embedding_path(pretext: str) -> Path:
    return Path(f"metrics/probe/{pretext}/embedding.svg")


def embedding_svg(root: Path, pretext: str, read=lambda p: p.read_text()) -> str:
    """The PCA scatter of probe@<pretext>'s embedding.csv (the test features of its chosen layer)."""
    # Python's float(): the numbers exactly as written, whatever parser a pandas release defaults to
    points = pd.read_csv(io.StringIO(read(root / f"metrics/probe/{pretext}/embedding.csv")),
                         converters={"pc1": float, "pc2": float})
    layer = json.loads(read(root / f"metrics/probe/{pretext}/metrics.json"))["layer"]
    named = dict(zip(points.label, points["class"]))
    classes = [named.get(i, str(i)) for i in range(max(named) + 1)]
    return scatter(list(zip(points.pc1, points.pc2)), points.label.tolist(), classes,
                   f"{pretext}: test features of {layer}, PCA")


def recipe_markdown(table: pd.DataFrame) -> str:
    """The recipe ablation (benchmarks/recipe.py): per pretext, variant and budget, the honest val accuracy (what
    decides) and the test accuracy, mean ± std over seeds, with the change of the val mean against the baseline,
    and whether the variant's val mean beats the baseline's at every budget it ran at."""
    table = table.astype({"labels_per_class": str})
    budgets = _budget_order(table.labels_per_class.unique())
    lines = ["| pretext | variant | " + " | ".join(f"val, {b} per class | test, {b} per class" for b in budgets)
             + " | better on val at every budget |", "|---" * (2 * len(budgets) + 3) + "|"]
    for pretext, part in table.groupby("pretext", sort=False):
        default = part[part.variant == "baseline"].groupby("labels_per_class").val_accuracy.mean()
        part = part.sort_values("variant", key=lambda v: v != "baseline", kind="stable")  # the baseline first
        for variant, runs in part.groupby("variant", sort=False):
            cells, better = [], []
            for b in budgets:
                at = runs[runs.labels_per_class == b]
                if at.empty:
                    cells += ["—", "—"]
                    continue
                delta = ""
                if variant != "baseline" and b in default:
                    change = at.val_accuracy.mean() - default[b]
                    better.append(change > 0)
                    delta = f" ({signed(100 * change)})"
                cells += [mean_std(at.val_accuracy) + delta, mean_std(at.test_accuracy)]
            kept = "—" if variant == "baseline" else ("yes" if better and all(better) else "no")
            lines.append(f"| {pretext} | {variant} | " + " | ".join(cells) + f" | {kept} |")
    defaults = table[table.variant == "baseline"]
    epochs = ", ".join(f"{b}: {defaults[defaults.labels_per_class == b].epochs.iloc[0]}" for b in budgets
                       if (defaults.labels_per_class == b).any())
    val = ", ".join(f"{b}: {table[table.labels_per_class == b].val_images.iloc[0]}" for b in budgets)
    threads = ", ".join(map(str, sorted(table.threads.unique())))
    return "\n".join(lines) + (f"\n\nUp to {table.seed.nunique()} seeds per cell; baseline epochs per budget {epochs}; "
                               f"val images per budget {val}; {table.compute.iloc[0]}, {threads} thread(s).")


BASELINE_SCHEDULE = "the epochs alone"  # the schedule table's baseline: the sweep's epochs per budget, no min_steps


def schedule_rows(table: pd.DataFrame, params: dict) -> pd.DataFrame:
    """The schedule benchmark's rows in the order its tables show them: by pretext (params.yaml's `pretexts`), then
    by steps; budgets as text."""
    order = {p: i for i, p in enumerate(_pretext_order(table.pretext.unique(), params.get("pretexts", ())))}
    rows = table.astype({"labels_per_class": str}).sort_values("steps", kind="stable")
    return rows.sort_values("pretext", key=lambda p: p.map(order), kind="stable")


def schedule_markdown(table: pd.DataFrame, params: dict) -> str:
    """The fine-tuning schedule chosen (benchmarks/recipe.py --base defaults): per pretext, variant and budget, the
    optimizer steps, the honest val accuracy (what decides) with its difference from the baseline paired by seed
    (the same labelled and val images) and 95% interval, and the test accuracy, never used to choose. The variant
    params.yaml's min_steps, head and protocol give is marked as the default; where the head's layer was chosen
    (head: probe), the layers chosen are listed with the steps."""
    table = schedule_rows(table, params)
    budgets = _budget_order(table.labels_per_class.unique())
    lines = ["| pretext | schedule | " + " | ".join(f"steps, {b} per class | val, {b} per class | test, {b} per class"
                                                  for b in budgets) + " |", "|---" * (3 * len(budgets) + 2) + "|"]
    default = tuple(params["finetune"][k] for k in ("min_steps", "head", "protocol"))
    for pretext, part in table.groupby("pretext", sort=False):
        base = part[part.variant == "baseline"].set_index(["labels_per_class", "seed"]).val_accuracy
        for variant, runs in part.groupby("variant", sort=False):
            cells = []
            for b in budgets:
                at = runs[runs.labels_per_class == b].set_index(["labels_per_class", "seed"])
                if at.empty:
                    cells += ["—"] * 3
                    continue
                val = f"{100 * at.val_accuracy.mean():.2f}"
                paired = (at.val_accuracy - base).dropna()
                if variant != "baseline" and len(paired):
                    n, mean, low, high = paired_interval(paired)
                    text = f"{signed(100 * mean)}" + (f", {signed(100 * low)} to {signed(100 * high)}" if n > 1 else "")
                    val += f" ({'**' + text + '**' if excludes_zero(n, low, high) else text})"
                steps = str(int(at.steps.iloc[0]))
                if (at["head"] == "probe").all():
                    chosen = at.layer.value_counts()
                    steps += " (" + ", ".join(f"{layer} ×{n}" if n > 1 else layer for layer, n in chosen.items()) + ")"
                cells += [steps, val, f"{100 * at.test_accuracy.mean():.2f}"]
            first = runs.iloc[0]
            name = BASELINE_SCHEDULE if variant == "baseline" else variant
            mark = " (default)" if (int(first.min_steps), first["head"], first.protocol) == default else ""
            lines.append(f"| {pretext} | {name}{mark} | " + " | ".join(cells) + " |")
    seeds = ", ".join(f"{b}: {table[table.labels_per_class == b].seed.nunique()}" for b in budgets)
    threads = ", ".join(map(str, sorted(table.threads.unique())))
    return "\n".join(lines) + (f"\n\nMeans over seeds (per budget {seeds}); in brackets the val difference from "
                               f"{BASELINE_SCHEDULE}, seed by seed, and its 95% interval (**bold**: it excludes 0); "
                               f"{table.compute.iloc[0]}, {threads} thread(s).")


def distill_recipe_markdown(table: pd.DataFrame) -> str:
    """The distillation variants (benchmarks/distill.py): per pretext, budget and variant, the teacher's and the
    student's honest val accuracy (what decides) and test accuracy, means over seeds, and the minutes it took."""
    table = table.astype({"labels_per_class": str})
    lines = ["| pretext | labels per class | variant | val: teacher → student | test: teacher → student "
             "| minutes | runs |", "|---|---|---|---|---|---|---|"]
    for (pretext, budget, variant), runs in table.groupby(["pretext", "labels_per_class", "variant"], sort=False):
        val, test = runs.val_accuracy.mean() - runs.teacher_val_accuracy.mean(), \
            runs.test_accuracy.mean() - runs.teacher_test_accuracy.mean()
        lines.append(f"| {pretext} | {budget} | {variant} | {100 * runs.teacher_val_accuracy.mean():.2f} → "
                     f"{100 * runs.val_accuracy.mean():.2f} ({signed(100 * val)}) | {100 * runs.teacher_test_accuracy.mean():.2f}"
                     f" → {100 * runs.test_accuracy.mean():.2f} ({signed(100 * test)}) | {runs.seconds.mean() / 60:.1f} "
                     f"| {len(runs)} |")
    threads = ", ".join(map(str, sorted(table.threads.unique())))
    return "\n".join(lines) + f"\n\n{table.compute.iloc[0]}, {threads} thread(s); minutes: the distillation alone, wall time as measured (not always on an idle machine)."


def pretext_compute_markdown(table: pd.DataFrame, params: dict) -> str:
    """The pretext variants (benchmarks/pretext.py): per variant, the minutes of pre-training and the frozen-feature
    probe's honest val accuracy (what decides; with its change against the pretext's reference, the paper's setting)
    and test accuracy at each label budget measured. The variant with params.yaml's views and epochs is marked as
    the pipeline's default."""
    budgets = [c.removeprefix("val_") for c in table.columns if c.startswith("val_")]
    lines = ["| pretext | pre-training | minutes | inputs seen | " + " | ".join(
        f"probe val, {b} per class | probe test, {b} per class" for b in budgets) + " |",
        "|---" * (4 + 2 * len(budgets)) + "|"]
    for pretext, part in table.groupby("pretext", sort=False):
        part = part.sort_values("reference", ascending=False, kind="stable")  # the reference first, others as run
        first = part.iloc[0]
        default = params["pretrain"].get(pretext, {})
        for _, row in part.iterrows():
            cells = []
            for b in budgets:
                change = "" if row.reference else f" ({signed(100 * (row[f'val_{b}'] - first[f'val_{b}']))})"
                cells += [f"{100 * row[f'val_{b}']:.2f}{change}", f"{100 * row[f'test_{b}']:.2f}"]
            marks = ["reference"] * bool(row.reference) + ["default"] * (
                (row.views, row.epochs) == (default.get("views"), default.get("epochs")))
            name = row.variant.split(": ", 1)[-1] + (f" ({', '.join(marks)})" if marks else "")
            lines.append(f"| {pretext} | {name} | {row.seconds / 60:.1f} | {row.inputs_seen / 1e6:.2f} M | "
                         + " | ".join(cells) + " |")
    threads = ", ".join(map(str, sorted(table.threads.unique())))
    draws = str(table[f"layers_{budgets[0]}"].iloc[0]).count(",") + 1  # one chosen layer per label draw
    return "\n".join(lines) + (f"\n\n{table.compute.iloc[0]}, {threads} thread(s); minutes: the pre-training alone, "
                               f"wall time as measured; probe: {draws} label draw(s) per budget, the layer chosen per "
                               "draw on its val images (at most k per class), linear probe.")


def epochs_markdown(table: pd.DataFrame) -> str:
    """The fine-tuning schedule's trade-off with all labels, from the recipe ablation's baseline and `epochs ×N`
    rows: per pretext and number of epochs, the honest val and the test accuracy (mean ± std over seeds) and the
    minutes of fine-tuning (mean wall time of a run, as measured)."""
    rows = table[(table.labels_per_class.astype(str) == "all")
                 & ((table.variant == "baseline") | table.variant.str.startswith("epochs ×"))]
    lines = ["| pretext | fine-tuning epochs | val accuracy | test accuracy | minutes of fine-tuning | runs |",
             "|---|---|---|---|---|---|"]
    rows = rows.sort_values("epochs", kind="stable")
    for (pretext, epochs), runs in rows.groupby(["pretext", "epochs"], sort=False):
        lines.append(f"| {pretext} | {epochs} | {mean_std(runs.val_accuracy)} | {mean_std(runs.test_accuracy)} "
                     f"| {runs.seconds.mean() / 60:.1f} | {len(runs)} |")
    threads = ", ".join(map(str, sorted(rows.threads.unique())))
    return "\n".join(lines) + (f"\n\nAll {rows.val_images.iloc[0]} val images; {rows.compute.iloc[0]}, {threads} "
                               "thread(s); minutes: wall time as measured, on whatever else the machine ran.")


def render_benchmark(root: Path, name: str, read=lambda p: p.read_text()) -> str:
    """The README block `name` of BENCHMARKS, from its benchmark's table."""
    path, markdown, start, end = BENCHMARKS[name]
    table = pd.read_csv(io.StringIO(read(root / path)), sep="\t")
    return f"{start}\n{markdown(table, yaml.safe_load(read(root / 'params.yaml')), root, read)}\n{end}"


def schedule_block(table: pd.DataFrame, params: dict, root: Path, read) -> str:
    """The schedule table, and each schedule's fine-tuned model against the linear probe of the same backbone on
    the same labelled images (the seeds the probe drew)."""
    runs = schedule_rows(table, params)
    draws = probe_draws(read_probes(root, read))
    budgets = _budget_order(runs.labels_per_class.unique())
    lines = ["| fine-tuned − probe | schedule | " + " | ".join(f"{b} per class" for b in budgets) + " |",
             "|---" * (len(budgets) + 2) + "|"]
    for (pretext, variant), part in runs.groupby(["pretext", "variant"], sort=False):
        gaps = {r.labels_per_class: r for r in probe_gaps(part, draws, protocol=None).itertuples()}
        if gaps:
            name = BASELINE_SCHEDULE if variant == "baseline" else variant
            lines.append(f"| {pretext} | {name} | " + " | ".join(interval_cell(gaps[b]) if b in gaps else "—"
                                                                for b in budgets) + " |")
    probes = ("\n\nEach schedule's fine-tuned model against the frozen linear probe of the same backbone on the same "
              "labelled images (docs/results.md), test accuracy, paired by seed over the label draws the probe ran "
              "(**bold**: the 95% interval excludes 0):\n\n" + "\n".join(lines)) if len(lines) > 2 else ""
    return schedule_markdown(table, params) + probes


# README blocks drawn from benchmark tables (benchmarks/*.py): name -> (table, how it is shown given params.yaml, the
# repository's root and a reader of its files, where)
BENCHMARKS = {"recipe": (RECIPE, lambda table, *_: recipe_markdown(table), RECIPE_START, RECIPE_END),
              "epochs": (RECIPE, lambda table, *_: epochs_markdown(table), EPOCHS_START, EPOCHS_END),
              "distill-recipe": (DISTILL_RECIPE, lambda table, *_: distill_recipe_markdown(table),
                                 DISTILL_RECIPE_START, DISTILL_RECIPE_END),
              "pretext-compute": (PRETEXT_COMPUTE, lambda table, params, *_: pretext_compute_markdown(table, params),
                                  PRETEXT_COMPUTE_START, PRETEXT_COMPUTE_END),
              "schedule": (SCHEDULE, schedule_block, SCHEDULE_START, SCHEDULE_END)}


def replace_block(readme: str, block: str, start: str = START, end: str = END) -> str:
    """README text with the block between `start` and `end` swapped for `block`."""
    head, sep, rest = readme.partition(start)
    _, sep2, tail = rest.partition(end)
    if not sep or not sep2:
        raise ValueError(f"README.md has no {start} ... {end} block")
    return head + block + tail


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
    comparison, distilled = sweep_tables(experiment_rows(show))
    if not replace:  # earlier commits' rows stay; a rerun of the same settings replaces its row
        comparison = merged(root / COMPARISON, comparison, EXPERIMENT_KEYS)
        distilled = merged(root / DISTILLED, distilled, [*EXPERIMENT_KEYS, *DISTILL_KEYS[1:]])
    tables = {root / COMPARISON: comparison.to_csv(sep="\t", index=False, float_format="%.6f")}
    if len(distilled):
        tables[root / DISTILLED] = distilled.to_csv(sep="\t", index=False, float_format="%.6f")
    return tables


def rendered(root: Path, pending: dict[Path, str] | None = None,
             read_file=lambda p: p.read_text(), exists_file=lambda p: p.is_file()) -> dict[Path, str]:
    """Every file the report writes, as text: the `pending` tables, the README's and docs/results.md's blocks
    and the pictures, all drawn from the files at `root` (read by `read_file`) as `pending` would leave them."""
    out = dict(pending or {})

    def read(path: Path) -> str:
        return out[path] if path in out else read_file(path)

    def exists(path: Path) -> bool:
        return path in out or exists_file(path)

    readme, details = root / "README.md", root / RESULTS_DOC
    out[details] = replace_block(replace_block(read(details), render(root, read)), render_probe(root, read, exists),
                                 PROBE_START, PROBE_END)
    pretexts = _pretexts(root, read)
    for pretext in pretexts:
        out[root / embedding_path(pretext)] = embedding_svg(root, pretext, read)
    if exists(root / COMPARISON):
        table = read_comparison(root, read)
        out[root / PLOT] = label_efficiency_svg(table, pretexts)
        if len(paired_gains(table)):
            out[root / GAIN_PLOT] = gain_svg(table, pretexts)
        out[readme] = replace_block(read(readme), render_comparison(root, table, read), CMP_START, CMP_END)
        if exists(root / REFERENCE_VIEWS):
            out[readme] = replace_block(read(readme), render_views(root, read), VIEWS_START, VIEWS_END)
    if exists(root / DISTILLED):
        out[root / DISTILLED_PLOT] = distillation_svg(read_distilled(root, read), pretexts)
        out[readme] = replace_block(read(readme), render_distilled(root, read), DISTILL_START, DISTILL_END)
    for name, (path, _, start, end) in BENCHMARKS.items():
        if exists(root / path):
            out[readme] = replace_block(read(readme), render_benchmark(root, name, read), start, end)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m selfsup.report", formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        description="Render the results: README.md's and docs/results.md's tables and the charts, from metrics/ "
                    "and params.yaml. Everything is computed before anything is written; a file whose text is "
                    "unchanged is left alone.",
        epilog="After a sweep (README: The label-efficiency sweep):\n"
               "  python -m selfsup.report --experiments            # the experiments of HEAD\n"
               "  python -m selfsup.report --experiments --rev abc1234  # ... of the commit they were queued from")
    parser.add_argument("--experiments", action="store_true",
                        help=f"first collect the finished DVC experiments into {COMPARISON} and {DISTILLED}: a row "
                             "of the same settings is replaced, every other row kept; with none to collect, an "
                             "error and nothing written")
    parser.add_argument("--rev", metavar="COMMIT",
                        help="with --experiments: the commit the experiments were queued from (default HEAD)")
    parser.add_argument("--replace", action="store_true",
                        help="with --experiments: the tables hold the collected experiments alone, every other "
                             "row dropped")
    args = parser.parse_args(argv)
    if (args.rev is not None or args.replace) and not args.experiments:
        parser.error("--rev and --replace go with --experiments")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = Path.cwd()
    pending = collect(root, args.rev or "HEAD", args.replace) if args.experiments else {}
    changed = []
    for path, text in rendered(root, pending).items():
        if not path.is_file() or path.read_text() != text:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
            changed.append(path.relative_to(root).as_posix())
    print(f"updated {', '.join(changed)}" if changed else "the results are up to date: nothing changed",
          file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
