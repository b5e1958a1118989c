"""The statistics the report's answers rest on: paired 95% intervals, and how many labels `none` needs to match a
pretext (interpolated on the log-budget curve, with a bootstrap interval over seeds)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# Student's t, two-sided 95%: the quantile by degrees of freedom (beyond 30, within 2% of these)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
        21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042}


def t975(df: int) -> float:
    """The two-sided 95% quantile of Student's t with `df` degrees of freedom."""
    return T975.get(df) or (2.0 if df <= 60 else 1.98 if df <= 120 else 1.96)


def paired_interval(differences) -> tuple[int, float, float, float]:
    """(pairs, mean, low, high) of paired differences: the mean and its 95% confidence interval (t over the
    pairs; NaN bounds for one pair)."""
    n, mean = len(differences), differences.mean()
    half = t975(n - 1) * differences.std(ddof=1) / n ** 0.5 if n > 1 else float("nan")
    return n, mean, mean - half, mean + half


def excludes_zero(pairs: int, low: float, high: float) -> bool:
    """Whether a 95% interval over `pairs` paired differences excludes 0 (one pair has no interval)."""
    return pairs > 1 and (low > 0 or high < 0)


def labels_matching(budgets: np.ndarray, accuracy: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per row of `accuracy` (one curve of mean accuracy over the ascending `budgets`) the labels per class at
    which the curve first reaches that row's `target`, interpolated linearly in log budget between the two
    budgets around it: the smallest budget where the curve starts at or above the target (no extrapolation
    below it), inf where it never reaches it."""
    reached = accuracy >= target[:, None]
    first = np.where(reached.any(axis=1), reached.argmax(axis=1), -1)
    logs = np.log(budgets.astype(float))
    out = np.full(len(target), np.inf)
    for row, j in enumerate(first):
        if j == 0:
            out[row] = budgets[0]
        elif j > 0:
            lo, hi = accuracy[row, j - 1], accuracy[row, j]
            out[row] = math.exp(logs[j - 1] + (target[row] - lo) / (hi - lo) * (logs[j] - logs[j - 1]))
    return out


COLUMNS = ["pretext", "labels_per_class", "seeds", "labels", "low", "high", "saved", "largest"]


def labels_to_match(table: pd.DataFrame, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per pretext (not `none`) and numeric budget but the largest of `table` (one protocol's sweep rows: pretext,
    labels_per_class, seed, test_accuracy): the labels per class `none` needs to match the pretext's mean
    accuracy there (`labels_matching` on `none`'s mean curve over the numeric budgets), and its 95% bootstrap
    interval: the seeds of every budget resampled with replacement, a pretext's budget paired by seed with
    `none`'s (the same labelled images), the 2.5 and 97.5 percentiles of the resampled answers (inf: beyond the
    largest budget). `saved` is the share of `none`'s labels the pretext does without, 1 − budget / labels,
    at least 0 (1 where `none` never matches it on the grid); `largest` the curve's largest budget. Deterministic: `seed` seeds the resampling."""
    numeric = table[table.labels_per_class.astype(str).str.isdigit()]
    wide = numeric.pivot_table(index=["labels_per_class", "seed"], columns="pretext", values="test_accuracy")
    if "none" not in wide:
        return pd.DataFrame(columns=COLUMNS)
    budgets = sorted({b for b in wide.index.get_level_values(0) if wide.loc[b]["none"].notna().any()}, key=int)
    curve = {b: wide.loc[b]["none"].dropna().to_numpy() for b in budgets}
    rng = np.random.default_rng(seed)
    draws = {b: rng.integers(0, len(curve[b]), size=(resamples, len(curve[b]))) for b in budgets}
    boot = np.stack([curve[b][draws[b]].mean(axis=1) for b in budgets], axis=1)  # resamples x budgets
    point = np.array([curve[b].mean() for b in budgets])
    grid = np.array([int(b) for b in budgets])
    out = []
    for pretext in [p for p in wide.columns if p != "none"]:
        for b in budgets[:-1]:  # at the largest budget, none has nothing above it to match with
            pairs = wide.loc[b][[pretext, "none"]].dropna()
            if pairs.empty:
                continue
            # the pretext's budget, and none's there, resampled over the same paired seeds
            pick = rng.integers(0, len(pairs), size=(resamples, len(pairs)))
            at = budgets.index(b)
            curves = boot.copy()
            curves[:, at] = pairs["none"].to_numpy()[pick].mean(axis=1)
            values = labels_matching(grid, curves, pairs[pretext].to_numpy()[pick].mean(axis=1))
            centre = point.copy()
            centre[at] = pairs["none"].mean()
            labels = labels_matching(grid, centre[None, :], np.array([pairs[pretext].mean()]))[0]
            ranked = np.sort(values)  # inf sorts last; the percentiles by rank, no interpolation across inf
            low, high = ranked[int(0.025 * (resamples - 1))], ranked[math.ceil(0.975 * (resamples - 1))]
            out.append({"pretext": pretext, "labels_per_class": b, "seeds": len(pairs), "labels": labels,
                        "low": low, "high": high, "saved": max(0.0, 1 - int(b) / labels), "largest": grid[-1]})
    return pd.DataFrame(out, columns=COLUMNS)
