"""The stage scripts in-process, on a small synthetic prepared dataset, for every registered pretext."""

import json
from xml.etree import ElementTree

import pytest
import torch
import yaml

from selfsup import SelfSupError
from selfsup.data import make_splits, save_prepared
from selfsup.models import load_checkpoint
from selfsup.pretexts import PRETEXTS
from stages import evaluate, finetune, pretrain, probe
from tests.conftest import REPO, shrink_params


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A cwd with params.yaml (tiny settings, every pretext) and a prepared 8×8 dataset of 4 classes."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["pretexts"] = sorted(PRETEXTS)
    shrink_params(params, batch_size=16, val_images=16)
    params["finetune"]["batch_size"] = 16
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 4
    images = (labels.view(-1, 1, 1, 1) * 60 + torch.randint(0, 30, (200, 1, 8, 8), generator=gen)).to(torch.uint8)
    sets = {"train": (images[:160], labels[:160]), "test": (images[160:], labels[160:])}
    save_prepared(tmp_path / "prepared", make_splits(sets, 0.2, 1.0, 0), ["w", "x", "y", "z"], "synthetic")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def set_param(workdir, section, key, value):
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params[section][key] = value
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.parametrize("name", sorted(PRETEXTS))
def test_every_pretext_pretrains_a_backbone_that_finetunes(workdir, name):
    set_param(workdir, "finetune", "protocol", "head")
    (workdir / "params.yaml").write_text((workdir / "params.yaml").read_text().replace("pretext: none", f"pretext: {name}"))
    pretrain.main([name, "--data", "prepared", "--out", f"pre/{name}", "--metrics", f"m/pre/{name}"])
    ckpt = load_checkpoint(workdir / f"pre/{name}/backbone.pt")
    assert ckpt["pretext"] == name and not any(k.startswith("logits") for k in ckpt["state_dict"])
    finetune.main(["--backbone", f"pre/{name}/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "m/ft"])
    model = load_checkpoint(workdir / "ft/model.pt")
    for key, value in ckpt["state_dict"].items():  # `head` protocol: the backbone is exactly the pretrained one
        assert torch.equal(model["state_dict"][f"backbone.{key}"], value), key
    evaluate.main(["--model", "ft/model.pt", "--data", "prepared", "--metrics", "m/ev"])
    assert (workdir / "m/ev/metrics.json").is_file() and (workdir / "m/ev/confusion.csv").is_file()
    assert (workdir / "m/ft/plots/metrics/val/accuracy.tsv").is_file()
    if PRETEXTS[name].trains:  # pretext loss per epoch, on training and held-out images
        assert (workdir / f"m/pre/{name}/plots/metrics/train/loss.tsv").is_file()
        assert (workdir / f"m/pre/{name}/plots/metrics/val/loss.tsv").is_file()
    if PRETEXTS[name].shows_images:
        assert (workdir / f"m/pre/{name}/plots/images/reconstructions/epoch_01.png").is_file()


def test_finetune_refuses_a_backbone_of_another_model(workdir):
    pretrain.main(["none", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    set_param(workdir, "model", "norm", "lrn")
    with pytest.raises(SelfSupError, match=r"holds pretext 'none' with model .*'batch'.* but params.yaml asks for .*'lrn'"):
        finetune.main(["--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "m/ft"])
    assert not (workdir / "ft").exists()


def test_labels_per_class_above_what_a_class_has_is_refused(workdir):
    pretrain.main(["none", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    set_param(workdir, "finetune", "labels_per_class", 1000)
    with pytest.raises(SelfSupError, match=r"labels_per_class is 1000 but class 0 has only 32 training images"):
        finetune.main(["--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "m/ft"])
    assert not (workdir / "ft").exists()


def test_probe_picks_a_layer_and_reports_every_budget(workdir):
    pretrain.main(["rotation", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    probe.main(["rotation", "--backbone", "pre/backbone.pt", "--data", "prepared", "--metrics", "m/probe"])
    metrics = json.loads((workdir / "m/probe/metrics.json").read_text())
    assert set(metrics["layers"]) == {"conv1", "conv2", "fc3", "fc4"}
    assert metrics["layer"] == max(metrics["layers"], key=lambda layer: metrics["layers"][layer]["val"]["linear"])
    assert set(metrics["test"]) == {"2", "all"}
    assert metrics["test"]["all"]["linear"]["std"] == 0  # one deterministic run with every label
    assert metrics["test"]["all"]["linear"]["mean"] > 0.9  # the 4 synthetic classes differ in brightness
    ElementTree.parse(workdir / "m/probe/embedding.svg")  # well-formed


def test_probe_refuses_the_backbone_of_another_pretext(workdir):
    pretrain.main(["none", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    with pytest.raises(SelfSupError, match=r"holds pretext 'none' .* asks for pretext 'rotation'"):
        probe.main(["rotation", "--backbone", "pre/backbone.pt", "--data", "prepared", "--metrics", "m/probe"])
    assert not (workdir / "m/probe").exists()


@pytest.mark.parametrize("protocol, trained", [("head", set()), ("fc", {"fc3", "fc4"}),
                                               ("full", {"conv", "fc3", "fc4"})])
def test_protocols_train_exactly_their_layers(workdir, protocol, trained):
    pretrain.main(["rotation", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    set_param(workdir, "finetune", "protocol", protocol)
    (workdir / "params.yaml").write_text((workdir / "params.yaml").read_text().replace("pretext: none", "pretext: rotation"))
    finetune.main(["--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "m/ft"])
    before = load_checkpoint(workdir / "pre/backbone.pt")["state_dict"]
    after = load_checkpoint(workdir / "ft/model.pt")["state_dict"]
    changed = {key.split(".")[0] for key, value in before.items()
               if key.endswith("weight") and not torch.equal(after[f"backbone.{key}"], value)}
    assert changed == trained
