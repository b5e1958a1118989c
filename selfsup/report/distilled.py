"""Distillation after fine-tuning: each experiment's fine-tuned teacher beside the student it delivers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from selfsup.report.data import (DISTILLED, DISTILLED_PLOT, RESULTS_DOC, link, no_rows, pretexts,
                                 read_distilled)
from selfsup.report.tables import (accuracy_title, budget_grid, budget_order, budget_positions, budget_schedules,
                                   pretext_colour, pretext_order, seed_std, signed)
from selfsup.report.targets import distilled_targets, on_target_dataset
from selfsup.svg import line_chart

def distilled_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per pretext and budget: mean and std over seeds of the fine-tuned (teacher) and distilled test accuracy."""
    grouped = table.groupby(["pretext", "labels_per_class"])
    return grouped.agg(finetuned=("finetuned_accuracy", "mean"), finetuned_std=("finetuned_accuracy", seed_std),
                       distilled=("test_accuracy", "mean"), distilled_std=("test_accuracy", seed_std),
                       runs=("test_accuracy", "count")).reset_index()


def setting_text(settings) -> str:
    """A distilled row's distillation setting in words."""
    return (f"{int(settings.distill_rounds)} round(s) of {int(settings.distill_epochs)} epochs over every training "
            f"image, the student starting from the {settings.distill_init}"
            + (f", the teacher's {int(settings.distill_per_class):,} most confident guesses of each class as "
               "pseudo-labels" if settings.get("distill_per_class", 0) > 0
               else f", confident (≥ {settings.distill_threshold:g}) pseudo-labels"
               if pd.notna(settings.distill_threshold) and settings.distill_threshold
               else ", the teacher's soft probabilities"))


def distilled_markdown(table: pd.DataFrame, order=()) -> str:
    """Fine-tuned → distilled test accuracy per pretext and budget (mean ± std over seeds; one setting per budget,
    as `read_distilled` keeps), the gain, the distillation setting (per budget where they differ), and the
    distillation targets, each met or missed."""
    summary = distilled_summary(table)
    lines = budget_grid(summary, "pretext", "{} labels per class: fine-tuned → distilled",
                        lambda r: f"{100 * r.finetuned:.2f} ± {100 * r.finetuned_std:.2f} → **{100 * r.distilled:.2f}**"
                                  f" ± {100 * r.distilled_std:.2f} ({signed(100 * (r.distilled - r.finetuned))}; "
                                  f"{r.runs} runs)", order)
    settings = {b: setting_text(r) for b, r in table.groupby("labels_per_class").first().iterrows()}
    said = (next(iter(settings.values())) if len(set(settings.values())) == 1 else
            "; ".join(f"at {b} labels per class, {settings[b]}" for b in budget_order(settings)))
    lines += ["", f"Distillation: {said}. The teachers' fine-tuning: {budget_schedules(table)}.", "",
              *distilled_targets(table, summary, on_target_dataset(table))]
    return "\n".join(lines)


def distillation_svg(table: pd.DataFrame, order=()) -> str:
    """Test accuracy against labels per class: each pretext fine-tuned and distilled, one std over seeds."""
    summary = distilled_summary(table)
    budgets = budget_order(summary.labels_per_class.unique())
    position = budget_positions(budgets)
    series, colours = {}, {}
    names = pretext_order(summary.pretext.unique(), order)
    for pretext in names:
        part = sorted(summary[summary.pretext == pretext].itertuples(), key=lambda r: position[r.labels_per_class])
        series[f"{pretext}, fine-tuned"] = [(position[r.labels_per_class], 100 * r.finetuned, 100 * r.finetuned_std)
                                            for r in part]
        series[f"{pretext}, distilled"] = [(position[r.labels_per_class], 100 * r.distilled, 100 * r.distilled_std)
                                           for r in part]
        # a pretext's colour as in every other chart (its place in params.yaml's pretexts); distilled dashed
        colours[f"{pretext}, fine-tuned"] = colours[f"{pretext}, distilled"] = pretext_colour(pretext, order)
    return line_chart(series, [(position[b], b) for b in budgets],
                      (accuracy_title(table, ", fine-tuned and distilled (dashed)"), "labels per class",
                       "test accuracy (%)"), colours=colours, dodge=4,
                      dashed={name for name in series if name.endswith("distilled")})


def render_distilled(root: Path, read=lambda p: p.read_text()) -> str:
    table = read_distilled(root, read)
    if table.empty:
        return no_rows(root, DISTILLED, read)
    return (f"{distilled_markdown(table, pretexts(root, read))}\n\n"
            f"![fine-tuned and distilled]({link(DISTILLED_PLOT, RESULTS_DOC)})")
