"""The label-efficiency sweep in numbers: test accuracy per pretext and budget, the paired gains over `none`, the
labels `none` needs to match each pretext, and their charts."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from selfsup.report.data import COMPARISON, REFERENCE_VIEWS, no_rows, read_dataset, read_shown
from selfsup.report.tables import (accuracy_title, budget_grid, budget_order, budget_positions, budget_schedules,
                                   gain_text, interval_cell, is_finding, mean_std, pretext_colour, pretext_order,
                                   schedule_text, seed_std)
from selfsup.statistics import labels_to_match, paired_interval, share_of
from selfsup.svg import line_chart

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
        if not n:  # no run of the pair recorded an accuracy
            continue
        out.append({"pretext": pretext, "labels_per_class": budget, "epochs": epochs, "seeds": n, "gain": mean,
                    "low": low, "high": high})
    return pd.DataFrame(out, columns=["pretext", "labels_per_class", "epochs", "seeds", "gain", "low", "high"])


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
        lines += [f"Protocol `{protocol}`; fine-tuning schedule per budget: {budget_schedules(part)}.", "",
                  *budget_grid(part, "pretext", "{} labels per class",
                               lambda r: f"{100 * r.mean:.2f} ± {100 * r.std:.2f} ({r.runs} runs)", order)]
        if part.runs.nunique() > 1:
            lines += ["", f"Cells with fewer than {part.runs.max()} runs ran fewer seeds (one run's std is 0)."]
        lines.append("")
    return "\n".join(lines).strip()


def answer_markdown(table: pd.DataFrame, order=(), protocol: str = "full",
                    matched: pd.DataFrame | None = None) -> str:
    """The answer in one line per budget: every pretext's test accuracy and its gain over `none` paired by seed with
    the 95% interval (bold where the interval excludes 0), and the labels `none` needs to match the best one where
    its gain is clear of 0 (`matched`: `matching` of `table`, computed when not given)."""
    summary = sweep_summary(table[table.protocol == protocol])
    budgets = budget_order(summary.labels_per_class.unique())
    mean = {(r.pretext, r.labels_per_class): r for r in summary.itertuples()}
    gains = {(r.pretext, r.labels_per_class): r for r in paired_gains(table, protocol).itertuples()}
    matched = matching(table, protocol) if matched is None else matched
    saves = {(r.pretext, r.labels_per_class): r for r in matched.itertuples()}
    largest = matched.largest.max() if len(matched) else 0
    lines = []
    for b in budgets:
        rows = [mean[(p, b)] for p in pretext_order(summary.pretext.unique(), order)
                if (p, b) in mean and (p, b) in gains and p != "none"]
        base = mean.get(("none", b))
        if not rows or base is None:
            continue
        parts = []
        for r in rows:
            gain = gains[(r.pretext, b)]
            text = gain_text(gain, both=gain.seeds != r.runs or gain.seeds != base.runs)
            verdict = f"**{text}**" if is_finding(gain) else text + (", too close to tell from `none`"
                                                                    if gain.seeds > 1 else "")
            parts.append(f"`{r.pretext}` {100 * r.mean:.2f}%, {verdict}")
        line = f"- **{b} labels per class** (`none` {100 * base.mean:.2f}%): " + "; ".join(parts) + "."
        best = max(rows, key=lambda r: r.mean)  # the labels it saves only where its gain is clear of 0
        if best.mean > base.mean and (best.pretext, b) in saves and is_finding(gains[(best.pretext, b)]):
            line += f" {saving_text(saves[(best.pretext, b)], largest)}."
        lines.append(line)
    return "\n".join(lines)


def weakest_known(table: pd.DataFrame, protocol: str = "full") -> pd.DataFrame:
    """The rows of `protocol` at the smallest budget whose rows know their delivered model's weakest class
    (`worst_recall`); empty when none does."""
    known = table[(table.protocol == protocol) & table.get("worst_recall", pd.Series(dtype=float)).notna()]
    return known[known.labels_per_class == budget_order(known.labels_per_class.unique())[0]] if len(known) else known


def weakest_classes(table: pd.DataFrame, protocol: str = "full") -> pd.DataFrame:
    """Per pretext, on `weakest_known`'s rows: the least and the mean over seeds of the weakest class's recall, and
    the run with the least. Empty when no row knows it."""
    out = []
    for pretext, part in weakest_known(table, protocol).groupby("pretext"):
        least = part.loc[part.worst_recall.idxmin()]
        out.append({"pretext": pretext, "labels_per_class": least.labels_per_class, "runs": len(part),
                    "least": least.worst_recall, "mean": part.worst_recall.mean(), "seed": least.seed,
                    "worst_class": least.worst_class})
    return pd.DataFrame(out, columns=["pretext", "labels_per_class", "runs", "least", "mean", "seed", "worst_class"])


def weakest_text(table: pd.DataFrame, classes: int, order=(), protocol: str = "full") -> str:
    """The floor of the per-class recall in words: at the smallest budget that knows it, how often the least
    recognised class of each model is still recognised, per pretext (the least over seeds, and the mean), against
    chance (1 in `classes`). Empty when no row knows it."""
    known = weakest_known(table, protocol)
    if known.empty:
        return ""
    weakest = weakest_classes(known, protocol)
    named = known.worst_class.value_counts()
    rows = {r.pretext: r for r in weakest.itertuples()}
    floor = weakest.least.min()
    per_pretext = ", ".join(f"`{p}` {100 * rows[p].least:.1f}% (mean {100 * rows[p].mean:.1f}%)"
                            for p in pretext_order(rows, order))
    verdict = "no class collapses" if floor > 1 / classes else "**a class falls to chance or below**"
    return (f"At {known.labels_per_class.iloc[0]} labels per class {verdict}: the class each model recognises "
            f"least ({named.index[0]} in {named.iloc[0]} of {len(known)} models) is recognised in at least "
            f"{100 * floor:.1f}% of its test images, against {100 / classes:.0f}% by chance. Its least over the "
            f"seeds, per pretext: {per_pretext}.")


def matching(table: pd.DataFrame, protocol: str = "full", all_per_class: int | None = None) -> pd.DataFrame:
    """`labels_to_match` of the rows of `protocol` (`all` on the curve as `all_per_class` labels per class)."""
    return labels_to_match(table[table.protocol == protocol], all_per_class=all_per_class)


def labels_cell(labels: float, largest: int, smallest: int = 0) -> str:
    """Labels per class `none` needs, in words: "more than `largest`" beyond the curve, "≤`smallest`" at its
    smallest budget (nothing is read below it)."""
    if labels == float("inf"):
        return f"more than {largest}"
    return f"≤{smallest}" if labels <= smallest else f"{labels:.0f}"


def share_text(budget: int, labels: float, largest: int, smallest: int = 0) -> str:
    """`share_of` in words: "52%"; "more than 81%" where `none` never matches up to `largest` (the floor that is
    known); "≤0%" where `labels` is at the curve's `smallest` budget (nothing is read below it)."""
    if labels == float("inf"):
        return f"more than {100 * share_of(budget, largest):.0f}%"
    return f"{'≤' if labels <= smallest else ''}{100 * share_of(budget, labels):.0f}%"


