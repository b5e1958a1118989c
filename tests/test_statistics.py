import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from selfsup.report.sweep import labels_markdown, paired_gains, saving_text
from selfsup.report.targets import targets_markdown
from selfsup.statistics import labels_matching, labels_to_match


def test_labels_are_read_off_the_curve_on_a_log_scale():
    budgets = np.array([10, 100, 1000])
    curve = np.array([[0.60, 0.70, 0.80]] * 5)
    got = labels_matching(budgets, curve, np.array([0.55, 0.60, 0.65, 0.75, 0.85]))
    assert got[:2].tolist() == [10, 10]  # at or below the first budget: no extrapolation below it
    assert got[2] == pytest.approx(10 ** 1.5) and got[3] == pytest.approx(10 ** 2.5)
    assert math.isinf(got[4])  # never reached
    # a curve that dips: the first budget where it reaches the target
    assert labels_matching(budgets, np.array([[0.6, 0.8, 0.7]]), np.array([0.7]))[0] == pytest.approx(10 ** 1.5)


def sweep(none, pretext):
    """Rows of `none` and `rotation`: {budget: [accuracy per seed]} each."""
    return pd.DataFrame([{"pretext": name, "labels_per_class": b, "seed": s, "test_accuracy": a}
                         for name, runs in (("none", none), ("rotation", pretext))
                         for b, accs in runs.items() for s, a in enumerate(accs)])


def test_the_labels_none_needs_come_with_an_interval_paired_by_seed():
    none = {"10": [0.58, 0.60, 0.62], "100": [0.69, 0.70, 0.71], "1000": [0.80, 0.80, 0.80], "all": [0.9] * 3}
    # rotation is none + 5 points seed by seed at 10: the pairing keeps its interval tight
    table = sweep(none, {"10": [0.63, 0.65, 0.67], "100": [0.75, 0.76, 0.74], "1000": [0.81, 0.81, 0.81]})
    matched = labels_to_match(table).set_index("labels_per_class")
    assert list(matched.index) == ["10", "100"]  # none at 1000, the largest, has nothing above it; `all` is off
    ten = matched.loc["10"]
    assert ten.labels == pytest.approx(10 ** 1.5) and ten.saved == pytest.approx(1 - 10 / 10 ** 1.5)
    assert ten.low < ten.labels < ten.high and ten.largest == 1000 and ten.seeds == 3
    again = labels_to_match(table).set_index("labels_per_class")
    assert again.equals(matched)  # deterministic
    # the same means unpaired (rotation's seeds in another order) widen the interval
    shuffled = labels_to_match(sweep(none, {"10": [0.67, 0.63, 0.65], "100": [0.75, 0.76, 0.74],
                                            "1000": [0.81] * 3})).set_index("labels_per_class").loc["10"]
    assert shuffled.labels == pytest.approx(ten.labels) and shuffled.high - shuffled.low > ten.high - ten.low


def test_all_joins_the_curve_at_the_labels_per_class_it_stands_for():
    none = {"10": [0.58, 0.60, 0.62], "100": [0.69, 0.70, 0.71], "1000": [0.79, 0.80, 0.81], "all": [0.89, 0.90, 0.91]}
    table = sweep(none, {"10": [0.63, 0.65, 0.67], "1000": [0.84, 0.85, 0.86], "all": [0.92] * 3})
    matched = labels_to_match(table, all_per_class=5400).set_index("labels_per_class")
    assert list(matched.index) == ["10", "1000"]  # `all`, now the largest, has nothing above it
    thousand = matched.loc["1000"]
    # halfway from none's 80% at 1000 to its 90% at 5400, on a log scale
    assert thousand.labels == pytest.approx(1000 * 5.4 ** 0.5) and thousand.largest == 5400
    assert thousand.saved == pytest.approx(1 - 1000 / (1000 * 5.4 ** 0.5))
    assert thousand.low < thousand.labels < thousand.high
    assert matched.loc["10"].labels == pytest.approx(10 ** 1.5)  # the budgets below are read as before
    # `all` standing for fewer labels than a numeric budget cannot be placed on the curve: left off
    assert list(labels_to_match(table, all_per_class=500).labels_per_class) == ["10"]
    # nor where `none` ran one seed there: its mean has no spread, and every other interval would go with it
    one = labels_to_match(table[(table.pretext != "none") | (table.labels_per_class != "all") | (table.seed == 0)],
                          all_per_class=5400).set_index("labels_per_class")
    assert list(one.index) == ["10"] and one.loc["10"].low < one.loc["10"].labels < one.loc["10"].high


