"""`python -m selfsup.predict`: image files in, the classes `evaluate` would give out; bad files named."""

import csv
import io
import json
import os
import pickle
import re
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from selfsup import SelfSupError
from selfsup.cli import run_stage
from selfsup.data import make_splits, read_fashion_mnist, save_prepared
from selfsup.download import CLASSES
from selfsup.export import load_exported
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
    if model.endswith(".pt") and not torch.cuda.is_available():  # the checkpoint runs as evaluate ran it
        assert predicted == evaluated
    else:  # the export runs in fp32, evaluate in the machine's autocast precision (and on a GPU, predict's batches
        # of 256 and evaluate's may get other kernels): borderline images may flip
        assert sum(p == e for p, e in zip(predicted, evaluated)) >= 0.97 * len(rows)
    assert all(float(r["probability1"]) >= float(r["probability2"]) and r["error"] == "" for r in rows)


def test_predict_forks_no_process_to_decode(project, tmp_path, monkeypatch):
    """A fork after torch's threads have run can hang in the child (seen: a decode pool stuck on a lock); predict
    decodes on threads of its own process, however many images there are."""
    def no_fork(*args, **kwargs):
        raise AssertionError("predict forked a process")
    monkeypatch.setattr(os, "fork", no_fork)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # two decode threads, even on a one-core machine
    main([str(project / "model.pt"), str(project / "pngs"), "--csv", str(tmp_path / "p.csv")])
    assert len(read_rows(tmp_path / "p.csv")) == len(list((project / "pngs").iterdir())) >= 128  # 2+ workers' worth


def test_any_size_and_mode_is_prepared_as_the_training_images(project, tmp_path, capsys, monkeypatch):
    """An RGB JPEG three times the size reaches the model as the 28×28 grayscale test image it was made from."""
    import selfsup.predict

    image = Image.open(project / "pngs/000.png")
    image.convert("RGB").resize((84, 84), Image.NEAREST).save(tmp_path / "big.jpg", quality=100)
    decoded = []
    real = selfsup.predict.decode_files
    monkeypatch.setattr(selfsup.predict, "decode_files", lambda *a, **k: decoded.append(real(*a, **k)) or decoded[-1])
    main([str(project / "model.pt"), str(project / "pngs/000.png"), str(tmp_path / "big.jpg"), "--top-k", "1"])
    (images, unreadable), = decoded
    assert images.shape == (2, 1, 28, 28) and unreadable == {}
    assert torch.equal(images[0, 0], torch.from_numpy(np.array(image)))  # the PNG: the test image itself
    # the JPEG: the whole picture squashed back to 28×28 (the bilinear filter blurs its edges: a few levels on
    # average; a crop or a misplaced resize is tens of levels off)
    assert (images[1].float() - images[0].float()).abs().mean() < 10
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


def test_a_warning_about_images_read_all_the_same_is_said_once_for_all_chunks(project, tmp_path, capsys, monkeypatch):
    from tests.test_images import corrupt_exif_jpeg

    monkeypatch.setattr("selfsup.predict.CHUNK", 2)
    photos = [corrupt_exif_jpeg(tmp_path / f"{i}.jpg") for i in range(5)]
    run_stage(main, [str(project / "model.pt"), *map(str, photos)])
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 5  # each classified
    said = [line for line in err.splitlines() if "Corrupt EXIF" in line]
    assert said == [f"warning for 5 images, which were read all the same: UserWarning: {said[0].split('UserWarning: ')[1]}"]
    assert said[0].endswith(f"(first: {photos[0]})")


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


