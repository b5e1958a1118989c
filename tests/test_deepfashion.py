"""DeepFashion through the download and preprocess stages: a generated copy in the official format, its bad
variants, and a smoke run over the real JPEGs of the sample in the shared datasets folder."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from selfsup import SelfSupError
from selfsup.data import load_prepared
from selfsup.deepfashion import ROOT_ENV
from selfsup.pretexts import names
from stages import download, evaluate, finetune, preprocess, pretrain, probe
from tests.conftest import REPO, shrink_params
from tests.test_pipeline import project_repo, run, stages_run

# (name, type) of a shortened category list; images exist for Anorak, Blouse and Dress only
CATEGORIES = [("Anorak", 1), ("Blazer", 1), ("Blouse", 1), ("Capris", 2), ("Dress", 3), ("Romper", 3)]
USED = {"Anorak": 1, "Blouse": 3, "Dress": 5}
COLOURS = {"Anorak": (200, 30, 30), "Blouse": (30, 200, 30), "Dress": (30, 30, 200)}
PER_CLASS = {"train": 8, "val": 2, "test": 2}


def padded(name: str, value) -> str:
    return f"{name:<71}{value}"  # the official files pad the image name so the value starts at column 71


def write_list(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([str(len(rows)), header, *rows]) + "\n")


@pytest.fixture
def copy(tmp_path) -> Path:
    """A DeepFashion copy in the official layout: 3 of 6 categories with 12 JPEGs each, and a partition."""
    root = tmp_path / "DeepFashion"
    write_list(root / "Anno/list_category_cloth.txt", "category_name  category_type",
               [f"{name:<15}{kind}" for name, kind in CATEGORIES])
    labels, partition = [], []
    for category, colour in COLOURS.items():
        statuses = [s for s, n in PER_CLASS.items() for _ in range(n)]
        for i, status in enumerate(statuses):
            name = f"img/Plain_{category}/img_{i + 1:08d}.jpg"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40 + i, 60), colour).save(root / name, quality=95)  # portrait, like the benchmark
            labels.append(padded(name, USED[category]))
            partition.append(padded(name, status))
    write_list(root / "Anno/list_category_img.txt", "image_name  category_label", labels)
    write_list(root / "Eval/list_eval_partition.txt", "image_name  evaluation_status", partition)
    return root


def workdir_params(workdir: Path, root, **deepfashion) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"] = {"dataset": "deepfashion", "deepfashion": {"root": None if root is None else str(root),
                                                                "image_size": 16, **deepfashion}}
    shrink_params(params, batch_size=16, val_images=8)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv(ROOT_ENV, raising=False)
    return work


def prepare_stages():
    download.main(["--out", "raw"])
    preprocess.main(["--raw", "raw", "--out", "prepared"])


def test_official_copy_becomes_contiguous_classes_with_names_and_the_official_partition(copy, workdir):
    workdir_params(workdir, copy)
    prepare_stages()
    assert sorted(str(p.relative_to(workdir / "raw")) for p in (workdir / "raw").rglob("*.txt")) == [
        "Anno/list_category_cloth.txt", "Anno/list_category_img.txt", "Eval/list_eval_partition.txt"]
    assert not list((workdir / "raw").rglob("*.jpg"))  # images stay in the user's copy
    prepared = load_prepared(workdir / "prepared")
    assert prepared.classes == ["Anorak", "Blouse", "Dress"]
    assert prepared.meta["category_ids"] == [1, 3, 5] and prepared.meta["unreadable"] == []
    assert prepared.meta["channels"] == 3 and prepared.meta["image_size"] == 16
    for name, split in prepared.splits.items():
        assert split.images.shape == (3 * PER_CLASS[name], 3, 16, 16) and split.images.dtype == torch.uint8
        assert torch.bincount(split.labels).tolist() == [PER_CLASS[name]] * 3
        for label, colour in enumerate(COLOURS.values()):  # each class keeps its colour (RGB order, not BGR)
            mean = split.images[split.labels == label].float().mean((0, 2, 3))
            assert torch.allclose(mean, torch.tensor(colour, dtype=torch.float), atol=3), (name, label)


def test_seeded_partition_for_a_copy_without_one(copy, workdir):
    (copy / "Eval/list_eval_partition.txt").unlink()
    workdir_params(workdir, copy)
    with pytest.raises(SelfSupError, match=r"list_eval_partition.txt is missing: .* set data.deepfashion.partition: seeded"):
        download.main(["--out", "raw"])
    workdir_params(workdir, copy, partition="seeded", test_fraction=0.25)
    prepare_stages()
    sizes = json.loads((workdir / "prepared/meta.json").read_text())["sizes"]
    assert sizes == {"train": 24, "val": 3, "test": 9}  # per class: 3 test, then 10% of the other 9 for val


def test_a_seeded_split_ignores_the_copys_partition_list(copy, workdir):
    partition = copy / "Eval/list_eval_partition.txt"
    lines = partition.read_text().splitlines()
    partition.write_text("\n".join([str(len(lines) - 3), *lines[1:-1]]) + "\n")  # one image without a status
    workdir_params(workdir, copy, partition="seeded", test_fraction=0.25)
    prepare_stages()  # it stopped at "the two lists must come from the same copy", a list the split does not use
    assert not (workdir / "raw/Eval").exists()
    assert json.loads((workdir / "prepared/meta.json").read_text())["sizes"] == {"train": 24, "val": 3, "test": 9}


def test_no_copy_given_says_how_to_give_one(workdir):
    workdir_params(workdir, None)
    with pytest.raises(SelfSupError, match=rf"set data.deepfashion.root in params.yaml or {ROOT_ENV} .*DeepFashion.html"):
        download.main(["--out", "raw"])


def test_root_from_the_environment(copy, workdir, monkeypatch):
    workdir_params(workdir, None)
    monkeypatch.setenv(ROOT_ENV, str(copy))
    prepare_stages()
    assert load_prepared(workdir / "prepared", splits=("test",)).meta["sizes"]["test"] == 6


def test_missing_list_is_named_with_where_to_get_it(copy, workdir):
    (copy / "Anno/list_category_img.txt").unlink()
    workdir_params(workdir, copy)
    with pytest.raises(SelfSupError, match=r"not a DeepFashion copy: missing Anno/list_category_img.txt; request"):
        download.main(["--out", "raw"])
    assert not (workdir / "raw").exists()


@pytest.mark.parametrize("path, line, message", [
    ("Anno/list_category_img.txt", "img/Plain_Dress/img_00000001.jpg 5 extra", r"list_category_img.txt, line 3: 3 fields"),
    ("Anno/list_category_img.txt", "img/Plain_Dress/img_00000001.jpg", r"list_category_img.txt, line 3: 1 field"),
    ("Anno/list_category_img.txt", "img/Plain_Dress/img_00000001.jpg  dress",
     r"line 3: category_label 'dress' is not an integer in 1..6"),
    ("Anno/list_category_img.txt", "img/Plain_Dress/img_00000001.jpg  7", r"line 3: category_label '7' is not an integer in 1..6"),
    ("Anno/list_category_img.txt", "img/../../secret.jpg  5", r"line 3: image path 'img/../../secret.jpg' is not inside img/"),
    ("Anno/list_category_img.txt", "/etc/passwd  5", r"line 3: image path '/etc/passwd' is not inside img/"),
    ("Anno/list_category_img.txt", "img/Plain_Dress/img_00000001.jpg  4.5",
     r"line 3: category_label '4.5' is not an integer in 1..6"),
    ("Anno/list_category_img.txt", "img/Plain_Anorak/img_00000002.jpg  1",
     r"line 4: img/Plain_Anorak/img_00000002.jpg is listed a second time"),
    ("Eval/list_eval_partition.txt", "img/Plain_Anorak/img_00000001.jpg  training",
     r"list_eval_partition.txt, line 3: status 'training' is not one of train, val, test"),
    ("Eval/list_eval_partition.txt", "img/Plain_Anorak/img_00000099.jpg  train",
     r"list_eval_partition.txt has no status for 1 images of list_category_img.txt \(first: img/Plain_Anorak/img_00000001"),
    ("Anno/list_category_cloth.txt", "Anorak         7", r"list_category_cloth.txt, line 3: category_type '7' is not"),
])
def test_malformed_list_names_the_line(copy, workdir, path, line, message):
    lines = (copy / path).read_text().splitlines()
    lines[2] = line
    (copy / path).write_text("\n".join(lines) + "\n")
    workdir_params(workdir, copy)
    download.main(["--out", "raw"])
    with pytest.raises(SelfSupError, match=message):
        preprocess.main(["--raw", "raw", "--out", "prepared"])
    assert not (workdir / "prepared").exists()


@pytest.mark.parametrize("line, message", [
    ("img/Plain_Dress/img_00000001.jpg 5 extra", r"list_category_img.txt, line 6: 3 fields"),
    ("img/Plain_Dress/img_00000001.jpg  dress", r"list_category_img.txt, line 6: category_label 'dress'"),
    ("/etc/passwd  5", r"list_category_img.txt, line 6: image path '/etc/passwd'"),
    ("img/Plain_Anorak/img_00000001.jpg  1", r"list_category_img.txt, line 6: img/Plain_Anorak/img_00000001.jpg is "
                                             r"listed a second time"),
])
def test_a_line_after_blank_lines_is_named_by_its_line_in_the_file(copy, workdir, line, message):
    path = copy / "Anno/list_category_img.txt"
    lines = path.read_text().splitlines()
    lines[3:4] = ["", "   ", line]  # two blank lines (4 and 5), which pandas skips, then the bad entry on line 6
    path.write_text("\n".join(lines) + "\n")
    workdir_params(workdir, copy)
    download.main(["--out", "raw"])
    with pytest.raises(SelfSupError, match=message):
        preprocess.main(["--raw", "raw", "--out", "prepared"])


def test_truncated_list_is_caught_by_its_count(copy, workdir):
    path = copy / "Eval/list_eval_partition.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:-5]) + "\n")
    workdir_params(workdir, copy)
    download.main(["--out", "raw"])
    with pytest.raises(SelfSupError, match=r"list_eval_partition.txt: the first line says '36' entries but 31 follow"):
        preprocess.main(["--raw", "raw", "--out", "prepared"])


def test_unreadable_jpeg_is_skipped_and_reported_up_to_a_limit(copy, workdir, capsys):
    broken = "img/Plain_Dress/img_00000001.jpg"
    (copy / broken).write_bytes(b"\xff\xd8 not really a jpeg")
    workdir_params(workdir, copy, max_unreadable=0)
    download.main(["--out", "raw"])
    with pytest.raises(SelfSupError, match=r"1 of 36 DeepFashion images cannot be read \(first: .*img_00000001.jpg: "
                                           r".*\); extract Img/img.zip again, or raise data.deepfashion.max_unreadable"):
        preprocess.main(["--raw", "raw", "--out", "prepared"])
    assert not (workdir / "prepared").exists()
    workdir_params(workdir, copy, max_unreadable=1)
    preprocess.main(["--raw", "raw", "--out", "prepared"])
    assert f"skipped unreadable image {copy / broken}" in capsys.readouterr().out
    prepared = load_prepared(workdir / "prepared")
    assert prepared.meta["unreadable"] == [broken]
    assert prepared.meta["sizes"]["train"] == 3 * PER_CLASS["train"] - 1


@pytest.mark.parametrize("name", names())
def test_every_pretext_trains_fine_tunes_and_evaluates_on_the_rgb_copy(copy, workdir, name):
    workdir_params(workdir, copy)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params.update(pretext=name, pretexts=names())
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    prepare_stages()
    pretrain.main([name, "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    finetune.main(["--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "m/ft"])
    evaluate.main(["--model", "ft/model.pt", "--data", "prepared", "--metrics", "m/ev"])
    test = json.loads((workdir / "m/ev/metrics.json").read_text())["test"]
    per_class = pd.read_csv(workdir / "m/ev/per_class.csv")
    assert per_class["class"].tolist() == ["Anorak", "Blouse", "Dress"]  # per category, by name
    assert per_class.support.tolist() == [PER_CLASS["test"]] * 3
    assert test["balanced_accuracy"] == pytest.approx(per_class.accuracy.mean(), abs=1e-6)


@pytest.mark.e2e
def test_dvc_repro_runs_the_whole_pipeline_on_deepfashion(copy, tmp_path):
    """The real pipeline under DVC with data.dataset deepfashion, on the generated copy."""
    def edit(params):
        params["data"]["dataset"] = "deepfashion"  # the other keys stay: dvc.yaml declares some of them one by one
        params["data"]["deepfashion"].update(root=str(copy), image_size=16)
        shrink_params(params, batch_size=16, val_images=6)
        params["finetune"]["batch_size"] = 16
        # every pretext trains on the RGB copy in-process (above) and runs under DVC in tests/test_pipeline.py's
        # tiny run; here `none` alone, the stages' plumbing for RGB DeepFashion
        params["pretexts"] = ["none"]

    repo, env = project_repo(tmp_path, edit)
    out = run(["dvc", "repro"], repo, env)
    assert {"download", "preprocess", "select", "finetune", "evaluate"} <= stages_run(out)
    assert {"pretrain@none", "probe@none"} <= stages_run(out)
    test = json.loads((repo / "metrics/evaluate/metrics.json").read_text())["test"]
    per_class = pd.read_csv(repo / "metrics/evaluate/per_class.csv")
    assert per_class["class"].tolist() == ["Anorak", "Blouse", "Dress"] and 0 <= test["balanced_accuracy"] <= 1
    probe = json.loads((repo / "metrics/probe/none/metrics.json").read_text())
    assert set(probe["test"]) == {"2", "all"}
    assert stages_run(run(["dvc", "repro"], repo, env)) == set()


@pytest.fixture(scope="session")
def deepfashion_sample() -> Path:
    """The 426 real DeepFashion JPEGs of the shared datasets folder (set by .ci/run)."""
    sample = os.environ.get("DEEPFASHION_SAMPLE")
    if not sample:
        pytest.skip("DEEPFASHION_SAMPLE is not set (.ci/run sets it to the shared deepfashion-sample folder)")
    return Path(sample)


def test_real_sample_preprocesses_and_pretrains(deepfashion_sample, workdir):
    """One category and no partition file: the official partition is refused, a seeded one works, and a
    pretext trains on the real RGB images."""
    workdir_params(workdir, deepfashion_sample, image_size=32)
    with pytest.raises(SelfSupError, match=r"list_eval_partition.txt is missing"):
        download.main(["--out", "raw"])
    workdir_params(workdir, deepfashion_sample, image_size=32, partition="seeded")
    prepare_stages()
    prepared = load_prepared(workdir / "prepared")
    assert prepared.classes == ["Dress"] and prepared.meta["unreadable"] == []
    assert sum(prepared.meta["sizes"].values()) == 426
    train = prepared.splits["train"].images
    assert train.shape[1:] == (3, 32, 32) and train.float().std() > 20  # real, varied pictures
    pretrain.main(["rotation", "--data", "prepared", "--out", "pre", "--metrics", "m"])
    assert (workdir / "pre/backbone.pt").is_file()
    # ... but one category is nothing to classify: fine-tuning and probing refuse it before any work, writing nothing
    one = r"the prepared data holds 1 class \(Dress\), and classifying needs two or more"
    with pytest.raises(SelfSupError, match=one):
        finetune.main(["--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "mf"])
    with pytest.raises(SelfSupError, match=one):
        probe.main(["rotation", "--backbone", "pre/backbone.pt", "--data", "prepared", "--metrics", "mp"])
    assert not any((workdir / name).exists() for name in ("ft", "mf", "mp"))
