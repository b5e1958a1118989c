"""How the report writes numbers and tables: budgets and pretexts in order, a grid of pretext by budget, a
difference with its interval."""

from __future__ import annotations

import pandas as pd

from selfsup.statistics import excludes_zero
from selfsup.svg import COLOURS

DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "deepfashion": "DeepFashion", "folder": "Image-folder"}


def accuracy_title(table: pd.DataFrame, what: str) -> str:
    """A chart's title: "<the rows' dataset> test accuracy<what>", e.g. "Fashion-MNIST test accuracy after
    fine-tuning"; plain "Test accuracy..." where the rows are of several datasets or none is named."""
    names = set(table.get("dataset", pd.Series(dtype=str)).dropna())
    name = DATASET_NAMES.get(next(iter(names)), next(iter(names))) if len(names) == 1 else ""
    return f"{name} test accuracy{what}" if name else f"Test accuracy{what}"


def budget_order(budgets) -> list[str]:
    """Budgets (text) in ascending order, `all` last."""
    return sorted(budgets, key=lambda c: (c == "all", int(c) if c.isdigit() else 0))


def pretext_order(names, order) -> list[str]:
    """`names` in the order of `order` (params.yaml's `pretexts`), any others after them, sorted."""
    return [p for p in order if p in names] + sorted(p for p in names if p not in order)


def pretext_colour(pretext: str, order) -> str:
    """A pretext's colour in every chart: its place in `order` (params.yaml's `pretexts`; others after, sorted)."""
    return COLOURS[pretext_order({pretext, *order}, order).index(pretext) % len(COLOURS)]


def budget_grid(frame: pd.DataFrame, corner: str, header: str, cell, order=()) -> list[str]:
    """A Markdown table of `frame`'s rows, one line per pretext (in `order`) and one column per budget (named
    by `header`, a format of the budget): `cell(row)` of the row of that pretext and budget, "—" where none."""
    budgets = budget_order(frame.labels_per_class.unique())
    cells = {(r.pretext, r.labels_per_class): r for r in frame.itertuples()}
    lines = [f"| {corner} | " + " | ".join(header.format(b) for b in budgets) + " |",
             "|---" * (len(budgets) + 1) + "|"]
    for pretext in pretext_order(frame.pretext.unique(), order):
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


def interval_cell(r) -> str:
    """A paired difference as a table cell: points, bold where its 95% interval excludes 0, with the interval."""
    if r.seeds < 2:
        return f"{signed(100 * r.gain)} (1 seed)"
    value = f"**{signed(100 * r.gain)}**" if is_finding(r) else signed(100 * r.gain)
    return f"{value} ({signed(100 * r.low)} to {signed(100 * r.high)}; {r.seeds} seeds)"


def gain_text(r, both: bool = False) -> str:
    """A paired gain in points with its interval, in words: "+4.56 points (95% CI +2.91 to +6.21, 3 seeds)"; `both`:
    "... 3 seeds both ran", where the means beside it are over more runs than the pairs."""
    ran = " both ran" if both else ""
    if r.seeds < 2:
        return f"{signed(100 * r.gain)} points (one seed{ran}: no interval)"
    return (f"{signed(100 * r.gain)} points (95% CI {signed(100 * r.low)} to {signed(100 * r.high)}, {r.seeds} "
            f"seeds{ran})")


def is_finding(r) -> bool:
    """Whether a paired gain's 95% interval excludes 0 (one seed never is)."""
    return excludes_zero(r.seeds, r.low, r.high)


def schedule_text(epochs: int, min_steps: int) -> str:
    """A fine-tuning schedule in words: "60 epochs, at least 500 steps"."""
    return f"{epochs} epochs" + (f", at least {min_steps} steps" if min_steps else "")


def budget_schedules(table: pd.DataFrame) -> str:
    """The fine-tuning schedules of a sweep table's rows per budget: "10: 60 epochs, at least 500 steps; 1000: 15
    epochs"."""
    return "; ".join(f"{b}: " + ", ".join(schedule_text(*s) for s in sorted(set(zip(part.epochs, part.min_steps))))
                     for b, part in ((b, table[table.labels_per_class == b])
                                     for b in budget_order(table.labels_per_class.unique())))