def zipped(path, member):
    import zipfile
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(member, member.name)
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
    (lambda p, t: p / "params.yaml", "params.yaml is a text file, not a model; give models/distill/model.pt"),
    (lambda p, t: zipped(t / "photos.zip", p / "pngs/000.png"), "photos.zip is a zip archive, not a model; give "
                                                               "models/distill/model.pt"),
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
    # garbled where the zip keeps its directory, or zeroed from the first byte (a crash): one line, never a traceback
    data = bytearray((project / "model.pt").read_bytes())
    data[data.rindex(b"PK\x01\x02") + 1] ^= 0xFF
    zeroed = bytes(len(data))
    for name, damaged, said in [("garbled.pt", bytes(data), "garbled.pt is unreadable ("),
                                ("zeroed.pt", zeroed, "zeroed.pt is a file of no format it knows (another kind of file, "
                                                      "or a damaged checkpoint: if it is one the pipeline wrote, delete "
                                                      "it and rerun `dvc repro`), not a model; give")]:
        (tmp_path / name).write_bytes(damaged)
        with pytest.raises(SystemExit):
            run_stage(main, [str(tmp_path / name), str(project / "pngs/000.png")])
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1, err
    (tmp_path / "weights.npy").write_bytes(b"\x93NUMPY\x01\x00" + bytes(range(256)))  # another kind of file
    with pytest.raises(SystemExit):
        run_stage(main, [str(tmp_path / "weights.npy"), str(project / "pngs/000.png")])
    assert "weights.npy is a file of no format it knows (another kind of file, or" in capsys.readouterr().err


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


