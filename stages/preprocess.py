"""Stage preprocess: seeded, stratified train/val/test splits as uint8 tensors, made once."""

import argparse

from selfsup.cli import run_stage
from selfsup.data import make_splits, read_fashion_mnist, save_prepared
from selfsup.download import CLASSES
from selfsup.params import load_params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", required=True, help="folder of the downloaded .gz files")
    parser.add_argument("--out", required=True, help="folder for train/val/test .pt and meta.json")
    args = parser.parse_args(argv)
    params = load_params()
    cfg = params.preprocess
    splits = make_splits(read_fashion_mnist(args.raw), cfg.val_fraction, cfg.fraction, cfg.seed)
    save_prepared(args.out, splits, list(CLASSES), params.data.dataset)
    print(", ".join(f"{name}: {len(split)} images" for name, split in splits.items()))


if __name__ == "__main__":
    run_stage(main)
