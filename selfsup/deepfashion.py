"""DeepFashion (Category and Attribute Prediction Benchmark): check a local copy, read its lists, decode its
JPEGs into uint8 tensors, and split it (the official partition, or a seeded one for copies without it).

Kept apart from data.py on purpose: only the download and preprocess stages depend on this file, so a change
here reruns those two and, when their output is unchanged, nothing downstream.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd
import torch

from selfsup.data import DataError, Split, stratified_split
from selfsup.images import decode_dataset
from selfsup.io import atomic_path

ROOT_ENV = "DEEPFASHION_ROOT"
CATEGORIES = "Anno/list_category_cloth.txt"
CATEGORY_OF_IMAGE = "Anno/list_category_img.txt"
PARTITION = "Eval/list_eval_partition.txt"
LISTS = (CATEGORIES, CATEGORY_OF_IMAGE, PARTITION)
PARTITION_STATUS = ("train", "val", "test")
FIRST_ENTRY = 3  # the file line of a list's first entry, after the count and the column names
WHERE_TO_GET = ("request the Category and Attribute Prediction Benchmark at "
                "http://mmlab.ie.cuhk.edu.hk/projects/DeepFashion.html (docs/data.md)")


def find_root(root: str | None) -> Path:
    """The folder of the user's copy: `data.deepfashion.root`, else $DEEPFASHION_ROOT; checked to exist."""
    root = root or os.environ.get(ROOT_ENV)
    if not root:
        raise DataError(f"data.dataset is deepfashion but no copy is given; set data.deepfashion.root in params.yaml "
                        f"or {ROOT_ENV} to the folder that holds Anno/, Eval/ and img/ ({WHERE_TO_GET})")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"DeepFashion folder {path} does not exist; point data.deepfashion.root or {ROOT_ENV} at your copy")
    return path


def check_layout(root: Path, need_partition: bool) -> list[str]:
    """The list files a run needs (relative paths: the partition only for the official one); raise naming every
    missing one and where to get it."""
    wanted = LISTS if need_partition else LISTS[:2]
    missing = [name for name in wanted if not (root / name).is_file()]
    if need_partition and missing == [PARTITION]:
        raise DataError(f"{root / PARTITION} is missing: it holds the official train/val/test partition; copy it from "
                        "the benchmark's Eval/ folder, or set data.deepfashion.partition: seeded for a seeded split")
    if missing:
        raise DataError(f"{root} is not a DeepFashion copy: missing {', '.join(missing)}; {WHERE_TO_GET}")
    if not (root / "img").is_dir():
        raise DataError(f"{root / 'img'} is missing: unzip the benchmark's Img/img.zip into {root}, "
                        "so that the image paths of the lists (img/<item>/<image>.jpg) resolve")
    return wanted


def copy_lists(root: Path, out_dir: Path, need_partition: bool) -> list[Path]:
    """The download stage for DeepFashion: check the copy, then copy its lists (not the images) into `out_dir`.

    The images stay in the user's copy (they cannot be redistributed); preprocess reads them from there.
    """
    copied = []
    for name in check_layout(root, need_partition):
        with atomic_path(out_dir / name) as tmp:
            shutil.copyfile(root / name, tmp)
        copied.append(out_dir / name)
    return copied


def read_list(path: Path, columns: tuple[str, str]) -> pd.DataFrame:
    """One of the official lists: a count, a header line, then `name  value` rows separated by runs of spaces."""
    usage = f"each entry must be `{columns[0]} {columns[1]}`"
    try:
        lines = path.read_text(encoding="utf-8").split("\n")  # read once: the count, the entries, their file lines
        # one spare column, so that a row with a field too many or too few is counted below, not guessed at
        frame = pd.read_csv(io.StringIO("\n".join(lines)), sep=r"\s+", skiprows=2, header=None, names=range(3),
                            dtype=str, keep_default_na=False, engine="python")
    except pd.errors.ParserError as err:  # a row with two fields too many
        where = re.search(r"line (\d+), saw (\d+)", str(err))
        raise DataError(f"{path}, line {where[1]}: {where[2]} fields; {usage}" if where else f"{path}: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path} cannot be read ({err}); copy it again from the benchmark") from None
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=range(3))
    first = lines[0].strip()
    frame.index = _file_lines(lines, len(frame))
    fields = (frame.notna() & (frame != "")).sum(axis=1)
    if (fields != 2).any():
        row = (fields != 2).to_numpy().nonzero()[0][0]
        count = int(fields.iloc[row])
        raise DataError(f"{path}, line {frame.index[row]}: {count} field{'s' * (count != 1)}; {usage}")
    frame = frame.iloc[:, :2].set_axis(list(columns), axis=1)
    if not first.isdigit() or int(first) != len(frame):
        raise DataError(f"{path}: the first line says {first!r} entries but {len(frame)} follow; "
                        "the file is truncated or not an official list — copy it again")
    return frame


def _file_lines(lines: list[str], entries: int) -> list[int]:
    """The file line of each of a list's `entries`, from the file's `lines` (pandas skips blank lines; their count
    from FIRST_ENTRY where pandas split the file otherwise)."""
    numbers = [i for i, line in enumerate(lines, 1) if i >= FIRST_ENTRY and line.strip()]
    return numbers if len(numbers) == entries else list(range(FIRST_ENTRY, FIRST_ENTRY + entries))


def _refuse_first(bad: pd.Series, frame: pd.DataFrame, column: str, path: Path, expected: str,
                  label: str | None = None) -> None:
    """Raise for the first entry flagged in `bad`, naming its file line, its `column` value and what was expected."""
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(f"{path}, line {frame.index[row]}: {label or column} {frame[column].iloc[row]!r} "
                        f"is not {expected}")


