"""Your own images: the folder layout, its checks, and the splits preprocess makes of it."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from selfsup.data import DataError, labelled_subset, load_prepared, pretraining_images, save_prepared, short_classes
from selfsup.folders import LISTING, find_root, prepare, scan, write_listing
from selfsup.params import FolderParams
from stages import download, preprocess
from tests.conftest import REPO

COLOURS = {"boot": (200, 30, 30), "dress": (30, 200, 30), "shirt": (30, 30, 200)}


def picture(path: Path, colour, seed: int, size=(20, 14)) -> Path:
    """A distinct image of a class: its colour, noise of its own, `size` (width, height)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.integers(-25, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_folder(root: Path, per_class: int = 10, unlabelled: int = 12, test: int = 0) -> Path:
    """labelled/<class>/ (PNG and JPEG, one class with a subfolder), unlabelled/ at two depths, optional test/."""
    seed = 0
    for name, colour in COLOURS.items():
        for i in range(per_class):
            suffix = ".jpg" if i % 3 == 0 else ".png"
            picture(root / "labelled" / name / ("sub" if i % 4 == 0 and name == "boot" else "") / f"{i}{suffix}",
                    colour, seed := seed + 1)
        for i in range(test):
            picture(root / "test" / name / f"t{i}.png", colour, seed := seed + 1)
    for i in range(unlabelled):
        picture(root / "unlabelled" / ("deep/er" if i % 2 else "") / f"u{i}.png", list(COLOURS.values())[i % 3],
                seed := seed + 1)
    return root


def test_scan_lists_every_image_with_its_part_class_and_checksum(tmp_path):
    root = make_folder(tmp_path / "imgs", test=2)
    (root / "labelled/dress/notes.txt").write_text("not an image")
    (root / "labelled/dress/.DS_Store").write_bytes(b"\0")
    (root / "labelled/Thumbs.db").write_bytes(b"\0")  # beside the class folders: not an image, so left out too
    (root / "test/README.txt").write_text("held-out photos")
    frame, left_out, copies = scan(root)
    assert copies == [] and frame.groupby("part").size().to_dict() == {"labelled": 30, "test": 6, "unlabelled": 12}
    assert sorted(frame[frame.part == "labelled"]["class"].unique()) == sorted(COLOURS)
    assert (frame[frame.part == "unlabelled"]["class"] == "").all()
    assert "labelled/boot/sub/0.jpg" in set(frame.path) and "unlabelled/deep/er/u1.png" in set(frame.path)
    assert left_out == ["labelled/Thumbs.db", "labelled/dress/notes.txt", "test/README.txt"]
    assert frame.md5.str.len().eq(32).all()


@pytest.mark.parametrize("arrange, message", [
    (lambda r: (r / "labelled/empty").mkdir(), r"class folder .*labelled/empty holds no images"),
    (lambda r: [shutil.rmtree(r / "labelled" / name) for name in ("dress", "shirt")],
     r"labelled holds 1 class folder; a classifier needs at least two"),
    (lambda r: (r / "labelled/shirt/0.png").write_bytes((r / "labelled/dress/1.png").read_bytes()),
     r"labelled/dress/1.png and labelled/shirt/0.png are the same image in two class folders; keep it in one"),
    (lambda r: picture(r / "test/dress/x.png", (0, 0, 0), 99) and
               (r / "test/dress/x.png").write_bytes((r / "labelled/dress/1.png").read_bytes()),
     r"labelled/dress/1.png and test/dress/x.png are the same image, labelled and in test/"),
    (lambda r: picture(r / "test/dress/x.png", (0, 0, 0), 95) and
               (r / "unlabelled/deep/er/u1.png").write_bytes((r / "test/dress/x.png").read_bytes()),
     r"unlabelled/deep/er/u1.png and test/dress/x.png are the same image, unlabelled and in test/; .*remove the "
     r"unlabelled copy"),
    (lambda r: (r / "unlabelled/u0.png").write_bytes((r / "labelled/shirt/2.png").read_bytes()),
     r"unlabelled/u0.png and labelled/shirt/2.png are the same image, unlabelled and labelled;"),
    (lambda r: picture(r / "labelled/Dress/a.png", (1, 2, 3), 98),
     r"class folders labelled/Dress and labelled/dress differ only in case"),
    (lambda r: [picture(r / "labelled" / name / "a.png", (1, 2, 3), seed)
                for name, seed in (("caf\u00e9", 91), ("cafe\u0301", 92))],
     r"class folders labelled/cafe\u0301 and labelled/caf\u00e9 differ only in case or in how an accent is encoded"),
    (lambda r: picture(r / "labelled/loose.png", (1, 2, 3), 97), r"labelled/loose.png is not in a class folder"),
    (lambda r: picture(r / "test/hat/a.png", (1, 2, 3), 96), r"test/hat is not a class of labelled/"),
])
def test_a_bad_layout_is_one_error_naming_the_problem(tmp_path, arrange, message):
    root = make_folder(tmp_path / "imgs")
    arrange(root)
    with pytest.raises(DataError, match=message):
        scan(root)


def test_copies_in_one_class_folder_are_listed_once_so_none_lands_in_two_splits(tmp_path, capsys):
    root = make_folder(tmp_path / "imgs", per_class=10)
    for image in sorted((root / "labelled/dress").iterdir()):  # every dress image twice: split separately, some
        shutil.copy(image, image.with_name("z" + image.name))  # would be scored after training on their copy
    shutil.copy(root / "labelled/dress/1.png", root / "labelled/dress/sub_1.png")
    frame, _, copies = scan(root)
    assert len(copies) == 11 and ("labelled/dress/z3.jpg", "labelled/dress/3.jpg") in copies
    assert ("labelled/dress/sub_1.png", "labelled/dress/1.png") in copies  # the first by path is kept
    assert frame.md5.is_unique and (frame.part == "labelled").sum() == 30
    splits, *_ = prepared_from(tmp_path, root)
    assert "left out " + str(root / "labelled/dress/z3.jpg") + ": the same image as labelled/dress/3.jpg" in \
        capsys.readouterr().out
    assert sum(len(s.labels) for s in splits.values()) == 30


@pytest.mark.parametrize("root, message", [
    (None, r"data.folder.root is not set; set it to your image folder \(labelled/<class>/"),
    ("missing", r"image folder .*missing does not exist"),
    ("plain", r"plain has no labelled/ folder; arrange your images as labelled/<class>/"),
])
def test_a_root_that_cannot_be_used_is_one_error(tmp_path, root, message):
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match=message):
        find_root(str(tmp_path / root) if root else None)