def saved_share(r) -> tuple[float, str]:
    """A `matching` row's share of the labels saved: (the share, at least where `none` never matches, in words)."""
    b = int(r.labels_per_class)
    labels = r.largest if r.labels == float("inf") else r.labels
    return share_of(b, labels), share_text(b, r.labels, r.largest)


def saving_text(r, largest: int) -> str:
    """How many labels `none` needs to match a pretext, in words, with the share saved and their 95% intervals (none
    where a budget ran a single seed)."""
    b = int(r.labels_per_class)
    if r.labels == float("inf"):
        return (f"`none` does not match `{r.pretext}` at {b} labels per class even with {largest}: it saves "
                f"{share_text(b, r.labels, largest)} of the labels")
    smallest = getattr(r, "smallest", 0)
    share = (lambda n: share_text(b, n, largest, smallest))
    cell = (lambda n: labels_cell(n, largest, smallest))
    if math.isnan(r.low):
        return (f"`{r.pretext}` with {b} labels per class does as well as `none` with {cell(r.labels)}: it saves "
                f"{share(r.labels)} of the labels (a budget with one seed: no interval)")
    return (f"`{r.pretext}` with {b} labels per class does as well as `none` with {cell(r.labels)} (95% CI "
            f"{cell(r.low)} to {cell(r.high)}): it saves {share(r.labels)} of the "
            f"labels (95% CI {share(r.low)} to {share(r.high)})")


def saving_is_finding(r, gains: pd.DataFrame) -> bool:
    """Whether the share of the labels a pretext saves (`r`: a `matching` row) is a finding: its 95% interval above 0
    (even the interval's low end of the labels `none` needs is above the budget) and the pretext's gain over `none`
    there (its row of `gains`: `paired_gains`) a finding above 0."""
    gain = gains[(gains.pretext == r.pretext) & (gains.labels_per_class == r.labels_per_class)]
    return r.low > int(r.labels_per_class) and len(gain) == 1 and is_finding(gain.iloc[0]) and gain.iloc[0].low > 0


