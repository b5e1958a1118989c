"""benchmarks.small_folder: a small folder cut from Fashion-MNIST, in the layout the folder route reads."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.small_folder import folder_name, main
from selfsup import SelfSupError
from selfsup.data import read_fashion_mnist
from selfsup.download import CLASSES
from selfsup.folders import scan
from tests.conftest import write_idx


def fake_raw(tmp_path: Path, per_class: int = 4, test: int = 7) -> Path:
    """The four Fashion-MNIST files, of random images: `per_class` training images of each class, `test` test ones."""
    gen = torch.Generator().manual_seed(0)
    raw = tmp_path / "raw"
    raw.mkdir()
    labels = torch.arange(10).repeat(per_class).to(torch.uint8)
    for prefix, n, y in (("train", len(labels), labels), ("t10k", test, torch.arange(test).to(torch.uint8))):
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", torch.randint(0, 256, (n, 28, 28), generator=gen,
                                                                        dtype=torch.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", y)
    return raw


def test_the_folder_holds_per_class_draws_of_the_training_set_and_every_test_image(tmp_path):
    raw, out = fake_raw(tmp_path), tmp_path / "out"
    main([str(out), "--raw", str(raw), "--labelled", "1", "--unlabelled", "2"])
    frame, left_out, copies = scan(out)  # the folder route's own check of the layout
    assert not left_out and not copies
    assert frame.groupby("part").size().to_dict() == {"labelled": 10, "test": 7, "unlabelled": 20}
    assert sorted(frame[frame.part == "labelled"]["class"]) == sorted(folder_name(c) for c in CLASSES)
    images, labels = read_fashion_mnist(raw)["train"]
    drawn = frame[frame.part != "test"]
    assert len({Path(p).stem for p in drawn.path}) == 30  # labelled and unlabelled: distinct images
    for path, part, cls in drawn[["path", "part", "class"]].itertuples(index=False):
        index = int(Path(path).stem)  # each file is the official image of its index, in its class's folder
        assert np.array_equal(np.asarray(Image.open(out / path)), images[index, 0].numpy())
        assert part == "unlabelled" or cls == folder_name(CLASSES[labels[index]])
    assert folder_name("T-shirt/top") == "t-shirt" and folder_name("Ankle boot") == "ankle-boot"


def test_an_existing_folder_or_too_few_images_is_refused_and_nothing_is_written(tmp_path):
    raw = fake_raw(tmp_path)
    (tmp_path / "taken").mkdir()
    with pytest.raises(SelfSupError, match="taken exists; give a new folder"):
        main([str(tmp_path / "taken"), "--raw", str(raw)])
    assert not any((tmp_path / "taken").iterdir())
    with pytest.raises(SelfSupError, match=r"class T-shirt/top has 4 training images, fewer than --labelled plus "
                                           r"--unlabelled \(5\)"):
        main([str(tmp_path / "new"), "--raw", str(raw), "--labelled", "2", "--unlabelled", "3"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "taken"]
