"""The README's answer: the labels saved, the paired gains, the accuracy per budget and the targets, in one block."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from selfsup.report.data import (COMPARISON, GAIN_PLOT, PER_CLASS, PLOT, SAVING_PLOT, all_labels_per_class, no_rows,
                                 pretexts, read_comparison, read_probes, read_table)
from selfsup.report.probes import probe_draws, probe_gaps
from selfsup.report.sweep import (answer_markdown, comparison_markdown, gains_markdown, labels_markdown, matching,
                                  paired_gains, saved_share, saving_is_finding, weakest_text)
from selfsup.report.tables import budget_order, pretext_order
from selfsup.report.targets import targets_markdown

GAINS_NOTE = ("A gain is the difference from `none` seed by seed: a seed draws the same labelled images, new head "
              "and batch order for every pretext, so the luck of the draw cancels. Its 95% confidence interval (t over "
              "the seeds) is where the gain over many more seeds would likely lie. **Bold**: the interval excludes 0, "
              "a gain these seeds show; the others are too close to tell from `none` with these seeds. The seeds vary "
              "the labelled images and the fine-tuning; each pretext's backbone was pre-trained once, so the intervals "
              "leave out how much another pre-training run would move it. Each interval is 95% on its own: among many "
              "gains, about one in twenty could exclude 0 by chance alone, so a gain that recurs across budgets is "
              "stronger evidence than a lone one.")


def labels_note(all_per_class: int | None = None) -> str:
    """What the table of the labels `none` needs holds (`all_per_class`: the labels per class `all` stands for on the
    curve; None where it is not on it)."""
    where = (f"`all` is on the curve as the {all_per_class} training images per class it fine-tunes on"
             if all_per_class else "`all` is not on the curve")
    return ("How many labels per class `none` needs to do as well as each pretext: where `none`'s mean accuracy "
            "curve reaches the pretext's mean, read between the budgets on a straight line in log labels, with a 95% "
            "interval that carries every budget's uncertainty over seeds (each mean drawn from its Student-t spread, "
            "a pretext's seeds paired with `none`'s; no interval where a budget of the curve or the pretext's own "
            "ran one seed); no share saved where the pretext is below `none`; \"more than\": beyond the largest "
            f"budget measured ({where}). **Bold**: a saving these seeds show, this interval and the gain's both above "
            "0; the others are too close to tell.")


def headline_text(table: pd.DataFrame, matched: pd.DataFrame, order=()) -> str:
    """The answer in one sentence: per pretext, the budgets where its gain over `none` is clear (its 95% interval
    above 0; and below 0), and for the pretext clearly above at the most budgets, the least and the most share of the
    labels it saves (`matched`: `matching`) over the budgets where both its gain and that share are clear of 0. Empty
    without a gain over two seeds or more."""
    gains = paired_gains(table)
    gains = gains[gains.seeds > 1]
    if gains.empty:
        return ""

    def budgets(rows) -> str:
        return ", ".join(budget_order(rows.labels_per_class.unique()))

    said, mean_gain, gained = [], {}, {}
    for pretext in pretext_order(gains.pretext.unique(), order):
        mine = gains[gains.pretext == pretext]
        above, below = mine[mine.low > 0], mine[mine.high < 0]
        mean_gain[pretext], gained[pretext] = mine.gain.mean(), set(above.labels_per_class)
        if len(above) or len(below):
            said.append(f"`{pretext}`'s at {len(above)} of {len(mine)}" + (f" ({budgets(above)})" if len(above) else "")
                        + (f", and below 0 at {len(below)} ({budgets(below)})" if len(below) else ""))
        else:
            said.append(f"`{pretext}`'s at none of {len(mine)}")
    best = max(gained, key=lambda p: (len(gained[p]), mean_gain[p]))  # clear at the most budgets, then the mean
    if not gained[best]:
        return (f"**In short:** no pretext's gain over `none` has its 95% interval above 0 at any budget; per pretext, "
                f"over the budgets with two seeds or more: {'; '.join(said)}.")
    saving = ""
    # as the bullets say it: where the gain and the share saved are both clear of 0
    mine = matched[[r.pretext == best and saving_is_finding(r, gains) for r in matched.itertuples()]]
    if len(mine):
        share = {r.labels_per_class: saved_share(r) for r in mine.itertuples()}
        least, most = min(share, key=lambda b: share[b][0]), max(share, key=lambda b: share[b][0])
        amount = (f"{share[least][1]} (at {least} labels per class)" if least == most else
                  f"between {share[least][1]} (at {least} labels per class) and {share[most][1]} (at {most})")
        saving = (f" `{best}` saves {amount} of the labels `none` needs to do as well, over the budgets where that "
                  f"share's interval and the gain's both lie above 0 ({budgets(mine)}).")
    return (f"**In short:** the 95% interval of each pretext's gain over `none` lies above 0 at these budgets (labels "
            f"per class, of those with two seeds or more): {'; '.join(said)}.{saving}")


def chance_text(table: pd.DataFrame) -> str:
    """How many of the gains shown could exclude 0 by chance alone (each interval 95% on its own); empty with none."""
    gains = paired_gains(table)
    n = int((gains.seeds > 1).sum())
    if not n:
        return ""
    return (f"Each of the {n} intervals below is 95% on its own: were no pretext any better than `none`, one in "
            f"twenty would still exclude 0 by chance ({n / 20:.1f} of {n} expected), so a gain that recurs across "
            "budgets is stronger evidence than a lone one. The seeds vary the labelled images (below `all`) and the "
            "fine-tuning; each pretext's backbone was pre-trained once.")


def comparison_block(table: pd.DataFrame, order=(), classes: int = 10, all_per_class: int | None = None) -> str:
    """The README's answer: a line per budget (the gains and the labels saved, with their intervals; `all` on the
    curve as `all_per_class` labels per class), the floor of the per-class recall at the smallest budget (of
    `classes` classes), the accuracy table, and the charts of both."""
    gain_chart = f"\n\n![gain over none]({GAIN_PLOT.as_posix()})" if len(paired_gains(table)) else ""
    matched = matching(table, all_per_class=all_per_class)
    gain_chart += f"\n\n![labels saved]({SAVING_PLOT.as_posix()})" if len(matched) else ""
    lines = "\n\n".join(filter(None, [headline_text(table, matched, order), chance_text(table),
                                       answer_markdown(table, order, matched=matched),
                                       weakest_text(table, classes, order)]))
    return (f"{lines}\n\nTest accuracy (%), mean ± std over seeds:\n\n"
            f"{comparison_markdown(table, order)}\n\n![label efficiency]({PLOT.as_posix()}){gain_chart}")


def detail_block(table: pd.DataFrame, order=(), gaps: pd.DataFrame | None = None, classes: int | None = None,
                 all_per_class: int | None = None) -> str:
    """docs/results.md's detail of the answer: the paired gains and the labels `none` needs (`all` on the curve as
    `all_per_class` labels per class), as tables with their intervals, and the targets, each met or missed (with
    `gaps`, the fine-tuned model against its probe; with `classes`, every class above chance)."""
    gains = f"{GAINS_NOTE}\n\n{gains_markdown(table, order)}\n\n" if len(paired_gains(table)) else ""
    matched = matching(table, all_per_class=all_per_class)
    on_curve = all_per_class if len(matched) and matched.largest.max() == all_per_class else None
    labels = (f"{labels_note(on_curve)}\n\n{labels_markdown(matched, order, paired_gains(table))}\n\n"
              if len(matched) else "")
    return (f"{gains}{labels}Against the targets (mean over seeds, the full test set):\n\n"
            f"{targets_markdown(table, gaps=gaps, matched=matched, classes=classes)}")


def class_count(root: Path, read) -> int:
    """The number of classes: the rows of the committed run's per-class table."""
    return len(read_table(root, PER_CLASS, read, sep=","))


def render_comparison(root: Path, read=lambda p: p.read_text()) -> str:
    """The README's answer block from the sweep's rows of params.yaml's schedule (the number of classes: the
    committed run's per-class table)."""
    table = read_comparison(root, read)
    if table.empty:
        return no_rows(root, COMPARISON, read)
    return comparison_block(table, pretexts(root, read), class_count(root, read), all_labels_per_class(root, read))


def render_detail(root: Path, read=lambda p: p.read_text()) -> str:
    """docs/results.md's detail of the answer, with the fine-tuned models paired with their probes."""
    table = read_comparison(root, read)
    if table.empty:
        return no_rows(root, COMPARISON, read)
    return detail_block(table, pretexts(root, read), probe_gaps(table, probe_draws(read_probes(root, read))),
                        class_count(root, read), all_labels_per_class(root, read))
