"""The project's targets as data, and the tables that say which the committed results meet."""

from __future__ import annotations

import pandas as pd

from selfsup.report.sweep import labels_cell, paired_gains, sweep_summary, weakest_classes
from selfsup.report.tables import gain_text, is_finding, signed

# AML19-SelfSupervised's supervised CifarNet (the project this one reimplements), test accuracy (DeepFashion: on
# its own subset of the benchmark): the anchor of the default run's table
SEED_SUPERVISED = {"fashion_mnist": 0.9033, "deepfashion": 0.4573}

# The project's targets: test accuracy, mean over seeds, the full test set, the fine-tuned model unless named
NONE_ALL = 0.93  # all labels: `none`
BEST_PRETEXT = {"all": 0.935, "100": 0.87, "10": 0.78}  # per budget: the best pretext
GAIN_10 = 0.06  # 10 per class: the best pretext's paired gain over `none`, its 95% CI excluding 0
LABELS_RATIO_10 = 3  # 10 per class: `none` needs this many times the labels to match the best pretext (CI's low end)
DISTILLED_BEST = {"10": 0.80, "100": 0.88}  # per budget: the best distilled pipeline, and a pretext above `none`
NO_COLLAPSE = "10"  # at this budget every delivered model recognises every class more often than chance
TARGETS_DATASET = "fashion_mnist"  # the dataset the targets in numbers were set for


def on_target_dataset(table: pd.DataFrame) -> bool:
    """Whether `table`'s rows are all of TARGETS_DATASET (rows that name none are): the targets set in numbers
    apply to it alone; another dataset's rows are checked only against the targets every dataset shares."""
    return set(table["dataset"].dropna() if "dataset" in table else []) <= {TARGETS_DATASET}