def test_the_saving_is_said_in_words_and_checked_against_the_target():
    table = sweep({"10": [0.58, 0.60, 0.62], "100": [0.69, 0.70, 0.71], "1000": [0.80] * 3},
                  {"10": [0.63, 0.65, 0.67], "100": [0.85, 0.86, 0.84], "1000": [0.81] * 3})
    matched = labels_to_match(table)
    hundred = matched.set_index("labels_per_class").loc["100"]
    assert math.isinf(hundred.labels)  # 85% at 100 beats none's 80% at 1000
    assert saving_text(matched.iloc[1], 1000) == ("`none` does not match `rotation` at 100 labels per class even "
                                                  "with 1000: it saves more than 90% of the labels")
    words = saving_text(matched.iloc[0], 1000)
    assert words.startswith("`rotation` with 10 labels per class does as well as `none` with 32 (95% CI ")
    md = labels_markdown(matched, ["none", "rotation"]).splitlines()
    assert md[2].startswith("| rotation | 32 (") and md[2].endswith("; saves 68%) | more than 1000 (saves more than 90%) |")
    table = table.assign(protocol="full", epochs=60, min_steps=500)
    # bold where the saving is a finding: its interval above 0 and the gain's too
    gains = paired_gains(table)
    bold = labels_markdown(matched, ["none", "rotation"], gains).splitlines()[2]
    assert bold.startswith("| rotation | **32** (") and "| **more than 1000** (" in bold
    assert "**" not in labels_markdown(matched, ["none", "rotation"], gains.assign(low=-0.01))  # gains holding 0
    assert "**" not in labels_markdown(matched.assign(low=10.0), ["none", "rotation"], gains)  # savings holding 0
    target = targets_markdown(table, matched=matched).splitlines()[-1]
    assert target.startswith("| 10 per class: best pretext matches `none` with ≥ 3× the labels (saves ≥ 67%)")
    assert target.endswith("| **missed** |")  # 32 is more than 3 x 10, but the interval's lower end is not
    low = matched.low.iloc[0]
    assert low < 30 and f"`rotation`: `none` needs 32 (95% CI {low:.0f} to" in target


def test_the_labels_target_is_decided_on_the_pretext_with_the_highest_lower_end():
    table = sweep({"10": [0.6, 0.6]}, {"10": [0.7, 0.7]}).assign(protocol="full", epochs=60, min_steps=500)
    matched = pd.DataFrame([
        {"pretext": "rotation", "labels_per_class": "10", "seeds": 3, "labels": 50.0, "low": 20.0, "high": 200.0,
         "saved": 0.8, "largest": 1000},
        {"pretext": "exemplar", "labels_per_class": "10", "seeds": 3, "labels": 40.0, "low": 32.0, "high": 60.0,
         "saved": 0.75, "largest": 1000}])
    row = targets_markdown(table, matched=matched).splitlines()[-1]
    assert row.endswith("| `exemplar`: `none` needs 40 (95% CI 32 to 60) | met |")  # 32 ≥ 3 x 10
    single = matched.assign(low=float("nan"), high=float("nan"))
    assert targets_markdown(table, matched=single).splitlines()[-1].endswith(
        "| `rotation`: `none` needs 50 (no interval: a budget ran one seed) | **missed** |")


def test_an_answer_at_the_smallest_budget_is_at_most_it():
    none = {"10": [0.60, 0.62, 0.64], "100": [0.70, 0.71, 0.72]}
    matched = labels_to_match(sweep(none, {"10": [0.60, 0.63, 0.64]})).iloc[0]  # level with none at 10
    assert matched.smallest == 10 and matched.low == 10
    assert saving_text(matched, 100).startswith("`rotation` with 10 labels per class does as well as `none` with ")
    assert "(95% CI ≤10 to " in saving_text(matched, 100) and "(95% CI ≤0% to " in saving_text(matched, 100)
    assert "(≤10 to " in labels_markdown(pd.DataFrame([matched]), ["rotation"])


def test_a_paired_interval_counts_only_the_pairs_it_has():
    from selfsup.statistics import paired_interval
    n, mean, low, high = paired_interval(pd.Series([0.01, 0.02, float("nan")]))
    assert n == 2 and mean == pytest.approx(0.015)
    assert high - mean == pytest.approx(12.706 * pd.Series([0.01, 0.02]).std() / 2 ** 0.5)  # t with 1 df, not 2


def test_one_seed_gives_the_labels_none_needs_but_no_interval():
    table = sweep({"10": [0.60], "100": [0.70], "1000": [0.80]}, {"10": [0.65], "100": [0.75]})
    matched = labels_to_match(table).set_index("labels_per_class")
    assert matched.loc["10"].labels == pytest.approx(10 ** 1.5)
    assert matched[["low", "high"]].isna().all().all()  # a single run has no spread to draw from
    words = saving_text(matched.reset_index().iloc[0], 1000)
    assert words.endswith("with 32: it saves 68% of the labels (a budget with one seed: no interval)")
    assert labels_markdown(matched.reset_index(), ["none", "rotation"]).splitlines()[2].startswith(
        "| rotation | 32 (saves 68%; no interval) |")


