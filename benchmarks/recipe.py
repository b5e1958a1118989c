"""The fine-tuning recipe, one ingredient at a time: each variant against a plain baseline (BASELINE).

    python -m benchmarks.recipe [--pretexts none rotation autoencoder] [--budgets 10 100] [--seeds 3] [--first-seed 0]
        [--data data/prepared] [--backbones models/pretrain] [--base plain|defaults|tuning|consistency] [--out ...]

Every row is one run of the finetune stage's own code (selfsup.finetune.finetune_backbone) on the prepared data
and a pretrained backbone, with the baseline's finetune params (the rest from params.yaml) changed by one
variant, at the sweep's epochs for the budget: its accuracy on the budget's honest val images (at most labels_per_class per class; what a user with
that budget could measure, and what decides whether an ingredient is kept) and on the test set (reported,
never used to choose). `python -m selfsup.report` turns the file into the ablation table of docs/results.md
(The fine-tuning recipe, one ingredient at a time). Its `seconds` are wall time of the fine-tuning as measured,
on whatever else the machine was running (a variant that only classifies differently, flip TTA, reuses the
baseline's fine-tuning of the same run and its seconds). Not a test: a run takes
seconds at 10 labels per class and about a minute at 100 on one core; with consistency training (--base consistency:
params.yaml's recipe on its own schedule, the unlabelled images in every step, and the class recognised worst on test)
several minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmarks.common import EPOCHS, check_committed_data, parse_budget, worst_class, write_runs
from selfsup.cli import at_least, run_stage
from selfsup.data import load_prepared
from selfsup.evaluate import top1_accuracy
from selfsup.finetune import Start, finetune_backbone
from selfsup.models import TTA, load_backbone
from selfsup.params import load_params, to_dict
from selfsup.pretexts import get_pretext
from selfsup.runtime import predict, setup

# The recipe each variant changes one thing of: the plain fine-tuning every pretext started from (written out,
# so that a later change of params.yaml's defaults does not change what a row of metrics/recipe.tsv means).
BASELINE = {"protocol": "full", "transfer": "all", "pretrained_lr": 1.0, "label_smoothing": 0.0, "keep": "last",
            "ema": 0.0, "min_steps": 0, "head": "fc4", "augment": {"flip": True, "translate": 2, "cutout": 0},
            "tta": "none"}

# name -> (changes to the baseline's finetune params, changes to the compute params)
VARIANTS = {
    "baseline": ({}, {}),
    "label smoothing 0.1": ({"label_smoothing": 0.1}, {}),
    "cutout 8 px": ({"augment": {"cutout": 8}}, {}),
    "lp-ft, pretrained layers at 0.1 lr": ({"protocol": "lp-ft", "pretrained_lr": 0.1}, {}),
    "fp32 (not bf16)": ({}, {"precision": "fp32"}),
    "fc3, fc4 afresh (transfer: conv)": ({"transfer": "conv"}, {}),
    "epochs ×2": ({"epochs_scale": 2}, {}),
    "epochs ×4": ({"epochs_scale": 4}, {}),
    "EMA of the weights, decay 0.999": ({"ema": 0.999}, {}),
    "at least 500 steps": ({"min_steps": 500}, {}),
    "at least 1500 steps": ({"min_steps": 1500}, {}),
    "1500 steps, head on the probe's layer": ({"min_steps": 1500, "head": "probe"}, {}),
    "1500 steps, LP-FT on the probe's layer, pretrained at 0.1 lr": (
        {"min_steps": 1500, "head": "probe", "protocol": "lp-ft", "pretrained_lr": 0.1}, {}),
    "flip TTA": ({"tta": "flip"}, {}),  # evaluation only: trains as the baseline, whose model it reuses in one run
    # the optimiser, re-chosen on the default schedule (--base tuning)
    "lr 0.02": ({"lr": 0.02}, {}),
    "lr 0.1": ({"lr": 0.1}, {}),
    "weight decay 0.005": ({"weight_decay": 0.005}, {}),
    "pretrained layers at 0.3 lr": ({"pretrained_lr": 0.3}, {}),
    # the unlabelled images in every step (--base consistency)
    "consistency, fixed threshold": ({"unlabelled": "consistency"}, {}),
    "consistency, per-class thresholds": ({"unlabelled": "consistency", "consistency": {"thresholds": "per_class"}}, {}),
}
TUNED = ("lr", "weight_decay")  # what --base tuning takes from params.yaml beyond BASELINE's keys


def baseline(params, base: str) -> dict:
    """The recipe the variants change one thing of: BASELINE (`plain`), or params.yaml's own finetune recipe and
    test-time augmentation with the sweep's schedule (`defaults`: the sweep's epochs and no min_steps, whatever
    params.yaml's min_steps, so that the schedules are all measured against the same one; `tuning`: the sweep's
    epochs with params.yaml's min_steps, the default run of every budget, and its lr and weight decay)."""
    if base == "plain":
        return BASELINE
    recipe = to_dict(params.finetune)
    start = {**{k: recipe[k] for k in BASELINE if k != "tta"}, "min_steps": 0, "tta": params.evaluate.tta}
    if base in ("tuning", "consistency"):
        start.update({"min_steps": recipe["min_steps"], **{k: recipe[k] for k in TUNED}})
    return start


