"""The stage scripts in-process, on a small synthetic prepared dataset, for every registered pretext."""

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

import selfsup.finetune
import selfsup.params
import selfsup.pretrain
from selfsup import SelfSupError
from selfsup.data import load_prepared
from selfsup.models import load_checkpoint
from selfsup.pretexts import get_pretext, names
from stages import evaluate, finetune, pretrain, probe
from tests.conftest import REPO, modules_loaded, set_param


@pytest.mark.parametrize("name", names())
def test_every_pretext_pretrains_a_backbone_that_finetunes(workdir, name):
    set_param(workdir, "finetune", "protocol", "head")
    set_param(workdir, "finetune", "transfer", "all")  # every pretrained layer reaches the classifier
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
    assert "val" in (workdir / "m/ft/curves.csv").read_text()
    assert (workdir / f"m/pre/{name}/curves.csv").is_file()
    assert (workdir / f"m/pre/{name}/plots/images/filters.png").is_file()  # every pretext: its plots folder exists
    if get_pretext(name).trains:  # pretext loss per epoch, on training and held-out images
        curves = pd.read_csv(workdir / f"m/pre/{name}/curves.csv")
        assert set(curves.split) == {"train", "val"} and curves.epoch.min() == 1 and curves["loss"].notna().all()
    if get_pretext(name).shows_images:
        assert (workdir / f"m/pre/{name}/plots/images/reconstructions/epoch_01.png").is_file()


