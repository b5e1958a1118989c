"""Stage preprocess: seeded, stratified train/val/test splits as uint8 tensors, made once.

Fashion-MNIST: val is carved from the official training set, test is the official test set. DeepFashion:
the official partition (or a seeded one), the JPEGs decoded and resized once, on every core. Your own image
folder: test/ (or a seeded test split) and val from labelled/; unlabelled/ kept apart, for pre-training only.
"""

import sys
from pathlib import Path

from selfsup.arguments import stage_parser
from selfsup.cli import run_stage
from selfsup.data import make_splits, read_fashion_mnist, save_prepared
from selfsup import folders
from selfsup.deepfashion import prepare
from selfsup.download import CLASSES
from selfsup.params import load_params


def main(argv=None):
    args = stage_parser(__doc__, raw="the download stage's folder",
                        out="folder for train/val/test .pt and meta.json").parse_args(argv)
    params = load_params()
    cfg, data = params.preprocess, params.data
    unlabelled = None
    if data.dataset == "deepfashion":
        splits, classes, extra = prepare(Path(args.raw), data.deepfashion, cfg.val_fraction, cfg.fraction, cfg.seed)
    elif data.dataset == "folder":
        splits, classes, extra, unlabelled = folders.prepare(Path(args.raw), data.folder, cfg.val_fraction,
                                                              cfg.fraction, cfg.seed)
    else:
        splits = make_splits(read_fashion_mnist(args.raw), cfg.val_fraction, cfg.fraction, cfg.seed)
        classes, extra = list(CLASSES), None
    save_prepared(args.out, splits, classes, data.dataset, extra, unlabelled)
    print(", ".join(f"{name}: {len(split)} images" for name, split in splits.items())
          + (f", unlabelled: {len(unlabelled)} images" if unlabelled is not None else ""))
    if cfg.fraction < 1:  # e.g. a quick look's `-S preprocess.fraction=0.02`, which later `dvc exp run`s carry over
        print(f"note: preprocess.fraction is {cfg.fraction:g}, so every split keeps {100 * cfg.fraction:g}% of its "
              "images: a quick look, not a result. For all of them set preprocess.fraction: 1 in params.yaml (or "
              "`dvc exp run -S preprocess.fraction=1`)", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