def labels_markdown(matched: pd.DataFrame, order=(), gains: pd.DataFrame | None = None) -> str:
    """The labels per class `none` needs to match each pretext (rows) at each budget (columns), with the 95%
    interval and the share of labels saved; bold where the saving `saving_is_finding` (with `gains`, the
    `paired_gains` of the same rows)."""
    largest = matched.largest.max() if len(matched) else 0

    def cell(r):
        b = int(r.labels_per_class)
        saved = "" if r.labels <= b else f"saves {share_text(b, r.labels, largest)}"
        cell = (lambda n: labels_cell(n, largest, getattr(r, "smallest", 0)))
        labels = f"**{cell(r.labels)}**" if gains is not None and saving_is_finding(r, gains) else cell(r.labels)
        if r.low == float("inf"):  # never matched, in any draw
            return labels + (f" ({saved})" if saved else "")
        if math.isnan(r.low):  # a budget with one seed: no interval
            return labels + (f" ({saved}; no interval)" if saved else " (no interval)")
        return f"{labels} ({cell(r.low)} to {cell(r.high)}{'; ' + saved if saved else ''})"
    return "\n".join(budget_grid(matched, "labels `none` needs", "{} labels per class", cell, order))


def saving_svg(matched: pd.DataFrame, order=()) -> str:
    """The share of the labels each pretext saves (`matched`: `matching`) against its labels per class, one line per
    pretext in its colour of label_efficiency_svg, error bars its 95% interval (to 100% where `none` may never catch
    up; none where a budget ran one seed); where `none` never catches up, the floor "more than" names."""
    budgets = budget_order(matched.labels_per_class.unique())
    series, colours = {}, {}
    for pretext in pretext_order(matched.pretext.unique(), order):
        points = []
        for r in sorted(matched[matched.pretext == pretext].itertuples(), key=lambda r: int(r.labels_per_class)):
            b, share = int(r.labels_per_class), 100 * saved_share(r)[0]
            points.append((b, share, None if math.isnan(r.low) else
                           (100 * share_of(b, r.low), 100 * share_of(b, r.high))))
        series[pretext] = points
        colours[pretext] = pretext_colour(pretext, order)
    return line_chart(series, [(int(b), b) for b in budgets],
                      ("Labels saved: the share of none's labels a pretext does without, with 95% CI",
                       "labels per class the pretext is fine-tuned on", "labels saved (%)"),
                      colours=colours, zero_line=True, dodge=6)


def gains_markdown(table: pd.DataFrame, order=(), protocol: str = "full") -> str:
    """The paired gains over `none` per pretext (rows) and budget (columns), points with their 95% interval, bold
    where the interval excludes 0."""
    return "\n".join(budget_grid(paired_gains(table, protocol), "gain over `none`", "{} labels per class",
                                 interval_cell, order))


def gain_svg(table: pd.DataFrame, order=(), protocol: str = "full") -> str:
    """The paired gain over `none` against labels per class, one line per pretext, error bars its 95% interval;
    each pretext in its colour of label_efficiency_svg."""
    gains = paired_gains(table, protocol)
    budgets = budget_order(gains.labels_per_class.unique())
    position = budget_positions(budgets)
    series, colours = {}, {}
    for pretext in pretext_order(gains.pretext.unique(), order):
        part = sorted(gains[gains.pretext == pretext].itertuples(), key=lambda r: position[r.labels_per_class])
        series[pretext] = [(position[r.labels_per_class], 100 * r.gain,
                            None if r.seeds < 2 else 100 * (r.high - r.gain)) for r in part]
        colours[pretext] = pretext_colour(pretext, order)
    return line_chart(series, [(position[b], b) for b in budgets],
                      (f"Gain over none, paired by seed, with 95% CI ({protocol})", "labels per class",
                       "test accuracy gain (points)"), colours=colours, zero_line=True, dodge=6)


def label_efficiency_svg(table: pd.DataFrame, order=(), protocol: str = "full") -> str:
    """Test accuracy against labels per class, one line per pretext, error bars one std over seeds."""
    summary = sweep_summary(table[table.protocol == protocol])
    budgets = budget_order(summary.labels_per_class.unique())
    position = budget_positions(budgets)
    series = {}
    for pretext in pretext_order(summary.pretext.unique(), order):
        part = summary[summary.pretext == pretext]
        series[pretext] = [(position[r.labels_per_class], 100 * r.mean, 100 * r.std)
                           for r in sorted(part.itertuples(), key=lambda r: position[r.labels_per_class])]
    ticks = [(position[b], b) for b in budgets]
    return line_chart(series, ticks, (accuracy_title(table, f" after fine-tuning ({protocol})"),
                                      "labels per class", "test accuracy (%)"),
                      colours={pretext: pretext_colour(pretext, order) for pretext in series})