def prepared_from(tmp_path, root, **cfg):
    write_listing(root, tmp_path / "raw")
    return prepare(tmp_path / "raw", FolderParams(root=str(root), image_size=8, **cfg), 0.2, 1.0, 0)


def test_a_class_the_split_leaves_without_a_training_image_is_refused_before_anything_is_written(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=10)
    for image in sorted((root / "labelled/dress").iterdir())[3:]:  # dress: 3 images, the least a class may have
        image.unlink()
    splits, classes, extra, unlabelled = prepared_from(tmp_path, root, test_fraction=0.5)  # test 2, val 1, train 0
    with pytest.raises(DataError, match=r"class dress has no training image: its 3 images all went to val \(1\) and "
                                        r"test \(2\); add images of it, or lower preprocess.val_fraction"):
        save_prepared(tmp_path / "prepared", splits, classes, "folder", extra, unlabelled)
    assert not (tmp_path / "prepared").exists()


@pytest.mark.parametrize("change, said", [("edit", "has changed"), ("delete", "is gone")])
def test_an_image_changed_since_the_listing_is_refused_with_the_command_that_lists_it_again(tmp_path, change, said):
    """DVC tracks the listing, not the folder: preprocess reads the images the listing names, as listed, or stops."""
    root = make_folder(tmp_path / "imgs")
    write_listing(root, tmp_path / "raw")
    prepare(tmp_path / "raw", FolderParams(root=str(root), image_size=8), 0.2, 1.0, 0)  # as listed: prepared
    image = root / "labelled/dress/5.png"
    picture(image, COLOURS["boot"], seed=99) if change == "edit" else image.unlink()
    with pytest.raises(DataError, match=rf"^{root / 'labelled/dress/5.png'} {said} since the folder was listed; list it "
                                        r"again with `dvc repro -f -s download`, then `dvc repro`$"):
        prepare(tmp_path / "raw", FolderParams(root=str(root), image_size=8), 0.2, 1.0, 0)


def test_preprocess_without_the_listing_says_to_run_download_first(tmp_path):
    root = make_folder(tmp_path / "imgs")
    (tmp_path / "raw").mkdir()
    with pytest.raises(DataError, match=r"raw/folder.csv is missing: the download stage lists the image folder"):
        prepare(tmp_path / "raw", FolderParams(root=str(root), image_size=8), 0.2, 1.0, 0)


def test_splits_are_stratified_disjoint_and_unlabelled_kept_apart(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=10, unlabelled=12)
    splits, classes, extra, unlabelled = prepared_from(tmp_path, root)
    assert classes == sorted(COLOURS) and extra["test_split"] == "seeded" and extra["unreadable"] == []
    positions = [set(s.source_index.tolist()) for s in splits.values()]
    assert sum(map(len, positions)) == 30 and not set.intersection(*positions)
    for split in splits.values():  # every class in every split
        assert split.labels.unique().tolist() == [0, 1, 2]
    assert tuple(unlabelled.shape) == (12, 3, 8, 8) and splits["train"].images.shape[1:] == (3, 8, 8)
    red = splits["train"].images[splits["train"].labels == 0].float().mean((0, 2, 3))  # boot is red
    assert red[0] > 150 and red[1] < 80


