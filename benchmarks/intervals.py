"""How often the report's interval on the labels `none` needs holds the truth: simulated sweeps.

    python -m benchmarks.intervals [--sweeps 300] [--draws 1000]

Each simulated sweep draws `none`'s test accuracy per seed at 10, 20, 50, 100, 1000 and all (5,400) labels per
class from a normal distribution with the Fashion-MNIST sweep's means and spreads (README), and a pretext's at one
budget as
`none`'s plus a gain with a small paired spread (the sweep's rotation rows), then asks selfsup.statistics
.labels_to_match for the labels `none` needs and its 95% interval. Printed: per case, the share of sweeps whose
interval holds the labels the true curves give. Seeds per budget: 3 everywhere, 10 everywhere, or the sweep's
own (10 at 10 to 100 labels per class, 3 at 1000 and all); one case with each seed's luck shared across budgets
(correlation 0.7: a seed's labelled images are nested across budgets). Prints only; writes nothing. Not a test:
about a minute (tests/test_statistics.py holds a smaller version of the first case).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from selfsup.cli import at_least, run_stage
from selfsup.statistics import labels_matching, labels_to_match

BUDGETS = [10, 20, 50, 100, 1000, 5400]  # 5400: `all`, Fashion-MNIST's training images per class after the val split
MEAN = np.array([0.7067, 0.7657, 0.8171, 0.8374, 0.8832, 0.9111])  # none's test accuracy per budget in the sweep
STD = np.array([0.0255, 0.0118, 0.0050, 0.0040, 0.0024, 0.0008])  # its spread over seeds
SWEEP_SEEDS = {10: 10, 20: 10, 50: 10, 100: 10}  # the sweep's seeds per budget; 3 elsewhere
# (gain over none, spread of the paired gain, budget index, seeds per budget, seed correlation across budgets)
CASES = [(0.0175, 0.0062, 1, lambda b: 3, 0.0), (0.0175, 0.0062, 1, lambda b: 10, 0.0),
         (0.0145, 0.0040, 3, lambda b: SWEEP_SEEDS.get(b, 3), 0.0), (0.0243, 0.0108, 0, lambda b: SWEEP_SEEDS.get(b, 3), 0.0),
         (0.0111, 0.0044, 2, lambda b: SWEEP_SEEDS.get(b, 3), 0.0), (0.0139, 0.0034, 4, lambda b: SWEEP_SEEDS.get(b, 3), 0.0),
         (0.0175, 0.0062, 1, lambda b: SWEEP_SEEDS.get(b, 3), 0.7)]


def coverage(gain: float, paired: float, at: int, seeds, correlation: float, sweeps: int, draws: int) -> tuple[float, float]:
    """(the true labels `none` needs, the share of simulated sweeps whose 95% interval holds them)."""
    truth = labels_matching(np.array(BUDGETS), MEAN[None, :], np.array([MEAN[at] + gain]))[0]
    rng, held = np.random.default_rng(1), 0
    for sweep in range(sweeps):
        rows, luck = [], rng.standard_normal(10)
        for i, b in enumerate(BUDGETS):
            n = seeds(b)
            none = MEAN[i] + STD[i] * (correlation * luck[:n] + (1 - correlation ** 2) ** 0.5 * rng.standard_normal(n))
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
    print("gain at budget  seeds per budget         correlation  true labels  interval held it")
    for gain, paired, at, seeds, correlation in CASES:
        truth, held = coverage(gain, paired, at, seeds, correlation, args.sweeps, args.draws)
        per_budget = ",".join(str(seeds(b)) for b in BUDGETS)
        print(f"{100 * gain:+.2f} at {BUDGETS[at]:<5} {per_budget:<24} {correlation:<12} {truth:<12.1f} {held:.0%}")


if __name__ == "__main__":
    run_stage(main)