class Payload:
    """Unpickled, it opens `target` for writing: the file appears only where the archive's pickle is run."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


def pickled(target) -> bytes:
    buffer = io.BytesIO()
    torch.save(Payload(target), buffer)
    return buffer.getvalue()


def tampered(src, dst, change=lambda name, data: data, extra=None):
    """The export `src` rewritten to `dst`: each entry (named inside the archive's folder) as `change` returns it,
    and the `extra` entries added."""
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w") as out:
        folder = archive.namelist()[0].split("/")[0] + "/"
        for info in archive.infolist():
            out.writestr(info.filename, change(info.filename.removeprefix(folder), archive.read(info)))
        for name, data in (extra or {}).items():
            out.writestr(folder + name, data)
    return dst


WEIGHTS_CONFIG, CONSTANTS_CONFIG = "data/weights/model_weights_config.json", "data/constants/model_constants_config.json"


def edit_json(name, edit):
    def change(entry, data):
        return json.dumps(edit(json.loads(data))).encode() if entry == name else data
    return change


def pickled_weight(config):  # the reviewer's: the first weight as a pickle that torch.load(weights_only=False) runs
    config["config"]["classifier.backbone.conv.0.weight"]["use_pickle"] = True
    return config


def constant(path_name, use_pickle):
    return lambda config: {"config": {"c": {"path_name": path_name, "is_param": False, "use_pickle": use_pickle,
                                            "tensor_meta": None}}}


def evil_guard(target):
    return lambda program: {**program, "guards_code": [f"open('{target}', 'w') is not None"]}


def evil_shape(target):
    def change(entry, data):  # the batch size's symbol, evaluated by sympy.sympify: eval
        if entry != "models/model.json":
            return data
        return data.replace(b"Symbol('s", f"open('{target}', 'w') and Symbol('s".encode(), 1)
    return change


# (how the export is tampered with, given the file the payload would create) -> (the change, the entries added)
TAMPERED = {
    "pickled weight": lambda t: (lambda n, d: pickled(t) if n == "data/weights/weight_0" else
                                 edit_json(WEIGHTS_CONFIG, pickled_weight)(n, d), {}),
    "pickled constant": lambda t: (edit_json(CONSTANTS_CONFIG, constant("tensor_0", True)),
                                   {"data/constants/tensor_0": pickled(t)}),
    "opaque object": lambda t: (edit_json(CONSTANTS_CONFIG, constant("opaque_obj_0", False)),
                                {"data/constants/opaque_obj_0": pickle.dumps(Payload(t))}),
    "example inputs": lambda t: (lambda n, d: pickled(t) if n == "data/sample_inputs/model.pt" else d, {}),
    "legacy weights": lambda t: (lambda n, d: d, {"data/weights/model.pt": pickled(t)}),
    "compiled library": lambda t: (lambda n, d: d, {"data/aotinductor/model/model.so": b"\x7fELF"}),
    "guards code": lambda t: (edit_json("models/model.json", evil_guard(t)), {}),
    "shape expression": lambda t: (evil_shape(t), {}),
}
REFUSAL = {"pickled weight": "holds pickled objects (use_pickle in data/weights/model_weights_config.json)",
           "pickled constant": "holds pickled objects (use_pickle in data/constants/model_constants_config.json)",
           "opaque object": "holds pickled objects (data/constants/model_constants_config.json names 'opaque_obj_0')",
           "example inputs": "holds pickled objects (data/sample_inputs/model.pt",
           "legacy weights": "holds pickled objects or code (data/weights/model.pt)",
           "compiled library": "holds pickled objects or code (data/aotinductor/model/model.so)",
           "guards code": "holds guards_code (Python code) in models/model.json",
           "shape expression": "holds a shape expression that is Python code in models/model.json"}


@pytest.mark.parametrize("case", TAMPERED)
def test_an_export_that_would_run_code_is_refused_before_torch_reads_it(project, tmp_path, capsys, case):
    pwned = tmp_path / "pwned"
    change, extra = TAMPERED[case](pwned)
    evil = tampered(project / "export/model.pt2", tmp_path / "evil.pt2", change, extra)
    with pytest.raises(SystemExit) as exit_:
        run_stage(main, [str(evil), str(project / "pngs/000.png"), "--csv", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1 and REFUSAL[case] in err
    assert "which this project's export never writes and loading would run as code; export the model again with " \
           "`dvc repro export`" in err
    assert not pwned.exists() and not (tmp_path / "p.csv").exists()
    with pytest.raises(SelfSupError, match=re.escape(REFUSAL[case])):  # the library's loader checks it as well
        load_exported(evil)
    assert not pwned.exists()


@pytest.mark.parametrize("case", ["pickled weight", "pickled constant", "example inputs", "legacy weights",
                                  "shape expression"])
def test_the_payloads_are_live_torch_export_load_runs_them(project, tmp_path, case):
    """Why predict checks the archive first: torch 2.14's torch.export.load runs each of these payloads (and fails
    afterwards, or not at all)."""
    pwned = tmp_path / "pwned"
    evil = tampered(project / "export/model.pt2", tmp_path / "evil.pt2", *TAMPERED[case](pwned))
    try:
        torch.export.load(evil)
    except Exception:
        pass
    assert pwned.exists(), f"torch.export.load no longer runs the {case} payload: predict's check may be relaxed"


def test_an_untampered_export_rewritten_still_predicts(project, tmp_path, capsys):
    """The tampering above changes only what it says: the same archive rewritten entry by entry passes the check."""
    same = tampered(project / "export/model.pt2", tmp_path / "same.pt2")
    main([str(same), str(project / "pngs/000.png"), "--top-k", "1"])
    main([str(project / "export/model.pt2"), str(project / "pngs/000.png"), "--top-k", "1"])
    first, second = capsys.readouterr().out.splitlines()
    assert first.split("\t")[1] == second.split("\t")[1]


def test_an_export_with_constants_and_autocast_regions_passes_the_check(project, tmp_path, capsys):
    """LRN's band matrices are tensor constants and its fp32 region a higher-order operator; flip TTA runs the
    classifier twice: what the export writes for any model passes."""
    images = torch.load(project / "prepared/test.pt", weights_only=True)["images"]
    calibrated_checkpoint(tmp_path / "lrn.pt", images, norm="lrn")
    export.main(["--model", str(tmp_path / "lrn.pt"), "--data", str(project / "prepared"), "--out",
                 str(tmp_path / "export"), "--tta", "flip"])
    with zipfile.ZipFile(tmp_path / "export/model.pt2") as archive:
        assert any(name.endswith("data/constants/tensor_0") for name in archive.namelist())
        program = next(name for name in archive.namelist() if name.endswith("/models/model.json"))
        assert b"torch.ops.higher_order.wrap_with_autocast" in archive.read(program)
    main([str(tmp_path / "export/model.pt2"), str(project / "pngs"), "--csv", str(tmp_path / "p.csv")])
    assert len(read_rows(tmp_path / "p.csv")) == 200


@pytest.mark.parametrize("make, message", [
    (lambda p, t: t / "model.pt", "--csv {t}/model.pt is the model ({t}/model.pt): the table would overwrite it; "
                                  "give another file, e.g. predictions.csv"),
    (lambda p, t: t / "one.png", "--csv {t}/one.png is an input image ({t}/one.png): the table would overwrite it"),
    (lambda p, t: t / "folder/sub/two.png", "--csv {t}/folder/sub/two.png is an input image ({t}/folder/sub/two.png)"),
    (lambda p, t: t / "folder", "--csv {t}/folder is a directory; give a file name for the table, e.g. "
                                "{t}/folder/predictions.csv"),
    (lambda p, t: t / "one.png/p.csv", "--csv {t}/one.png/p.csv: {t}/one.png is a file, not a folder; give a path in "
                                       "a folder"),
    (lambda p, t: t / "notes.txt/sub/p.csv", "--csv {t}/notes.txt/sub/p.csv: {t}/notes.txt is a file, not a folder"),
])
def test_a_csv_path_that_cannot_take_the_table_is_refused_before_anything_is_read(project, tmp_path, capsys,
                                                                                  make, message):
    shutil.copy(project / "model.pt", tmp_path / "model.pt")
    shutil.copy(project / "pngs/000.png", tmp_path / "one.png")
    (tmp_path / "folder/sub").mkdir(parents=True)
    shutil.copy(project / "pngs/001.png", tmp_path / "folder/sub/two.png")
    (tmp_path / "notes.txt").write_text("notes")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as exit_:
        run_stage(main, [str(tmp_path / "model.pt"), str(tmp_path / "one.png"), str(tmp_path / "folder"),
                         "--csv", str(make(project, tmp_path))])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1 and message.format(t=tmp_path) in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing replaced, nothing new


def test_the_csv_is_compared_with_the_model_as_resolved(project, tmp_path, monkeypatch, capsys):
    shutil.copy(project / "model.pt", tmp_path / "model.pt")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    with pytest.raises(SystemExit):
        run_stage(main, ["../model.pt", str(project / "pngs/000.png"), "--csv", "../sub/../model.pt"])
    assert "--csv ../sub/../model.pt is the model (../model.pt)" in capsys.readouterr().err
    assert (tmp_path / "model.pt").read_bytes() == (project / "model.pt").read_bytes()


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_a_device_the_machine_lacks_names_the_flag_that_fixes_it(project, monkeypatch, capsys, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        run_stage(main, [str(project / "model.pt"), str(project / "pngs/000.png"), "--device", device])
    err = capsys.readouterr().err
    assert err == f"error: --device {device}, but this machine has no {device}; use --device auto (the best this " \
                  "machine has) or --device cpu\n"


def old_checkpoint(project, path, edit):
    ckpt = torch.load(project / "model.pt", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("edit, why", [
    (lambda c: c["config"]["model"].update(width=2), "TypeError: ModelParams.__init__() got an unexpected keyword "
                                                     "argument 'width'"),
    (lambda c: c.pop("data"), "no 'data' in it"),
    (lambda c: c.update(classes=c["classes"][:5]), "RuntimeError: size mismatch for logits.weight: copying a param "
                                                   "with shape torch.Size([10, 192]) from checkpoint"),
    (lambda c: c["data"].update(image_size=32), "RuntimeError: size mismatch for backbone.fc3.weight"),
    (lambda c: c["config"]["model"].update(norm="group"), "ValueError: unknown norm 'group'"),
])
def test_a_checkpoint_of_another_version_is_one_line_to_remake_it(project, tmp_path, capsys, edit, why):
    path = old_checkpoint(project, tmp_path / "old.pt", edit)
    with pytest.raises(SystemExit):
        run_stage(main, [str(path), str(project / "pngs/000.png")])
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} is not a checkpoint this version can load ({why}") and err.count("\n") == 1
    assert err.endswith("); rerun `dvc repro` to make it again\n")


def test_a_damaged_export_and_a_folder_say_what_they_are(project, tmp_path, capsys):
    (tmp_path / "model.pt2").write_bytes((project / "export/model.pt2").read_bytes()[:100_000])  # truncated
    with pytest.raises(SystemExit):
        run_stage(main, [str(tmp_path / "model.pt2"), str(project / "pngs/000.png")])
    assert capsys.readouterr().err == (
        f"error: {tmp_path}/model.pt2 is damaged or not an export (a .pt2 file that is not a readable zip archive); "
        "give models/export/model.pt2, or export it again with `dvc repro export`\n")
    (tmp_path / "empty").mkdir()
    for folder, example in ((project / "export", project / "export/model.pt2"),
                            (tmp_path / "empty", "models/export/model.pt2")):
        with pytest.raises(SystemExit):
            run_stage(main, [str(folder), str(project / "pngs/000.png")])
        assert capsys.readouterr().err == f"error: {folder} is a directory; give the model file, e.g. {example}\n"