def _integers(frame: pd.DataFrame, column: str, path: Path, low: int, high: int) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | (values != values.round()) | (values < low) | (values > high)
    _refuse_first(bad, frame, column, path, f"an integer in {low}..{high}")
    return values.astype(int)


def _safe_relative(name: str, path: Path, line: int) -> str:
    """An image path of a list, refused when it could leave the copy's folder."""
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or ".." in parts or not parts or parts[0] != "img":
        raise DataError(f"{path}, line {line}: image path {name!r} is not inside img/ of the copy; "
                        "the lists must name images as img/<item>/<image>.jpg")
    return name


@dataclass(frozen=True)
class Catalogue:
    """What the lists say: every image's path, label (contiguous), partition, and the class names."""

    images: list[str]
    labels: torch.Tensor
    partition: list[str] | None
    classes: list[str]
    category_ids: list[int]


def read_catalogue(lists_dir: Path) -> Catalogue:
    """Parse the category and (when present) partition lists with pandas, checking every line.

    The listed categories that have images are mapped, in the order of the category list, to labels
    0..C-1; their names are kept. (In the full benchmark 46 of the 50 categories have images.)
    """
    cloth_path, img_path = lists_dir / CATEGORIES, lists_dir / CATEGORY_OF_IMAGE
    cloth = read_list(cloth_path, ("category_name", "category_type"))
    _integers(cloth, "category_type", cloth_path, 1, 3)
    names = cloth["category_name"].tolist()
    per_image = read_list(img_path, ("image_name", "category_label"))
    category = _integers(per_image, "category_label", img_path, 1, len(names))
    images = [_safe_relative(name, img_path, line) for line, name in per_image["image_name"].items()]
    twice = per_image["image_name"][per_image["image_name"].duplicated()]
    if len(twice):
        raise DataError(f"{img_path}, line {twice.index[0]}: {twice.iloc[0]} is listed a second time; "
                        "copy the list again from the benchmark")
    partition = None
    part_path = lists_dir / PARTITION
    if part_path.is_file():
        part = read_list(part_path, ("image_name", "evaluation_status"))
        _refuse_first(~part["evaluation_status"].isin(PARTITION_STATUS), part, "evaluation_status", part_path,
                      f"one of {', '.join(PARTITION_STATUS)}", label="status")
        status = dict(zip(part["image_name"], part["evaluation_status"]))
        unlisted = [name for name in images if name not in status]
        if unlisted:
            raise DataError(f"{part_path} has no status for {len(unlisted)} images of {img_path.name} "
                            f"(first: {unlisted[0]}); the two lists must come from the same copy")
        partition = [status[name] for name in images]
    used = sorted(set(category.tolist()))
    to_label = {cat: i for i, cat in enumerate(used)}
    return Catalogue(images, torch.tensor([to_label[c] for c in category]), partition,
                     [names[c - 1] for c in used], used)


def make_deepfashion_splits(catalogue: Catalogue, images: torch.Tensor, keep: torch.Tensor, partition: str,
                            val_fraction: float, test_fraction: float, fraction: float, seed: int) -> dict[str, Split]:
    """Train/val/test of the decoded images (`keep` masks out unreadable ones).

    official: the benchmark's partition. seeded: stratified by class, test_fraction of all images for test,
    then val_fraction of the rest for val. `fraction` < 1 keeps a stratified subsample of every split.
    """
    gen = torch.Generator().manual_seed(seed)
    everything = Split(images, catalogue.labels, "deepfashion", torch.arange(len(images)))
    if partition == "official":
        if catalogue.partition is None:
            raise DataError(f"the copy has no {PARTITION}; copy it from the benchmark, or set "
                            "data.deepfashion.partition: seeded")
        status = pd.Series(catalogue.partition)
        positions = {name: torch.tensor((status == name).to_numpy().nonzero()[0], dtype=torch.long)
                     for name in PARTITION_STATUS}
    else:
        test, rest = stratified_split(catalogue.labels, test_fraction, gen)
        val, train = stratified_split(catalogue.labels[rest], val_fraction, gen)
        positions = {"train": rest[train], "val": rest[val], "test": test}
    splits = {}
    for name, pos in positions.items():
        pos = pos[keep[pos]]
        if len(pos) == 0:
            raise DataError(f"the DeepFashion {name} split has no readable images; check the partition list")
        if fraction < 1:
            pos = pos[stratified_split(catalogue.labels[pos], fraction, gen)[0]]
        splits[name] = everything.subset(pos)
    return splits


def prepare(lists_dir: Path, cfg, val_fraction: float, fraction: float, seed: int
            ) -> tuple[dict[str, Split], list[str], dict]:
    """The preprocess stage for DeepFashion: lists from `lists_dir` (the download stage's copy), images from the
    user's copy; returns the splits, the class names and what meta.json should add (category ids, unreadable)."""
    catalogue = read_catalogue(lists_dir)
    root = find_root(cfg.root)
    images, keep, skipped = decode_dataset(root, catalogue.images, cfg.image_size, 3, cfg.max_unreadable, "DeepFashion",
                                           "extract Img/img.zip again, or raise data.deepfashion.max_unreadable")
    splits = make_deepfashion_splits(catalogue, images, keep, cfg.partition, val_fraction, cfg.test_fraction,
                                     fraction, seed)
    extra = {"category_ids": catalogue.category_ids, "partition": cfg.partition,
             "unreadable": list(skipped)}
    return splits, catalogue.classes, extra
