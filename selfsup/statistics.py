"""The statistics the report's answers rest on: paired 95% intervals, and how many labels `none` needs to match a
pretext (interpolated on the log-budget curve, with an interval from Student-t draws of the means over seeds)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# Student's t, two-sided 95%: the quantile by degrees of freedom up to 30 (beyond, `t975`'s expansion)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
        21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042}


def t975(df: int) -> float:
    """The two-sided 95% quantile of Student's t with `df` degrees of freedom: the table up to 30, beyond it the
    normal quantile's Cornish-Fisher expansion in 1/df (Abramowitz and Stegun 26.7.5; within 0.0001 from 31 on)."""
    if df in T975:
        return T975[df]
    z = 1.959964  # the normal's 97.5% quantile
    terms = ((z ** 3 + z) / 4, (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96,
             (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384)
    return z + sum(term / df ** (i + 1) for i, term in enumerate(terms))


def paired_interval(differences) -> tuple[int, float, float, float]:
    """(pairs, mean, low, high) of paired differences: the mean and its 95% confidence interval (t over the
    pairs; NaN bounds for one pair)."""
    differences = differences.dropna()  # a run that recorded no accuracy is no pair
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


COLUMNS = ["pretext", "labels_per_class", "seeds", "labels", "low", "high", "saved", "largest", "smallest"]


def mean_draws(values: np.ndarray, rng: np.random.Generator, draws: int) -> np.ndarray:
    """`draws` × k draws of the means of `values` (n runs × k paired quantities, n ≥ 2) from their Student-t
    distribution: mean + (sample covariance / n)^½ · z · ((n − 1) / χ²ₙ₋₁)^½, the multivariate form of the t
    interval a paired difference gets. With three seeds its tails are as heavy as t's with 2 degrees of freedom; a
    resampling of three seeds has 10 distinct means and covers the truth far less often than it claims."""
    n, k = values.shape
    cov = np.atleast_2d(np.cov(values, rowvar=False, ddof=1))
    eigenvalues, vectors = np.linalg.eigh(cov)
    root = vectors * np.sqrt(np.clip(eigenvalues, 0, None))  # root @ root.T == cov (positive semi-definite)
    scale = np.sqrt((n - 1) / rng.chisquare(n - 1, size=(draws, 1)))
    return values.mean(axis=0) + (rng.standard_normal((draws, k)) @ root.T) * scale / math.sqrt(n)


def share_of(budget: int, labels: float) -> float:
    """The share of `none`'s `labels` a pretext at `budget` does without: at least 0, 1 where `none` never matches."""
    return 1.0 if labels == float("inf") else max(0.0, 1 - budget / labels)


def curve_budgets(budgets, all_per_class: int | None) -> dict[str, int]:
    """The budgets of `budgets` (labels_per_class values) that lie on the label-efficiency curve, each with its
    labels per class: every numeric one, and `all` as `all_per_class` where that is given and exceeds them all."""
    sizes = {str(b): int(b) for b in budgets if str(b).isdigit()}
    if all_per_class is not None and "all" in map(str, budgets) and all_per_class > max(sizes.values(), default=0):
        sizes["all"] = all_per_class
    return sizes


def labels_to_match(table: pd.DataFrame, draws: int = 4000, seed: int = 0,
                    all_per_class: int | None = None) -> pd.DataFrame:
    """Per pretext (not `none`) and budget on the curve (`curve_budgets`: the numeric ones, and `all` as
    `all_per_class` labels per class where given and `none` ran two seeds or more there) but the largest of `table`
    (one protocol's sweep rows: pretext, labels_per_class, seed, test_accuracy): the labels per class `none` needs
    to match the pretext's mean accuracy there (`labels_matching` on `none`'s mean curve over those budgets), and its 95% interval: the
    mean of every budget of `none`'s curve drawn from its Student-t distribution over the seeds (`mean_draws`), the
    pretext's mean and `none`'s at its budget drawn together over their paired seeds (the same labelled images),
    the 2.5 and 97.5 percentiles of the answers (inf: beyond the largest budget). No interval (NaN) where a budget
    has a single seed. `saved` is the share of `none`'s labels the pretext does without (`share_of`: 1 − budget /
    labels, at least 0; 1 where `none` never matches it on the grid); `largest` and `smallest` the curve's largest and smallest
    budget (an answer at the smallest is at most that: nothing is read below it). Deterministic:
    `seed` seeds the draws."""
    table = table.assign(labels_per_class=table.labels_per_class.astype(str))
    none_at_all = table[(table.pretext == "none") & (table.labels_per_class == "all")].test_accuracy.notna().sum()
    # `all` only with a spread to draw from: one seed there would take every budget's interval with it
    size = curve_budgets(table.labels_per_class.unique(), all_per_class if none_at_all > 1 else None)
    on_curve = table[table.labels_per_class.isin(size)]
    wide = on_curve.pivot_table(index=["labels_per_class", "seed"], columns="pretext", values="test_accuracy")
    if "none" not in wide:
        return pd.DataFrame(columns=COLUMNS)
    budgets = sorted({b for b in wide.index.get_level_values(0) if wide.loc[b]["none"].notna().any()}, key=size.get)
    curve = {b: wide.loc[b]["none"].dropna().to_numpy() for b in budgets}
    rng = np.random.default_rng(seed)
    known = all(len(curve[b]) > 1 for b in budgets)  # every budget's mean has a spread to draw from
    drawn = (np.stack([mean_draws(curve[b][:, None], rng, draws)[:, 0] for b in budgets], axis=1) if known
             else None)  # draws x budgets
    point = np.array([curve[b].mean() for b in budgets])
    grid = np.array([size[b] for b in budgets])
    out = []
    for pretext in [p for p in wide.columns if p != "none"]:
        for b in budgets[:-1]:  # at the largest budget, none has nothing above it to match with
            pairs = wide.loc[b][[pretext, "none"]].dropna()
            if pairs.empty:
                continue
            at = budgets.index(b)
            centre = point.copy()
            centre[at] = pairs["none"].mean()
            labels = labels_matching(grid, centre[None, :], np.array([pairs[pretext].mean()]))[0]
            low = high = float("nan")
            if drawn is not None and len(pairs) > 1:
                # the pretext's mean and none's at its budget, drawn together over the same paired seeds
                both = mean_draws(pairs[[pretext, "none"]].to_numpy(), rng, draws)
                curves = drawn.copy()
                curves[:, at] = both[:, 1]
                ranked = np.sort(labels_matching(grid, curves, both[:, 0]))  # inf sorts last: percentiles by rank
                low, high = ranked[int(0.025 * (draws - 1))], ranked[math.ceil(0.975 * (draws - 1))]
            out.append({"pretext": pretext, "labels_per_class": b, "seeds": len(pairs), "labels": labels,
                        "low": low, "high": high, "saved": share_of(size[b], labels), "largest": grid[-1],
                        "smallest": grid[0]})
    return pd.DataFrame(out, columns=COLUMNS)
