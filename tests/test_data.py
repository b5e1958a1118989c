import gzip

import pytest
import torch

from selfsup.data import (DataError, channel_stats, labelled_subset, load_prepared, make_splits, read_fashion_mnist,
                          read_idx, save_prepared, stratified_split)
from tests.conftest import write_idx


def synthetic_sets(n_train=600, n_test=100, classes=10, size=8):
    gen = torch.Generator().manual_seed(1)
    def one(n):
        return (torch.randint(0, 256, (n, 1, size, size), generator=gen, dtype=torch.uint8),
                torch.arange(n) % classes)
    return {"train": one(n_train), "test": one(n_test)}


def test_read_idx_round_trip(tmp_path):
    data = torch.randint(0, 256, (5, 3, 4), dtype=torch.uint8)
    assert torch.equal(read_idx(write_idx(tmp_path / "x.gz", data)), data)


def test_truncated_idx_is_a_clear_error(tmp_path):
    path = write_idx(tmp_path / "x.gz", torch.zeros(5, 3, 4, dtype=torch.uint8))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-7]))
    with pytest.raises(DataError, match=r"holds 69 bytes, its header promises 76; delete it and rerun"):
        read_idx(path)
    # a file that is not there is nothing to delete: where it comes from
    with pytest.raises(DataError, match=r"y.gz not found; run the download stage \(`dvc repro download`\), or give"):
        read_idx(tmp_path / "y.gz")


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="is not a readable gzip file"):
        read_idx(path)


def test_stratified_split_takes_the_fraction_of_every_class():
    labels = torch.arange(1000) % 4
    taken, rest = stratified_split(labels, 0.1, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[taken]).tolist() == [25, 25, 25, 25]
    assert len(set(taken.tolist()) | set(rest.tolist())) == 1000
    assert not set(taken.tolist()) & set(rest.tolist())


def test_splits_are_seeded_disjoint_and_stratified():
    sets = synthetic_sets()
    a = make_splits(sets, val_fraction=0.1, fraction=1.0, seed=3)
    b = make_splits(sets, val_fraction=0.1, fraction=1.0, seed=3)
    c = make_splits(sets, val_fraction=0.1, fraction=1.0, seed=4)
    assert torch.equal(a["val"].source_index, b["val"].source_index)
    assert not torch.equal(a["val"].source_index, c["val"].source_index)
    assert not set(a["train"].source_index.tolist()) & set(a["val"].source_index.tolist())
    assert torch.bincount(a["val"].labels).tolist() == [6] * 10
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (540, 60, 100)
    # each split's images are the source images at the recorded positions
    assert torch.equal(a["val"].images, sets["train"][0][a["val"].source_index])


def test_fraction_subsamples_every_split():
    splits = make_splits(synthetic_sets(), val_fraction=0.5, fraction=0.1, seed=0)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (30, 30, 10)


def test_prepared_round_trip(tmp_path):
    splits = make_splits(synthetic_sets(), val_fraction=0.1, fraction=1.0, seed=0)
    save_prepared(tmp_path, splits, [f"c{i}" for i in range(10)], "synthetic")
    prepared = load_prepared(tmp_path)
    assert prepared.classes == [f"c{i}" for i in range(10)]
    assert prepared.meta["image_size"] == 8 and prepared.meta["channels"] == 1
    for name, split in splits.items():
        assert torch.equal(prepared.splits[name].images, split.images)
        assert prepared.splits[name].images.dtype == torch.uint8
        assert torch.equal(prepared.splits[name].labels, split.labels)  # each image keeps its label and position
        assert torch.equal(prepared.splits[name].source_index, split.source_index)
        assert prepared.splits[name].source == split.source
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json", "test.pt", "train.pt", "val.pt"]


