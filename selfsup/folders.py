"""Your own images: a folder with labelled/<class>/ (torchvision's ImageFolder layout), optional unlabelled/
(any depth) and optional test/<class>/. The download stage checks the layout and lists every image with its
checksum (copies of an image in one class folder listed once); preprocess decodes them through the one
image decoder (selfsup.images) and splits them, seeded and stratified.

Kept apart from data.py, like deepfashion.py: only download and preprocess load it.
"""

from __future__ import annotations

import os
import unicodedata
from collections import defaultdict
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from selfsup.data import UNLABELLED, DataError, Split, stratified_split
from selfsup.download import md5sum
from selfsup.images import IMAGE_SUFFIXES, decode_dataset, is_image, is_listed, walk_images
from selfsup.io import atomic_path

LABELLED, TEST = "labelled", "test"
LISTING = "folder.csv"  # the download stage's output: path, part, class, md5 of every image
LAYOUT = ("labelled/<class>/<image> for every labelled image, optionally unlabelled/<image> (any depth) "
          "and test/<class>/<image>")


def find_root(root: str | None) -> Path:
    """The user's image folder, `data.folder.root`; checked to exist and to hold labelled/."""
    if not root:
        raise DataError("data.dataset is folder but data.folder.root is not set; set it to your image folder "
                        f"({LAYOUT})")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"image folder {path} does not exist; point data.folder.root at your images")
    if not (path / LABELLED).is_dir():
        raise DataError(f"{path} has no labelled/ folder; arrange your images as {LAYOUT}")
    return path


def _class_folders(root: Path, part: str) -> tuple[dict[str, list[Path]], list[Path]]:
    """The images of each class folder of `part` (labelled/ or test/), and the other files found in it (a
    Thumbs.db beside the class folders too); images outside a class folder are errors."""
    base = root / part
    loose = sorted(p for p in base.iterdir() if is_listed(p) and not p.name.startswith("."))
    misplaced = [p for p in loose if is_image(p)]
    if misplaced:
        raise DataError(f"{misplaced[0]} is not in a class folder; put every {part} image in {part}/<class>/")
    classes, others = {}, loose
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images, rest = walk_images(folder)
        if not images:
            raise DataError(f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                            "add images or remove the folder")
        classes[folder.name] = images
        others += rest
    folded = defaultdict(list)
    for name in classes:  # café typed on macOS (NFD) and on Linux (NFC) are one name there
        folded[unicodedata.normalize("NFC", name).casefold()].append(name)
    for names in folded.values():
        if len(names) > 1:
            raise DataError(f"class folders {' and '.join(f'{part}/{n}' for n in names)} differ only in case or "
                            "in how an accent is encoded; merge them or rename one (on Windows and macOS they "
                            "would be one folder)")
    return classes, others


def checksums(paths: list[Path]) -> list[str | None]:
    """The md5 of every file, with a progress bar from 1,000 files on; None for a file that is gone."""
    return [md5sum(p) if p.is_file() else None
            for p in tqdm(paths, desc="checksum", unit="image", mininterval=2, disable=len(paths) < 1000)]


def scan(root: Path) -> tuple[pd.DataFrame, list[str], list[tuple[str, str]]]:
    """Check the layout of `root` and list its images: a frame of path (relative, POSIX), part (labelled,
    unlabelled, test), class ('' when unlabelled) and md5; the files left out (no image suffix); and the copies
    left out (`_drop_copies`), each with the image it repeats."""
    labelled, left_out = _class_folders(root, LABELLED)
    if len(labelled) < 2:
        raise DataError(f"{root / LABELLED} holds {len(labelled)} class folder{'s' * (len(labelled) != 1)}; "
                        "a classifier needs at least two: labelled/<class>/ for each")
    test, rest = _class_folders(root, TEST) if (root / TEST).is_dir() else ({}, [])
    left_out += rest
    unknown = sorted(set(test) - set(labelled))
    if unknown:
        raise DataError(f"test/{unknown[0]} is not a class of labelled/ ({', '.join(labelled)}); "
                        "test classes must be labelled classes")
    rows = [(path, LABELLED, name) for name, paths in labelled.items() for path in paths]
    rows += [(path, TEST, name) for name, paths in test.items() for path in paths]
    if (root / UNLABELLED).is_dir():
        images, rest = walk_images(root / UNLABELLED)
        rows += [(path, UNLABELLED, "") for path in images]
        left_out += rest
    gone = [path for path, _, _ in rows if not path.exists()]
    if gone:  # an image whose link leads nowhere: the listing would checksum nothing
        raise DataError(f"{gone[0]} links to {os.readlink(gone[0])}, which does not exist; restore what it links to, "
                        "or remove the link")
    frame = pd.DataFrame({
        "path": [p.relative_to(root).as_posix() for p, _, _ in rows],
        "part": [part for _, part, _ in rows],
        "class": [name for _, _, name in rows],
        "md5": checksums([p for p, _, _ in rows]),
    })
    _refuse_contradictions(frame)
    frame, copies = _drop_copies(frame)
    return frame, sorted(p.relative_to(root).as_posix() for p in left_out), copies


