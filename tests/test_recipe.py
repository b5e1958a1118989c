"""The benchmarks: each variant is the written-out baseline with its changes, and each runs as documented."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from selfsup.params import Params
from tests.conftest import REPO, project_env

spec = importlib.util.spec_from_file_location("recipe", REPO / "benchmarks/recipe.py")
recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe)


def test_each_variant_changes_one_thing_of_the_baseline_whatever_params_yaml_defaults_to():
    import dataclasses

    params = Params()
    # a params.yaml whose defaults moved away from the baseline: the rows must still mean the same runs
    moved = dataclasses.replace(params, finetune=dataclasses.replace(params.finetune, transfer="conv", label_smoothing=0.3,
                                                                     ema=0.99))
    base, _, base_tta = recipe.variant_params(moved, *recipe.VARIANTS["baseline"], 10, 2)
    assert (base.transfer, base.label_smoothing, base.protocol, base.augment.cutout, base.ema, base_tta) == (
        "all", 0.0, "full", 0, 0.0, "none")
    assert (base.labels_per_class, base.epochs, base.seed) == (10, 60, 2)
    conv, _, _ = recipe.variant_params(moved, *recipe.VARIANTS["fc3, fc4 afresh (transfer: conv)"], 100, 0)
    assert dataclasses.replace(conv, transfer="all") == dataclasses.replace(base, labels_per_class=100, epochs=40, seed=0)
    longer, _, _ = recipe.variant_params(moved, *recipe.VARIANTS["epochs ×2"], "all", 0)
    assert longer.epochs == 2 * params.finetune.epochs and longer.labels_per_class == "all"
    cut, _, _ = recipe.variant_params(moved, *recipe.VARIANTS["cutout 8 px"], 10, 0)
    assert cut.augment.cutout == 8 and cut.augment.flip and cut.augment.translate == 2
    _, compute, _ = recipe.variant_params(moved, *recipe.VARIANTS["fp32 (not bf16)"], 10, 0)
    assert compute.precision == "fp32"
    averaged, _, _ = recipe.variant_params(moved, *recipe.VARIANTS["EMA of the weights, decay 0.999"], 10, 2)
    assert dataclasses.replace(averaged, ema=0.0) == base and averaged.ema == 0.999
    # flip TTA trains exactly as the baseline (so one run fine-tunes once for both) and only classifies differently
    flipped, flipped_compute, tta = recipe.variant_params(moved, *recipe.VARIANTS["flip TTA"], 10, 2)
    assert (flipped, flipped_compute, tta) == (base, recipe.variant_params(moved, *recipe.VARIANTS["baseline"], 10, 2)[1],
                                               "flip")


def test_the_schedule_variants_change_params_yamls_recipe_and_all_start_from_the_sweeps_schedule():
    import dataclasses

    params = Params()
    moved = dataclasses.replace(params, finetune=dataclasses.replace(params.finetune, transfer="conv", min_steps=1500,
                                                                     label_smoothing=0.1))
    base, _, _ = recipe.variant_params(moved, *recipe.VARIANTS["baseline"], 10, 1, "defaults")
    # params.yaml's recipe (transfer, smoothing), the sweep's epochs, and no min_steps whatever params.yaml's
    assert (base.transfer, base.label_smoothing, base.epochs, base.min_steps, base.head) == ("conv", 0.1, 60, 0, "fc4")
    longer, _, _ = recipe.variant_params(moved, *recipe.VARIANTS["at least 500 steps"], 10, 1, "defaults")
    assert dataclasses.replace(longer, min_steps=0) == base and longer.min_steps == 500
    lp_ft, _, _ = recipe.variant_params(
        moved, *recipe.VARIANTS["1500 steps, LP-FT on the probe's layer, pretrained at 0.1 lr"], 10, 1, "defaults")
    assert (lp_ft.min_steps, lp_ft.head, lp_ft.protocol, lp_ft.pretrained_lr) == (1500, "probe", "lp-ft", 0.1)
    assert dataclasses.replace(lp_ft, min_steps=0, head="fc4", protocol="full", pretrained_lr=1.0) == base
    plain, _, _ = recipe.variant_params(moved, *recipe.VARIANTS["baseline"], 10, 1)
    assert (plain.transfer, plain.min_steps) == ("all", 0)


def test_the_consistency_variants_are_params_yamls_default_run_with_the_unlabelled_images():
    import dataclasses

    params = Params()
    plain, _, _ = recipe.variant_params(params, *recipe.VARIANTS["baseline"], 10, 1, "tuning")
    fixed, _, _ = recipe.variant_params(params, *recipe.VARIANTS["consistency, fixed threshold"], 10, 1, "consistency")
    assert fixed == dataclasses.replace(plain, unlabelled="consistency") and plain.unlabelled == "none"
    flex, _, _ = recipe.variant_params(params, *recipe.VARIANTS["consistency, per-class thresholds"], 10, 1,
                                       "consistency")
    assert flex.consistency == dataclasses.replace(fixed.consistency, thresholds="per_class")
    assert dataclasses.replace(flex, consistency=fixed.consistency) == fixed


distill_spec = importlib.util.spec_from_file_location("distill_benchmark", REPO / "benchmarks/distill.py")
distill = importlib.util.module_from_spec(distill_spec)
distill_spec.loader.exec_module(distill)


def test_each_distillation_variant_is_the_written_out_baseline_with_its_changes():
    import dataclasses

    params = Params()
    moved = dataclasses.replace(params, distill=dataclasses.replace(params.distill, threshold=0.5, rounds=3))
    base = distill.variant_params(moved, {}, 1)
    assert (base.threshold, base.rounds, base.init, base.epochs, base.seed) == (0.0, 1, "teacher", 5, 1)
    for name, changes in distill.VARIANTS.items():
        cfg = distill.variant_params(moved, changes, 0)
        changed = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(base, f.name)} - {"seed"}
        assert changed == set(changes) - {"init"} | ({"init"} if changes.get("init", "teacher") != "teacher" else set()), name
    noisy = distill.variant_params(moved, distill.VARIANTS["pseudo-labels >= 0.9, noisier student (shift 4 px, cutout 8 px)"], 0)
    assert (noisy.augment.flip, noisy.augment.translate, noisy.augment.cutout) == (True, 4, 8)


pretext_spec = importlib.util.spec_from_file_location("pretext_benchmark", REPO / "benchmarks/pretext.py")
pretext_benchmark = importlib.util.module_from_spec(pretext_spec)
pretext_spec.loader.exec_module(pretext_benchmark)


def test_each_pretext_variant_sets_views_and_epochs_and_keeps_the_rest_of_the_section():
    import dataclasses

    import yaml

    from selfsup.params import load_params, parse_params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["pretrain"]["rotation"] = {"epochs": 9, "views": 2, "translate": 3}
    raw["pretrain"]["exemplar"] = {"epochs": 1, "views": 4, "temperature": 0.5}
    params = parse_params(raw)
    first = {}
    for name, (pretext, changes) in pretext_benchmark.VARIANTS.items():
        spec, cfg = pretext_benchmark.variant_config(params, pretext, changes)
        section = params.pretrain.section(pretext, spec.params)
        assert (cfg.views, cfg.epochs, spec.views(cfg)) == (changes["views"], changes["epochs"], changes["views"]), name
        assert dataclasses.replace(cfg, views=section.views, epochs=section.epochs) == section, name
        first.setdefault(pretext, changes)
    # each pretext's first variant is its reference, the paper's views; params.yaml's default is one of the variants,
    # so the report can mark it in the table
    assert {p: c["views"] for p, c in first.items()} == {"rotation": 4, "exemplar": 6}
    committed = load_params(REPO / "params.yaml")
    for pretext in first:
        section = committed.pretrain.section(pretext, pretext_benchmark.get_pretext(pretext).params)
        assert {"views": section.views, "epochs": section.epochs} in [
            c for p, c in pretext_benchmark.VARIANTS.values() if p == pretext], pretext


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "benchmarks").glob("*.py") if p.stem != "common"))
def test_every_benchmark_runs_as_its_docstring_says(name):
    """`python -m benchmarks.<name>` from the repository root, as documented (its --help: imports and arguments)."""
    doc = (REPO / "benchmarks" / f"{name}.py").read_text()
    assert f"python -m benchmarks.{name}" in doc
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    # it writes committed tables: an abbreviated option is an unknown one, not a guess
    option = next(o for o in re.findall(r"--[a-z][a-z-]+", done.stdout) if o != "--help")
    short = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", option[:-1], "x"], cwd=REPO,
                           capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert short.returncode == 2 and "unrecognized arguments" in short.stderr, (option, short.stderr)


def test_benchmarks_share_through_common_never_each_other():
    """A benchmark imports what it shares from benchmarks/common.py (or the library), never another benchmark."""
    scripts = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py"))
    for name in scripts:
        imported = re.findall(r"^from benchmarks\.(\w+) import|^import benchmarks\.(\w+)",
                              (REPO / "benchmarks" / f"{name}.py").read_text(), flags=re.M)
        assert {a or b for a, b in imported} <= {"common"}, name


def test_a_rerun_never_replaces_committed_cells_with_nothing(tmp_path):
    """A benchmark's row replaced by a rerun that measured less (e.g. fewer budgets) would lose committed numbers:
    refused, the table left as it was; a rerun that measures everything replaces the row."""
    import pandas as pd

    from benchmarks.common import write_runs
    from selfsup import SelfSupError

    path = tmp_path / "pretext_compute.tsv"
    committed = ("variant\tseed\tval_100\tval_1000\nrotation: 4 views\t0\t0.84\t0.89\n"
                 "exemplar: 6 views\t0\t0.80\t0.85\n")
    path.write_text(committed)
    with pytest.raises(SelfSupError, match=r"rotation: 4 views, 0: val_1000\), so nothing was written to it"):
        write_runs(path, [{"variant": "rotation: 4 views", "seed": 0, "val_100": 0.5}], ["variant", "seed"])
    assert path.read_text() == committed
    with pytest.raises(SelfSupError, match=r"holds 'rotation: 4 views' \(seed 0\) at 1000 labels per class too.+"
                                           r"--budgets 100 1000\).+Nothing was run"):
        pretext_benchmark.check_budgets(path, ["rotation: 4 views"], [100], [0, 1])
    pretext_benchmark.check_budgets(path, ["rotation: 4 views"], [10, 100, 1000], [0])  # every budget, and more
    pretext_benchmark.check_budgets(path, ["a variant not in the table"], [100], [0])
    pretext_benchmark.check_budgets(path, ["rotation: 4 views"], [100], [1])  # another seed replaces no row
    write_runs(path, [{"variant": "rotation: 4 views", "seed": 0, "val_100": 0.5, "val_1000": 0.6}], ["variant", "seed"])
    table = pd.read_csv(path, sep="\t")
    assert table.set_index("variant").loc["rotation: 4 views"].tolist() == [0, 0.5, 0.6] and len(table) == 2
    # a second seed of a variant: a row beside the first, which stays
    write_runs(path, [{"variant": "rotation: 4 views", "seed": 1, "val_100": 0.7}], ["variant", "seed"])
    table = pd.read_csv(path, sep="\t").set_index(["variant", "seed"])
    assert table.val_100.to_dict() == {("exemplar: 6 views", 0): 0.8, ("rotation: 4 views", 0): 0.5,
                                       ("rotation: 4 views", 1): 0.7}


@pytest.mark.parametrize("name", ["recipe", "distill", "pretext"])
def test_a_benchmark_without_its_data_says_so_in_one_line(name, tmp_path):
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--data", str(tmp_path / "none"),
                           "--out", str(tmp_path / "rows.tsv")], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    assert "meta.json not found; run `dvc repro preprocess` first" in done.stderr


@pytest.mark.parametrize("module", ["recipe", "distill", "pretext_benchmark"])
def test_a_quick_look_or_other_data_never_writes_into_the_committed_tables(module, tmp_path, monkeypatch):
    """preprocess.fraction below 1 (a quick look, carried over in params.yaml) measures a sliver of the data: its
    rows would replace the whole data's in metrics/. Refused before any work; another table is the way."""
    import yaml

    from selfsup import SelfSupError

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["preprocess"]["fraction"] = 0.02
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    main = {"recipe": recipe, "distill": distill, "pretext_benchmark": pretext_benchmark}[module].main
    with pytest.raises(SelfSupError, match=r"preprocess.fraction is 0.02, a quick look at 2% of the data, whose "
                                           r"numbers would replace the whole data's in metrics/.+Nothing was run"):
        main(["--data", "nothing"])
    with pytest.raises(SelfSupError, match=r"nothing/meta.json not found"):  # elsewhere it goes on (to the data)
        main(["--data", "nothing", "--out", str(tmp_path / "quick.tsv")])
    # another dataset's rows would sit among Fashion-MNIST's: refused the same way
    params["preprocess"]["fraction"] = 1.0
    params["data"]["dataset"] = "folder"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SelfSupError, match=r"the tables under metrics/ hold Fashion-MNIST's numbers, and params.yaml's "
                                           r"data.dataset is folder: .+--out a table outside metrics/"):
        main(["--data", "nothing"])


