"""Proofs by corruption of the two claims the numbers rest on: fine-tuning and distillation read no label outside
the labelled subset, and the test set only reports. Each corrupts what must not matter in the prepared data, runs
the stages again, and compares their outputs byte for byte; a read anywhere (not only where a spy would look)
changes them."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import selfsup.finetune
from selfsup.data import labelled_subset, load_prepared, val_subset
from selfsup.params import load_params
from stages import distill, finetune, pretrain, probe
from tests.conftest import set_param


def rewrite_split(prepared: Path, name: str, **changes) -> None:
    """Replace fields (labels, images) of one prepared split in place."""
    data = torch.load(prepared / f"{name}.pt", weights_only=True)
    torch.save({**data, **changes}, prepared / f"{name}.pt")


def run_stages(run: str, *, with_probe: bool = False) -> None:
    """pretrain@rotation, (probe@rotation), finetune and distill, their outputs under `run`/."""
    pretrain.main(["rotation", "--data", "prepared", "--out", f"{run}/pre", "--metrics", f"{run}/m/pre"])
    if with_probe:
        probe.main(["rotation", "--backbone", f"{run}/pre/backbone.pt", "--data", "prepared", "--metrics", f"{run}/m/probe"])
    finetune.main(["--backbone", f"{run}/pre/backbone.pt", "--data", "prepared", "--out", f"{run}/ft",
                   "--metrics", f"{run}/m/ft"])
    distill.main(["--teacher", f"{run}/ft/model.pt", "--backbone", f"{run}/pre/backbone.pt", "--data", "prepared",
                  "--out", f"{run}/dist", "--metrics", f"{run}/m/dist"])


@pytest.fixture
def budgeted(workdir):
    """The workdir with rotation's backbone fine-tuned on 3 labels per class, the kept epoch chosen on val (at
    most 3 per class), and a student distilled on every training image."""
    text = (workdir / "params.yaml").read_text().replace("pretext: none", "pretext: rotation")
    (workdir / "params.yaml").write_text(text)
    set_param(workdir, "finetune", "labels_per_class", 3)
    set_param(workdir, "finetune", "keep", "best")
    set_param(workdir, "finetune", "epochs", 3)
    set_param(workdir, "distill", "when", "auto")  # a student below every label (off by default)
    set_param(workdir, "distill", "epochs", 1)
    set_param(workdir, "distill", "threshold", 0.0)  # soft targets: every unlabelled image gets one
    return workdir


def same_outputs(workdir, a: str, b: str, paths) -> None:
    for path in paths:
        assert (workdir / a / path).read_bytes() == (workdir / b / path).read_bytes(), path


@pytest.mark.parametrize("unlabelled", ["none", "consistency"])
def test_labels_outside_the_labelled_subset_change_nothing(budgeted, monkeypatch, unlabelled):
    """Every training and val label that the budget's draw did not pick is replaced by another class, drawn at random: the fine-tuned
    and the distilled models, their curves and metrics are byte-identical; with consistency training too, whose
    fine-tuning trains on the images of those labels.

    The draw itself (k images of every class, seeded) is the protocol's stand-in for "the images a user labelled":
    like every stratified k-per-class benchmark it looks at the classes of all images to pick them. It is pinned to
    what it picked on the true labels; everything after it must read the picked labels alone."""
    workdir = budgeted
    set_param(workdir, "finetune", "unlabelled", unlabelled)
    run_stages("true")
    prepared = load_prepared("prepared", splits=("train", "val"))
    train, val = prepared.splits["train"], prepared.splits["val"]
    cfg = load_params().finetune
    chosen = labelled_subset(train.labels, cfg.labels_per_class, cfg.seed)
    val_chosen = val_subset(val.labels, cfg.labels_per_class, cfg.seed)
    assert len(chosen) == 12 and len(val_chosen) == 12

    gen = torch.Generator().manual_seed(123)
    for name, split, keep in (("train", train, chosen), ("val", val, val_chosen)):
        labels = (split.labels + torch.randint(1, 4, (len(split),), generator=gen)) % 4  # every one another class
        labels[keep] = split.labels[keep]
        assert (labels != split.labels).sum() == len(split) - len(keep)
        rewrite_split(workdir / "prepared", name, labels=labels)
    monkeypatch.setattr(selfsup.finetune, "labelled_subset", lambda labels, per_class, seed, **kw: chosen)
    monkeypatch.setattr(selfsup.finetune, "val_subset", lambda labels, per_class, seed: val_chosen)
    run_stages("corrupted")
    same_outputs(workdir, "true", "corrupted", ["ft/model.pt", "dist/model.pt", "m/ft/curves.csv", "m/ft/metrics.json",
                                                "m/dist/curves.csv", "m/dist/metrics.json"])
    pool = json.loads((workdir / "corrupted/m/ft/metrics.json").read_text()).get("unlabelled_images")
    assert pool == (len(train) - len(chosen) if unlabelled == "consistency" else None)  # the corrupted images trained


def choices(detail: dict) -> dict:
    """Per budget and draw, what the probe chose and the val accuracies it chose on (its test numbers left out)."""
    return {b: [{k: v for k, v in draw.items() if k not in ("linear", "knn")} for draw in draws]
            for b, draws in detail["draws"].items()}


def test_the_test_split_only_reports(budgeted):
    """The test split's images and labels scrambled after preprocess: the backbone, the probe's layer choices and
    val accuracies, the fine-tuned and distilled models, the kept epoch and every val number are identical; only
    the test numbers move."""
    workdir = budgeted
    set_param(workdir, "probe", "labels_per_class", [3, "all"])
    run_stages("true", with_probe=True)
    test = torch.load(workdir / "prepared/test.pt", weights_only=True)
    gen = torch.Generator().manual_seed(7)
    rewrite_split(workdir / "prepared", "test", images=torch.randint(0, 256, test["images"].shape, generator=gen,
                                                                     dtype=torch.uint8),
                  labels=torch.randint(0, 4, test["labels"].shape, generator=gen))
    run_stages("scrambled", with_probe=True)
    same_outputs(workdir, "true", "scrambled", ["pre/backbone.pt", "m/pre/curves.csv", "ft/model.pt", "dist/model.pt",
                                                "m/ft/curves.csv", "m/ft/metrics.json", "m/dist/curves.csv",
                                                "m/dist/metrics.json"])
    details = [json.loads((workdir / run / "m/probe/detail.json").read_text()) for run in ("true", "scrambled")]
    assert [choices(d) for d in details[1:]] == [choices(details[0])] and details[0]["layer"] == details[1]["layer"]
    assert details[0]["test"] != details[1]["test"]  # the test numbers did move: the scramble reached the probe
    kept = [pd.read_csv(workdir / run / "m/ft/curves.csv") for run in ("true", "scrambled")]
    assert kept[0].equals(kept[1])
