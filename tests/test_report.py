import json
import re
import shutil
import subprocess
from xml.etree import ElementTree

import pandas as pd
import pytest
import yaml

import selfsup.report.experiments as report_experiments
from selfsup.cli import run_stage
from selfsup.report.__main__ import main as report_main
from selfsup.report.answer import comparison_block, detail_block
from selfsup.report.benchmarks import (balance_markdown, consistency_markdown, distill_recipe_markdown, epochs_markdown,
                                       pretext_compute_markdown, recipe_markdown, schedule_block, schedule_markdown,
                                       tuning_markdown)
from selfsup.report.blocks import rendered, replace_block
from selfsup.report.data import EXPERIMENT_KEYS, WORST, merged, on_schedule, read_comparison, read_distilled
from selfsup.report.distilled import distillation_svg, distilled_markdown, distilled_summary
from selfsup.report.experiments import (effective_min_steps, experiment_rows, git_per_class, sweep_tables,
                                        weakest_class)
from selfsup.report.probes import (embedding_svg, probe_draws, probe_gap_markdown, probe_gaps, probe_markdown,
                                   results_markdown)
from selfsup.report.sweep import (answer_markdown, comparison_markdown, gain_svg, gains_markdown,
                                  label_efficiency_svg, matching, paired_gains, saving_svg, views_markdown,
                                  weakest_text)
from selfsup.report.tables import budget_schedules, gain_text, is_finding, signed
from selfsup.report.targets import distilled_targets, targets_markdown
from selfsup.statistics import t975
from selfsup.svg import COLOURS
from tests.conftest import REPO

PARAMS = {"pretext": "none", "data": {"dataset": "fashion_mnist"},
          "finetune": {"protocol": "full", "labels_per_class": "all", "epochs": 15, "seed": 0}}
FINETUNE = {"labelled_images": 54000, "kept_epoch": 14}
EVALUATE = {"test": {"accuracy": 0.91234, "balanced_accuracy": 0.75, "macro_f1": 0.9111}}
PER_CLASS = pd.DataFrame({"class": ["a", "b"], "accuracy": [0.5, 1.0], "f1": [0.6, 0.8], "support": [2, 4]})