def replaced(params, changes: dict):
    """A params dataclass with `changes`; a nested mapping changes a nested dataclass's fields."""
    return dataclasses.replace(params, **{k: replaced(getattr(params, k), v) if isinstance(v, dict) else v
                                          for k, v in changes.items()})


def variant_params(params, changes: dict, compute_changes: dict, budget: int, seed: int, base: str = "plain"):
    """(finetune params, compute params, test-time augmentation) of one run."""
    start = baseline(params, base)
    augment = {**start["augment"], **changes.get("augment", {})}
    rest = {k: v for k, v in {**start, **changes}.items() if k not in ("augment", "epochs_scale", "tta")}
    epochs = EPOCHS.get(budget, params.finetune.epochs) * changes.get("epochs_scale", 1)
    cfg = replaced(params.finetune, {**rest, "augment": augment, "labels_per_class": budget, "epochs": epochs,
                                     "seed": seed})
    return cfg, dataclasses.replace(params.compute, **compute_changes), changes.get("tta", start["tta"])


OUT = {"plain": "metrics/recipe.tsv", "defaults": "metrics/schedule.tsv", "tuning": "metrics/tuning.tsv",
       "consistency": "metrics/consistency.tsv"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--pretexts", nargs="+", default=["none", "rotation", "autoencoder"])
    parser.add_argument("--budgets", nargs="+", type=parse_budget, default=[10, 100])
    parser.add_argument("--seeds", type=at_least(1), default=3)
    parser.add_argument("--first-seed", type=at_least(0), default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--data", default="data/prepared")
    parser.add_argument("--backbones", default="models/pretrain")
    parser.add_argument("--base", choices=list(OUT), default="plain",
                        help="what the variants change: the plain baseline (BASELINE), params.yaml's finetune recipe on "
                             "the epochs alone (defaults) or on its own schedule (tuning, consistency)")
    parser.add_argument("--out", help="default: " + ", ".join(f"{v} ({k})" for k, v in OUT.items()))
    args = parser.parse_args(argv)
    args.out = args.out or OUT[args.base]
    params = load_params()
    check_committed_data(params, Path(args.out), Path(args.data),
                         {p: Path(args.backbones) / p / "backbone.pt" for p in args.pretexts})
    prepared = load_prepared(args.data)
    meta, splits = prepared.meta, prepared.splits
    runs = [(p, b, s, v) for p in args.pretexts for b in args.budgets for v in args.variants
            for s in range(args.first_seed, args.first_seed + args.seeds)]
    backbones = {pretext: load_backbone(Path(args.backbones) / pretext / "backbone.pt", pretext,
                                        params.model)["state_dict"] for pretext in args.pretexts}
    rows, trained = [], {}  # variants that train alike (flip TTA and the baseline) share one fine-tuning
    for pretext, budget, seed, name in tqdm(runs, desc="recipe"):
        cfg, compute_cfg, tta = variant_params(params, *VARIANTS[name], budget, seed, args.base)
        runtime = setup(compute_cfg, meta)
        key = (pretext, cfg, compute_cfg)
        if key not in trained:
            started = time.perf_counter()
            start = Start(backbones[pretext], params.model, meta, len(prepared.classes))
            model, result, counts, val = finetune_backbone(start, splits["train"], splits["val"], cfg,
                                                      get_pretext(pretext).trains, runtime)
            trained[key] = model, val, time.perf_counter() - started, result.steps, counts.unlabelled
        model, val, seconds, steps, unlabelled = trained[key]
        classify = TTA[tta](model)

        def accuracy(split):
            return top1_accuracy(predict(classify, split.images, runtime, 1000), split.labels).item()

        extra = {}
        if args.base == "consistency":  # the unlabelled images trained on, and the class recognised worst
            recall, worst = worst_class(predict(classify, splits["test"].images, runtime, 1000), splits["test"].labels,
                                        prepared.classes)
            extra = {"unlabelled": cfg.unlabelled, "unlabelled_images": unlabelled, "test_worst_class": recall,
                     "worst_class": worst}
        rows.append({"pretext": pretext, "labels_per_class": budget, "variant": name, "seed": seed,
                     "epochs": cfg.epochs, "min_steps": cfg.min_steps, "steps": steps, "lr": cfg.lr,
                     "weight_decay": cfg.weight_decay, "pretrained_lr": cfg.pretrained_lr, "protocol": cfg.protocol,
                     "head": cfg.head, "layer": model.layer, "val_images": len(val), "val_accuracy": accuracy(val),
                     "test_accuracy": accuracy(splits["test"]), "seconds": round(seconds, 1),
                     "threads": torch.get_num_threads(), "compute": runtime.describe(), **extra})
        tqdm.write(f"{pretext} {budget} {name} seed {seed}: val {rows[-1]['val_accuracy']:.4f} "
                   f"test {rows[-1]['test_accuracy']:.4f} ({seconds:.0f} s)")
        # each run as it ends: a long benchmark interrupted keeps the runs it finished
        write_runs(Path(args.out), rows[-1:], ["pretext", "labels_per_class", "variant", "seed"])


if __name__ == "__main__":
    run_stage(main)
