"""A small image folder cut from Fashion-MNIST: the folder route (your own images) on a few hundred labelled
images, against the 10,000 official test images.

    python -m benchmarks.small_folder OUT [--raw data/raw] [--labelled 50] [--unlabelled 100] [--seed 0]

OUT gets labelled/<class>/ (`--labelled` images of each class), unlabelled/ (`--unlabelled` more of each class,
without it) and test/<class>/ (every official test image), as 28×28 grayscale PNGs named by their index in the
official file. The labelled and unlabelled images are drawn from the official training set, per class, by a
seeded permutation (numpy's default_rng). OUT must not exist; it is written whole or not at all. Then run the
folder route on it, e.g. with and without pre-training's floor (docs/results.md: Pre-training on a few hundred
images):

    dvc exp run -S data.dataset=folder -S data.folder.root=OUT -S data.folder.channels=1 \\
        -S data.folder.image_size=28 -S pretrain.common.min_steps=0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from selfsup import SelfSupError
from selfsup.cli import run_stage
from selfsup.data import read_fashion_mnist
from selfsup.download import CLASSES
from selfsup.io import atomic_path


def folder_name(cls: str) -> str:
    """A class's folder: its name's first word, lower case, spaces as hyphens (T-shirt/top: t-shirt)."""
    return cls.split("/")[0].lower().replace(" ", "-")


def write_folder(raw: Path, out: Path, labelled: int, unlabelled: int, seed: int) -> dict[str, int]:
    """Write the folder (see the module's doc) and return how many images each part holds."""
    from PIL import Image

    if out.exists():
        raise SelfSupError(f"{out} exists; give a new folder (nothing was written)")
    sets = read_fashion_mnist(raw)
    (train, train_labels), (test, test_labels) = sets["train"], sets["test"]
    train, train_labels = train[:, 0].numpy(), train_labels.numpy()
    rng = np.random.default_rng(seed)
    counts = {"labelled": 0, "unlabelled": 0, "test": 0}

    def save(folder: Path, index: int, image: np.ndarray, part: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:05d}.png")
        counts[part] += 1

    with atomic_path(out) as tmp:
        for c, cls in enumerate(CLASSES):
            ids = rng.permutation(np.flatnonzero(train_labels == c))
            if len(ids) < labelled + unlabelled:
                raise SelfSupError(f"class {cls} has {len(ids)} training images, fewer than --labelled plus "
                                   f"--unlabelled ({labelled + unlabelled}); ask for fewer")
            for i in ids[:labelled]:
                save(tmp / "labelled" / folder_name(cls), int(i), train[i], "labelled")
            for i in ids[labelled:labelled + unlabelled]:
                save(tmp / "unlabelled", int(i), train[i], "unlabelled")
        for i, (image, label) in enumerate(zip(test[:, 0].numpy(), test_labels.tolist())):
            save(tmp / "test" / folder_name(CLASSES[label]), i, image, "test")
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("out", type=Path, help="the folder to write (must not exist)")
    parser.add_argument("--raw", type=Path, default=Path("data/raw"), help="the four Fashion-MNIST .gz files")
    parser.add_argument("--labelled", type=int, default=50, help="labelled training images per class")
    parser.add_argument("--unlabelled", type=int, default=100, help="unlabelled training images per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.labelled < 1 or args.unlabelled < 0:
        parser.error("--labelled must be 1 or more and --unlabelled 0 or more")
    counts = write_folder(args.raw, args.out, args.labelled, args.unlabelled, args.seed)
    print(f"{args.out}: " + ", ".join(f"{part} {n} images" for part, n in counts.items()))


if __name__ == "__main__":
    run_stage(main)