def committed(path):
    """A file as committed at HEAD (the README speaks for the committed run, not a local rerun)."""
    inside = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=REPO, capture_output=True)
    if inside.returncode:
        pytest.skip("not a git checkout with commits")
    proc = subprocess.run(["git", "show", f"HEAD:{path.relative_to(REPO)}"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, f"{path.relative_to(REPO)} is not committed: {proc.stderr.strip()}"
    return proc.stdout


def exp_entry(name, pretext, labels, accuracy, timestamp, seed=0, finetuned=None, min_steps=None):
    """One entry of `dvc exp show --json`; with `finetuned` (the teacher's accuracy), a distilled experiment; with
    `min_steps`, one of a params.yaml that has finetune.min_steps."""
    params = {**PARAMS, "pretext": pretext, "finetune": {**PARAMS["finetune"], "labels_per_class": labels, "seed": seed}}
    if min_steps is not None:
        params["finetune"]["min_steps"] = min_steps
    metrics = {"test": {"accuracy": accuracy, "macro_f1": 0.5}}
    if finetuned is not None:
        params["distill"] = {"epochs": 5, "init": "teacher", "threshold": 0.0, "rounds": 2}
        metrics.update(distilled=True, finetuned={"accuracy": finetuned, "macro_f1": 0.4})
    return {"rev": name * 3, "name": name, "data": {
        "timestamp": timestamp, "params": {"params.yaml": {"data": params}},
        "metrics": {"metrics/evaluate/metrics.json": {"data": metrics}}}}


def test_results_markdown_reads_the_numbers():
    md = results_markdown(PARAMS, FINETUNE, EVALUATE, PER_CLASS)
    assert "| fashion_mnist | none | full | all | 54000 | 14 of 15 | **91.23%** | 75.00% | 0.9111 | 90.33% |" in md
    assert "| a | 2 | 50.0% | 0.600 |\n| b | 4 | 100.0% | 0.800 |" in md
    other = results_markdown({**PARAMS, "data": {"dataset": "deepfashion"}}, FINETUNE, EVALUATE, PER_CLASS)
    assert "| deepfashion | none |" in other and other.splitlines()[2].endswith("| 45.73% |")


def test_replace_block_keeps_the_rest():
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    assert replace_block(f"a\n{start}\nold\n{end}\nb", "results", "NEW") == f"a\n{start}\nNEW\n{end}\nb"
    with pytest.raises(ValueError, match="docs/results.md has no <!-- results:start -->"):
        replace_block("no markers", "results", "NEW", "docs/results.md")


def test_experiments_become_one_row_per_setting_and_seeds_are_averaged():
    baseline = exp_entry("main", "none", "all", 0.9, "2026-01-01T00:00:00")
    baseline["experiments"] = [
        {"revs": [exp_entry("exp-a", "rotation", "all", 0.91, "2026-01-02T00:00:00")]},
        {"revs": [exp_entry("exp-b", "rotation", 100, 0.8, "2026-01-03T00:00:00")]},
        {"revs": [exp_entry("exp-c", "rotation", 100, 0.81, "2026-01-04T00:00:00")]},  # rerun: newest wins
        {"revs": [exp_entry("exp-d", "rotation", 100, 0.83, "2026-01-05T00:00:00", seed=1)]},
        {"revs": [exp_entry("exp-e", "none", "all", 0.92, "2026-01-05T00:00:00", seed=1)],
         "executor": {"state": "success"}},
        *({"revs": [exp_entry(f"exp-{state}", "none", "all", 0.9, "2026-01-06T00:00:00", seed=7)],
           "executor": {"state": state}} for state in ("queued", "running", "failed")),  # baseline's metrics
        {"revs": [exp_entry("taste", "none", "all", 0.5, "2026-01-07T00:00:00", seed=2)]},
    ]
    taste = baseline["experiments"][-1]["revs"][0]["data"]["params"]["params.yaml"]["data"]
    taste["preprocess"] = {"fraction": 0.05}  # a quick run on 5% of the data: not a result
    workspace = {**exp_entry("x", "none", "all", 0.1, None), "rev": "workspace"}
    table = experiment_rows([workspace, baseline])
    assert sorted(table.experiment) == ["exp-a", "exp-c", "exp-d", "exp-e", "main"]
    md = comparison_markdown(table).splitlines()
    assert md[0] == "Protocol `full`; fine-tuning schedule per budget: 100: 15 epochs; all: 15 epochs."
    assert md[2] == "| pretext | 100 labels per class | all labels per class |"
    assert "| none | — | 91.00 ± 1.41 (2 runs) |" in md  # sample std of 0.90 and 0.92
    assert "| rotation | 82.00 ± 1.41 (2 runs) | 91.00 ± 0.00 (1 runs) |" in md
    svg = label_efficiency_svg(table)
    assert svg.count("<polyline") == 2 and ">all<" in svg and ">100<" in svg


def test_distilled_experiments_are_tabled_beside_their_teachers(tmp_path):
    baseline = exp_entry("main", "none", "all", 0.9, "2026-01-01T00:00:00")
    baseline["experiments"] = [{"revs": [exp_entry(f"d{i}", p, 10, student, f"2026-01-02T00:00:0{i}", seed, teacher)]}
                               for i, (p, seed, teacher, student) in enumerate([
                                   ("none", 0, 0.60, 0.64), ("none", 1, 0.62, 0.66), ("rotation", 0, 0.70, 0.81)])]
    comparison, distilled = sweep_tables(experiment_rows([baseline]))
    # the comparison holds what fine-tuning gave, distilled or not; the distilled table both
    assert sorted(comparison.test_accuracy) == [0.60, 0.62, 0.70, 0.9] and set(comparison.commit) == {"mainmai"}
    assert sorted(distilled.experiment) == ["d0", "d1", "d2"]
    md = distilled_markdown(distilled, ["none", "rotation"]).splitlines()
    assert md[0] == "| pretext | 10 labels per class: fine-tuned → distilled |"
    assert md[2] == "| none | 61.00 ± 1.41 → **65.00** ± 1.41 (+4.00; 2 runs) |"
    assert md[3] == "| rotation | 70.00 ± 0.00 → **81.00** ± 0.00 (+11.00; 1 runs) |"
    assert "| 10 per class: best pipeline ≥ 80.0% | `rotation` 81.00% | met |" in md
    assert "Distillation: 2 round(s) of 5 epochs over every training image" in "\n".join(md)
    assert ("| 10 per class, distilled: best pretext above `none`, its 95% CI excluding 0 | `rotation` +17.00 points "
            "(one seed: no interval) | **missed** |") in md  # paired with none's seed 0 alone: no interval
    assert distillation_svg(distilled, ["none", "rotation"]).count("<polyline") == 4
    # --add: a row of the same settings is replaced, the others kept
    path = tmp_path / "distilled.tsv"
    distilled.to_csv(path, sep="\t", index=False)
    again = distilled[distilled.experiment == "d2"].assign(experiment="d9", test_accuracy=0.5)
    keys = ["dataset", "pretext", "protocol", "labels_per_class", "epochs", "min_steps", "seed", "distill_epochs", "distill_init",
            "distill_threshold", "distill_per_class", "distill_rounds"]
    assert sorted(merged(path, again, keys).experiment) == ["d0", "d1", "d9"]


def test_the_distilled_table_shows_one_setting_per_budget_of_params_yamls_dataset(tmp_path):
    baseline = exp_entry("main", "none", "all", 0.9, "2026-01-01T00:00:00")
    runs = [exp_entry(f"d{p}{s}", p, 10, 0.65 + s / 100, f"2026-01-02T00:00:0{s}", s, 0.6) for p in ("none", "rotation")
            for s in range(2)]
    longer = [exp_entry(f"l{p}", p, 10, 0.99, "2026-01-03T00:00:00", 0, 0.6) for p in ("none", "rotation")]
    hundred = [exp_entry(f"h{p}", p, 100, 0.85, "2026-01-04T00:00:00", 0, 0.8) for p in ("none", "rotation")]
    folder = exp_entry("mine", "rotation", 10, 0.10, "2026-01-05T00:00:00", 5, 0.1)
    for entry in longer:  # another distillation setting at 10 per class, fewer runs: never pooled with the others
        entry["data"]["params"]["params.yaml"]["data"]["distill"]["epochs"] = 9
    for entry in hundred:
        entry["data"]["params"]["params.yaml"]["data"]["distill"]["rounds"] = 1
    folder["data"]["params"]["params.yaml"]["data"]["data"] = {"dataset": "folder"}
    baseline["experiments"] = [{"revs": [entry]} for entry in runs + longer + hundred + [folder]]
    (tmp_path / "metrics").mkdir()
    sweep_tables(experiment_rows([baseline]))[1].to_csv(tmp_path / "metrics/distilled.tsv", sep="\t", index=False)
    (tmp_path / "params.yaml").write_text("data: {dataset: fashion_mnist}\n")
    shown = read_distilled(tmp_path)
    assert sorted(shown.experiment) == ["dnone0", "dnone1", "drotation0", "drotation1", "hnone", "hrotation"]
    md = distilled_markdown(shown, ["none", "rotation"])
    assert "| none | 60.00 ± 0.00 → **65.50** ± 0.71 (+5.50; 2 runs) |" in md  # not the 9 epochs' 99%
    assert ("Distillation: at 10 labels per class, 2 round(s) of 5 epochs over every training image, the student "
            "starting from the teacher, the teacher's soft probabilities; at 100 labels per class, 1 round(s) of 5") in md
    assert "Fashion-MNIST test accuracy, fine-tuned and distilled" in distillation_svg(shown, ["none", "rotation"])
    assert "Image-folder test accuracy after fine-tuning" in label_efficiency_svg(
        sweep_tables(experiment_rows([folder]))[0], ["rotation"])


def test_the_distillation_variants_show_teacher_and_student():
    row = {"pretext": "rotation", "labels_per_class": 10, "seed": 0, "val_images": 100, "teacher_val_accuracy": 0.67,
           "teacher_test_accuracy": 0.68, "epochs": 5, "targets": 40000, "threads": 2, "compute": "cpu bfloat16"}
    table = pd.DataFrame([{**row, "variant": "soft", "val_accuracy": 0.67, "test_accuracy": 0.69, "seconds": 120},
                          {**row, "variant": "hard", "val_accuracy": 0.70, "test_accuracy": 0.70, "seconds": 180}])
    md = distill_recipe_markdown(table).splitlines()
    assert md[2] == "| rotation | 10 | soft | 67.00 → 67.00 (+0.00) | 68.00 → 69.00 (+1.00) | 2.0 | 1 |"
    assert md[3] == "| rotation | 10 | hard | 67.00 → 70.00 (+3.00) | 68.00 → 70.00 (+2.00) | 3.0 | 1 |"
    assert md[-1].startswith("cpu bfloat16, 2 thread(s); minutes: the distillation alone, wall time")


def test_the_pretext_variants_show_minutes_the_probe_against_the_reference_and_mark_the_default():
    row = {"pretext": "rotation", "seed": 0, "threads": 2, "compute": "cpu bfloat16", "test_100": 0.84,
           "layers_100": "conv2"}
    table = pd.DataFrame([  # the reference need not come first (a rerun of it lands at the end of the file)
        {**row, "variant": "rotation: 1 random rotation, 4 epochs", "reference": False, "views": 1, "epochs": 4,
         "inputs_seen": 216000, "seconds": 120, "val_100": 0.83},
        {**row, "variant": "rotation: 2 random rotations, 4 epochs", "reference": False, "views": 2, "epochs": 4,
         "inputs_seen": 432000, "seconds": 240, "val_100": 0.86},
        {**row, "variant": "rotation: all 4 rotations, 4 epochs", "reference": True, "views": 4, "epochs": 4,
         "inputs_seen": 864000, "seconds": 480, "val_100": 0.85}])
    params = {"pretrain": {"rotation": {"views": 1, "epochs": 4, "flip": True}}}
    md = pretext_compute_markdown(table, params).splitlines()
    assert md[0] == ("| pretext | pre-training | minutes | inputs seen | probe val, 100 per class "
                     "| probe test, 100 per class | seeds |")
    assert md[2] == "| rotation | all 4 rotations, 4 epochs (reference) | 8.0 | 0.86 M | 85.00 | 84.00 | 0 |"
    assert md[3] == "| rotation | 1 random rotation, 4 epochs (default) | 2.0 | 0.22 M | 83.00 (-2.00) | 84.00 | 0 |"
    assert md[4] == "| rotation | 2 random rotations, 4 epochs | 4.0 | 0.43 M | 86.00 (+1.00) | 84.00 | 0 |"
    assert md[-1].startswith("cpu bfloat16, 2 thread(s); minutes: the pre-training alone")
    assert "probe: 1 label draw(s) per budget" in md[-1]  # counted from the layers the draws chose
    params["pretrain"]["rotation"]["views"] = 4  # the paper's setting as the default: both marks on one row
    assert pretext_compute_markdown(table, params).splitlines()[2].startswith(
        "| rotation | all 4 rotations, 4 epochs (reference, default) |")
    # a variant rerun at another budget: its column in budget order, a dash where a row was not run
    extra = pd.DataFrame([{**row, "variant": "rotation: 1 random rotation, 8 epochs", "reference": False, "views": 1,
                           "epochs": 8, "inputs_seen": 432000, "seconds": 240, "test_100": None, "layers_100": None,
                           "val_10": 0.70, "test_10": 0.71, "layers_10": "conv2"}])
    md = pretext_compute_markdown(pd.concat([table, extra]), params).splitlines()
    assert md[0].startswith("| pretext | pre-training | minutes | inputs seen | probe val, 10 per class ")
    assert md[2].endswith("| — | — | 85.00 | 84.00 | 0 |") and md[5].endswith("| 70.00 | 71.00 | — | — | 0 |")


def test_pretext_variants_of_several_seeds_are_compared_with_the_reference_seed_by_seed():
    """Means over the pre-training seeds; the change from the reference paired by seed (only the seeds the reference
    ran), with its 95% interval, bold where it excludes 0."""
    row = {"pretext": "exemplar", "threads": 2, "compute": "cpu bfloat16", "layers_100": "conv2", "epochs": 3}
    runs = [("exemplar: 6 views, 3 epochs", True, 6, [0.850, 0.860, 0.870]),
            ("exemplar: 2 views, 3 epochs", False, 2, [0.840, 0.849, 0.861, 0.500]),  # seed 3: no reference to pair
            ("exemplar: 3 views, 3 epochs", False, 3, [0.840, 0.870, 0.860])]
    table = pd.DataFrame([{**row, "variant": name, "reference": reference, "views": views, "seed": seed,
                           "inputs_seen": 54000 * views * 3, "seconds": 60 * (seed + 1), "val_100": val,
                           "test_100": val - 0.01}
                          for name, reference, views, vals in runs for seed, val in enumerate(vals)])
    md = pretext_compute_markdown(table, {"pretrain": {"exemplar": {"views": 2, "epochs": 3}}}).splitlines()
    assert md[2] == "| exemplar | 6 views, 3 epochs (reference) | 2.0 | 0.97 M | 86.00 | 85.00 | 0, 1, 2 |"
    # the 2-view runs: -1.0, -1.1, -0.9 points, interval -1.0 ± 4.303 * 0.1 / sqrt(3)
    assert md[3] == ("| exemplar | 2 views, 3 epochs (default) | 2.5 | 0.32 M | 76.25 (**-1.00, -1.25 to -0.75**) "
                     "| 75.25 | 0, 1, 2, 3 |")
    assert md[4] == ("| exemplar | 3 views, 3 epochs | 2.0 | 0.49 M | 85.67 (-0.33, -3.20 to +2.54) | 84.67 "
                     "| 0, 1, 2 |")
    assert "with its 95% interval where two or more seeds ran" in md[-1]


def test_the_views_table_sets_the_reference_backbones_sweep_beside_the_defaults():
    row = {"dataset": "fashion_mnist", "protocol": "full", "epochs": 60, "min_steps": 0, "labels_per_class": "10"}
    reference = pd.DataFrame([{**row, "pretext": "rotation", "views": 4, "seed": s, "test_accuracy": a}
                              for s, a in enumerate([0.70, 0.72])])
    current = pd.DataFrame([{**row, "pretext": p, "seed": s, "test_accuracy": a}
                            for p, s, a in [("rotation", 0, 0.73), ("rotation", 1, 0.75), ("none", 0, 0.5),
                                            ("rotation", 0, 0.99)]]).assign(min_steps=[0, 0, 0, 500])
    params = {"pretexts": ["none", "rotation"], "pretrain": {"rotation": {"views": 1, "epochs": 4}}}
    md = views_markdown(reference, current, params).splitlines()
    assert md[0].startswith("| pretext | labels per class | fine-tuning | views | test accuracy | default views |")
    assert md[2] == ("| rotation | 10 | 60 epochs | 4 | 71.00 ± 1.41 (2) | 1 | 74.00 ± 1.41 (2) | **+3.00** (+3.00 to +3.00; "
                     "2 seeds) |")
    assert len(md) == 5  # none has no reference row
    md = views_markdown(reference, current[current.pretext == "none"], params).splitlines()
    assert md[2] == "| rotation | 10 | 60 epochs | 4 | 71.00 ± 1.41 (2) | 1 | — | — |"  # not yet run on the new backbone
    # only the seeds both ran, paired: a seed the reference lacks changes nothing, one less narrows both columns
    more = pd.concat([current, current.iloc[[0]].assign(seed=5, test_accuracy=0.10)])
    assert views_markdown(reference, more, params) == views_markdown(reference, current, params)
    md = views_markdown(reference, current.drop(index=1), params).splitlines()
    assert md[2] == "| rotation | 10 | 60 epochs | 4 | 70.00 ± 0.00 (1) | 1 | 73.00 ± 0.00 (1) | +3.00 (1 seed) |"
    assert (signed(-0.004), signed(-0.006), signed(3)) == ("+0.00", "-0.01", "+3.00")  # no -0.00 in any table


def test_the_views_table_adds_the_experiments_queued_with_other_views_of_their_own_pretext(tmp_path):
    (tmp_path / "metrics").mkdir()
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copy(REPO / "metrics/comparison_reference_views.tsv", tmp_path / "metrics")
    table = pd.read_csv(REPO / "metrics/comparison.tsv", sep="\t", dtype=str, keep_default_na=False)
    table = table[table.variant == ""]  # the defaults' rows alone
    table.to_csv(tmp_path / "metrics/comparison.tsv", sep="\t", index=False)
    from selfsup.report.sweep import render_views
    before = render_views(tmp_path).splitlines()
    exemplar = table[(table.pretext == "exemplar") & (table.labels_per_class == "1000")]
    assert len(exemplar) == 3
    # the same seeds from a backbone of 4 views, 0.5 points better; a row whose variant names another pretext's
    # views, or another setting as well, is no views row of its own, nor is one of params.yaml's own views (3: queued
    # before they became the default)
    four = exemplar.assign(variant="pretrain.exemplar.views=4",
                           test_accuracy=(exemplar.test_accuracy.astype(float) + 0.005).map("{:.6f}".format))
    stray = pd.concat([exemplar.assign(variant="pretrain.rotation.views=4"),
                       exemplar.assign(variant="finetune.lr=0.1,pretrain.exemplar.views=4"),
                       exemplar.assign(variant="pretrain.exemplar.views=3")])
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["pretrain"]["exemplar"]["views"] == 3
    pd.concat([table, four, stray]).to_csv(tmp_path / "metrics/comparison.tsv", sep="\t", index=False)
    md = render_views(tmp_path).splitlines()
    at_1000 = [line for line in md if line.startswith("| exemplar | 1000 |")]
    mean = 100 * exemplar.test_accuracy.astype(float).mean()
    assert at_1000[0].startswith("| exemplar | 1000 | 15 epochs | 6 |")  # the most views first
    assert at_1000[1].startswith(f"| exemplar | 1000 | 15 epochs | 4 | {mean + 0.5:.2f} ± ")
    assert at_1000[1].endswith(f"| 3 | {mean:.2f} ± {100 * exemplar.test_accuracy.astype(float).std():.2f} (3) | "
                               "**-0.50** (-0.50 to -0.50; 3 seeds) |")
    assert at_1000[2].startswith("| exemplar | 1000 | 15 epochs | 2 |")
    rows = (lambda lines: [line for line in lines if line.startswith("| ")])
    assert len(rows(md)) == len(rows(before)) + 1  # the 4 views' row alone added
    assert "`-S pretrain.<pretext>.views=N`" in md[-1]


def test_a_longer_schedule_is_a_row_of_its_own_and_the_answer_shows_params_yamls(tmp_path):
    old = experiment_rows([exp_entry(f"o{s}", "none", 10, 0.60 + s / 100, f"2026-01-01T00:00:0{s}", seed=s)
                           for s in range(2)] + [exp_entry("big", "none", 1000, 0.85, "2026-01-01T00:00:09")])
    assert set(old.min_steps) == {0}  # a params.yaml from before finetune.min_steps: it was 0
    path = tmp_path / "comparison.tsv"
    sweep_tables(old)[0].drop(columns="min_steps").to_csv(path, sep="\t", index=False)  # as committed before it
    new = experiment_rows([exp_entry("n0", "none", 10, 0.70, "2026-01-02T00:00:00", min_steps=500)])
    table = merged(path, sweep_tables(new)[0], EXPERIMENT_KEYS)
    assert list(table.columns) == list(sweep_tables(new)[0].columns)  # the old rows' min_steps filled in place
    assert sorted(zip(table.experiment, table.min_steps)) == [("big", 0), ("n0", 500), ("o0", 0), ("o1", 0)]
    shown = on_schedule(table, 500)  # at 10 per class the 500-step run; at 1000, where none ran, the old one
    assert sorted(shown.experiment) == ["big", "n0"] and sorted(on_schedule(table, 0).experiment) == ["big", "o0", "o1"]
    assert comparison_markdown(table).splitlines()[0] == (
        "Protocol `full`; fine-tuning schedule per budget: 10: 15 epochs, 15 epochs, at least 500 steps; "
        "1000: 15 epochs.")
    assert budget_schedules(shown) == "10: 15 epochs, at least 500 steps; 1000: 15 epochs"


def test_one_schedule_per_budget_is_shown_never_two_pooled():
    rows = [exp_entry(f"l{s}", p, 10, 0.70 + s / 100, f"2026-01-01T00:00:0{s}", seed=s)
            for s in range(3) for p in ("none", "rotation")]
    short = [exp_entry(f"s{p}", p, 10, 0.50 if p == "none" else 0.70, "2026-01-02T00:00:00", seed=0)
             for p in ("none", "rotation")]
    for entry in short:
        entry["data"]["params"]["params.yaml"]["data"]["finetune"]["epochs"] = 5
    table = experiment_rows(rows + short)
    assert sorted(set(table.epochs)) == [5, 15]
    shown = on_schedule(table, 0)  # 6 runs of 15 epochs against 2 of 5: the 15 epochs' alone
    assert set(shown.epochs) == {15} and len(shown) == 6
    line = answer_markdown(shown, ["none", "rotation"])
    assert "`rotation` 71.00%, +0.00 points" in line and "+20.00" not in line
    # more runs of `none` alone do not outweigh a schedule every pretext ran: the one that compares them is kept
    alone = [exp_entry(f"n{s}", "none", 10, 0.6, f"2026-01-03T00:00:0{s}", seed=s + 3) for s in range(7)]
    for entry in alone:
        entry["data"]["params"]["params.yaml"]["data"]["finetune"]["epochs"] = 99
    assert set(on_schedule(experiment_rows(rows + short + alone), 0).epochs) == {15}


def test_another_recipe_is_a_row_of_its_own_and_not_in_the_answer(tmp_path):
    baseline = exp_entry("main", "none", 10, 0.60, "2026-01-01T00:00:00")
    plain = exp_entry("plain", "rotation", 10, 0.70, "2026-01-02T00:00:00")
    mixed = exp_entry("fixmatch", "rotation", 10, 0.80, "2026-01-03T00:00:00")
    mixed["data"]["params"]["params.yaml"]["data"]["finetune"]["unlabelled"] = "consistency"
    folder = exp_entry("mine", "rotation", 10, 0.30, "2026-01-04T00:00:00")
    folder["data"]["params"]["params.yaml"]["data"]["data"] = {"dataset": "folder"}
    baseline["experiments"] = [{"revs": [plain]}, {"revs": [mixed]}, {"revs": [folder]}]
    comparison = sweep_tables(experiment_rows([baseline]))[0]
    assert sorted(zip(comparison.experiment, comparison.variant)) == [
        ("fixmatch", "finetune.unlabelled=consistency"), ("main", ""), ("mine", ""), ("plain", "")]
    (tmp_path / "metrics").mkdir()
    comparison.to_csv(tmp_path / "metrics/comparison.tsv", sep="\t", index=False)
    (tmp_path / "params.yaml").write_text("data: {dataset: fashion_mnist}\nfinetune: {min_steps: 0}\n")
    shown = read_comparison(tmp_path)  # the commit's recipe on params.yaml's dataset: never pooled with the others
    assert sorted(shown.experiment) == ["main", "plain"]
    # a table collected before the variant was recorded: its rows are the commit's recipe
    comparison.drop(columns="variant").to_csv(tmp_path / "metrics/comparison.tsv", sep="\t", index=False)
    assert sorted(read_comparison(tmp_path).experiment) == ["fixmatch", "main", "plain"]
    again = merged(tmp_path / "metrics/comparison.tsv", sweep_tables(experiment_rows([baseline]))[0], EXPERIMENT_KEYS)
    assert list(again.columns) == list(comparison.columns)  # collected again: each recipe its own row
    assert sorted(zip(again.experiment, again.variant)) == sorted(zip(comparison.experiment, comparison.variant))


def test_a_floor_the_epochs_exceed_is_recorded_as_none_since_it_changes_nothing():
    from selfsup.train import _batch_plan

    for labelled, epochs, min_steps in [(100, 60, 500), (54000, 7, 500), (10000, 15, 500), (1000, 40, 500),
                                        (1000, 40, 0), (2000, 40, 600), (2000, 40, 601), (500, 1, 3)]:
        ft = {"epochs": epochs, "min_steps": min_steps, "batch_size": 128}
        lengthened = _batch_plan(labelled, 128, 1, "t", min_steps, epochs)[1] != _batch_plan(labelled, 128, 1, "t")[1]
        assert effective_min_steps(ft, labelled) == (min_steps if lengthened else 0), (labelled, epochs, min_steps)
    assert effective_min_steps({"epochs": 7, "min_steps": 500}, None) == 500  # no finetune metrics: the param
    entry = exp_entry("d", "none", "all", 0.91, "2026-01-01T00:00:00", min_steps=500)
    entry["data"]["metrics"]["metrics/finetune/metrics.json"] = {"data": {"labelled_images": 54000}}
    entry["data"]["params"]["params.yaml"]["data"]["finetune"]["batch_size"] = 128
    assert experiment_rows([entry]).min_steps.tolist() == [0]  # 15 epochs of 54,000 images: far more than 500


def test_a_benchmark_table_without_budgets_merges_too(tmp_path):
    """A table keyed by other columns (the pretext benchmark's variants): a rerun replaces its row, others stay."""
    path = tmp_path / "pretext_compute.tsv"
    pd.DataFrame([{"variant": "a", "seconds": 1.0}, {"variant": "b", "seconds": 2.0}]).to_csv(path, sep="\t", index=False)
    table = merged(path, pd.DataFrame([{"variant": "a", "seconds": 3.0}]), ["variant"])
    assert table.set_index("variant").seconds.to_dict() == {"b": 2.0, "a": 3.0}


def two_seeds(rows):
    """Experiments of two seeds per (pretext, budget, accuracy) of `rows`: the accuracy and 1 point more, so each gain
    over `none` is the same in both (an interval of width 0, clear of 0 wherever the gain is not 0)."""
    return experiment_rows([exp_entry(f"e{i}s{s}", p, b if b == "all" else int(b), a + s / 100,
                                      f"2026-01-01T00:{i:02d}:0{s}", seed=s)
                            for i, (p, b, a) in enumerate(rows) for s in range(2)])


def test_the_answer_names_the_best_pretext_the_labels_it_saves_and_the_worst():
    rows = [("none", "10", 0.60), ("none", "100", 0.70), ("none", "1000", 0.85), ("rotation", "10", 0.65),
            ("rotation", "100", 0.80), ("rotation", "1000", 0.86), ("autoencoder", "10", 0.55),
            ("autoencoder", "100", 0.72), ("autoencoder", "1000", 0.84)]
    lines = answer_markdown(two_seeds(rows), ["none", "rotation", "autoencoder"]).splitlines()
    assert lines[0].startswith(
        "- **10 labels per class** (`none` 60.50%): `rotation` 65.50%, **+5.00 points (95% CI +5.00 to +5.00, 2 "
        "seeds)**; `autoencoder` 55.50%, **-5.00 points (95% CI -5.00 to -5.00, 2 seeds)**. `rotation` with 10 labels "
        "per class does as well as `none` with 32 (95% CI ")  # halfway from 60.5% to 70.5%: from 10 to 100, log scale
    assert lines[1].startswith("- **100 labels per class** (`none` 70.50%): `rotation` 80.50%")
    assert "does as well as `none` with 464 (" in lines[1]  # two thirds of the way from 70.5% at 100 to 85.5% at 1000
    assert lines[2].startswith("- **1000 labels per class** (`none` 85.50%): `rotation` 86.50%")
    assert "does as well" not in lines[2]  # nothing above the largest budget to match it with
    # one seed: no interval, so no gain is clear of 0 and no saving is said
    one = answer_markdown(two_seeds(rows)[lambda t: t.seed == 0], ["none", "rotation", "autoencoder"]).splitlines()
    assert one[0].endswith("`autoencoder` 55.00%, -5.00 points (one seed: no interval).")


def test_all_stands_for_the_training_images_per_class_preprocess_leaves(fmnist_raw):
    import torch

    from selfsup.data import read_idx, stratified_split
    from selfsup.report.data import FASHION_MNIST_TRAIN_PER_CLASS, all_labels_per_class
    labels = read_idx(fmnist_raw / "train-labels-idx1-ubyte.gz").long()
    assert torch.bincount(labels).tolist() == [FASHION_MNIST_TRAIN_PER_CLASS] * 10
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for val_fraction in (params["preprocess"]["val_fraction"], 0.25):
        params["preprocess"]["val_fraction"] = val_fraction
        _, train = stratified_split(labels, val_fraction, torch.Generator().manual_seed(0))
        per_class = set(torch.bincount(labels[train]).tolist())
        assert {all_labels_per_class(REPO, lambda p: yaml.safe_dump(params))} == per_class
    assert all_labels_per_class(REPO, lambda p: yaml.safe_dump({**params, "data": {"dataset": "folder"}})) is None
    small = {**params, "preprocess": {**params["preprocess"], "fraction": 0.5}}
    assert all_labels_per_class(REPO, lambda p: yaml.safe_dump(small)) is None  # a subsample: unknown per class


def test_the_answer_reads_the_labels_saved_at_the_largest_budget_off_all():
    rows = [("none", "10", 0.60), ("none", "1000", 0.80), ("none", "all", 0.90), ("rotation", "10", 0.65),
            ("rotation", "1000", 0.85), ("rotation", "all", 0.91)]
    table = two_seeds(rows)
    lines = [line for line in comparison_block(table, ["none", "rotation"], all_per_class=5400).splitlines()
             if line.startswith("- **")]
    assert "does as well as `none` with 2324 (95% CI " in lines[1]  # 1000 x 5.4^0.5: halfway to all's 90.5%
    assert "): it saves 57% of the labels (95% CI " in lines[1]
    assert "does as well" not in lines[2]  # nothing above `all`
    unplaced = [line for line in comparison_block(table, ["none", "rotation"]).splitlines() if line.startswith("- **")]
    assert "does as well" not in unplaced[1]  # `all` off the curve: nothing above 1000
    # the shares saved as a chart: rotation's line through 10 and 1000, in its colour of the accuracy chart
    assert "![labels saved](metrics/labels_saved.svg)" in comparison_block(table, ["none", "rotation"], all_per_class=5400)
    svg = ElementTree.fromstring(saving_svg(matching(table, all_per_class=5400), ["none", "rotation"]))
    lines = svg.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 1 and len(lines[0].get("points").split()) == 2 and lines[0].get("stroke") == COLOURS[1]
    assert "![labels saved]" not in comparison_block(table[table.pretext == "none"], ["none"])  # nothing to save
    detail = detail_block(table, ["none", "rotation"], all_per_class=5400)
    assert "`all` is on the curve as the 5400 training images per class it fine-tunes on" in detail
    without = detail_block(table[(table.pretext != "none") | (table.labels_per_class != "all")], ["none", "rotation"],
                           all_per_class=5400)  # no `none` at `all`: the curve ends at 1000
    assert "`all` is not on the curve" in without and "5400" not in without


def paired_sweep():
    """Three seeds of none, rotation (+5 points, spread 1) and autoencoder (+0, spread 1) at 10 per class, and a
    fourth rotation seed with no `none` to pair it with."""
    runs = {"none": [0.60, 0.64, 0.62], "rotation": [0.65, 0.70, 0.66, 0.99], "autoencoder": [0.61, 0.63, 0.62]}
    return experiment_rows([exp_entry(f"{p}{s}", p, 10, a, f"2026-01-01T00:00:{i:02d}", seed=s)
                            for i, (p, accs) in enumerate(runs.items()) for s, a in enumerate(accs)])


def test_gains_are_paired_by_seed_with_a_t_interval():
    gains = paired_gains(paired_sweep()).set_index("pretext")
    rotation = gains.loc["rotation"]
    assert rotation.seeds == 3 and rotation.gain == pytest.approx(0.05)  # the unpaired fourth seed left out
    half = 4.303 * 0.01 / 3 ** 0.5  # t(0.975, 2 df) x sd of (0.05, 0.06, 0.04) / sqrt(3)
    assert (rotation.low, rotation.high) == pytest.approx((0.05 - half, 0.05 + half))
    assert is_finding(rotation) and not is_finding(gains.loc["autoencoder"])
    assert t975(2) == 4.303 and t975(9) == 2.262
    # beyond the table, Student's t's quantiles (scipy.stats.t.ppf(0.975, df)) to 4 places
    assert [round(t975(df), 4) for df in (31, 40, 60, 120, 1000)] == [2.0395, 2.0211, 2.0003, 1.9799, 1.9623]
    assert gain_text(rotation) == "+5.00 points (95% CI +2.52 to +7.48, 3 seeds)"


def test_the_fine_tuned_model_is_paired_with_the_probe_of_the_same_labelled_images():
    # the probe's draw i is seed i's labelled images; rotation's fine-tuned seeds 0-2 are 0.65, 0.70, 0.66
    probes = {"rotation": {"draws": {"10": [{"linear": 0.69}, {"linear": 0.73}, {"linear": 0.69}]}},
              "none": {"draws": {"10": [{"linear": 0.55}, {"linear": 0.60}, {"linear": 0.60}],
                                 "100": [{"linear": 0.8}]}}}
    draws = probe_draws(probes)
    assert len(draws) == 7 and set(draws.seed) == {0, 1, 2}
    gaps = probe_gaps(paired_sweep(), draws).set_index("pretext")
    rotation = gaps.loc["rotation"]  # differences -0.04, -0.03, -0.03: the fourth, unprobed seed left out
    assert rotation.seeds == 3 and rotation.gain == pytest.approx(-0.1 / 3) and is_finding(rotation)
    assert gaps.loc["none"].gain == pytest.approx(0.11 / 3) and not is_finding(gaps.loc["none"])
    assert "100" not in set(gaps.labels_per_class)  # no fine-tuned run at 100 to pair with
    md = probe_gap_markdown(gaps.reset_index(), ["none", "rotation"]).splitlines()
    assert md[2].startswith("| none | +3.67 (") and md[3].startswith("| rotation | **-3.33** (")
    target = targets_markdown(paired_sweep(), gaps=gaps.reset_index()).splitlines()[-1]
    assert target == ("| every budget: fine-tuned ≥ the frozen linear probe of its backbone | below at 1 of 2 "
                      "(pretext, budget), 1 of them by an interval clear of 0: `rotation` at 10 -3.33 | **missed** |")


def test_the_answer_says_which_gains_the_seeds_show():
    table = paired_sweep()
    line = answer_markdown(table, ["none", "rotation", "autoencoder"])
    # its mean over 4 runs, the gain over the 3 seeds `none` ran too: said, since they do not subtract
    assert "`rotation` 75.00%, **+5.00 points (95% CI +2.52 to +7.48, 3 seeds both ran)**" in line
    assert "`autoencoder` 62.00%, +0.00 points (95% CI -2.48 to +2.48, 3 seeds), too close to tell from `none`" in line
    md = gains_markdown(table, ["none", "rotation", "autoencoder"]).splitlines()
    assert md[2:] == ["| rotation | **+5.00** (+2.52 to +7.48; 3 seeds) |", "| autoencoder | +0.00 (-2.48 to +2.48; 3 seeds) |"]
    svg = gain_svg(table, ["none", "rotation", "autoencoder"])
    assert svg.count("<polyline") == 2 and 'stroke-dasharray="4 3"' in svg  # the zero line
    # each pretext keeps its colour of the accuracy chart, where `none` comes first
    assert COLOURS[1] in svg and COLOURS[2] in svg and COLOURS[0] not in svg
    hollow = 'r="3" fill="white" stroke='
    assert "hollow" not in svg and hollow not in svg  # every gain has its interval
    # a gain over one seed has no interval: drawn hollow and said so, not read as an exact one
    one = gain_svg(table[table.seed <= 0], ["none", "rotation", "autoencoder"])
    assert "(hollow: no interval)" in one and one.count(hollow) == 2


def test_the_answer_opens_with_where_each_pretext_is_clearly_above_none_and_the_labels_it_saves():
    runs = {("none", 10): [0.60, 0.64, 0.62], ("none", 100): [0.70, 0.72, 0.71], ("none", 1000): [0.80, 0.81, 0.82],
            ("rotation", 10): [0.65, 0.70, 0.66], ("rotation", 100): [0.76, 0.77, 0.75],
            ("rotation", 1000): [0.81, 0.81, 0.83],  # +0.67, not clear of 0
            ("autoencoder", 10): [0.59, 0.63, 0.61], ("autoencoder", 100): [0.71, 0.72, 0.70]}
    table = experiment_rows([exp_entry(f"{p}{b}{s}", p, b, a, f"2026-01-01T00:00:{s:02d}", seed=s)
                             for (p, b), accs in runs.items() for s, a in enumerate(accs)])
    block = comparison_block(table, ["none", "rotation", "autoencoder"])
    first = block.split("\n\n")[0]
    assert first.startswith("**In short:** the 95% interval of each pretext's gain over `none` lies above 0 at these "
                            "budgets (labels per class, of those with two seeds or more): `rotation`'s at 2 of 3 (10, "
                            "100); `autoencoder`'s at 0 of 2, and below 0 at 1 (10). `rotation` saves between ")
    assert first.endswith("of the labels `none` needs to do as well, over the budgets where that share's interval "
                          "and the gain's both lie above 0 (10, 100).")
    # a budget of one seed has no interval: no pretext is said to be clear of `none` anywhere
    assert not comparison_block(table[table.seed == 0], ["none", "rotation"]).startswith("**In short:**")
    # none clear anywhere: said so, with no saving
    level = table.assign(test_accuracy=table.test_accuracy.where(table.pretext != "rotation", table.test_accuracy - 0.05))
    flat = comparison_block(level[level.labels_per_class != "1000"], ["none", "rotation", "autoencoder"])
    assert flat.startswith("**In short:** no pretext's gain over `none` has its 95% interval above 0 at any budget; "
                           "per pretext, over the budgets with two seeds or more: `rotation`'s at none of 2; "
                           "`autoencoder`'s at 0 of 2, and below 0 at 1 (10).\n\n")
    # where `none` never catches up, the share is a floor, never 100%
    far = table.assign(test_accuracy=table.test_accuracy.where(
        (table.pretext != "rotation") | (table.labels_per_class != "100"), table.test_accuracy + 0.2))
    assert "and more than 90% (at 100) of the labels" in comparison_block(far, ["none", "rotation"]).split("\n")[0]


def test_a_dataset_with_no_sweep_rows_gets_a_line_saying_so_and_no_charts(tmp_path):
    (tmp_path / "metrics").mkdir()
    for name in ("comparison.tsv", "distilled.tsv", "comparison_reference_views.tsv"):
        shutil.copy(REPO / "metrics" / name, tmp_path / "metrics" / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["dataset"] = "deepfashion"  # every committed row is Fashion-MNIST's
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    read = (lambda p: p.read_text())
    from selfsup.report.answer import render_comparison
    from selfsup.report.blocks import PICTURES
    from selfsup.report.distilled import render_distilled
    from selfsup.report.sweep import render_views
    for render, table in ((render_comparison, "comparison.tsv"), (render_distilled, "distilled.tsv"),
                          (render_views, "comparison_reference_views.tsv")):
        assert render(tmp_path, read).startswith(f"No rows of `deepfashion` with this recipe in `metrics/{table}` yet")
    assert [picture.draw(tmp_path, read) for picture in PICTURES] == [None] * len(PICTURES)
    # rows of that dataset queued with a setting the commit lacks (a folder's root given with -S): said, not shown
    table = pd.read_csv(tmp_path / "metrics/comparison.tsv", sep="\t", dtype=str, keep_default_na=False)
    table.loc[table.index[:2], ["dataset", "variant"]] = ["deepfashion", "data.deepfashion.root=/data/df"]
    (tmp_path / "metrics/comparison.tsv").write_text(table.to_csv(sep="\t", index=False))
    said = render_comparison(tmp_path, read)
    assert said.startswith("No rows of `deepfashion` with this recipe")
    assert ("It holds 2 rows of `deepfashion` run with settings other than this commit's params.yaml (first: "
            "`data.deepfashion.root=/data/df`), never shown with its recipe: commit those settings") in said


def test_probe_markdown_reads_every_budget():
    run = {"linear": {"mean": 0.8, "std": 0.01}, "knn": {"mean": 0.7, "std": 0.0}, "layers": {"fc3": 1}}
    mixed = {**run, "layers": {"conv2": 2, "fc3": 1}}
    md = probe_markdown({"none": {"layer": "fc3", "test": {"10": run, "all": run}},
                         "rotation": {"layer": "conv2", "test": {"10": mixed, "all": run}}}).splitlines()
    assert md[0] == "| pretext | linear, 10 per class (layer) | linear, all per class (layer) | kNN, all |"
    assert md[2] == "| none | 80.00 ± 1.00 (fc3) | 80.00 ± 1.00 (fc3) | 70.00 |"  # in params.yaml's `pretexts` order
    assert md[3].startswith("| rotation | 80.00 ± 1.00 (conv2 ×2, fc3) |")


def test_rows_follow_the_order_of_pretexts_and_new_pretexts_need_no_edit():
    rows = [exp_entry(f"e{i}", p, 100, 0.8, f"2026-01-0{i + 1}T00:00:00") for i, p in enumerate(["jigsaw", "none", "rotation"])]
    table = experiment_rows(rows)
    md = comparison_markdown(table, ["none", "rotation", "jigsaw"]).splitlines()
    assert [line.split(" |")[0] for line in md[4:7]] == ["| none", "| rotation", "| jigsaw"]
    assert label_efficiency_svg(table, ["none", "rotation", "jigsaw"]).count("<polyline") == 3


def test_the_embedding_picture_is_drawn_from_the_probe_data(tmp_path):
    (tmp_path / "metrics/probe/rotation").mkdir(parents=True)
    (tmp_path / "metrics/probe/rotation/embedding.csv").write_text("pc1,pc2,label,class\n0,1,0,a\n1,0,2,c\n0.5,0.5,2,c\n")
    (tmp_path / "metrics/probe/rotation/metrics.json").write_text('{"layer": "conv2"}')
    svg = embedding_svg(tmp_path, "rotation")
    root = ElementTree.fromstring(svg)
    assert len(root.findall("{http://www.w3.org/2000/svg}circle")) >= 3 and "rotation: test features of conv2" in svg
    assert ">a<" in svg and ">c<" in svg and ">1<" in svg  # the legend names classes; an absent one by its index


def test_comparison_agrees_with_the_committed_default_run():
    table = read_comparison(REPO, read=committed)
    params = yaml.safe_load(committed(REPO / "params.yaml"))
    ft = params["finetune"]
    row = table[(table.pretext == params["pretext"]) & (table.labels_per_class == str(ft["labels_per_class"]))
                & (table.protocol == ft["protocol"]) & (table.epochs == ft["epochs"]) & (table.seed == ft["seed"])]
    assert len(row) == 1, "metrics/comparison.tsv lacks the default run"
    accuracy = json.loads(committed(REPO / "metrics/evaluate/metrics.json"))["test"]["accuracy"]
    assert row.test_accuracy.iloc[0] == pytest.approx(accuracy, abs=1e-6)
    assert set(table.pretext) >= set(params["pretexts"])


def test_recipe_table_keeps_a_variant_only_where_val_beats_the_default_at_every_budget():
    rows = []
    # the baseline rerun after the others (a benchmark's rerun replaces its rows at the end of the file): shown first
    for variant, val in [("smooth", {10: 0.62, 100: 0.81}), ("baseline", {10: 0.60, 100: 0.80}), ("erase", {10: 0.65, 100: 0.79})]:
        for b in (10, 100):
            for seed in range(2):
                rows.append({"pretext": "rotation", "labels_per_class": b, "variant": variant, "seed": seed,
                             "epochs": 60 if b == 10 else 40, "val_images": 10 * b, "val_accuracy": val[b] + seed / 100,
                             "test_accuracy": 0.5, "seconds": 30.0, "threads": 1, "compute": "cpu bfloat16"})
    md = recipe_markdown(pd.DataFrame(rows)).splitlines()
    assert md[0] == ("| pretext | variant | val, 10 per class | test, 10 per class | val, 100 per class | test, 100 per class "
                     "| better on val at every budget |")
    assert md[2] == "| rotation | baseline | 60.50 ± 0.71 | 50.00 ± 0.00 | 80.50 ± 0.71 | 50.00 ± 0.00 | — |"
    assert md[3].startswith("| rotation | smooth | 62.50 ± 0.71 (+2.00) |") and md[3].endswith("| yes |")
    assert md[4].endswith("| no |")  # better at 10 per class, worse at 100: not kept
    assert "2 seeds per cell; baseline epochs per budget 10: 60, 100: 40; val images per budget 10: 100, 100: 1000" in md[-1]
    assert md[-1].endswith("cpu bfloat16, 1 thread(s).")



def test_schedule_table_pairs_each_schedule_with_the_baseline_seed_by_seed_and_marks_the_default():
    rows = []
    for variant, min_steps, steps, val in [("baseline", 0, 60, [0.60, 0.70, 0.65]),
                                           ("at least 1500 steps", 1500, 1500, [0.66, 0.75, 0.72]),
                                           ("at least 500 steps", 500, 540, [0.70, 0.60, 0.65])]:
        for seed in range(3):
            rows.append({"pretext": "none", "labels_per_class": 10, "variant": variant, "seed": seed, "epochs": 60,
                         "min_steps": min_steps, "steps": steps, "protocol": "full", "head": "fc4", "layer": "fc4",
                         "val_images": 100, "val_accuracy": val[seed],
                         "test_accuracy": 0.5, "seconds": 30.0, "threads": 1, "compute": "cpu bfloat16"})
    for seed, layer in enumerate(["conv2", "conv1", "conv2"]):
        rows.append({**rows[3 + seed], "variant": "probe head", "head": "probe", "layer": layer, "steps": 1500})
    md = schedule_markdown(pd.DataFrame(rows), {"finetune": {"min_steps": 1500, "head": "fc4", "protocol": "full"}})
    md = md.splitlines()
    assert md[0] == "| pretext | schedule | steps, 10 per class | val, 10 per class | test, 10 per class |"
    assert md[2] == "| none | the epochs alone | 60 | 65.00 | 50.00 |"  # sorted by steps
    # differences 0.10, -0.10, 0.00: mean 0, an interval around it, not bold
    assert md[3] == "| none | at least 500 steps | 540 | 65.00 (+0.00, -24.84 to +24.84) | 50.00 |"
    # differences 0.06, 0.05, 0.07: 6 ± 4.303 x 1 / sqrt(3) points, bold
    assert md[4] == "| none | at least 1500 steps (default) | 1500 | 71.00 (**+6.00, +3.52 to +8.48**) | 50.00 |"
    assert md[5] == "| none | probe head | 1500 (conv2 ×2, conv1) | 71.00 (**+6.00, +3.52 to +8.48**) | 50.00 |"
    assert md[-1].startswith("Means over seeds (per budget 10: 3)") and md[-1].endswith("cpu bfloat16, 1 thread(s).")


def test_tuning_table_pairs_each_optimiser_with_the_default_schedules_runs_seed_by_seed():
    params = {"finetune": {"min_steps": 500, "head": "fc4", "protocol": "full", "lr": 0.05, "weight_decay": 0.0005,
                           "pretrained_lr": 1.0}}
    run = {"pretext": "none", "labels_per_class": 10, "epochs": 60, "steps": 540, "protocol": "full", "head": "fc4",
           "layer": "fc4", "val_images": 100, "test_accuracy": 0.5, "seconds": 30.0, "threads": 1, "compute": "cpu"}
    schedule = pd.DataFrame([{**run, "variant": v, "min_steps": m, "seed": seed, "val_accuracy": val}
                             for v, m, vals in [("baseline", 0, [0.1, 0.1]), ("at least 500 steps", 500, [0.60, 0.70])]
                             for seed, val in enumerate(vals)])
    tuning = pd.DataFrame([{**run, "variant": "lr 0.1", "min_steps": 500, "seed": seed, "val_accuracy": val,
                            "test_accuracy": 0.6} for seed, val in enumerate([0.65, 0.74])])
    md = tuning_markdown(tuning, schedule, params).splitlines()
    assert md[0] == "| pretext | optimiser | val, 10 per class | test, 10 per class |"
    # the default: the schedule benchmark's runs of params.yaml's schedule (not its epochs-alone baseline)
    assert md[2] == "| none | lr 0.05, weight decay 0.0005, pretrained layers at 1.0 lr (default) | 65.00 | 50.00 |"
    # differences +5 and +4 points: mean 4.5 ± 12.706 × 0.5
    assert md[3] == "| none | lr 0.1 | 69.50 (+4.50, -1.85 to +10.85) | 60.00 |"
    assert md[-1].startswith("Means over seeds (per budget 10: 2)") and md[-1].endswith("cpu, 1 thread(s).")


def test_consistency_table_pairs_each_variant_with_plain_fine_tuning_and_shows_the_worst_class_and_minutes():
    params = {"finetune": {"min_steps": 500, "head": "fc4", "protocol": "full"}}
    run = {"pretext": "none", "labels_per_class": 10, "epochs": 60, "steps": 540, "protocol": "full", "head": "fc4",
           "layer": "fc4", "val_images": 100, "test_accuracy": 0.5, "threads": 1, "compute": "cpu", "min_steps": 500}
    schedule = pd.DataFrame([{**run, "variant": "at least 500 steps", "seed": seed, "val_accuracy": val, "seconds": 60.0}
                             for seed, val in enumerate([0.60, 0.70, 0.9])]  # seed 2: not in the table
                            + [{**run, "pretext": "exemplar", "variant": "at least 500 steps", "seed": 0,
                                "val_accuracy": 0.8, "seconds": 600.0}]  # not in the table: not in its minutes
                            + [{**run, "pretext": "rotation", "variant": "at least 500 steps", "seed": seed,
                                "val_accuracy": 0.7, "test_accuracy": test, "seconds": 60.0}
                               for seed, test in enumerate([0.53, 0.54])])
    table = pd.DataFrame([{**run, "pretext": pretext, "variant": "consistency, fixed threshold", "seed": seed,
                           "val_accuracy": val, "test_accuracy": test, "test_worst_class": worst, "seconds": 300.0}
                          for pretext, rows in [("none", [(0.65, 0.6, 0.2), (0.74, 0.6, 0.3)]),
                                                ("rotation", [(0.7, 0.61, 0.2), (0.7, 0.63, 0.3)])]
                          for seed, (val, test, worst) in enumerate(rows)])
    md = consistency_markdown(table, schedule, params).splitlines()
    assert md[0] == ("| pretext | unlabelled images | val, 10 per class | test, 10 per class | worst class, test, 10 per "
                     "class |")
    assert md[2] == "| none | none: plain fine-tuning (default) | 65.00 | 50.00 | — |"  # seeds 0 and 1, as the variant
    assert md[3] == "| none | consistency, fixed threshold | 69.50 (+4.50, -1.85 to +10.85) | 60.00 | 25.0 |"
    assert md[7].endswith("Minutes of fine-tuning per run (mean): consistency, fixed threshold 5.0; plain "
                          "fine-tuning 1.0.")
    # the pretext's gain over none fine-tuned alike, paired by seed: plain +3 and +4, consistency +1 and +3 points
    assert md[9:] == ["| fine-tuning | pretext | gain over none on test, 10 per class |", "|---|---|---|",
                       "| plain fine-tuning | rotation | +3.50 (-2.85 to +9.85) |",
                       "| consistency, fixed threshold | rotation | +2.00 (-10.71 to +14.71) |"]


def test_balance_table_shows_the_teacher_and_pairs_each_pseudo_labelling_with_the_first_and_its_teacher():
    run = {"pretext": "rotation", "labels_per_class": 10, "val_images": 100, "teacher_test_worst_class": 0.30,
           "threads": 1, "compute": "cpu"}
    teachers = {0: (0.70, 0.71), 1: (0.70, 0.71), 2: (0.76, 0.74)}  # val, test of each seed's teacher
    rows = [{**run, "seed": seed, "variant": v, "teacher_val_accuracy": teachers[seed][0],
             "teacher_test_accuracy": teachers[seed][1], "val_accuracy": val, "test_accuracy": test,
             "test_worst_class": worst, "targets": targets}
            for v, runs, worst, targets in [("threshold", [(0.70, 0.73), (0.72, 0.74), (0.78, 0.76)], 0.0, 20000),
                                            ("balanced", [(0.74, 0.71), (0.77, 0.71)], 0.4, 20010)]
            for seed, (val, test) in enumerate(runs)]
    md = balance_markdown(pd.DataFrame(rows), {"pretexts": ["none", "rotation"]}).splitlines()
    # the teacher over every seed; each student against the first variant and against its own teacher, seed by seed:
    # threshold +0, +2, +2 on val and +2, +3, +2 on test; balanced +4, +7 on val and 0, 0 on test
    assert md[2] == "| rotation | 10 | none (the fine-tuned teacher) | 10 per class | 72.00 | 72.00 | — | — | 30.0 | 3 |"
    assert md[3] == ("| rotation | 10 | threshold | 20,000 | 73.33 | 74.33 | +1.33 (-1.54 to +4.20) "
                     "| **+2.33 (+0.90 to +3.77)** | 0.0 | 3 |")
    assert md[4] == ("| rotation | 10 | balanced | 20,010 | 75.50 (+4.50, -1.85 to +10.85) | 71.00 "
                     "| +5.50 (-13.56 to +24.56) | +0.00 (+0.00 to +0.00) | 40.0 | 2 |")


def test_the_schedule_block_pairs_each_schedule_with_the_probe_of_its_draws(tmp_path):

    (tmp_path / "metrics/probe/none").mkdir(parents=True)
    (tmp_path / "metrics/probe/none/detail.json").write_text(json.dumps(
        {"draws": {"10": [{"linear": 0.70}, {"linear": 0.60}]}}))
    rows = [{"pretext": "none", "labels_per_class": 10, "variant": v, "seed": seed, "epochs": 60, "min_steps": m,
             "steps": st, "protocol": "full", "head": "fc4", "layer": "fc4", "val_images": 100, "val_accuracy": 0.6,
             "test_accuracy": acc, "seconds": 1.0, "threads": 1, "compute": "cpu"}
            for v, m, st, accs in [("baseline", 0, 60, [0.65, 0.56, 0.9]), ("at least 500 steps", 500, 540, [0.72, 0.61, 0.9])]
            for seed, acc in enumerate(accs)]
    params = {"pretexts": ["none"], "finetune": {"min_steps": 500, "head": "fc4", "protocol": "full"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    md = schedule_block(pd.DataFrame(rows), params, tmp_path, lambda p: p.read_text()).splitlines()
    # seed 2 has no probe draw to pair with; differences -0.05, -0.04 and +0.02, +0.01
    assert md[-2] == "| none | the epochs alone | -4.50 (-10.85 to +1.85; 2 seeds) |"
    assert md[-1] == "| none | at least 500 steps | +1.50 (-4.85 to +7.85; 2 seeds) |"
    assert md[-3] == "|---|---|---|" and md[-4] == "| fine-tuned − probe | schedule | 10 per class |"


def test_epochs_trade_off_is_the_all_labels_schedule_rows_with_their_minutes():
    def row(variant, epochs, seed, val, seconds, budget="all"):
        return {"pretext": "none", "labels_per_class": budget, "variant": variant, "seed": seed, "epochs": epochs,
                "val_images": 6000, "val_accuracy": val, "test_accuracy": val - 0.01, "seconds": seconds,
                "threads": 1, "compute": "cpu bfloat16"}

    rows = [row("epochs ×2", 14, 0, 0.95, 1080), row("baseline", 7, 0, 0.91, 480), row("baseline", 7, 1, 0.93, 540),
            row("label smoothing 0.1", 7, 0, 0.99, 500), row("epochs ×2", 80, 0, 0.99, 60, budget=10)]
    md = epochs_markdown(pd.DataFrame(rows)).splitlines()
    assert md[2:4] == ["| none | 7 | 92.00 ± 1.41 | 91.00 ± 1.41 | 8.5 | 2 |", "| none | 14 | 95.00 ± 0.00 | 94.00 ± 0.00 | 18.0 | 1 |"]
    assert md[4] == "" and md[-1].startswith("All 6000 val images; cpu bfloat16, 1 thread(s)")

def test_targets_are_met_or_missed_by_the_means():
    rows = []
    for pretext, acc in {"none": {"10": 0.70, "100": 0.82, "all": 0.931}, "rotation": {"10": 0.77, "100": 0.88, "all": 0.94},
                         "autoencoder": {"10": 0.60, "100": 0.80, "all": 0.92}}.items():
        for b, a in acc.items():
            rows += [exp_entry(f"{pretext}{b}{s}", pretext, b, a, f"2026-01-01T00:00:0{s}", seed=s) for s in range(2)]
    md = targets_markdown(experiment_rows(rows)).splitlines()
    assert "| all labels: `none` ≥ 93.0% | 93.10% | met |" in md
    assert "| all per class: best pretext ≥ 93.5% | `rotation` 94.00% | met |" in md
    assert "| 10 per class: best pretext ≥ 78.0% | `rotation` 77.00% | **missed** |" in md
    assert ("| 100 per class: every pretext above `none`, its 95% CI excluding 0 | `autoencoder` -2.00 points (95% CI "
            "-2.00 to -2.00, 2 seeds) | **missed** |") in md
    # above by the means but not by the interval: not shown to be above
    noisy = experiment_rows(rows)
    at = (noisy.pretext == "autoencoder") & (noisy.labels_per_class == "100")
    noisy.loc[at, "test_accuracy"] = [0.81, 0.85]  # none: 0.82 both seeds
    row = [line for line in targets_markdown(noisy).splitlines() if "100 per class: every" in line][0]
    assert row.startswith("| 100 per class: every pretext above `none`, its 95% CI excluding 0 | `autoencoder` +1.00 "
                          "points (95% CI -") and row.endswith("| **missed** |")
    assert ("| 10 per class: best pretext ≥ `none` + 6 points, its 95% CI excluding 0 | `rotation` +7.00 points (95% CI "
            "+7.00 to +7.00, 2 seeds) | met |") in md
    # the targets in numbers were set for Fashion-MNIST: another dataset's sweep meets or misses only the shared ones
    elsewhere = targets_markdown(experiment_rows(rows).assign(dataset="deepfashion")).splitlines()
    assert len(elsewhere) == 3 and elsewhere[2].startswith("| 100 per class: every pretext above `none`")
    runs = pd.DataFrame({"pretext": ["none", "none", "rotation", "rotation"], "labels_per_class": "10",
                         "seed": [0, 1, 0, 1], "test_accuracy": [0.50, 0.52, 0.60, 0.63], "finetuned_accuracy": 0.4,
                         "protocol": "full", "epochs": 60, "min_steps": 0})  # as read_distilled gives them
    summary = distilled_summary(runs)
    assert len(distilled_targets(runs, summary)) == 4  # with the distilled accuracy target of Fashion-MNIST
    shared = distilled_targets(runs, summary, numbers=False)[2:]
    assert len(shared) == 1 and shared[0].startswith(
        "| 10 per class, distilled: best pretext above `none`, its 95% CI excluding 0 | `rotation` +10.50 points "
        "(95% CI +4.15 to +16.85, 2 seeds) | met |")


def test_the_weakest_class_of_each_delivered_model_is_collected_and_its_floor_stated(tmp_path):
    # per experiment, its per-class table: rotation's worst class is b at 40%, none's a at 15% or 25%, and the
    # distilled experiment's (its student's) belongs to the distilled table, not to its teacher's row
    recalls = {"n0": (0.15, 0.9), "n1": (0.25, 0.8), "r0": (0.7, 0.4), "r1": (0.45, 0.5), "d0": (0.05, 0.9)}
    entries = [exp_entry(n, {"n": "none", "r": "rotation"}.get(n[0], "rotation"), 10, 0.6, f"2026-01-01T00:00:0{i}",
                         seed=int(n[1]) + 5 * (n[0] == "d"), finetuned=0.55 if n[0] == "d" else None)
               for i, n in enumerate(recalls)]
    per_class = lambda rev: pd.DataFrame({"class": ["a", "b"], "accuracy": recalls[rev[:2]]})  # rev: name * 3
    rows = experiment_rows(entries, per_class)
    assert rows.set_index("experiment").loc["r0", ["worst_class", "worst_recall"]].tolist() == ["b", 0.4]
    comparison, distilled = sweep_tables(rows)
    assert comparison.set_index("experiment").worst_recall.isna().to_dict() == {
        "n0": False, "n1": False, "r0": False, "r1": False, "d0": True}
    assert distilled.worst_recall.tolist() == [0.05]
    text = weakest_text(comparison, classes=10, order=["none", "rotation"])
    assert text == ("At 10 labels per class no class collapses: the class each model recognises least (a in 3 of 4 "
                    "models) is recognised in at least 15.0% of its test images, against 10% by chance. Its least "
                    "over the seeds, per pretext: `none` 15.0% (mean 20.0%), `rotation` 40.0% (mean 42.5%).")
    assert weakest_text(comparison, classes=10).startswith("At 10 labels per class no class collapses")
    assert "**a class falls to chance or below**" in weakest_text(comparison, classes=5)  # 15% < 20%
    for classes, verdict in ((10, "met"), (5, "**missed**")):
        target = [line for line in targets_markdown(comparison, classes=classes).splitlines() if "chance" in line]
        assert target == [f"| 10 per class: every model recognises every class above chance ({100 // classes}%) | "
                          f"least: `none` seed 0, a 15.0% (4 models) | {verdict} |"]
    assert "chance" not in targets_markdown(comparison)  # without the number of classes: no chance to say
    assert weakest_text(comparison.assign(worst_recall=float("nan")), classes=4) == ""  # rows from before: nothing


def test_a_distilled_experiments_teacher_keeps_its_own_weakest_class():
    # evaluate's per-class table holds both models: the student's recall (delivered) and the fine-tuned model's
    tables = {"d0": {"accuracy": [0.05, 0.9], "finetuned_accuracy": [0.8, 0.3]},
              "n0": {"accuracy": [0.2, 0.7], "finetuned_accuracy": [0.2, 0.7]}}
    entries = [exp_entry("d0", "none", 10, 0.6, "2026-01-01T00:00:00", finetuned=0.55),
               exp_entry("n0", "none", 10, 0.6, "2026-01-01T00:00:01", seed=1)]
    per_class = lambda rev: pd.DataFrame({"class": ["a", "b"], **tables[rev[:2]]})  # rev: name * 3
    comparison, distilled = sweep_tables(experiment_rows(entries, per_class))
    worst = comparison.set_index("experiment")[WORST]
    assert worst.loc["d0"].tolist() == ["b", 0.3] and worst.loc["n0"].tolist() == ["a", 0.2]
    assert distilled[WORST].values.tolist() == [["a", 0.05]] and list(distilled.columns[-2:]) == WORST
    # a distilled run from before evaluate recorded the teacher's column: its teacher's weakest class is unknown
    tables["d0"].pop("finetuned_accuracy")
    comparison, _ = sweep_tables(experiment_rows(entries, per_class))
    assert comparison.set_index("experiment").loc["d0", WORST].isna().all()
    assert weakest_class(per_class("d0d0d0"), "finetuned_accuracy")[0] is None


def test_a_distilled_rerun_of_a_committed_model_keeps_its_weakest_class(tmp_path):
    # committed: none seed 0 (Shirt 63%) and seed 1 (Bag 50%); collected again with distillation on: seed 0's
    # fine-tuned model scored the same (the same model), seed 1's did not, and seed 2 is new
    entries = [exp_entry(f"d{s}", "none", 10, 0.6, f"2026-01-01T00:00:0{s}", seed=s, finetuned=f)
               for s, f in ((0, 0.55), (1, 0.56), (2, 0.57))]
    comparison, _ = sweep_tables(experiment_rows(entries))
    assert comparison.worst_recall.isna().all()  # evaluate recorded the students' classes, not these models'
    committed = comparison[comparison.seed < 2].assign(experiment=["c0", "c1"], worst_class=["Shirt", "Bag"],
                                                       worst_recall=[0.63, 0.5])
    committed.loc[committed.seed == 1, "test_accuracy"] = 0.5  # another model
    path = tmp_path / "comparison.tsv"
    committed.to_csv(path, sep="\t", index=False, float_format="%.6f")
    collect = lambda where: merged(where, comparison, EXPERIMENT_KEYS, carry=WORST, same=["test_accuracy", "macro_f1"])
    kept = collect(path).set_index("seed")
    assert kept.loc[0, ["experiment", "worst_class", "worst_recall"]].tolist() == ["d0", "Shirt", 0.63]
    assert kept.loc[[1, 2], "worst_recall"].isna().all()
    assert collect(tmp_path / "none.tsv") is comparison  # nothing committed: as it is


def test_the_weakest_class_is_read_from_the_revisions_commit(tmp_path):
    run = lambda *cmd: subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()
    run("git", "init", "-q")
    (tmp_path / "metrics/evaluate").mkdir(parents=True)
    (tmp_path / "metrics/evaluate/per_class.csv").write_text("class,accuracy,f1,support\nShirt,0.3,0.3,10\nBag,0.9,0.9,10\n")
    run("git", "add", "-A")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run")
    read = git_per_class(tmp_path)
    assert weakest_class(read(run("git", "rev-parse", "HEAD"))) == ("Shirt", 0.3)
    assert read("0" * 40) is None and weakest_class(None)[0] is None  # a revision without one: nothing


def test_cells_with_fewer_runs_are_pointed_out():
    rows = [exp_entry(f"n{s}", "none", 10, 0.7, f"2026-01-01T00:00:0{s}", seed=s) for s in range(3)]
    rows.append(exp_entry("r0", "rotation", 10, 0.8, "2026-01-01T00:00:09"))
    md = comparison_markdown(experiment_rows(rows))
    assert "Cells with fewer than 3 runs ran fewer seeds" in md
    assert "fewer than" not in comparison_markdown(experiment_rows(rows[:3]))


def test_every_file_the_report_writes_is_as_committed():
    """The report's whole output, computed from the committed files, is what is committed: README.md,
    docs/results.md and every chart."""
    def exists(path):
        return subprocess.run(["git", "cat-file", "-e", f"HEAD:{path.relative_to(REPO)}"], cwd=REPO).returncode == 0

    for path, text in rendered(REPO, read_file=committed, exists_file=exists).items():
        assert committed(path) == text, f"{path.relative_to(REPO)} is stale: run `python -m selfsup.report`"


REPORTED = ["README.md", "docs/results.md", "params.yaml", "metrics"]


@pytest.fixture
def project_copy(tmp_path, monkeypatch):
    """A cwd holding what the report reads and writes, as in the checkout."""
    (tmp_path / "docs").mkdir()
    for name in REPORTED:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


COMPARISON_BLOCK = re.compile(r"(<!-- comparison:start -->\n).*?(\n<!-- comparison:end -->)", re.S)


def make_stale(root):
    """README.md's comparison block replaced by `stale`: a report that renders its pages rewrites it (a copy as
    committed is up to date, and the report leaves an unchanged file alone, so it could not show a write)."""
    readme = root / "README.md"
    stale, count = COMPARISON_BLOCK.subn(r"\1stale\2", readme.read_text())
    assert count == 1 and stale != readme.read_text()
    readme.write_text(stale)
    return stale


def snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("argv, code, message", [
    (["--help"], 0, "usage: python -m selfsup.report"),
    (["--experiment"], 2, "unrecognized arguments: --experiment"),
    (["--experiments", "--rev"], 2, "argument --rev: expected one argument"),
    (["--rev", "abc1234"], 2, "--rev and --replace go with --experiments"),
    (["--replace"], 2, "--rev and --replace go with --experiments"),
])
def test_help_and_bad_arguments_write_nothing(project_copy, capsys, argv, code, message):
    stale = make_stale(project_copy)
    before = snapshot(project_copy)
    with pytest.raises(SystemExit) as exit_:
        report_main(argv)
    assert exit_.value.code == code and message in "".join(capsys.readouterr())
    assert snapshot(project_copy) == before and (project_copy / "README.md").read_text() == stale


def fake_dvc(monkeypatch, show):
    """`dvc exp show --json` answering `show`."""
    real = subprocess.run

    def run(cmd, *args, **kwargs):
        if cmd[:3] == ["dvc", "exp", "show"]:
            return subprocess.CompletedProcess(cmd, 0, json.dumps(show), "")
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(report_experiments.subprocess, "run", run)


def test_collecting_adds_to_the_committed_rows_and_replace_drops_them(project_copy, monkeypatch):
    committed_rows = pd.read_csv(project_copy / "metrics/comparison.tsv", sep="\t", dtype={"labels_per_class": str})
    distilled_before = snapshot(project_copy)["metrics/distilled.tsv"]
    head = exp_entry("main", "none", "all", 0.9, "2026-01-01T00:00:00")
    head["experiments"] = [{"revs": [exp_entry("e1", "rotation", 5, 0.7, "2026-01-02T00:00:00", seed=7)]}]
    fake_dvc(monkeypatch, [head])
    report_main(["--experiments"])
    rows = pd.read_csv(project_copy / "metrics/comparison.tsv", sep="\t", dtype={"labels_per_class": str})
    assert len(rows) == len(committed_rows) + 2  # the experiment and its commit's own row, both new settings
    assert set(committed_rows.experiment) < set(rows.experiment) and "e1" in set(rows.experiment)
    assert "| 5 labels per class" in (project_copy / "README.md").read_text()  # rendered from the merged table
    assert snapshot(project_copy)["metrics/distilled.tsv"] == distilled_before  # nothing distilled: left as it is
    report_main(["--experiments", "--replace"])
    rows = pd.read_csv(project_copy / "metrics/comparison.tsv", sep="\t", dtype={"labels_per_class": str})
    assert sorted(rows.experiment) == ["e1", "main"]
    for chart in ("metrics/label_gain.svg", "metrics/labels_saved.svg"):  # no pair left to draw: neither is kept
        assert not (project_copy / chart).exists() and chart not in (project_copy / "README.md").read_text()
    distilled = pd.read_csv(project_copy / "metrics/distilled.tsv", sep="\t")  # the earlier sweep's students too
    assert len(distilled) == 0 and "finetuned_accuracy" in distilled


def lock_of(params):
    """A dvc.lock whose finetune stage records `params`' pretext and finetune section."""
    recorded = {"pretext": params["pretext"], "finetune": params["finetune"]}
    return {"schema": "2.0", "stages": {"finetune": {"cmd": "python -m stages.finetune",
                                                     "params": {"params.yaml": recorded}}}}


def test_a_run_whose_dvc_lock_records_other_params_is_left_out_and_named(project_copy, monkeypatch, capsys):
    head = exp_entry("main", "none", "all", 0.9, "2026-01-01T00:00:00")
    whole = exp_entry("e1", "rotation", 5, 0.7, "2026-01-02T00:00:00", seed=7)
    # `dvc exp run -S pretext=exemplar -S finetune.seed=8 preprocess`: fine-tuning's lock is still the run before's
    partial = exp_entry("e2", "exemplar", 5, 0.7, "2026-01-02T00:00:01", seed=8)
    head["experiments"] = [{"revs": [whole]}, {"revs": [partial]}]
    params = {entry["rev"]: entry["data"]["params"]["params.yaml"]["data"] for entry in (head, whole, partial)}
    params["e1e1e1"]["finetune"]["lr"] = 1e-05
    locks = {"mainmainmain": lock_of(params["mainmainmain"]),
             # a float as PyYAML reads DVC's "1e-05": a string, the same value
             "e1e1e1": lock_of({**params["e1e1e1"], "finetune": {**params["e1e1e1"]["finetune"], "lr": "1e-05"}}),
             "e2e2e2": lock_of(params["e1e1e1"])}
    told = []
    rows = experiment_rows([head], lock=locks.get, stale=lambda name, stages: told.append((name, stages)))
    assert sorted(rows.experiment) == ["e1", "main"] and told == [("e2", ["finetune"])]
    # a commit whose dvc.lock is not its params.yaml's (committed without `dvc repro`) is left out as well, as itself
    told.clear()
    stale_head = {**locks, "mainmainmain": lock_of(params["e1e1e1"])}
    rows = experiment_rows([head], lock=stale_head.get, stale=lambda name, stages: told.append((name, stages)))
    assert sorted(rows.experiment) == ["e1"] and told == [("main, the commit itself", ["finetune"]),
                                                          ("e2", ["finetune"])]

    fake_dvc(monkeypatch, [head])
    monkeypatch.setattr(report_experiments, "git_lock", lambda root: locks.get)
    report_main(["--experiments"])
    table = pd.read_csv(project_copy / "metrics/comparison.tsv", sep="\t", dtype={"labels_per_class": str})
    assert "e1" in set(table.experiment) and "e2" not in set(table.experiment)
    err = capsys.readouterr().err
    assert "left out 1 run whose dvc.lock records params other than its params.yaml" in err and "e2 (finetune)" in err


def pretrain_lock(lr, backbone):
    """A dvc.lock whose pretrain@rotation stage records `lr` and made the backbone of hash `backbone`."""
    return {"schema": "2.0", "stages": {"pretrain@rotation": {
        "cmd": "python -m stages.pretrain rotation", "params": {"params.yaml": {"pretrain.common": {"lr": lr}}},
        "deps": [{"path": "data/prepared", "hash": "md5", "md5": "d" * 32 + ".dir"}],
        "outs": [{"path": "models/pretrain/rotation", "hash": "md5", "md5": backbone + ".dir"}]}}}


def test_a_run_that_remade_its_commits_backbone_with_other_results_is_left_out_and_named(project_copy, monkeypatch,
                                                                                        capsys):
    """An experiment run where the commit's backbones were not at hand pre-trains them anew; on another machine,
    precision or thread count that is another pre-training than the one the other rows share: no row of it. A
    backbone remade with other params (a variant) is its own, and kept."""
    head = exp_entry("main", "none", "all", 0.9, "2026-01-01T00:00:00")
    same = exp_entry("e1", "rotation", 5, 0.7, "2026-01-02T00:00:00", seed=7)  # the commit's backbone
    anew = exp_entry("e2", "rotation", 5, 0.7, "2026-01-02T00:00:01", seed=8)  # pre-trained again: other bytes
    variant = exp_entry("e3", "rotation", 5, 0.7, "2026-01-02T00:00:02", seed=9)  # other params: its own backbone
    head["experiments"] = [{"revs": [same]}, {"revs": [anew]}, {"revs": [variant]}]
    for entry, lr in ((head, 0.05), (same, 0.05), (anew, 0.05), (variant, 0.1)):
        entry["data"]["params"]["params.yaml"]["data"]["pretrain"] = {"common": {"lr": lr}}
    locks = {"mainmainmain": pretrain_lock(0.05, "a" * 32), "e1e1e1": pretrain_lock(0.05, "a" * 32),
             "e2e2e2": pretrain_lock(0.05, "b" * 32), "e3e3e3": pretrain_lock(0.1, "c" * 32)}
    told = []
    rows = experiment_rows([head], lock=locks.get, remade=lambda name, stages: told.append((name, stages)))
    assert sorted(rows.experiment) == ["e1", "e3", "main"] and told == [("e2", ["pretrain@rotation"])]

    fake_dvc(monkeypatch, [head])
    monkeypatch.setattr(report_experiments, "git_lock", lambda root: locks.get)
    report_main(["--experiments"])
    table = pd.read_csv(project_copy / "metrics/comparison.tsv", sep="\t", dtype={"labels_per_class": str})
    assert {"e1", "e3"} <= set(table.experiment) and "e2" not in set(table.experiment)
    err = capsys.readouterr().err
    assert "left out 1 run that remade stages of its commit with its params and inputs and got other outputs" in err
    assert "e2 (pretrain@rotation). Fetch the commit's outputs before running (`dvc pull`" in err


def test_a_commit_of_digits_alone_keeps_its_leading_zero_when_rows_are_added(project_copy, monkeypatch):
    path = project_copy / "metrics/comparison.tsv"
    table = pd.read_csv(path, sep="\t", dtype=str)
    path.write_text(table.assign(commit="0440123").to_csv(sep="\t", index=False))  # a hash pandas would take for a number
    head = exp_entry("main", "none", "all", 0.9, "2026-01-01T00:00:00")
    head["experiments"] = [{"revs": [exp_entry("e1", "rotation", 5, 0.7, "2026-01-02T00:00:00", seed=7)]}]
    fake_dvc(monkeypatch, [head])
    report_main(["--experiments"])
    kept = pd.read_csv(path, sep="\t", dtype=str)
    old = kept[kept.experiment.isin(set(table.experiment) - {"main", "e1"})]  # not those collected now
    assert len(old) > 100 and (old.commit == "0440123").all()


def test_nothing_to_collect_is_an_error_that_writes_nothing(project_copy, monkeypatch, capsys):
    fake_dvc(monkeypatch, [exp_entry("main", "none", "all", 0.9, "2026-01-01T00:00:00")])  # a commit, no experiments
    stale = make_stale(project_copy)
    before = snapshot(project_copy)
    with pytest.raises(SystemExit) as exit_:
        run_stage(report_main, ["--experiments"])
    assert exit_.value.code == 1 and "no finished DVC experiments of HEAD to collect" in capsys.readouterr().err
    assert snapshot(project_copy) == before and (project_copy / "README.md").read_text() == stale


def test_the_readmes_collect_command_in_a_fresh_clone_keeps_every_committed_row(tmp_path, monkeypatch, capsys):
    """A clone has no DVC experiments: the README's command says so and leaves the clone as it came."""
    committed(REPO / "README.md")  # skips outside a git checkout
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    command = re.search(r"^(python -m selfsup\.report --experiments)\s", (REPO / "README.md").read_text(), re.M)
    assert command, "the README's sweep section shows how to collect the experiments"
    monkeypatch.chdir(clone)
    with pytest.raises(SystemExit) as exit_:
        run_stage(report_main, command.group(1).split()[3:])
    assert exit_.value.code == 1 and "a fresh clone has none" in capsys.readouterr().err
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True)
    assert status.stdout == ""


def test_a_workspace_whose_recipe_differs_from_the_commit_is_not_rendered_unless_asked(tmp_path, monkeypatch, capsys):
    """An experiment left in the workspace (here: the quick look's fraction in params.yaml) would redraw the published
    answer with its recipe: the report refuses, names the files and the ways on, and writes nothing."""
    committed(REPO / "README.md")  # skips outside a git checkout
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("  fraction: 1.0 ", "  fraction: 0.02 "))
    monkeypatch.chdir(clone / "docs")
    files = lambda: {k: v for k, v in snapshot(clone).items() if not k.startswith(".git/")}  # noqa: E731
    before = files()
    with pytest.raises(SystemExit) as exit_:
        run_stage(report_main, [])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "params.yaml differs from the last commit" in err
    assert "git checkout HEAD -- params.yaml dvc.lock metrics" in err and "--uncommitted" in err
    assert files() == before
    report_main(["--uncommitted"])  # asked for: the workspace's recipe is drawn
    assert files()["docs/results.md"] != before["docs/results.md"]