def _drop_copies(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The listing with one image of each set of copies (equal bytes) in the same part and class, the first by
    path, and the (copy, image kept) pairs left out: two copies of a labelled image could be split into training
    and val or test, so that the model is scored on an image it trained on."""
    ordered = frame.sort_values("path", kind="stable")
    dropped = ordered.duplicated(["part", "class", "md5"])
    kept = ordered[~dropped].set_index(["part", "class", "md5"]).path
    copies = [(r.path, kept[(r.part, r["class"], r.md5)]) for _, r in ordered[dropped].iterrows()]
    return frame[~frame.path.isin([c for c, _ in copies])].reset_index(drop=True), copies


def _refuse_contradictions(frame: pd.DataFrame) -> None:
    """The same image (equal bytes) in two class folders, both a labelled and a test image, or an unlabelled image
    that is also a labelled or test one, is an error: a test image must reach neither training nor pre-training
    (and with no test/ folder, labelled images become test images)."""
    unlabelled = frame[frame.part == UNLABELLED]
    known = frame[frame.part != UNLABELLED].drop_duplicates("md5").set_index("md5")
    copies = unlabelled[unlabelled.md5.isin(known.index)]
    if len(copies):
        first = copies.iloc[0]
        other = known.loc[first.md5]
        where = "in test/" if other.part == TEST else "labelled"
        more = f" ({len(copies) - 1} more unlabelled images are copies too)" if len(copies) > 1 else ""
        raise DataError(f"{first.path} and {other.path} are the same image, unlabelled and {where}{more}; an image "
                        "used for testing or training must not be pre-trained on as well: remove the unlabelled copy")
    labelled = frame[frame.part != UNLABELLED]
    for _, same in labelled[labelled.md5.duplicated(keep=False)].groupby("md5", sort=False):
        classes, parts = same["class"].unique(), same["part"].unique()
        if len(classes) > 1:
            a, b = same.drop_duplicates("class")["path"].iloc[:2]
            raise DataError(f"{a} and {b} are the same image in two class folders; keep it in one")
        if len(parts) > 1:
            a, b = same.drop_duplicates("part")["path"].iloc[:2]
            raise DataError(f"{a} and {b} are the same image, labelled and in test/; a test image must not be "
                            "a training image: remove one")


def write_listing(root: Path, out_dir: Path) -> list[Path]:
    """The download stage for an image folder: check it, write the listing of its images, report left-out files."""
    frame, left_out, copies = scan(root)
    with atomic_path(out_dir / LISTING) as tmp:
        frame.to_csv(tmp, index=False)
    for name in left_out:
        print(f"left out {root / name}: not an image ({', '.join(IMAGE_SUFFIXES)})")
    for copy, kept in copies:
        print(f"left out {root / copy}: the same image as {kept}")
    counts = frame.part.value_counts()
    print(", ".join(f"{part}: {counts.get(part, 0)} images" for part in (LABELLED, UNLABELLED, TEST)))
    return [out_dir / LISTING]


def prepare(raw_dir: Path, cfg, val_fraction: float, fraction: float, seed: int
            ) -> tuple[dict[str, Split], list[str], dict, torch.Tensor]:
    """The preprocess stage for an image folder: decode every listed image, skip (and list) unreadable ones, split
    the labelled ones into train/val/test (test/ when given, else a seeded, stratified `test_fraction`).

    Returns the splits, the class names (sorted, as ImageFolder orders them), what meta.json should add and the
    unlabelled images."""
    if not (raw_dir / LISTING).is_file():
        raise DataError(f"{raw_dir / LISTING} is missing: the download stage lists the image folder there; run "
                        "`dvc repro` (or `python -m stages.download --out data/raw`) first")
    frame = pd.read_csv(raw_dir / LISTING, dtype=str, keep_default_na=False)
    root = find_root(cfg.root)
    # the images as the listing (what DVC tracks) has them: one changed since would make a run the lock cannot repeat
    for name, listed, now in zip(frame.path, frame.md5, checksums([root / name for name in frame.path])):
        if now != listed:
            raise DataError(f"{root / name} {'is gone' if now is None else 'has changed'} since the folder was "
                            "listed; list it again with `dvc repro -f -s download`, then `dvc repro`")
    images, keep, skipped = decode_dataset(root, frame.path.tolist(), cfg.image_size, cfg.channels,
                                           cfg.max_unreadable, "image-folder",
                                           "replace or remove them, or raise data.folder.max_unreadable")
    classes = sorted(frame.loc[frame.part == LABELLED, "class"].unique())
    to_label = {name: i for i, name in enumerate(classes)}
    labels = torch.tensor([to_label.get(name, -1) for name in frame["class"]])
    everything = Split(images, labels, "folder", torch.arange(len(frame)))
    part = frame.part.to_numpy()

    def positions(name: str) -> torch.Tensor:
        return torch.tensor(((part == name) & keep.numpy()).nonzero()[0], dtype=torch.long)

    gen = torch.Generator().manual_seed(seed)
    labelled, test = positions(LABELLED), positions(TEST)
    counts = torch.bincount(labels[labelled], minlength=len(classes))
    need = 2 if len(test) else 3
    if (counts < need).any():
        small = int(counts.argmin())
        have = int(counts[small])
        raise DataError(f"class {classes[small]} has {have} readable labelled image{'s' * (have != 1)}; every class "
                        f"needs at least {need} (one each for train, val{'' if len(test) else ' and test'}): add images")
    if not len(test):
        test_pos, rest = stratified_split(labels[labelled], cfg.test_fraction, gen)
        test, labelled = labelled[test_pos], labelled[rest]
    val_pos, train_pos = stratified_split(labels[labelled], val_fraction, gen)
    chosen = {"train": labelled[train_pos], "val": labelled[val_pos], "test": test}
    if fraction < 1:
        chosen = {name: pos[stratified_split(labels[pos], fraction, gen)[0]] for name, pos in chosen.items()}
    unlabelled = positions(UNLABELLED)
    if fraction < 1 and len(unlabelled):
        unlabelled = unlabelled[torch.randperm(len(unlabelled), generator=gen)[: max(1, round(fraction * len(unlabelled)))]]
    extra = {"test_split": "test/" if len(positions(TEST)) else "seeded", "unreadable": list(skipped)}
    return ({name: everything.subset(pos) for name, pos in chosen.items()}, classes, extra,
            images[unlabelled.sort().values])
