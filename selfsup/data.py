"""Dataset readers (IDX), seeded stratified splits, labelled subsets, prepared uint8 tensors."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from selfsup import SelfSupError
from selfsup.io import atomic_path, write_json

SPLITS = ("train", "val", "test")
UNLABELLED = "unlabelled"  # images without labels (an image folder's unlabelled/): a fourth file, for pre-training
# IDX type code 0x08 is unsigned byte, the only one Fashion-MNIST uses.
_IDX_UBYTE = 0x08


class DataError(SelfSupError):
    """Input data that cannot be read or does not fit the parameters."""


def read_idx(path: str | Path) -> torch.Tensor:
    """Read a gzipped IDX file (the MNIST format) of unsigned bytes into a uint8 tensor."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found; run the download stage (`dvc repro download`), or give the folder that "
                        "holds the four Fashion-MNIST .gz files")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is not a readable gzip file ({err}); delete it and rerun the download stage") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
        raise DataError(f"{path} is not an IDX file of unsigned bytes; delete it and rerun the download stage")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = offset + int(torch.tensor(dims).prod()) if dims else offset
    if len(raw) != expected:
        raise DataError(f"{path} holds {len(raw)} bytes, its header promises {expected}; delete it and rerun the download stage")
    return torch.frombuffer(bytearray(raw[offset:]), dtype=torch.uint8).reshape(dims)


def read_fashion_mnist(raw_dir: str | Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The official train and test sets as (images N×1×28×28 uint8, labels N int64)."""
    raw_dir = Path(raw_dir)
    sets = {}
    for name, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(raw_dir / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(raw_dir / f"{prefix}-labels-idx1-ubyte.gz").long()
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{raw_dir}: {prefix} images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match")
        sets[name] = (images.unsqueeze(1), labels)
    return sets


def stratified_split(labels: torch.Tensor, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Split positions 0..N-1 into (taken, rest), taking round(fraction × count) of every class, at least one."""
    taken, rest = [], []
    for cls in labels.unique(sorted=True):
        members = (labels == cls).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)]
        k = max(1, round(fraction * len(members)))
        taken.append(members[:k])
        rest.append(members[k:])
    return torch.cat(taken).sort().values, torch.cat(rest).sort().values


@dataclass(frozen=True)
class Split:
    """One split in memory: uint8 images N×C×H×W, int64 labels, and their positions in the source set."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    source_index: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, positions: torch.Tensor) -> "Split":
        return Split(self.images[positions], self.labels[positions], self.source, self.source_index[positions])


def make_splits(sets: dict, val_fraction: float, fraction: float, seed: int) -> dict[str, Split]:
    """Seeded, stratified train/val/test: test is the official test set, val is carved from official train.

    `fraction` < 1 keeps a stratified subsample of every split (for smoke runs on tiny data).
    """
    gen = torch.Generator().manual_seed(seed)
    full = {name: Split(x, y, name, torch.arange(len(y))) for name, (x, y) in sets.items()}
    if fraction < 1:
        full = {name: s.subset(stratified_split(s.labels, fraction, gen)[0]) for name, s in full.items()}
    val_pos, train_pos = stratified_split(full["train"].labels, val_fraction, gen)
    if len(train_pos) == 0:
        raise DataError(f"val_fraction {val_fraction} leaves no training images; lower preprocess.val_fraction")
    return {"train": full["train"].subset(train_pos), "val": full["train"].subset(val_pos), "test": full["test"]}


def channel_stats(images: torch.Tensor, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and (sample) std of uint8 images, on the [0, 1] scale.

    From exact integer sums taken `chunk` images at a time: memory stays small for large image sets and
    the numbers do not depend on the chunking.
    """
    channels = images.shape[1]
    sums = torch.zeros(channels, dtype=torch.int64)
    squares = torch.zeros(channels, dtype=torch.int64)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].transpose(0, 1).reshape(channels, -1).long()
        sums += x.sum(1)
        squares += (x * x).sum(1)
    n = len(images) * images[0, 0].numel()
    mean = [int(s) / (n * 255) for s in sums]
    var = [(n * int(q) - int(s) ** 2) / (n * (n - 1) * 255**2) for s, q in zip(sums, squares)]
    return mean, [math.sqrt(v) for v in var]