def targets_markdown(table: pd.DataFrame, protocol: str = "full", gaps: pd.DataFrame | None = None,
                     matched: pd.DataFrame | None = None, classes: int | None = None) -> str:
    """The project's accuracy targets (mean over seeds, full test set), each met or missed, with the number; with
    `gaps` (`probe_gaps`), whether the fine-tuned model is at least as accurate as its backbone's linear probe; with
    `matched` (`matching`), whether the best pretext at 10 per class saves two thirds of the labels; with `classes`,
    whether every model at NO_COLLAPSE per class recognises each class above chance. The targets in numbers (accuracy,
    gain, labels saved) only for rows of TARGETS_DATASET (`on_target_dataset`)."""
    numbers = on_target_dataset(table)
    summary = sweep_summary(table[table.protocol == protocol])
    mean = {(r.pretext, r.labels_per_class): r.mean for r in summary.itertuples()}

    def best(b):
        rows = {p: m for (p, c), m in mean.items() if c == b and p != "none"}
        return max(rows.items(), key=lambda kv: kv[1]) if rows else (None, float("nan"))

    lines = ["| target | measured | |", "|---|---|---|"]

    def add(target, measured, met):
        lines.append(f"| {target} | {measured} | {'met' if met else '**missed**'} |")

    if numbers and ("none", "all") in mean:
        add(f"all labels: `none` ≥ {100 * NONE_ALL:.1f}%", f"{100 * mean['none', 'all']:.2f}%",
            mean["none", "all"] >= NONE_ALL)
    for b, floor in BEST_PRETEXT.items() if numbers else ():
        name, value = best(b)
        if name is not None:
            add(f"{b} per class: best pretext ≥ {100 * floor:.1f}%", f"`{name}` {100 * value:.2f}%", value >= floor)
    weakest = weakest_classes(table, protocol) if classes else pd.DataFrame()
    if len(weakest) and weakest.labels_per_class.iloc[0] == NO_COLLAPSE:
        worst = weakest.loc[weakest.least.idxmin()]
        add(f"{NO_COLLAPSE} per class: every model recognises every class above chance ({100 / classes:.0f}%)",
            f"least: `{worst.pretext}` seed {worst.seed}, {worst.worst_class} {100 * worst.least:.1f}% "
            f"({weakest.runs.sum()} models)", worst.least > 1 / classes)
    paired = list(paired_gains(table, protocol).itertuples())
    hundred = [r for r in paired if r.labels_per_class == "100"]
    if hundred:  # above by the paired interval: a gain whose interval holds 0 is not shown to be above
        unclear = [r for r in hundred if not (is_finding(r) and r.gain > 0)]
        add("100 per class: every pretext above `none`, its 95% CI excluding 0", "all above" if not unclear else
            "; ".join(f"`{r.pretext}` {gain_text(r)}" for r in unclear), not unclear)
    gains = {r.pretext: r for r in paired if r.labels_per_class == "10"}
    if numbers and gains:
        top = max(gains.values(), key=lambda r: r.gain)
        add(f"10 per class: best pretext ≥ `none` + {100 * GAIN_10:.0f} points, its 95% CI excluding 0",
            f"`{top.pretext}` {gain_text(top)}", top.gain >= GAIN_10 and is_finding(top))
    ten = None if matched is None or not numbers else matched[matched.labels_per_class == "10"]
    if ten is not None and len(ten):
        # the pretext the target is decided on: the highest lower end (the point where none has an interval)
        top = ten.loc[ten.low.fillna(-1).idxmax() if ten.low.notna().any() else ten.labels.idxmax()]
        cell = (lambda n: labels_cell(n, top.largest, top.get("smallest", 0)))
        interval = ("no interval: a budget ran one seed" if pd.isna(top.low)
                    else f"95% CI {cell(top.low)} to {cell(top.high)}")
        add(f"10 per class: best pretext matches `none` with ≥ {LABELS_RATIO_10}× the labels (saves ≥ "
            f"{100 * (1 - 1 / LABELS_RATIO_10):.0f}%), by the lower end of its 95% CI",
            f"`{top.pretext}`: `none` needs {cell(top.labels)} ({interval})",
            top.low >= LABELS_RATIO_10 * 10)
    if gaps is not None and len(gaps):
        below = gaps[gaps.gain < 0]
        worst = below.sort_values("gain").head(3)
        clear = sum(is_finding(r) for r in below.itertuples())
        add("every budget: fine-tuned ≥ the frozen linear probe of its backbone",
            "always" if below.empty else f"below at {len(below)} of {len(gaps)} (pretext, budget), "
            f"{'none' if not clear else clear} of them by an interval clear of 0: "
            + ", ".join(f"`{r.pretext}` at {r.labels_per_class} {signed(100 * r.gain)}" for r in worst.itertuples())
            + (", ..." if len(below) > 3 else ""), below.empty)
    return "\n".join(lines)


def distilled_targets(table: pd.DataFrame, summary: pd.DataFrame, numbers: bool = True) -> list[str]:
    """The distillation targets' rows, each met or missed: per budget of DISTILLED_BEST, the best distilled pipeline
    (`summary`: `distilled_summary`; with `numbers`: rows of TARGETS_DATASET), and the best distilled pretext against
    distilled `none`, paired by seed in `table` (the distilled rows), above it by its 95% interval."""
    lines = ["| target | measured | |", "|---|---|---|"]
    # paired by seed as the answer's gains are (read_distilled leaves one protocol and schedule per budget)
    gains = pd.concat([paired_gains(table, protocol) for protocol in table.protocol.unique()] or [paired_gains(table)],
                      ignore_index=True)
    for b, floor in DISTILLED_BEST.items():
        at = summary[summary.labels_per_class == b]
        if len(at) and numbers:
            best = at.loc[at.distilled.idxmax()]
            lines.append(f"| {b} per class: best pipeline ≥ {100 * floor:.1f}% | `{best.pretext}` "
                         f"{100 * best.distilled:.2f}% | {'met' if best.distilled >= floor else '**missed**'} |")
        paired = gains[gains.labels_per_class == b]
        if len(paired):
            top = paired.loc[paired.gain.idxmax()]
            met = "met" if is_finding(top) and top.gain > 0 else "**missed**"
            lines.append(f"| {b} per class, distilled: best pretext above `none`, its 95% CI excluding 0 | "
                         f"`{top.pretext}` {gain_text(top)} | {met} |")
    return lines
