"""Distillation variants against their teacher: how a student trained on the fine-tuned model's predictions
for every training image compares with the fine-tuned model itself.

    python -m benchmarks.distill [--pretexts rotation] [--budgets 10 100] [--seeds 1] [--first-seed 0]
        [--variants ...] [--data data/prepared] [--backbones models/pretrain] [--out metrics/distill_recipe.tsv]

For every pretext, budget and seed (`--seeds` of them from `--first-seed`: more seeds for rows already measured
add to them, as each seed's row replaces only its own), the finetune stage's own code fine-tunes a teacher (params.yaml's finetune
section at the sweep's epochs for the budget), then the distill stage's own code (selfsup.distill.distill_student)
trains one student per variant (BASELINE changed by the variant). Rows: accuracy on the
budget's honest val images (at most labels_per_class per class: what decides a default) and on the test set
(reported, never used to choose), and wall seconds of the distillation as measured.
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
from selfsup.distill import Labelled, distill, new_student
from selfsup.evaluate import top1_accuracy
from selfsup.finetune import budget as labelled_budget
from selfsup.finetune import Start, finetune_backbone
from selfsup.models import load_backbone
from selfsup.params import load_params
from selfsup.pretexts import get_pretext
from selfsup.runtime import predict, setup

# What every variant changes (written out, so that a later change of params.yaml's distill defaults does not
# change what a row of metrics/distill_recipe.tsv means): soft targets, a copy of the teacher, one round.
BASELINE = {"init": "teacher", "epochs": 5, "rounds": 1, "temperature": 1.0, "threshold": 0.0, "per_class": 0,
            "label_weight": 1.0,
            "augment": {"flip": True, "translate": 2, "cutout": 0}}

# name -> changes to the baseline
VARIANTS = {
    "soft, from the teacher": {"init": "teacher"},
    "soft, from the backbone": {"init": "backbone"},
    "pseudo-labels >= 0.9, from the teacher": {"init": "teacher", "threshold": 0.9},
    "pseudo-labels >= 0.8, from the teacher": {"init": "teacher", "threshold": 0.8},
    "pseudo-labels >= 0.95, from the teacher": {"init": "teacher", "threshold": 0.95},
    "pseudo-labels >= 0.9, 2 rounds of 3 epochs": {"init": "teacher", "threshold": 0.9, "rounds": 2, "epochs": 3},
    "pseudo-labels >= 0.9, noisier student (shift 4 px, cutout 8 px)":
        {"init": "teacher", "threshold": 0.9, "augment": {"translate": 4, "cutout": 8}},
    "2000 most confident per class, 2 rounds of 3 epochs": {"init": "teacher", "per_class": 2000, "rounds": 2,
                                                            "epochs": 3},
    "pseudo-labels >= 0.9, 2 rounds of 3 epochs, noisier student":
        {"init": "teacher", "threshold": 0.9, "rounds": 2, "epochs": 3, "augment": {"translate": 4, "cutout": 8}},
}


def variant_params(params, changes: dict, seed: int):
    """The distill params of one run: the baseline with one variant's changes (augment: the named fields of it);
    the optimiser (lr, batch, momentum, weight decay) from params.yaml."""
    augment = dataclasses.replace(params.distill.augment, **{**BASELINE["augment"], **changes.get("augment", {})})
    rest = {k: v for k, v in {**BASELINE, **changes}.items() if k != "augment"}
    return dataclasses.replace(params.distill, **rest, augment=augment, seed=seed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--pretexts", nargs="+", default=["rotation"])
    parser.add_argument("--budgets", nargs="+", type=parse_budget, default=[10, 100])
    parser.add_argument("--seeds", type=at_least(1), default=1, help="how many seeds")
    parser.add_argument("--first-seed", type=at_least(0), default=0, help="the first of them")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--data", default="data/prepared")
    parser.add_argument("--backbones", default="models/pretrain")
    parser.add_argument("--out", default="metrics/distill_recipe.tsv")
    args = parser.parse_args(argv)
    params = load_params()
    check_committed_data(params, Path(args.out), Path(args.data),
                         {p: Path(args.backbones) / p / "backbone.pt" for p in args.pretexts})
    prepared = load_prepared(args.data)
    meta, splits = prepared.meta, prepared.splits
    train = splits["train"]
    runtime = setup(params.compute, meta)
    for pretext in args.pretexts:
        backbone = load_backbone(Path(args.backbones) / pretext / "backbone.pt", pretext, params.model)["state_dict"]
        start = Start(backbone, params.model, meta, len(prepared.classes))
        for budget in args.budgets:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                cfg = dataclasses.replace(params.finetune, labels_per_class=budget, seed=seed,
                                          epochs=EPOCHS.get(budget, params.finetune.epochs))
                teacher, _, _, val = finetune_backbone(start, train, splits["val"], cfg, get_pretext(pretext).trains,
                                                       runtime)
                chosen, _ = labelled_budget(train, splits["val"], cfg)

                def accuracy(model, split):
                    return top1_accuracy(predict(model, split.images, runtime, 1000), split.labels).item()

                def worst_recall(model, split):  # the lowest recall of a class: a class the targets starved
                    return worst_class(predict(model, split.images, runtime, 1000), split.labels, prepared.classes)[0]

                rows = []
                row = {"pretext": pretext, "labels_per_class": budget, "seed": seed, "val_images": len(val),
                       "teacher_epochs": cfg.epochs, "teacher_min_steps": cfg.min_steps,
                       "teacher_val_accuracy": accuracy(teacher, val),
                       "teacher_test_accuracy": accuracy(teacher, splits["test"]),
                       "teacher_test_worst_class": worst_recall(teacher, splits["test"])}
                for name in tqdm(args.variants, desc=f"distill {pretext} {budget} seed {seed}"):
                    dcfg = variant_params(params, VARIANTS[name], seed)
                    started = time.perf_counter()
                    student = new_student(teacher, start, dcfg, cfg.transfer)
                    _, targets = distill(teacher, student, train.images, Labelled(chosen, train.labels[chosen]), val,
                                         dcfg, runtime)
                    seconds = time.perf_counter() - started
                    rows.append({**row, "variant": name, "epochs": dcfg.epochs,
                                 "val_accuracy": accuracy(student, val), "test_accuracy": accuracy(student, splits["test"]),
                                 "val_worst_class": worst_recall(student, val),
                                 "test_worst_class": worst_recall(student, splits["test"]),
                                 "targets": int((targets.sum(1) > 0).sum()), "seconds": round(seconds, 1),
                                 "threads": torch.get_num_threads(), "compute": runtime.describe()})
                    tqdm.write(f"{pretext} {budget} seed {seed} {name}: val {row['teacher_val_accuracy']:.4f} -> "
                               f"{rows[-1]['val_accuracy']:.4f}, test {row['teacher_test_accuracy']:.4f} -> "
                               f"{rows[-1]['test_accuracy']:.4f} ({seconds:.0f} s)")
                # each seed's rows as soon as they are measured: an interrupted run keeps the seeds it finished
                write_runs(Path(args.out), rows, ["pretext", "labels_per_class", "variant", "seed", "epochs"])


if __name__ == "__main__":
    run_stage(main)