def test_load_prepared_without_preprocess_says_what_to_run(tmp_path):
    with pytest.raises(DataError, match="run `dvc repro preprocess` first"):
        load_prepared(tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "test.pt").unlink(), r"test.pt not found; delete .* and rerun `dvc repro -f preprocess`$"),
    (lambda d: (d / "test.pt").write_bytes((d / "test.pt").read_bytes()[:300]), r"test.pt is damaged \(\w+\); delete"),
    (lambda d: (d / "test.pt").write_bytes(b"not a tensor file"), r"test.pt is damaged \(\w+\); delete"),
    (lambda d: (d / "meta.json").write_text('{"classes": ['), r"meta.json is damaged \(JSONDecodeError\); delete"),
    (lambda d: (d / "meta.json").write_bytes(b"\xff\xfe"), r"meta.json is damaged \(UnicodeDecodeError\); delete"),
    (lambda d: (d / "meta.json").write_text("[]"), r"meta.json is not preprocess's \(no classes, sizes"),
])
def test_a_damaged_prepared_folder_is_one_error_naming_the_file(tmp_path, damage, message):
    save_prepared(tmp_path, make_splits(synthetic_sets(), val_fraction=0.1, fraction=1.0, seed=0),
                  [f"c{i}" for i in range(10)], "synthetic")
    damage(tmp_path)
    with pytest.raises(DataError, match=message):
        load_prepared(tmp_path)


def test_labelled_subset_is_seeded_and_balanced():
    labels = torch.arange(500) % 5
    a = labelled_subset(labels, 7, seed=0)
    assert torch.bincount(labels[a]).tolist() == [7] * 5
    assert torch.equal(a, labelled_subset(labels, 7, seed=0))
    assert not torch.equal(a, labelled_subset(labels, 7, seed=1))
    assert torch.equal(labelled_subset(labels, "all", seed=0), torch.arange(500))


def test_labelled_subset_larger_than_a_class_is_an_error():
    with pytest.raises(DataError, match=r"labels_per_class is 101 but class 0 has only 100 training images"):
        labelled_subset(torch.arange(500) % 5, 101, seed=0)


def test_real_fashion_mnist_splits_do_not_overlap(fmnist_raw):
    sets = read_fashion_mnist(fmnist_raw)
    assert sets["train"][0].shape == (60000, 1, 28, 28) and sets["test"][0].shape == (10000, 1, 28, 28)
    splits = make_splits(sets, val_fraction=0.1, fraction=1.0, seed=0)
    train_idx, val_idx = set(splits["train"].source_index.tolist()), set(splits["val"].source_index.tolist())
    assert not train_idx & val_idx and len(train_idx | val_idx) == 60000
    assert splits["test"].source == "test" and len(splits["test"]) == 10000
    assert torch.bincount(splits["val"].labels).tolist() == [600] * 10
    # no test image reappears, byte for byte, in train or val (Fashion-MNIST has no exact duplicates across)
    test_bytes = {x.tobytes() for x in splits["test"].images.numpy()}
    assert len(test_bytes) > 9900  # the rows hashed are whole images
    for name in ("train", "val"):
        assert not any(x.tobytes() in test_bytes for x in splits[name].images.numpy()), name


def test_channel_stats_are_exact_and_do_not_depend_on_chunking():
    images = torch.randint(0, 256, (300, 3, 5, 5), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    x = images.transpose(0, 1).reshape(3, -1).double() / 255
    mean, std = channel_stats(images)
    assert mean == pytest.approx(x.mean(1).tolist(), abs=1e-12) and std == pytest.approx(x.std(1).tolist(), abs=1e-12)
    assert channel_stats(images, chunk=7) == (mean, std)


def test_val_subset_takes_at_most_the_budget_per_class():
    from selfsup.data import val_subset

    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 7)
    for k in (1, 3, 5):
        chosen = val_subset(labels, k, seed=0)
        assert torch.bincount(labels[chosen], minlength=3).tolist() == [min(k, 10), min(k, 3), min(k, 7)]
    assert torch.equal(val_subset(labels, "all", 0), torch.arange(20))
    assert torch.equal(val_subset(labels, 5, 1), val_subset(labels, 5, 1))
    assert not torch.equal(val_subset(labels, 5, 1), val_subset(labels, 5, 2))