def views_markdown(others: pd.DataFrame, current: pd.DataFrame, params: dict, protocol: str = "full") -> str:
    """Per pretext, budget and views of `others` (the sweep's rows fine-tuned from backbones pre-trained with other
    views than params.yaml's, a `views` column: `other_views`), over the seeds both they and `current` ran on the
    same schedule (the same labelled images): the fine-tuned test accuracy (mean ± std) from that backbone and from
    the one with params.yaml's views, and the change paired by seed with its 95% interval (bold where it excludes 0).
    Within a budget, the most views first."""
    keys = ["pretext", "labels_per_class", "epochs", "min_steps"]
    ref = others[others.protocol == protocol]
    cur = current[current.protocol == protocol][[*keys, "seed", "test_accuracy"]]
    lines = ["| pretext | labels per class | fine-tuning | views | test accuracy | default views | test accuracy | "
             "change (95% CI) |", "|---" * 8 + "|"]
    for pretext in pretext_order(ref.pretext.unique(), params.get("pretexts", ())):
        part = ref[ref.pretext == pretext]
        for budget in budget_order(part.labels_per_class.unique()):
            settings = part[part.labels_per_class == budget].groupby(["views", "epochs", "min_steps"])
            for (views, epochs, min_steps), group in sorted(settings, key=lambda setting: -setting[0][0]):
                pairs = group.merge(cur, on=[*keys, "seed"], suffixes=("", "_now"))
                runs = pairs if len(pairs) else group  # over the seeds both ran; none yet: the other's own
                now, change = "—", "—"
                if len(pairs):
                    now = f"{mean_std(pairs.test_accuracy_now)} ({len(pairs)})"
                    n, gain, low, high = paired_interval(pairs.test_accuracy_now - pairs.test_accuracy)
                    change = interval_cell(SimpleNamespace(seeds=n, gain=gain, low=low, high=high))
                lines.append(f"| {pretext} | {budget} | {schedule_text(epochs, min_steps)} | {views} | "
                             f"{mean_std(runs.test_accuracy)} ({len(runs)}) | {params['pretrain'][pretext]['views']} "
                             f"| {now} | {change} |")
    return "\n".join(lines) + ("\n\nFine-tuned model (before distillation), mean ± std (runs) over the seeds both "
                               "sweeps ran, hence the same labelled images; the same recipe and fine-tuning schedule "
                               "(both columns of a row; the papers' views ran before `finetune.min_steps`). "
                               "views: those the other backbone was pre-trained with (the papers' and earlier defaults', "
                               f"`{REFERENCE_VIEWS.as_posix()}`, collected before the defaults changed; any other, "
                               "experiments queued with `-S pretrain.<pretext>.views=N`). The change, default less "
                               "other, is paired by seed, with its 95% interval (t over the seeds); **bold**: the "
                               "interval excludes 0.")


VIEWS_VARIANT = r"pretrain\.(?P<pretext>\w+)\.views=(?P<views>\d+)"


def other_views(reference: pd.DataFrame, comparison: pd.DataFrame, params: dict) -> pd.DataFrame:
    """The sweep's rows fine-tuned from backbones pre-trained with other views than `params`' (params.yaml's), with a
    `views` column: those of `reference` (REFERENCE_VIEWS, which has one) and of `comparison` (every variant) whose
    only difference from their commit's params is their own pretext's views (variant `pretrain.<pretext>.views=N`),
    less any whose views are now params.yaml's (run before those views became the default: the sweep's own rows)."""
    found = comparison.variant.str.extract(f"^{VIEWS_VARIANT}$")
    mine = found.pretext.notna() & (found.pretext == comparison.pretext)
    rows = comparison[mine].assign(views=found.views[mine].astype(int))
    others = pd.concat([reference, rows], ignore_index=True) if len(rows) else reference
    default = others.pretext.map(lambda p: (params.get("pretrain") or {}).get(p, {}).get("views"))
    return others[others.views != default]


def render_views(root: Path, read=lambda p: p.read_text()) -> str:
    """The results block comparing the sweeps on backbones of other views with the sweep on the defaults'."""
    comparison, params = read_dataset(root, COMPARISON, read)  # every recipe: the other views' rows among them
    others = other_views(read_shown(root, REFERENCE_VIEWS, read)[0], comparison, params)
    if others.empty:
        return no_rows(root, REFERENCE_VIEWS, read)
    return views_markdown(others, comparison[comparison.variant == ""], params)  # as read_shown keeps them
