"""Pretext compute spent where it pays: the frozen-feature probe accuracy each pretext variant reaches, against
the minutes its pre-training took.

    python -m benchmarks.pretext [--variants NAME ...] [--seeds 0 1 2] [--budgets 100 1000] [--data data/prepared]
        [--out metrics/pretext_compute.tsv]

Every row is one run of the pipeline's own code: the pretrain stage's (selfsup.pretrain.pretrain, seeded as the
stage seeds it, on the same images) with the pretext's params.yaml section changed by one variant, then the probe
stage's protocol (selfsup.probe.probe_backbone, its params but the label budgets given here) on the frozen
backbone. `--seeds` pre-trains each variant once per seed (the stage's pretrain.common.seed by default: its
initialisation, batch order and augmentation), while the probe's label draws stay those of params.yaml, so a seed's
rows pair across variants: the report gives the change from the reference seed by seed, with a 95% interval where
two or more seeds ran. What decides is the probe's accuracy on its honest val images (at most k per class, at the layer each
label draw chose, the mean over draws); the test accuracy is reported, never used to choose. `seconds` is the wall
time of the pre-training alone, on whatever else the machine was running; the reference variant of each pretext runs
in the same session, so the minutes compare. `python -m selfsup.report` renders the file into docs/results.md
(Pre-training: where its minutes pay).
Not a test: a variant takes minutes (the reference rotation and exemplar about 8 and 10 on 2 threads).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmarks.common import check_committed_data, write_runs
from selfsup import SelfSupError
from selfsup.cli import run_stage
from selfsup.data import load_prepared, pretraining_images
from selfsup.distributed import NullLive
from selfsup.models import build_backbone
from selfsup.params import load_params
from selfsup.pretexts import get_pretext
from selfsup.pretrain import pretrain
from selfsup.probe import probe_backbone
from selfsup.progress import Progress
from selfsup.runtime import predict, setup

# name -> (pretext, its views and epochs), written out so that a later change of params.yaml's defaults does not
# change what a row means; the rest of the pretext's section comes from params.yaml. The first of each pretext is its
# reference, the paper's setting (all 4 rotations; AML19-SelfSupervised's 6 exemplar views), against which the rest,
# spending its compute otherwise, are compared; the report marks the one params.yaml sets as the pipeline's default.
VARIANTS = {
    "rotation: all 4 rotations, 4 epochs": ("rotation", {"views": 4, "epochs": 4}),
    "rotation: 2 random rotations, 4 epochs": ("rotation", {"views": 2, "epochs": 4}),
    "rotation: 1 random rotation, 4 epochs": ("rotation", {"views": 1, "epochs": 4}),
    "exemplar: 6 views, 3 epochs": ("exemplar", {"views": 6, "epochs": 3}),
    "exemplar: 3 views, 3 epochs": ("exemplar", {"views": 3, "epochs": 3}),
    "exemplar: 2 views, 3 epochs": ("exemplar", {"views": 2, "epochs": 3}),
    # the reference's compute spent on more epochs of fewer views
    "rotation: 1 random rotation, 16 epochs": ("rotation", {"views": 1, "epochs": 16}),
    "exemplar: 3 views, 6 epochs": ("exemplar", {"views": 3, "epochs": 6}),
}


def variant_config(params, pretext: str, changes: dict):
    """The pretext's spec and its params of one variant: its params.yaml section with the variant's views and
    epochs."""
    spec = get_pretext(pretext)
    return spec, dataclasses.replace(params.pretrain.section(pretext, spec.params), **changes)


def check_budgets(path: Path, variants: list[str], budgets: list[int], seeds: list[int]) -> None:
    """Before hours of pre-training, a SelfSupError where the table at `path` holds a variant's probe at one of the
    `seeds` at a budget the run would not measure: its row would be replaced without it (write_runs refuses that only
    at the end)."""
    if not path.is_file():
        return
    table = pd.read_csv(path, sep="\t", dtype=str)
    for _, row in table[table.variant.isin(variants) & table.seed.astype(int).isin(seeds)].iterrows():
        held = [int(column[4:]) for column in table.columns if column.startswith("val_") and pd.notna(row[column])]
        missing = sorted(set(held) - set(budgets))
        if missing:
            raise SelfSupError(f"{path} holds '{row.variant}' (seed {row.seed}) at {', '.join(map(str, missing))} labels per class too, "
                               f"which this run would drop; measure every budget it holds (--budgets "
                               f"{' '.join(map(str, sorted(set(held) | set(budgets))))}), or write to another table "
                               "with --out. Nothing was run")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                        help="pre-training seeds, each variant once per seed (default: params.yaml's "
                             "pretrain.common.seed); the probe's label draws are the same for all")
    parser.add_argument("--budgets", nargs="+", type=int, default=[100, 1000])
    parser.add_argument("--data", default="data/prepared")
    parser.add_argument("--out", default="metrics/pretext_compute.tsv")
    args = parser.parse_args(argv)
    params = load_params()
    seeds = args.seeds or [params.pretrain.common.seed]
    check_budgets(Path(args.out), args.variants, args.budgets, seeds)
    check_committed_data(params, Path(args.out), Path(args.data))
    prepared = load_prepared(args.data)
    meta, splits = prepared.meta, prepared.splits
    images = pretraining_images(prepared, args.data)
    probe_cfg = dataclasses.replace(params.probe, labels_per_class=tuple(args.budgets))
    runtime = setup(params.compute, meta)
    labels = {split: s.labels for split, s in splits.items()}
    # seed by seed: an interrupted run leaves whole seeds, each a set of rows paired across its variants
    for seed, name in tqdm([(s, n) for s in seeds for n in args.variants], desc="pretext variants"):
        pretext, changes = VARIANTS[name]
        spec, cfg = variant_config(params, pretext, changes)
        common = dataclasses.replace(params.pretrain.common, seed=seed)
        torch.manual_seed(seed)  # as the stage: the same initialisation for every variant of a seed
        backbone = build_backbone(params.model, meta["channels"], meta["image_size"])
        started = time.perf_counter()
        pretrain(spec, cfg, common, backbone, images, splits["val"].images[: common.val_images], runtime,
                 Progress(name, NullLive()))
        seconds = time.perf_counter() - started
        backbone.to(memory_format=torch.channels_last)
        feats = {split: predict(backbone, s.images, runtime, 1000, method="layer_features")
                 for split, s in splits.items()}
        probe = probe_backbone(feats, labels, probe_cfg, len(prepared.classes), log=tqdm.write)
        reference = name == next(n for n, (p, _) in VARIANTS.items() if p == pretext)  # the pretext's first
        row = {"pretext": pretext, "variant": name, "seed": seed, "reference": reference, "views": spec.views(cfg), "epochs": cfg.epochs,
               "inputs_seen": len(images) * spec.views(cfg) * cfg.epochs, "seconds": round(seconds, 1)}
        for budget in args.budgets:
            draws = probe["draws"][str(budget)]
            row[f"val_{budget}"] = sum(d["val"][d["layer"]] for d in draws) / len(draws)
            row[f"test_{budget}"] = probe["test"][str(budget)]["linear"]["mean"]
            row[f"layers_{budget}"] = ",".join(d["layer"] for d in draws)
        row.update(threads=torch.get_num_threads(), compute=runtime.describe())
        tqdm.write(f"{name}, seed {seed}: {seconds / 60:.1f} min; " + ", ".join(
            f"probe val {row[f'val_{b}']:.4f} test {row[f'test_{b}']:.4f} at {b}/class" for b in args.budgets))
        write_runs(Path(args.out), [row], ["variant", "seed"])  # each variant as it ends: a long run interrupted keeps them


if __name__ == "__main__":
    run_stage(main)
