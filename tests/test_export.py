"""The exported model: outputs equal to the eager model's on real test images, loadable with torch alone."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
import zipfile

import pytest
import torch

from selfsup import SelfSupError
from selfsup.data import make_splits, read_fashion_mnist, save_prepared
from selfsup.download import CLASSES
from selfsup.export import delivered_model, load_exported
from selfsup.models import build_classifier, load_checkpoint, save_checkpoint
from selfsup.params import ModelParams
from stages import export
from tests.conftest import REPO

TOLERANCE = 1e-5  # largest difference in a class probability, fp32 on the CPU both


def calibrated_checkpoint(path, images: torch.Tensor, norm: str = "batch", seed: int = 0) -> None:
    """A seeded classifier whose batch-norm statistics come from `images`, saved as finetune saves it."""
    torch.manual_seed(seed)
    model_cfg = {"norm": norm, "dropout": 0.5}
    data = {"dataset": "fashion_mnist", "channels": images.shape[1], "image_size": images.shape[2],
            "mean": [0.2860], "std": [0.3530]}
    model = build_classifier(ModelParams(**model_cfg), data, len(CLASSES))
    with torch.no_grad():  # train mode: the running statistics move towards those of real images
        for _ in range(3):
            model(((images[:256].float() / 255 - 0.2860) / 0.3530))
    save_checkpoint(path, model, pretext="none", classes=list(CLASSES), config={"model": model_cfg},
                    data=data, best_epoch=1)


@pytest.fixture(scope="module")
def real_test(fmnist_raw):
    return read_fashion_mnist(fmnist_raw)["test"]


@pytest.fixture
def prepared(tmp_path, real_test):
    """A prepared folder whose test split is 300 real Fashion-MNIST test images."""
    images, labels = real_test
    sets = {"train": (images[:300], labels[:300]), "test": (images[-300:], labels[-300:])}
    save_prepared(tmp_path / "prepared", make_splits(sets, 0.1, 1.0, 0), list(CLASSES), "fashion_mnist")
    return tmp_path / "prepared"


@pytest.mark.parametrize("norm", ["batch", "lrn", "none"])
def test_exported_model_matches_the_eager_model_on_real_test_images(tmp_path, prepared, real_test, norm):
    calibrated_checkpoint(tmp_path / "model.pt", real_test[0], norm)
    export.main(["--model", str(tmp_path / "model.pt"), "--data", str(prepared), "--out", str(tmp_path / "export")])
    module, spec = load_exported(tmp_path / "export/model.pt2")
    images = real_test[0][:500]
    eager = delivered_model(load_checkpoint(tmp_path / "model.pt"))
    with torch.inference_mode():
        exported, expected = module(images), eager(images)
    assert exported.shape == (500, 10)
    assert torch.allclose(exported.sum(1), torch.ones(500), atol=1e-5)  # probabilities
    assert (exported - expected).abs().max() <= TOLERANCE
    assert expected.argmax(1).unique().numel() > 1  # a model that tells images apart, so the check means something
    assert spec["classes"] == list(CLASSES) and spec["input"] | {"resize": None} == {
        "dtype": "uint8", "layout": "NCHW", "channels": 1, "height": 28, "width": 28, "mode": "L", "resize": None}
    beside = json.loads((tmp_path / "export/model.json").read_text())
    assert beside == spec and spec["check"]["test_images"] == 300 and spec["model"]["norm"] == norm


def test_model_json_says_each_step_by_which_any_image_is_prepared():
    """model.json's `resize` is a user's only account of how to prepare an image for the export: it names every step
    images.decode takes: a step dropped there, or words dropped here, fails."""
    import inspect

    from selfsup import images
    from selfsup.export import RESIZE

    source = inspect.getsource(images.decode)
    steps = {"exif_transpose": "EXIF orientation", "eight_bit": "16-bit one scaled to 8 bits",
             ".convert(": "converted to `mode`", "Image.BILINEAR, reducing_gap=2.0": "bilinear resize with reducing_gap=2.0",
             ".draft(": "Image.draft"}
    for call, words in steps.items():
        assert call in source and words in RESIZE, (call, words)


def test_the_readmes_lines_run_the_export_with_torch_alone_as_predict_does(tmp_path, prepared, real_test):
    """The README's snippet, as it stands, with this package made unimportable: on a test image saved as
    photo.png (three times its size, so the resize is real) it gives what `selfsup.predict` gives."""
    from PIL import Image

    from selfsup.predict import main as predict_main

    calibrated_checkpoint(tmp_path / "model.pt", real_test[0])
    export.main(["--model", str(tmp_path / "model.pt"), "--data", str(prepared), "--out", str(tmp_path / "export")])
    Image.fromarray(real_test[0][0, 0].numpy()).resize((84, 84), Image.NEAREST).save(tmp_path / "export/photo.png")
    snippet = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    assert 'torch.export.load("model.pt2"' in snippet and '"photo.png"' in snippet
    script = ('import sys\nsys.modules["selfsup"] = None\n' + snippet
              + 'import json\nprint(json.dumps({c: p for c, p in zip(spec["classes"], probabilities[0].tolist())}))\n')
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "export", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    readme = json.loads(out.stdout)
    predict_main([str(tmp_path / "export/model.pt2"), str(tmp_path / "export/photo.png"), "--top-k", "10",
                  "--csv", str(tmp_path / "p.csv")])
    row = next(csv.DictReader(open(tmp_path / "p.csv")))
    predicted = {row[f"class{i}"]: float(row[f"probability{i}"]) for i in range(1, 11)}
    assert predicted.keys() == readme.keys() and all(abs(predicted[c] - readme[c]) < 1e-6 for c in readme)


def test_export_writes_nothing_when_the_check_fails(tmp_path, prepared, real_test, monkeypatch):
    calibrated_checkpoint(tmp_path / "model.pt", real_test[0])
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no program can pass: the refusal path
    with pytest.raises(SelfSupError, match=r"differs from the eager one by .* on test images .*; nothing written"):
        export.main(["--model", str(tmp_path / "model.pt"), "--data", str(prepared), "--out", str(tmp_path / "export")])
    assert not (tmp_path / "export").exists()


def test_a_file_that_is_not_an_export_is_one_clear_error(tmp_path):
    (tmp_path / "model.pt2").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(SelfSupError, match=r"model.pt2 is damaged or not an export \(BadZipFile\); give "
                                           r"models/export/model.pt2, or export it again with `dvc repro export`"):
        load_exported(tmp_path / "model.pt2")
    with pytest.raises(SelfSupError, match=r"not found; run `dvc repro export`"):
        load_exported(tmp_path / "missing.pt2")


def test_the_export_is_a_pure_function_of_the_checkpoint(tmp_path, prepared, real_test):
    """The same checkpoint, exported by two copies of this package in different folders, gives the same bytes:
    no path of the building machine, no sample inputs, inference form (no parameter requires a gradient), and it
    loads without a warning."""
    calibrated_checkpoint(tmp_path / "model.pt", real_test[0])
    archives = []
    for checkout in ("a", "a longer checkout path"):
        code = tmp_path / checkout
        for package in ("selfsup", "stages"):
            shutil.copytree(REPO / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
        out = tmp_path / f"export {len(archives)}"
        proc = subprocess.run([sys.executable, "-m", "stages.export", "--model", str(tmp_path / "model.pt"),
                               "--data", str(prepared), "--out", str(out)], cwd=code, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(code)}, timeout=300)
        assert proc.returncode == 0, proc.stderr
        archives.append((out / "model.pt2").read_bytes())
    assert archives[0] == archives[1]
    with zipfile.ZipFile(tmp_path / "export 0/model.pt2") as archive:
        contents = {info.filename: archive.read(info) for info in archive.infolist()}
    text = b"".join(data for name, data in contents.items() if name.endswith(".json"))
    for marker in (str(tmp_path).encode(), str(REPO).encode(), b"site-packages", b"stack_trace\": \"File"):
        assert marker not in text, marker
    assert b'"requires_grad": true' not in text and b'"requires_grad": false' in text
    assert not any(data for name, data in contents.items() if "sample_inputs" in name)  # no test images inside
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module, _ = load_exported(tmp_path / "export 0/model.pt2")
    assert all(not p.requires_grad for p in module.parameters())


@pytest.mark.parametrize("change, message", [
    (lambda images, classes: (images, classes[::-1]), r"classifies 10 classes .*, but other holds the same classes in another order"),
    (lambda images, classes: (images, classes[:5] + ["Sock", "Hat", "Scarf", "Belt", "Glove"]),
     r"classifies 10 classes \(T-shirt/top, Trouser, Pullover, ...\), but .* holds 10 classes \(T-shirt/top"),
    (lambda images, classes: (images[:, :, :24, :24].contiguous(), classes), "takes images of 28 pixels square, but other holds 24 pixels square"),
    (lambda images, classes: (images.expand(-1, 3, -1, -1).contiguous(), classes), "takes images of 1 channel, but other holds 3 channels"),
])
def test_evaluate_and_export_refuse_a_model_of_other_data(tmp_path, real_test, monkeypatch, change, message):
    """Run by hand with a model and a data folder from different runs: one error, not a shape traceback or a
    confusion matrix under the wrong class names, and nothing written."""
    images, labels = real_test
    calibrated_checkpoint(tmp_path / "model.pt", images)
    other, classes = change(images[-300:], list(CLASSES))
    save_prepared(tmp_path / "other", make_splits({"train": (other, labels[-300:]), "test": (other, labels[-300:])},
                                                  0.1, 1.0, 0), classes, "fashion_mnist")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    from stages import evaluate
    for run in (lambda: export.main(["--model", "model.pt", "--data", "other", "--out", "export"]),
                lambda: evaluate.main(["--model", "model.pt", "--data", "other", "--metrics", "evaluate"]),
                lambda: evaluate.main(["--model", "model.pt", "--finetuned", "model.pt", "--data", "other",
                                       "--metrics", "evaluate"])):
        with pytest.raises(SelfSupError, match=f"model.pt {message}.*: the model and the data come from different runs"):
            run()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "other", "params.yaml"]
