"""`python -m selfsup.predict`: image files in, the classes `evaluate` would give out; bad files named."""

import csv
import shutil

import pandas as pd
import pytest
import torch
from PIL import Image

from selfsup.cli import run_stage
from selfsup.data import make_splits, read_fashion_mnist, save_prepared
from selfsup.download import CLASSES
from selfsup.predict import main
from stages import evaluate, export
from tests.conftest import REPO
from tests.test_export import calibrated_checkpoint


@pytest.fixture(scope="module")
def project(tmp_path_factory, fmnist_raw):
    """A cwd with params.yaml, 200 real test images prepared, a model, evaluate's output and the export."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    images, labels = read_fashion_mnist(fmnist_raw)["test"]
    sets = {"train": (images[:200], labels[:200]), "test": (images[-200:], labels[-200:])}
    save_prepared(root / "prepared", make_splits(sets, 0.1, 1.0, 0), list(CLASSES), "fashion_mnist")
    calibrated_checkpoint(root / "model.pt", images)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        evaluate.main(["--model", "model.pt", "--data", "prepared", "--metrics", "evaluate"])
        export.main(["--model", "model.pt", "--data", "prepared", "--out", "export"])
    pngs = root / "pngs"
    pngs.mkdir()
    test = torch.load(root / "prepared/test.pt", weights_only=True)["images"]
    for i, image in enumerate(test):
        Image.fromarray(image[0].numpy()).save(pngs / f"{i:03d}.png")
    return root


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", ["model.pt", "export/model.pt2"])
def test_test_images_from_png_files_get_the_class_evaluate_gave_them(project, tmp_path, model):
    main([str(project / model), str(project / "pngs"), "--csv", str(tmp_path / "p.csv"), "--top-k", "2"])
    rows = read_rows(tmp_path / "p.csv")
    # confusion.csv numbers the class names ("9 Ankle boot") so that the plot keeps the label order
    evaluated = pd.read_csv(project / "evaluate/confusion.csv")["predicted"].str.split(" ", n=1).str[1].tolist()
    assert [row["path"] for row in rows] == sorted(str(p) for p in (project / "pngs").iterdir())
    predicted = [row["class1"] for row in rows]
    assert len(set(evaluated)) > 1  # a model that tells images apart, so the comparison means something
    if model.endswith(".pt"):  # the checkpoint runs as evaluate ran it
        assert predicted == evaluated
    else:  # the export runs in fp32, evaluate in the machine's autocast precision: borderline images may flip
        assert sum(p == e for p, e in zip(predicted, evaluated)) >= 0.97 * len(rows)
    assert all(float(r["probability1"]) >= float(r["probability2"]) and r["error"] == "" for r in rows)


def test_any_size_and_mode_is_prepared_as_the_training_images(project, tmp_path, capsys):
    image = Image.open(project / "pngs/000.png")
    image.convert("RGB").resize((84, 84), Image.NEAREST).save(tmp_path / "big.jpg", quality=100)
    main([str(project / "model.pt"), str(project / "pngs/000.png"), str(tmp_path / "big.jpg"), "--top-k", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[1].split(" ")[0] == lines[1].split("\t")[1].split(" ")[0]


def test_bad_files_in_a_folder_are_listed_and_the_others_classified(project, tmp_path, capsys):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(project / "pngs/000.png", folder / "sub/good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "readme.txt").write_text("not an image")
    run_stage(main, [str(project / "model.pt"), str(folder), "--csv", str(tmp_path / "p.csv")])
    rows = {row["path"]: row for row in read_rows(tmp_path / "p.csv")}
    assert rows[str(folder / "sub/good.png")]["class1"] in CLASSES
    assert rows[str(folder / "broken.png")]["class1"] == "" and rows[str(folder / "broken.png")]["error"]
    err = capsys.readouterr().err
    assert f"{folder / 'broken.png'}: " in err and "1 file is not a readable image" in err
    assert "left out 1 file without an image suffix" in err and "readme.txt" not in rows


@pytest.mark.parametrize("args, message", [
    (["pngs/missing.png"], "pngs/missing.png not found; give image files or folders of them"),
    (["params.yaml"], "params.yaml is not a readable image (UnidentifiedImageError: cannot identify image file); "
                      "give PNG or JPEG files"),
    (["evaluate"], "folder evaluate holds no image files (.jpg, .jpeg, .png"),
])
def test_unusable_input_is_one_line_naming_it(project, monkeypatch, capsys, args, message):
    monkeypatch.chdir(project)
    with pytest.raises(SystemExit) as exit_:
        run_stage(main, ["model.pt", *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1 and err.startswith(f"error: {message}")


def resume_state(path):
    torch.save({"fingerprint": "{}", "epoch": 1, "optimizer": {}, "model": {}}, path)
    return path


def backbone(path):
    from selfsup.models import CifarNet, save_checkpoint
    save_checkpoint(path, CifarNet(), pretext="rotation", config={"model": {}})
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p, t: p / "export/model.json", "export/model.json is the exported model's description (JSON), not a model "
                                           "(the model it describes is {project}/export/model.pt2); give "
                                           "models/distill/model.pt (the delivered model)"),
    (lambda p, t: p / "pngs/000.png", "pngs/000.png is an image, not a model; give models/distill/model.pt (the "
                                      "delivered model) or models/finetune/model.pt, or the exported "
                                      "models/export/model.pt2 first, then the images"),
    (lambda p, t: backbone(t / "backbone.pt"), "backbone.pt is a pre-trained backbone (pretext 'rotation'), not a "
                                               "classifier; give models/distill/model.pt"),
    (lambda p, t: resume_state(t / "state.pt"), "state.pt is the training state kept to resume an interrupted run, not "
                                                "a model; give models/distill/model.pt"),
])
def test_a_wrong_file_for_the_model_is_named_with_the_right_one(project, tmp_path, capsys, make, message):
    """Not a stale checkpoint: nothing to delete, no `dvc repro` to rerun; what the file is and which to give."""
    with pytest.raises(SystemExit):
        run_stage(main, [str(make(project, tmp_path)), str(project / "pngs/000.png")])
    err = capsys.readouterr().err
    assert message.format(project=project) in err and "dvc repro" not in err and err.count("\n") == 1


def test_only_a_damaged_checkpoint_is_one_to_remake(project, tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes((project / "model.pt").read_bytes()[:5000])  # a truncated checkpoint
    with pytest.raises(SystemExit):
        run_stage(main, [str(tmp_path / "model.pt"), str(project / "pngs/000.png")])
    assert "model.pt is unreadable (" in capsys.readouterr().err


def test_flip_tta_is_what_evaluate_measured_export_ships_and_predict_applies(project, tmp_path, monkeypatch, capsys):
    import yaml

    shutil.copytree(project / "prepared", tmp_path / "prepared")
    shutil.copy(project / "model.pt", tmp_path / "model.pt")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["tta"] = "flip"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    evaluate.main(["--model", "model.pt", "--data", "prepared", "--metrics", "evaluate"])
    export.main(["--model", "model.pt", "--data", "prepared", "--out", "export", "--tta", "flip"])
    classes = {name: pd.read_csv(root / "evaluate/confusion.csv")["predicted"].str.split(" ", n=1).str[1].tolist()
               for name, root in (("flip", tmp_path), ("none", project))}
    assert classes["flip"] != classes["none"]  # the mirror images change some answers: the checks below mean something
    main(["model.pt", str(project / "pngs"), "--csv", "checkpoint.csv", "--tta", "flip"])
    assert [row["class1"] for row in read_rows("checkpoint.csv")] == classes["flip"]
    main(["export/model.pt2", str(project / "pngs"), "--csv", "exported.csv"])
    exported = [row["class1"] for row in read_rows("exported.csv")]
    assert sum(p == e for p, e in zip(exported, classes["flip"])) >= 0.97 * len(exported)  # fp32 against autocast
    assert '"tta": "flip"' in (tmp_path / "export/model.json").read_text()
    with pytest.raises(SystemExit):
        run_stage(main, ["export/model.pt2", str(project / "pngs/000.png"), "--tta", "none"])
    assert "has its test-time augmentation built in (model.json: tta); leave out --tta" in capsys.readouterr().err