def save_prepared(out_dir: str | Path, splits: dict[str, Split], classes: list[str], dataset: str,
                  extra_meta: dict | None = None, unlabelled: torch.Tensor | None = None) -> None:
    """Write each split as a .pt of uint8 tensors and a meta.json (classes, shape, normalisation, and
    `extra_meta`, e.g. what a dataset reader skipped); `unlabelled` images, when there are any, as one more
    file that only pre-training reads. Checked before anything is written: every class has a training image."""
    counts = torch.bincount(splits["train"].labels, minlength=len(classes))
    if (counts == 0).any():
        name = classes[int((counts == 0).nonzero()[0])]
        held = {split: int((s.labels == classes.index(name)).sum()) for split, s in splits.items()}
        raise DataError(f"class {name} has no training image: its {sum(held.values())} images all went to "
                        f"{' and '.join(f'{split} ({n})' for split, n in held.items() if n)}; add images of it, or "
                        "lower preprocess.val_fraction (or the dataset's test_fraction)")
    _, channels, height, width = splits["train"].images.shape
    if height != width:
        raise DataError(f"images are {height}×{width}; the model expects square images")
    out_dir = Path(out_dir)
    if unlabelled is not None and len(unlabelled):
        splits = {**splits, UNLABELLED: Split(unlabelled, torch.full((len(unlabelled),), -1), UNLABELLED,
                                              torch.arange(len(unlabelled)))}
    for name, split in splits.items():
        with atomic_path(out_dir / f"{name}.pt") as tmp:
            torch.save({"images": split.images.contiguous(), "labels": split.labels,
                        "source": split.source, "source_index": split.source_index}, tmp)
    mean, std = channel_stats(splits["train"].images)
    write_json(out_dir / "meta.json", {
        "dataset": dataset, "classes": list(classes), "channels": channels, "image_size": height,
        "mean": mean, "std": std, "sizes": {name: len(s) for name, s in splits.items()}, **(extra_meta or {}),
    })


@dataclass(frozen=True)
class Prepared:
    """What preprocess wrote: the splits plus their metadata."""

    meta: dict
    splits: dict[str, Split]

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]


def load_prepared(prepared_dir: str | Path, splits=SPLITS) -> Prepared:
    """Load the named splits written by save_prepared; a missing or damaged file is one DataError naming it."""
    prepared_dir = Path(prepared_dir)
    meta_path = prepared_dir / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path} not found; run `dvc repro preprocess` first")
    redo = f"delete {prepared_dir} and rerun `dvc repro -f preprocess`"
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as err:  # not JSON (or not text)
        raise DataError(f"{meta_path} is damaged ({type(err).__name__}); {redo}") from None
    if not (isinstance(meta, dict) and {"classes", "sizes", "channels", "image_size"} <= meta.keys()):
        raise DataError(f"{meta_path} is not preprocess's (no classes, sizes, channels and image_size); {redo}")
    loaded = {}
    for name in splits:
        path = prepared_dir / f"{name}.pt"
        if not path.is_file():
            raise DataError(f"{path} not found; {redo}")
        try:
            d = torch.load(path, weights_only=True, mmap=True)  # pages read on demand
            loaded[name] = Split(d["images"], d["labels"], d["source"], d["source_index"])
        except Exception as err:  # a truncated or foreign file fails in many ways; all mean the same to the user
            raise DataError(f"{path} is damaged ({type(err).__name__}); {redo}") from None
    return Prepared(meta, loaded)