PIPELINE = """
stages:
  preprocess:
    cmd: mkdir -p data/prepared && echo images > data/prepared/train.pt
    outs: [data/prepared]
  pretrain:
    foreach: [none, rotation]
    do:
      cmd: mkdir -p models/pretrain/${item} && echo weights > models/pretrain/${item}/backbone.pt
      deps: [data/prepared]
      outs: ["models/pretrain/${item}"]
"""


def test_rows_for_the_committed_tables_are_measured_on_the_committed_run_alone(tmp_path, monkeypatch):
    """Into metrics/ only what the committed run would measure: its params.yaml and dvc.lock, its prepared data and
    its backbones as dvc.lock records them (a backbone pre-trained anew elsewhere is another pre-training).
    Each refusal comes before any work; another table (--out) takes anything."""
    import shutil

    from selfsup import SelfSupError

    def run(*command):
        subprocess.run(command, cwd=tmp_path, env=project_env(), check=True, capture_output=True)

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    run("dvc", "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "run")
    monkeypatch.chdir(tmp_path)
    main = recipe.main
    args = ["--pretexts", "rotation", "--budgets", "10"]
    with pytest.raises(SelfSupError, match=r"data/prepared/meta.json not found"):  # every check passed: on to the data
        main(args)
    backbone = tmp_path / "models/pretrain/rotation/backbone.pt"
    backbone.unlink()  # dvc's cache holds a link: a new file, not an edit of the cached one
    backbone.write_text("weights pre-trained anew\n")
    with pytest.raises(SelfSupError, match=r"models/pretrain/rotation differs from what dvc.lock records .+another "
                                           r"pre-training than the committed rows'.+`dvc checkout`.+Nothing was run"):
        main(args)
    with pytest.raises(SelfSupError, match=r"meta.json not found"):  # another table: measured on what is there
        main([*args, "--out", str(tmp_path / "mine.tsv")])
    with pytest.raises(SelfSupError, match=r"meta.json not found"):  # a backbone it does not read is no matter
        main(["--pretexts", "none", "--budgets", "10"])
    with pytest.raises(SelfSupError, match=r"dvc.yaml has no stage pretrain@jigsaw, so what this run reads is no"):
        main(["--pretexts", "jigsaw", "--budgets", "10"])
    run("dvc", "checkout", "-q", "-f")
    with pytest.raises(SelfSupError, match=r"reads elsewhere \(not data/prepared\);.+leave --data and --backbones"):
        main([*args, "--data", "elsewhere"])
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text().replace("  seed: 0", "  seed: 1", 1))
    for module in (recipe, distill, pretext_benchmark):  # an edited recipe: refused by every benchmark
        with pytest.raises(SelfSupError, match=r"params.yaml differs from the last commit: rows measured with this "
                                               r"workspace's recipe would replace the committed run's"):
            module.main(["--data", "data/prepared"])


@pytest.mark.parametrize("module", ["recipe", "distill"])
@pytest.mark.parametrize("option, value", [("--seeds", "0"), ("--first-seed", "-1")])
def test_no_seeds_or_a_negative_first_seed_is_a_usage_error(module, option, value, capsys):
    main = {"recipe": recipe, "distill": distill}[module].main
    with pytest.raises(SystemExit) as exit_:
        main([option, value])
    assert exit_.value.code == 2 and f"argument {option}: {value} is below" in capsys.readouterr().err