def test_finetune_refuses_a_backbone_of_another_model(workdir):
    pretrain.main(["none", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    set_param(workdir, "model", "norm", "lrn")
    with pytest.raises(SelfSupError, match=r"holds pretext 'none' with model .*'batch'.* but params.yaml asks for .*'lrn'"):
        finetune.main(["--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "m/ft"])
    assert not (workdir / "ft").exists()


def test_labels_per_class_above_what_a_class_has_is_refused(workdir, monkeypatch):
    """By the class's name, before anything is loaded or trained (a budget of `exact`, finetune's default)."""
    pretrain.main(["none", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    set_param(workdir, "finetune", "labels_per_class", 1000)
    set_param(workdir, "probe", "labels_per_class", [10, 1000])
    set_param(workdir, "probe", "budget", "exact")
    monkeypatch.setattr("stages.finetune.load_backbone", lambda *a: pytest.fail("the backbone was read"))
    monkeypatch.setattr("stages.probe.load_backbone", lambda *a: pytest.fail("the backbone was read"))
    with pytest.raises(SelfSupError, match=r"^finetune.labels_per_class is 1000 but class w has only 32 training "
                                           r"images; use at most 32 or `all`, or set finetune.budget: at_most$"):
        finetune.main(["--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "m/ft"])
    assert not (workdir / "ft").exists()
    with pytest.raises(SelfSupError, match=r"^probe.labels_per_class is 1000 but class w has only 32 training images"):
        probe.main(["none", "--backbone", "pre/backbone.pt", "--data", "prepared", "--metrics", "m/probe"])
    assert not (workdir / "m/probe").exists()


def test_probe_picks_a_layer_and_reports_every_budget(workdir):
    pretrain.main(["rotation", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    probe.main(["rotation", "--backbone", "pre/backbone.pt", "--data", "prepared", "--metrics", "m/probe"])
    headline = json.loads((workdir / "m/probe/metrics.json").read_text())
    metrics = json.loads((workdir / "m/probe/detail.json").read_text())
    assert headline == {"layer": metrics["layer"], "test": {b: v["linear"]["mean"] for b, v in metrics["test"].items()}}
    assert set(metrics["test"]) == set(metrics["draws"]) == {"2", "all"}
    for budget, draws in metrics["draws"].items():
        assert len(draws) == (1 if budget == "all" else 2)  # seeds: 2
        for draw in draws:
            assert set(draw["val"]) == {"conv1", "conv2", "fc3", "fc4"}
            assert draw["layer"] == max(draw["val"], key=draw["val"].get)
        # honest: with 2 labels per class the layer is chosen on 2 val images per class (4 classes), not all 32
        assert draws[0]["val_images"] == (32 if budget == "all" else 8)
        assert sum(metrics["test"][budget]["layers"].values()) == len(draws)
    assert metrics["layer"] == metrics["draws"]["all"][0]["layer"]
    assert metrics["test"]["all"]["linear"]["std"] == 0  # one deterministic run with every label
    assert metrics["test"]["all"]["linear"]["mean"] > 0.9  # the 4 synthetic classes differ in brightness
    embedding = pd.read_csv(workdir / "m/probe/embedding.csv")
    assert list(embedding.columns) == ["pc1", "pc2", "label", "class"] and len(embedding) == 40  # the test split
    assert set(embedding["class"]) == {"w", "x", "y", "z"}


def test_the_default_probe_ladder_runs_on_classes_smaller_than_its_budgets(workdir):
    """Your own folder of a few dozen images per class, with the probes' default budgets (10, 100, 1000, all): a
    budget beyond a class's 32 training images uses it whole and says so, instead of stopping the pipeline after
    its pre-training."""
    defaults = yaml.safe_load((REPO / "params.yaml").read_text())["probe"]
    set_param(workdir, "probe", "labels_per_class", defaults["labels_per_class"])
    set_param(workdir, "probe", "budget", defaults["budget"])
    pretrain.main(["none", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    probe.main(["none", "--backbone", "pre/backbone.pt", "--data", "prepared", "--metrics", "m/probe"])
    headline = json.loads((workdir / "m/probe/metrics.json").read_text())
    assert set(headline["test"]) == {"10", "100", "1000", "all"}
    every = {name: 32 for name in ["w", "x", "y", "z"]}
    assert headline["short_classes"] == {"100": every, "1000": every}
    assert headline["test"]["100"] == headline["test"]["1000"]  # each the whole training split, as `all`


def test_probe_chooses_in_every_draw_the_layer_whose_linear_probe_scores_best_on_val():
    """Hand-made features of distinct val scores (the stage's synthetic data ties every layer at 1.0): a constant
    layer (val accuracy about 1/4), one that tells only classes {0, 1} from {2, 3} (about 1/2), and one that tells
    every class (1); that one is chosen in every draw, though neither first nor last in the layers' order."""
    from selfsup.params import ProbeParams
    from selfsup.probe import probe_backbone

    gen = torch.Generator().manual_seed(0)
    labels = {split: torch.arange(n) % 4 for split, n in (("train", 40), ("val", 24), ("test", 20))}

    def layers(y):
        return {"none": torch.zeros(len(y), 3),
                "signal": F.one_hot(y, 4).float() * 3 + 0.1 * torch.randn(len(y), 4, generator=gen),
                "half": (y // 2).float().view(-1, 1).repeat(1, 2) + 0.1 * torch.randn(len(y), 2, generator=gen)}

    feats = {split: layers(y) for split, y in labels.items()}
    cfg = ProbeParams(k=3, labels_per_class=(3, "all"), seeds=2, steps=50)
    result = probe_backbone(feats, labels, cfg, 4, log=lambda _: None)
    for budget, draws in result["draws"].items():
        assert len(draws) == (1 if budget == "all" else 2)
        for draw in draws:
            assert draw["val"]["signal"] == 1.0 > max(draw["val"]["none"], draw["val"]["half"]), draw["val"]
            assert draw["layer"] == "signal", draw
            assert draw["linear"] == 1.0
        assert result["test"][budget]["layers"] == {"signal": len(draws)}
    assert result["layer"] == "signal"


def test_probe_refuses_the_backbone_of_another_pretext(workdir):
    pretrain.main(["none", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    with pytest.raises(SelfSupError, match=r"holds pretext 'none' .* asks for pretext 'rotation'"):
        probe.main(["rotation", "--backbone", "pre/backbone.pt", "--data", "prepared", "--metrics", "m/probe"])
    assert not (workdir / "m/probe").exists()


def finetune_rotation(workdir, protocol: str, transfer: str) -> tuple[dict, dict]:
    """Pre-train rotation, fine-tune from it with `protocol` and `transfer`: (backbone state, classifier state)."""
    pretrain.main(["rotation", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    set_param(workdir, "finetune", "protocol", protocol)
    set_param(workdir, "finetune", "transfer", transfer)
    (workdir / "params.yaml").write_text((workdir / "params.yaml").read_text().replace("pretext: none", "pretext: rotation"))
    finetune.main(["--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "m/ft"])
    return (load_checkpoint(workdir / "pre/backbone.pt")["state_dict"],
            load_checkpoint(workdir / "ft/model.pt")["state_dict"])


@pytest.mark.parametrize("protocol, trained", [("head", set()), ("fc", {"fc3", "fc4"}),
                                               ("full", {"conv", "fc3", "fc4"})])
def test_protocols_train_exactly_their_layers(workdir, protocol, trained):
    before, after = finetune_rotation(workdir, protocol, "all")
    changed = {key.split(".")[0] for key, value in before.items()
               if key.endswith("weight") and not torch.equal(after[f"backbone.{key}"], value)}
    assert changed == trained


def test_transfer_conv_starts_fc3_and_fc4_afresh_in_the_stage(workdir):
    # protocol head: the backbone frozen, so what it holds after fine-tuning is what it was given
    before, after = finetune_rotation(workdir, "head", "conv")
    kept = {key.split(".")[0] for key, value in before.items()
            if key.endswith("weight") and torch.equal(after[f"backbone.{key}"], value)}
    assert kept == {"conv"}


def dvclive_values(folder):
    """Every file dvclive wrote under `folder` (its .tsv files hold step and value, no timestamps), by path."""
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_interrupted_pretraining_resumes_to_the_same_backbone_and_curves(workdir, monkeypatch, capsys):
    set_param(workdir, "pretrain", "autoencoder", {"epochs": 3})
    run = ["autoencoder", "--data", "prepared", "--checkpoint"]
    pretrain.main([*run, "state_a.pt", "--out", "a", "--metrics", "m/a"])
    assert not (workdir / "state_a.pt").exists()  # removed once the backbone is written

    calls = []
    real = selfsup.pretrain.evaluate_objective

    def killed_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(selfsup.pretrain, "evaluate_objective", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        pretrain.main([*run, "state_b.pt", "--out", "b", "--metrics", "m/b"])
    assert not (workdir / "b").exists() and (workdir / "state_b.pt").is_file()
    monkeypatch.setattr(selfsup.pretrain, "evaluate_objective", real)
    capsys.readouterr()
    pretrain.main([*run, "state_b.pt", "--out", "b", "--metrics", "m/b"])  # what `dvc repro` does next
    log = capsys.readouterr().out
    assert "resuming after epoch 2/3 from state_b.pt" in log and "epoch 1/3" not in log

    assert (workdir / "a/backbone.pt").read_bytes() == (workdir / "b/backbone.pt").read_bytes()
    curves = dvclive_values(workdir / "m/a")
    assert curves == dvclive_values(workdir / "m/b")
    assert curves[Path("curves.csv")].count(b",val,") == 3  # 3 epochs, logged once each
    assert Path("plots/images/reconstructions/epoch_03.png") in curves


def interrupt_in_epoch(monkeypatch, epoch: int):
    """Make the next pre-training stop (like a killed process) while validating `epoch`; returns the undo."""
    real, calls = selfsup.pretrain.evaluate_objective, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(selfsup.pretrain, "evaluate_objective", killed)
    return lambda: monkeypatch.setattr(selfsup.pretrain, "evaluate_objective", real)


@pytest.mark.parametrize("change", ["params", "data", "deterministic"])
def test_a_state_saved_under_other_params_or_data_is_not_resumed(workdir, monkeypatch, capsys, change):
    set_param(workdir, "pretrain", "autoencoder", {"epochs": 3})
    run = ["autoencoder", "--data", "prepared", "--checkpoint", "state.pt", "--metrics", "m"]
    undo = interrupt_in_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        pretrain.main([*run, "--out", "b"])
    undo()
    assert (workdir / "state.pt").is_file()
    if change in ("params", "deterministic"):  # deterministic: no other number on a CPU, other kernels on a GPU
        params = yaml.safe_load((workdir / "params.yaml").read_text())
        if change == "params":
            params["pretrain"]["common"]["lr"] = 0.02
        else:
            params["compute"]["deterministic"] = not params["compute"]["deterministic"]
        (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    else:  # a pixel of a training image changed: another preprocess output
        train = torch.load(workdir / "prepared/train.pt", weights_only=True)
        train["images"][0, 0, 0, 0] += 1
        torch.save(train, workdir / "prepared/train.pt")
    capsys.readouterr()
    pretrain.main([*run, "--out", "b"])
    log = capsys.readouterr().out
    assert "saved under other params, data or code; starting afresh" in log and "epoch 1/3" in log
    pretrain.main(["autoencoder", "--data", "prepared", "--out", "fresh", "--metrics", "m2"])  # no state at all
    assert (workdir / "b/backbone.pt").read_bytes() == (workdir / "fresh/backbone.pt").read_bytes()


@pytest.mark.parametrize("name", [n for n in names() if get_pretext(n).trains])
def test_a_pretext_sees_image_indices_never_labels(workdir, monkeypatch, name):
    """What reaches the batch maker in training: positions in the training split, every one once per epoch
    (but the ragged end), never the labels the prepared split holds."""
    seen = []
    spec = get_pretext(name)

    def recording(cfg):
        make = spec.make_batch(cfg)

        def record(x, ids, gen):
            seen.append(ids.cpu())
            return make(x, ids, gen)

        return record

    original = selfsup.pretrain.pretext_objective
    monkeypatch.setattr(selfsup.pretrain, "pretext_objective",
                        lambda spec_, *args: original(dataclasses.replace(spec_, make_batch=recording), *args))
    pretrain.main([name, "--data", "prepared", "--out", "pre", "--metrics", "m"])
    train = torch.load(workdir / "prepared/train.pt", weights_only=True)
    n = len(train["labels"])
    source = spec.source_batch_size(selfsup.params.load_params().pretrain.section(name, spec.params), 16)
    epoch = torch.cat(seen[: n // source])  # the training batches of epoch 1 (validation batches follow)
    assert len(epoch.unique()) == len(epoch) == (n // source) * source
    assert epoch.min() >= 0 and epoch.max() < n
    assert not torch.equal(epoch, train["labels"][epoch])  # indices, not the 4 classes


@pytest.mark.parametrize("floor, steps", [(20, 20), (8, 8), (0, 8)])
def test_pretraining_makes_min_steps_at_least_and_the_backbone_records_a_floor_that_lengthened_it(
        workdir, monkeypatch, floor, steps):
    """The workdir's 128 training images at 16 a step make 8 steps in the one epoch: a floor of 20 lengthens it to
    20 steps and the backbone records it; a floor the epoch reaches changes nothing, and the backbone records the
    common params as it did before the floor existed."""
    set_param(workdir, "pretrain", "common", {**yaml.safe_load((workdir / "params.yaml").read_text())["pretrain"]["common"],
                                              "min_steps": floor})
    results = []
    fit = selfsup.pretrain.fit
    monkeypatch.setattr(selfsup.pretrain, "fit", lambda *args: results.append(fit(*args)))
    pretrain.main(["rotation", "--data", "prepared", "--out", "pre", "--metrics", "m"])
    assert [r.steps for r in results] == [steps]
    common = load_checkpoint(workdir / "pre/backbone.pt")["config"]["pretrain"]["common"]
    before = ["seed", "batch_size", "lr", "momentum", "weight_decay", "val_images"]
    assert list(common) == (before + ["min_steps"] if steps > 8 else before)
    assert common.get("min_steps", floor) == floor


def test_the_default_pretraining_floor_lengthens_no_pretext_on_fashion_mnist():
    """params.yaml's floor binds below Fashion-MNIST's 54,000 training images only: there every pretext's epochs
    make more steps, so the committed results, pre-trained before the floor existed, are what the pipeline makes."""
    params = selfsup.params.load_params(REPO / "params.yaml")
    common = params.pretrain.common
    assert common.min_steps > 0
    for name in params.pretexts:
        spec = get_pretext(name)
        cfg = params.pretrain.section(name, spec.params)
        assert "min_steps" not in selfsup.pretrain.recorded_common(spec, cfg, common, 54_000), name
        if spec.trains:
            assert selfsup.pretrain.recorded_common(spec, cfg, common, 5_400)["min_steps"] == common.min_steps, name


def test_same_params_and_seed_give_identical_metrics(workdir):
    """Determinism on CPU: the whole chain twice, compared exactly."""
    (workdir / "params.yaml").write_text((workdir / "params.yaml").read_text().replace("pretext: none", "pretext: exemplar"))
    for run in ("a", "b"):
        pretrain.main(["exemplar", "--data", "prepared", "--out", f"{run}/pre", "--metrics", f"{run}/m/pre"])
        finetune.main(["--backbone", f"{run}/pre/backbone.pt", "--data", "prepared", "--out", f"{run}/ft",
                       "--metrics", f"{run}/m/ft"])
        evaluate.main(["--model", f"{run}/ft/model.pt", "--data", "prepared", "--metrics", f"{run}/m/ev"])
    for path in ("pre/backbone.pt", "ft/model.pt", "m/ev/metrics.json", "m/ev/confusion.csv", "m/ft/metrics.json"):
        assert (workdir / "a" / path).read_bytes() == (workdir / "b" / path).read_bytes(), path
    assert dvclive_values(workdir / "a/m") == dvclive_values(workdir / "b/m")


@pytest.mark.parametrize("keep", ["last", "best"])
def test_finetune_sees_no_more_val_labels_than_its_budget(workdir, keep, monkeypatch):
    """The honest protocol: with 3 labels per class, the curves (and keep: best) read 3 val images per class."""
    pretrain.main(["none", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    set_param(workdir, "finetune", "labels_per_class", 3)
    set_param(workdir, "finetune", "keep", keep)
    set_param(workdir, "finetune", "epochs", 4)
    seen = []
    real = selfsup.finetune.validation
    monkeypatch.setattr(selfsup.finetune, "validation", lambda val, *a, **k: seen.append(val) or real(val, *a, **k))
    finetune.main(["--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "m/ft"])
    (val,) = seen
    assert torch.bincount(val.labels).tolist() == [3, 3, 3, 3]
    assert set(val.source_index.tolist()) <= set(load_prepared("prepared", splits=("val",)).splits["val"].source_index.tolist())
    summary = json.loads((workdir / "m/ft/metrics.json").read_text())
    assert summary["val_images"] == 12 and summary["labelled_images"] == 12
    assert summary["compute"].startswith("cpu ")  # the device it ran on, in the metrics: a fall-back shows in a diff
    curves = pd.read_csv(workdir / "m/ft/curves.csv")
    val_accuracy = curves[curves.split == "val"].set_index("epoch").accuracy
    if keep == "last":
        assert summary["kept_epoch"] == 4
    else:
        assert val_accuracy[summary["kept_epoch"]] == val_accuracy.max()
    assert load_checkpoint(workdir / "ft/model.pt")["best_epoch"] == summary["kept_epoch"]


@pytest.mark.parametrize("keep, kept", [("best", 2), ("last", 4)])
def test_keep_best_keeps_the_epoch_of_the_best_val_accuracy_and_keep_last_the_last(workdir, keep, kept, monkeypatch):
    """Scripted val accuracies that peak at epoch 2 of 4 (on the synthetic data they tie at every epoch): keep: best
    keeps epoch 2 and its weights, keep: last epoch 4."""
    pretrain.main(["none", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    set_param(workdir, "finetune", "keep", keep)
    set_param(workdir, "finetune", "epochs", 4)
    scripted, weights = [0.3, 0.8, 0.5, 0.6], []

    def validation(val, *args, **kwargs):
        def validate(model):
            weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            return {"val/loss": 1.0, "val/accuracy": scripted[len(weights) - 1]}
        return validate

    monkeypatch.setattr(selfsup.finetune, "validation", validation)
    finetune.main(["--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "m/ft"])
    assert len(weights) == 4
    summary = json.loads((workdir / "m/ft/metrics.json").read_text())
    curves = pd.read_csv(workdir / "m/ft/curves.csv")
    assert curves[curves.split == "val"].sort_values("epoch").accuracy.tolist() == pytest.approx(scripted)
    assert summary["kept_epoch"] == kept and summary["val"]["accuracy"] == 0.6  # the curves' last point
    assert summary.get("kept_val_accuracy") == (0.8 if keep == "best" else None)  # what the kept epoch scored
    saved = load_checkpoint(workdir / "ft/model.pt")
    assert saved["best_epoch"] == kept
    assert saved["state_dict"].keys() == weights[kept - 1].keys()
    assert all(torch.equal(v, weights[kept - 1][k]) for k, v in saved["state_dict"].items())  # that epoch's weights
    other = 4 if kept == 2 else 2
    assert not all(torch.equal(v, weights[other - 1][k]) for k, v in saved["state_dict"].items())


def test_the_filter_picture_is_a_square_large_enough_to_compare():
    from selfsup.models import CifarNet
    from selfsup.pretrain import filter_grid

    picture = filter_grid(CifarNet(1, 28))
    # 64 filters of 5×5, 8 to a row with 1 px between, 8× enlarged
    assert picture.size == (8 * (8 * 6 + 1), 8 * (8 * 6 + 1)) == (392, 392)


@pytest.mark.parametrize("shape, nrow, padding, pad_value", [((64, 1, 5, 5), 8, 1, 1.0), ((64, 3, 5, 5), 8, 1, 1.0),
                                                             ((16, 1, 8, 8), 8, 2, 0.0), ((5, 3, 4, 6), 3, 2, 0.5)])
def test_the_pictures_are_torchvisions_grid_byte_for_byte(shape, nrow, padding, pad_value):
    """The filter and reconstruction pictures are drawn without torchvision, pixel for pixel as its make_grid and
    to_pil_image draw them (so the committed pictures did not change)."""
    from torchvision.transforms.functional import to_pil_image
    from torchvision.utils import make_grid

    from selfsup.pretrain import grid_image

    images = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    images[0, :, 0, 0] = 1.0  # the ends of the range
    images[1, :, 0, 0] = 0.0
    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    expected = to_pil_image(grid.repeat_interleave(3, 1).repeat_interleave(3, 2))
    ours = grid_image(images, nrow=nrow, padding=padding, zoom=3, pad_value=pad_value)
    assert ours.mode == expected.mode == "RGB" and ours.size == expected.size
    assert ours.tobytes() == expected.tobytes()


def test_select_checks_the_pretext_without_importing_torch(workdir):
    """`select` (the first stage of every `dvc exp run -S pretext=...`) reads params.yaml and writes its choice; it
    starts without torch, whose import would be most of its time."""
    (workdir / "params.yaml").write_text((workdir / "params.yaml").read_text().replace("pretext: none", "pretext: rotation"))
    loaded = modules_loaded("from selfsup.cli import run_stage; from stages.select import main; "
                            "run_stage(main, ['--out', 'selected.json'])", cwd=workdir)
    assert not {m for m in loaded if m.split(".")[0] == "torch"}
    assert json.loads((workdir / "selected.json").read_text()) == {"pretext": "rotation"}


@pytest.mark.parametrize("module", sorted(f"stages.{p.stem}" for p in (REPO / "stages").glob("*.py")
                                          if p.stem != "__init__") + ["selfsup.predict", "selfsup.review"])
def test_every_command_takes_an_abbreviated_option_for_an_unknown_one(module, capsys):
    """`--hel` is no `--help`, nor `--cs` a `--csv`: a typo is an error, never a guess at another option."""
    import importlib

    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--hel"])
    assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err


def test_a_stage_parser_requires_each_flag_it_is_given_and_shows_its_help(capsys):
    """Every stage builds its arguments with stage_parser: each keyword a required `--flag`,
    missing ones named."""
    from selfsup.arguments import stage_parser

    parser = stage_parser("A stage.", pretext=True, data="preprocess output folder", out="folder for model.pt")
    args = parser.parse_args(["rotation", "--out", "models", "--data", "prepared"])
    assert (args.pretext, args.data, args.out) == ("rotation", "prepared", "models")
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["rotation", "--data", "prepared"])
    assert exit_.value.code == 2 and "the following arguments are required: --out" in capsys.readouterr().err
    parser.print_help()
    shown = capsys.readouterr().out
    assert "A stage." in shown and "folder for model.pt" in shown and "preprocess output folder" in shown