def unlabelled_images(prepared_dir: str | Path, meta: dict) -> torch.Tensor | None:
    """The prepared unlabelled images (a folder dataset's unlabelled/), or None where the data has none (`meta`:
    the prepared meta.json)."""
    if UNLABELLED not in meta["sizes"]:
        return None
    return load_prepared(prepared_dir, splits=(UNLABELLED,)).splits[UNLABELLED].images


def pretraining_images(prepared: Prepared, prepared_dir: str | Path) -> torch.Tensor:
    """The images a pretext learns from: the training split's and the unlabelled ones (never val or test)."""
    train, extra = prepared.splits["train"].images, unlabelled_images(prepared_dir, prepared.meta)
    return train if extra is None else torch.cat([train, extra])


def fingerprint(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's shape, dtype and bytes: equal tensors, equal strings."""
    digest = hashlib.sha256(f"{tuple(tensor.shape)} {tensor.dtype}".encode())
    digest.update(tensor.contiguous().numpy())
    return digest.hexdigest()


def labelled_subset(labels: torch.Tensor, per_class: int | str, seed: int,
                    param: str = "finetune.labels_per_class", at_most: bool = False) -> torch.Tensor:
    """Positions of `per_class` seeded random images of every class (`all`: every position).

    A class with fewer images is an error naming `param` (the setting `per_class` came from), or, `at_most`,
    used whole (short_classes says which)."""
    if per_class == "all":
        return torch.arange(len(labels))
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in labels.unique(sorted=True):
        members = (labels == cls).nonzero().squeeze(1)
        if len(members) < per_class and not at_most:
            raise budget_error(param, per_class, int(cls), len(members))
        chosen.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    return torch.cat(chosen).sort().values


def val_subset(labels: torch.Tensor, per_class: int | str, seed: int) -> torch.Tensor:
    """Positions of at most `per_class` seeded random val images of every class (`all`: every one).

    The honest protocol: whatever is chosen with labels at a budget of k labels per class (the kept epoch,
    the probe's layer) is chosen on at most k labelled val images per class, as a user holding k labelled
    images per class could set aside; the val split is disjoint from the training labels."""
    return labelled_subset(labels, per_class, seed, at_most=True)


def short_classes(labels: torch.Tensor, per_class: int | str, classes: list[str]) -> dict[str, int]:
    """The classes with fewer than `per_class` images in `labels`, and how many they have."""
    if per_class == "all":
        return {}
    counts = torch.bincount(labels, minlength=len(classes))
    return {classes[i]: int(n) for i, n in enumerate(counts) if n < per_class}


def budget_error(param: str, per_class: int, name: str | int, count: int) -> DataError:
    """A budget (`param`, e.g. finetune.labels_per_class) that class `name` cannot fill, and the fixes."""
    return DataError(f"{param} is {per_class} but class {name} has only {count} training images; use at most "
                     f"{count} or `all`, or set {param.rsplit('.', 1)[0]}.budget: at_most")


def check_budget(labels: torch.Tensor, per_class: int | str, classes: list[str], param: str, at_most: bool
                 ) -> dict[str, int]:
    """`short_classes`, where a budget of `exact` (not `at_most`) refuses any: the first named in the error. A stage
    calls it before its long work, so the error comes at once and names the class. Data of fewer than two classes is
    refused: every model of it would score 100%."""
    if len(classes) < 2:
        raise DataError(f"the prepared data holds {len(classes)} class{'es' * (len(classes) != 1)} "
                        f"({', '.join(classes) or 'none'}), and classifying needs two or more: data of one category "
                        "can pre-train a backbone, not fine-tune or probe one. Prepare data of two classes or more "
                        "(DeepFashion: a copy with more categories; a folder: labelled/<class>/ for each)")
    short = short_classes(labels, per_class, classes)
    if short and not at_most:
        raise budget_error(param, per_class, *next(iter(short.items())))
    return short