def test_never_matched_says_more_than_not_all_of_the_labels():
    row = pd.Series({"pretext": "rotation", "labels_per_class": "100", "seeds": 3, "labels": float("inf"),
                     "low": 827.0, "high": float("inf"), "saved": 1.0, "largest": 1000})
    cell = labels_markdown(pd.DataFrame([row]), ["rotation"]).splitlines()[2]
    assert cell == "| rotation | more than 1000 (827 to more than 1000; saves more than 90%) |"


def test_the_labels_interval_covers_the_truth_as_often_as_it_claims_with_three_seeds():
    """Simulated sweeps of three seeds on the spreads the Fashion-MNIST sweep shows (none's std per budget, a
    pretext 2.3 points above `none` at 20 labels per class, paired spread 0.4): the interval must hold the true
    labels in at least 90% of them. Resampling the seeds instead (10 distinct means from 3 seeds) held it in about
    80%."""
    budgets, mean = [10, 20, 50], np.array([0.707, 0.758, 0.815])
    std, gain, paired = np.array([0.0255, 0.0117, 0.0084]), 0.0226, 0.0036
    truth = labels_matching(np.array(budgets), mean[None, :], np.array([mean[1] + gain]))[0]
    rng, held, trials = np.random.default_rng(0), 0, 150
    for trial in range(trials):
        none = {str(b): list(m + s * rng.standard_normal(3)) for b, m, s in zip(budgets, mean, std)}
        rotation = {"20": [a + gain + paired * rng.standard_normal() for a in none["20"]]}
        row = labels_to_match(sweep(none, rotation), draws=1000, seed=trial).set_index("labels_per_class").loc["20"]
        held += row.low <= truth <= row.high
    assert held / trials >= 0.9


def test_the_intervals_benchmark_takes_its_spreads_from_the_committed_sweep(tmp_path):
    """benchmarks.intervals simulates the sweep as metrics/comparison.tsv holds it: none's mean and spread per
    budget, rotation's paired gain and its spread, the seeds both ran; a budget without two paired seeds is an
    error naming it, not a simulation on a made-up spread."""
    from benchmarks.intervals import BUDGETS, sweep_spreads

    repo = Path(__file__).resolve().parents[1]
    shutil.copy(repo / "params.yaml", tmp_path / "params.yaml")
    header = (repo / "metrics" / "comparison.tsv").read_text().splitlines()[0].split("\t")
    budgets = ["all" if b == BUDGETS[-1] else str(b) for b in BUDGETS]
    rows = [{"pretext": p, "labels_per_class": b, "seed": s, "dataset": "fashion_mnist", "protocol": "full",
             "epochs": 10, "min_steps": 500, "commit": "abc1234", "experiment": f"{p}-{b}-{s}", "variant": "",
             "test_accuracy": 0.5 + 0.05 * i + 0.01 * s + (0.02 + 0.001 * s) * (p == "rotation")}
            for i, b in enumerate(budgets) for s in range(3 if i > 1 else 4) for p in ("none", "rotation")]
    table = pd.DataFrame(rows).reindex(columns=header)
    (tmp_path / "metrics").mkdir()
    table.to_csv(tmp_path / "metrics" / "comparison.tsv", sep="\t", index=False)
    mean, std, gain, spread, seeds = sweep_spreads(tmp_path)
    assert mean == pytest.approx([0.515, 0.565, 0.61, 0.66, 0.71, 0.76])
    assert std == pytest.approx([np.std([0, 0.01, 0.02, 0.03], ddof=1)] * 2 + [0.01] * 4)
    assert gain == pytest.approx([0.0215, 0.0215, 0.021, 0.021, 0.021, 0.021])
    assert spread == pytest.approx([np.std([0, 0.001, 0.002, 0.003], ddof=1)] * 2 + [0.001] * 4)
    assert seeds.tolist() == [4, 4, 3, 3, 3, 3]
    table[~((table.labels_per_class == "1000") & (table.seed > 0))].to_csv(
        tmp_path / "metrics" / "comparison.tsv", sep="\t", index=False)
    with pytest.raises(SystemExit, match="fewer than 2 paired seeds of none and rotation at 1000 labels"):
        sweep_spreads(tmp_path)
    table[table.labels_per_class != "all"].to_csv(tmp_path / "metrics" / "comparison.tsv", sep="\t", index=False)
    with pytest.raises(SystemExit, match="lacks Fashion-MNIST rows of none and rotation at every budget"):
        sweep_spreads(tmp_path)
