"""How often the report's interval on the labels `none` needs holds the truth: simulated sweeps.

    python -m benchmarks.intervals [--sweeps 300] [--draws 1000]

Each simulated sweep draws `none`'s test accuracy per seed at 10, 20, 50, 100, 1000 and all (5,400) labels per
class from a normal distribution with the Fashion-MNIST sweep's means and spreads, and a pretext's at one budget
as `none`'s plus a gain with a small paired spread (the sweep's rotation rows), then asks selfsup.statistics
.labels_to_match for the labels `none` needs and its 95% interval. The means, spreads and gains are read from
the committed metrics/comparison.tsv (the rows the README's answer shows), so they follow the sweep. Printed: per
case, the share of sweeps whose interval holds the labels the true curves give. Seeds per budget: 3 everywhere,
10 everywhere, or the sweep's own (as the table holds them); one case with each seed's luck shared across budgets
(correlation 0.7: a seed's labelled images are nested across budgets). Prints only; writes nothing. Not a test:
about a minute (tests/test_statistics.py holds a smaller version of the first case).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from selfsup.cli import at_least, run_stage
from selfsup.report.data import read_comparison
from selfsup.statistics import labels_matching, labels_to_match

BUDGETS = [10, 20, 50, 100, 1000, 5400]  # 5400: `all`, Fashion-MNIST's training images per class after the val split
# (budget index, seeds at every budget or None: the sweep's own per budget, seed correlation across budgets) of
# each case; its gain is rotation's at that budget
CASES = [(1, 3, 0.0), (1, 10, 0.0), (3, None, 0.0), (0, None, 0.0), (2, None, 0.0), (4, None, 0.0), (1, None, 0.7)]


def sweep_spreads(root: Path = Path(".")) -> tuple[np.ndarray, ...]:
    """(none's mean test accuracy per budget, its spread over seeds, rotation's mean paired gain over none, the
    spread of that gain, the seeds both ran), each per BUDGETS, from the Fashion-MNIST rows of the committed
    comparison table at `root` that the answer shows. An error naming the budgets that lack two paired seeds."""
    table = read_comparison(root)
    table = table[table.dataset == "fashion_mnist"]
    wide = table.pivot_table(index=["labels_per_class", "seed"], columns="pretext", values="test_accuracy")
    names = ["all" if b == BUDGETS[-1] else str(b) for b in BUDGETS]
    if not {"none", "rotation"} <= set(wide.columns) or not set(names) <= set(wide.index.get_level_values(0)):
        raise SystemExit("benchmarks.intervals: metrics/comparison.tsv lacks Fashion-MNIST rows of none and rotation "
                         f"at every budget ({', '.join(names)}): run the sweep (docs/results.md) first")
    none = wide["none"].groupby(level=0).agg(["mean", "std", "count"]).loc[names]
    gain = (wide["rotation"] - wide["none"]).groupby(level=0).agg(["mean", "std", "count"]).loc[names]
    if (none["count"] < 2).any() or (gain["count"] < 2).any():
        short = [n for n in names if min(none["count"][n], gain["count"][n]) < 2]
        raise SystemExit(f"benchmarks.intervals: fewer than 2 paired seeds of none and rotation at {', '.join(short)} "
                         "labels per class in metrics/comparison.tsv: the spreads need at least 2")
    return (none["mean"].to_numpy(), none["std"].to_numpy(), gain["mean"].to_numpy(), gain["std"].to_numpy(),
            gain["count"].to_numpy())


def coverage(curve: tuple[np.ndarray, np.ndarray], gain: tuple[float, float], case: tuple, sweeps: int,
             draws: int) -> tuple[float, float]:
    """(the true labels `none` needs, the share of simulated sweeps whose 95% interval holds them): `none`'s
    (means, spreads) per budget, the pretext's (gain, paired spread) at the case's budget, `case` (budget index,
    seeds per budget, seed correlation across budgets)."""
    (mean, std), (gain, paired), (at, seeds, correlation) = curve, gain, case
    truth = labels_matching(np.array(BUDGETS), mean[None, :], np.array([mean[at] + gain]))[0]
    rng, held = np.random.default_rng(1), 0
    for sweep in range(sweeps):
        rows, luck = [], rng.standard_normal(max(10, *seeds))
        for i, (b, n) in enumerate(zip(BUDGETS, seeds)):
            none = mean[i] + std[i] * (correlation * luck[:n] + (1 - correlation ** 2) ** 0.5 * rng.standard_normal(n))
            name = "all" if b == BUDGETS[-1] else str(b)
            rows += [("none", name, s, a) for s, a in enumerate(none)]
            if i == at:
                rows += [("rotation", name, s, a + gain + paired * rng.standard_normal()) for s, a in enumerate(none)]
        table = pd.DataFrame(rows, columns=["pretext", "labels_per_class", "seed", "test_accuracy"])
        row = labels_to_match(table, draws, sweep, BUDGETS[-1]).set_index("labels_per_class").loc[str(BUDGETS[at])]
        held += row.low <= truth <= row.high
    return truth, held / sweeps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # an abbreviated option is an unknown one
    parser.add_argument("--sweeps", type=at_least(1), default=300, help="simulated sweeps per case")
    parser.add_argument("--draws", type=at_least(1), default=1000, help="draws of each interval")
    args = parser.parse_args(argv)
    mean, std, gains, spreads, ran = sweep_spreads()
    print("gain at budget  seeds per budget         correlation  true labels  interval held it")
    for at, every, correlation in CASES:
        seeds = list(ran) if every is None else [every] * len(BUDGETS)
        truth, held = coverage((mean, std), (gains[at], spreads[at]), (at, seeds, correlation), args.sweeps, args.draws)
        per_budget = ",".join(str(n) for n in seeds)
        print(f"{100 * gains[at]:+.2f} at {BUDGETS[at]:<5} {per_budget:<24} {correlation:<12} {truth:<12.1f} {held:.0%}")


if __name__ == "__main__":
    run_stage(main)