def test_a_test_folder_is_the_test_split_and_grayscale_is_one_channel(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=6, unlabelled=0, test=3)
    splits, _, extra, unlabelled = prepared_from(tmp_path, root, channels=1)
    assert extra["test_split"] == "test/" and len(splits["test"]) == 9 and len(unlabelled) == 0
    assert len(splits["train"]) + len(splits["val"]) == 18 and splits["test"].images.shape[1] == 1


def test_unreadable_images_are_skipped_and_listed_up_to_the_limit(tmp_path, capsys):
    root = make_folder(tmp_path / "imgs")
    (root / "labelled/dress/broken.png").write_bytes(b"\x89PNG broken")
    splits, _, extra, _ = prepared_from(tmp_path, root)
    assert extra["unreadable"] == ["labelled/dress/broken.png"] and sum(map(len, splits.values())) == 30
    assert "skipped unreadable image" in capsys.readouterr().out
    with pytest.raises(DataError, match=r"1 of 43 image-folder images cannot be read .*raise data.folder.max_unreadable"):
        prepared_from(tmp_path, root, max_unreadable=0)


@pytest.mark.parametrize("where", ["labelled/dress/moved.png", "unlabelled/moved.png"])
def test_an_image_linking_to_nothing_is_named_before_anything_is_listed(tmp_path, where):
    """Not left out unsaid (it was, by the walk): the listing stops at it, naming the link and the fix."""
    root = make_folder(tmp_path / "imgs")
    (root / where).symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(DataError, match=rf"{where} links to .+elsewhere.png, which does not exist; restore what it "
                                        r"links to, or remove the link"):
        write_listing(root, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_a_class_folder_that_is_a_link_is_a_class_not_a_file_left_out(tmp_path):
    root = make_folder(tmp_path / "imgs")
    (root / "labelled/dress").rename(tmp_path / "dresses")
    (root / "labelled/dress").symlink_to(tmp_path / "dresses", target_is_directory=True)
    frame, left_out, _ = scan(root)
    assert "dress" in set(frame["class"]) and left_out == []


def test_a_class_too_small_to_split_is_refused(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=2)
    with pytest.raises(DataError, match=r"class boot has 2 readable labelled images; every class needs at least 3"):
        prepared_from(tmp_path, root)


def test_at_most_uses_a_short_class_whole_and_says_so():
    labels = torch.tensor([0] * 10 + [1] * 3)
    with pytest.raises(DataError, match=r"class 1 has only 3 training images; .*set finetune.budget: at_most"):
        labelled_subset(labels, 5, 0)
    chosen = labelled_subset(labels, 5, 0, at_most=True)
    assert torch.bincount(labels[chosen]).tolist() == [5, 3]
    assert short_classes(labels, 5, ["a", "b"]) == {"b": 3} and short_classes(labels, "all", ["a", "b"]) == {}


def test_stages_prepare_a_folder_and_pretraining_sees_unlabelled_images_never_val_or_test(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "imgs", per_class=10, unlabelled=12)
    (root / "unlabelled/readme.md").write_text("x")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(dataset="folder", folder={"root": str(root), "image_size": 8})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    download.main(["--out", "raw"])
    assert (tmp_path / "raw" / LISTING).is_file()
    preprocess.main(["--raw", "raw", "--out", "prepared"])
    prepared = load_prepared("prepared")
    meta = json.loads(Path("prepared/meta.json").read_text())
    assert meta["sizes"]["unlabelled"] == 12 and meta["dataset"] == "folder" and meta["classes"] == sorted(COLOURS)
    images = pretraining_images(prepared, "prepared")
    assert len(images) == len(prepared.splits["train"]) + 12
    seen = {bytes(x.numpy()) for x in images}
    for split in ("val", "test"):
        assert not seen & {bytes(x.numpy()) for x in prepared.splits[split].images}


@pytest.mark.skipif(not os.environ.get("DEEPFASHION_SAMPLE"), reason="DEEPFASHION_SAMPLE not set")
def test_the_deepfashion_sample_arranged_as_a_folder(tmp_path):
    """Real JPEGs through the folder path: the sample's item folders split into two made-up classes."""
    items = sorted(p for p in (Path(os.environ["DEEPFASHION_SAMPLE"]) / "img").iterdir() if p.is_dir())
    root = tmp_path / "imgs"
    for i, item in enumerate(items):
        for j, jpeg in enumerate(sorted(item.glob("*.jpg"))):
            part = f"labelled/{'ab'[i % 2]}" if j < 8 else "unlabelled"
            (root / part).mkdir(parents=True, exist_ok=True)
            (root / part / f"{item.name}_{jpeg.name}").symlink_to(jpeg)
    splits, classes, extra, unlabelled = prepared_from(tmp_path, root)
    assert classes == ["a", "b"] and extra["unreadable"] == []
    assert sum(map(len, splits.values())) == 8 * len(items) and len(unlabelled) == 426 - 8 * len(items)
    assert splits["train"].images.float().std() > 20  # real photographs, not blank
