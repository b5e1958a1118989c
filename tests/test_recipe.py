"""benchmarks/recipe.py: every variant is the written-out baseline with one change, at the sweep's epochs."""

import importlib.util

from selfsup.params import Params
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("recipe", REPO / "benchmarks/recipe.py")
recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe)


def test_each_variant_changes_one_thing_of_the_baseline_whatever_params_yaml_defaults_to():
    import dataclasses

    params = Params()
    # a params.yaml whose defaults moved away from the baseline: the rows must still mean the same runs
    moved = dataclasses.replace(params, finetune=dataclasses.replace(params.finetune, transfer="conv", label_smoothing=0.3))
    base, _ = recipe.variant_params(moved, *recipe.VARIANTS["baseline"], 10, 2)
    assert (base.transfer, base.label_smoothing, base.protocol, base.augment.cutout) == ("all", 0.0, "full", 0)
    assert (base.labels_per_class, base.epochs, base.seed) == (10, 60, 2)
    conv, _ = recipe.variant_params(moved, *recipe.VARIANTS["fc3, fc4 afresh (transfer: conv)"], 100, 0)
    assert dataclasses.replace(conv, transfer="all") == dataclasses.replace(base, labels_per_class=100, epochs=40, seed=0)
    longer, _ = recipe.variant_params(moved, *recipe.VARIANTS["epochs ×2"], "all", 0)
    assert longer.epochs == 2 * params.finetune.epochs and longer.labels_per_class == "all"
    cut, _ = recipe.variant_params(moved, *recipe.VARIANTS["cutout 8 px"], 10, 0)
    assert cut.augment.cutout == 8 and cut.augment.flip and cut.augment.translate == 2
    _, compute = recipe.variant_params(moved, *recipe.VARIANTS["fp32 (not bf16)"], 10, 0)
    assert compute.precision == "fp32"


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
