"""Distillation: the targets (only the labelled subset's labels read), the stage's switch, determinism, and a
student that beats its teacher where unlabelled images help."""

import dataclasses
import json

import pandas as pd
import pytest
import torch
import yaml

import selfsup.distill
from selfsup import SelfSupError
from selfsup.data import Split, load_prepared
from selfsup.distill import Labelled, new_student, most_confident, targets
from selfsup.evaluate import top1_accuracy
from selfsup.finetune import Start, budget, finetune, initial_classifier
from selfsup.models import build_backbone, load_checkpoint, load_classifier
from selfsup.params import DistillParams, FinetuneParams, ModelParams, load_params
from selfsup.runtime import Compute, Runtime, predict
from stages import distill, evaluate, finetune as finetune_stage, pretrain
from tests.conftest import set_param

FINETUNE = ["--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "m/ft"]
DISTILL = ["--teacher", "ft/model.pt", "--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "dist",
           "--metrics", "m/dist"]


def test_unlabelled_rows_are_the_teachers_and_labelled_rows_their_labels():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    rows = targets(logits, torch.tensor([1]), torch.tensor([2]),
                   DistillParams(temperature=2.0, threshold=0.0, label_weight=0.75))
    soft = (logits / 2).softmax(1)
    assert torch.allclose(rows[[0, 2, 3]], soft[[0, 2, 3]])
    assert torch.allclose(rows[1], 0.75 * torch.tensor([0.0, 0.0, 1.0]) + 0.25 * soft[1])
    assert torch.allclose(rows.sum(1), torch.ones(4))


def test_a_threshold_keeps_the_teachers_confident_guesses_only():
    logits = torch.tensor([[4.0, 0.0], [0.2, 0.0], [0.0, 5.0]])
    rows = targets(logits, torch.tensor([1]), torch.tensor([1]), DistillParams(threshold=0.9))
    assert rows.tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    rows = targets(logits, torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long),
                   DistillParams(threshold=0.9))
    assert rows[1].sum() == 0  # not confident, not labelled: no target, no loss


def run_until_distill(workdir, per_class):
    pretrain.main(["none", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    set_param(workdir, "finetune", "labels_per_class", per_class)
    set_param(workdir, "distill", "epochs", 2)
    set_param(workdir, "distill", "when", "auto")  # a student below every label (off by default)
    finetune_stage.main(FINETUNE)


def test_only_the_labelled_subsets_labels_reach_the_loss(workdir, monkeypatch):
    run_until_distill(workdir, 3)
    set_param(workdir, "distill", "threshold", 0.0)  # soft targets: every unlabelled image's is the teacher's
    set_param(workdir, "distill", "rounds", 1)
    seen = {}
    real_targets, real_loss = selfsup.distill.targets, selfsup.distill.soft_cross_entropy

    def spy_targets(logits, labelled, labels, cfg):
        seen.update(logits=logits, labelled=labelled, labels=labels)
        seen["rows"] = real_targets(logits, labelled, labels, cfg)
        return seen["rows"]

    def spy_loss(temperature):
        loss = real_loss(temperature)
        return lambda outputs, rows: seen.setdefault("batches", []).append(rows.cpu()) or loss(outputs, rows)

    monkeypatch.setattr(selfsup.distill, "targets", spy_targets)
    monkeypatch.setattr(selfsup.distill, "soft_cross_entropy", spy_loss)
    distill.main(DISTILL)
    params = load_params()
    prepared = load_prepared("prepared", splits=("train", "val"))
    train = prepared.splits["train"]
    chosen, _ = budget(train, prepared.splits["val"], params.finetune)
    assert torch.equal(seen["labelled"], chosen) and len(chosen) == 12
    assert torch.equal(seen["labels"], train.labels[chosen])  # the labels the function is given: these alone
    rows = seen["rows"]
    others = torch.ones(len(train), dtype=torch.bool)
    others[chosen] = False
    # an unlabelled image's target is the teacher's output and nothing else; a labelled one's is its label
    assert torch.allclose(rows[others], seen["logits"][others].softmax(1))
    assert torch.equal(rows[chosen], torch.nn.functional.one_hot(train.labels[chosen], 4).float())
    # every row that reached the loss is one of those targets (training batches; validation has its own loss)
    for batch in seen["batches"]:
        assert all((rows == row).all(1).any() for row in batch)
    summary = json.loads((workdir / "m/dist/metrics.json").read_text())
    assert summary["distilled"] and summary["labelled_images"] == 12 and summary["val_images"] == 12


def test_distillation_is_seeded(workdir):
    run_until_distill(workdir, 3)
    distill.main(DISTILL)
    first = (workdir / "dist/model.pt").read_bytes()
    distill.main(DISTILL)
    assert (workdir / "dist/model.pt").read_bytes() == first
    assert load_checkpoint(workdir / "dist/model.pt")["config"]["distill"]["epochs"] == 2


@pytest.mark.parametrize("per_class, when, distilled", [(3, "auto", True), ("all", "auto", False),
                                                        (3, "never", False), ("all", "always", True)])
def test_the_switch_delivers_the_student_or_the_teacher(workdir, monkeypatch, per_class, when, distilled):
    run_until_distill(workdir, per_class)
    set_param(workdir, "distill", "when", when)
    distill.main(DISTILL)
    same = (workdir / "dist/model.pt").read_bytes() == (workdir / "ft/model.pt").read_bytes()
    assert same != distilled
    assert json.loads((workdir / "m/dist/metrics.json").read_text())["distilled"] == distilled
    curves = (workdir / "m/dist/curves.csv").read_text().splitlines()  # dvc.yaml's plot, either way
    assert len(curves) == (1 + 2 * 2 if distilled else 1)  # header, then train and val rows of 2 epochs
    calls = []
    monkeypatch.setattr(evaluate, "predict", lambda *args, **kwargs: calls.append(1) or predict(*args, **kwargs))
    evaluate.main(["--model", "dist/model.pt", "--finetuned", "ft/model.pt", "--data", "prepared", "--metrics", "m/ev"])
    metrics = json.loads((workdir / "m/ev/metrics.json").read_text())
    assert metrics["distilled"] == distilled and set(metrics["finetuned"]) == {"accuracy", "balanced_accuracy", "macro_f1"}
    assert len(calls) == (2 if distilled else 1)  # the teacher, when it is what was delivered, is predicted once
    # per class, both models: the delivered one's recall and F1, and the fine-tuned one's beside them
    per_class = pd.read_csv(workdir / "m/ev/per_class.csv")
    assert list(per_class.columns) == ["class", "accuracy", "f1", "support", "finetuned_accuracy", "finetuned_f1"]
    for prefix, model in (("", "test"), ("finetuned_", "finetuned")):  # the support-weighted recall: its accuracy
        weighted = (per_class[f"{prefix}accuracy"] * per_class.support).sum() / per_class.support.sum()
        assert weighted == pytest.approx(metrics[model]["accuracy"], abs=1e-5)
        present = per_class[per_class.support > 0]
        assert present[f"{prefix}f1"].mean() == pytest.approx(metrics[model]["macro_f1"], abs=1e-5)
    if not distilled:
        assert metrics["finetuned"] == {k: metrics["test"][k] for k in metrics["finetuned"]}
        assert per_class.finetuned_accuracy.equals(per_class.accuracy)


def test_a_teacher_of_other_finetune_params_is_refused(workdir):
    run_until_distill(workdir, 3)
    set_param(workdir, "finetune", "labels_per_class", 4)
    with pytest.raises(SelfSupError, match="fine-tuned with other finetune params"):
        distill.main(DISTILL)
    assert not (workdir / "dist").exists() and not (workdir / "m/dist").exists()


def test_a_teacher_of_another_pretext_is_refused(workdir):
    run_until_distill(workdir, 3)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    (workdir / "params.yaml").write_text(yaml.safe_dump({**params, "pretext": "rotation"}))
    with pytest.raises(SelfSupError, match=r"ft/model.pt was fine-tuned on the none backbone but params.yaml's "
                                           r"pretext is rotation; rerun `dvc repro distill`"):
        distill.main(DISTILL)
    assert not (workdir / "dist").exists() and not (workdir / "m/dist").exists()


def bars(n: int, gen: torch.Generator, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 8×8 images of a horizontal (class 0) or vertical (class 1) bright bar at a random place."""
    labels = torch.arange(n) % 2
    where = torch.randint(0, size, (n,), generator=gen)
    images = torch.rand(n, 1, size, size, generator=gen) * 120
    rows, cols = torch.arange(size).view(1, -1, 1), torch.arange(size).view(1, 1, -1)
    bar = torch.where(labels.view(-1, 1, 1) == 0, rows == where.view(-1, 1, 1), cols == where.view(-1, 1, 1))
    return (images + 135 * bar.unsqueeze(1)).to(torch.uint8), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_student_beats_its_teacher_where_unlabelled_images_help(seed):
    """3 labelled bars per class teach a teacher where bars of some places belong; distilled on 1,200 unlabelled
    bars, shifted by the student's augmentation, the student sees every place and corrects the teacher."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(seed)
    images, labels = bars(1200, gen)
    test_images, test_labels = bars(400, gen)
    runtime = Runtime.plain({"mean": [0.3], "std": [0.2]})
    model_cfg = ModelParams(norm="batch", dropout=0.5)
    torch.manual_seed(0)
    start = Start(build_backbone(model_cfg, 1, 8).state_dict(), model_cfg, {"channels": 1, "image_size": 8}, 2)
    labelled = torch.arange(6)
    val = Split(test_images[:20], test_labels[:20], "test", torch.arange(20))
    teacher = initial_classifier(start, seed, "all")
    finetune(teacher, Split(images[labelled], labels[labelled], "train", labelled), val,
             FinetuneParams(labels_per_class=3, epochs=30, min_steps=0, batch_size=6, seed=seed), False, runtime)
    cfg = DistillParams(epochs=3, rounds=1, threshold=0.0, batch_size=64, seed=seed)
    student = new_student(teacher, start, cfg, "all")
    selfsup.distill.distill(teacher, student, images, Labelled(labelled, labels[labelled]), val, cfg, runtime)

    def accuracy(model):
        return top1_accuracy(predict(model, test_images, runtime, 1000), test_labels).item()

    assert accuracy(student) > accuracy(teacher) + 0.01


def test_each_round_is_taught_by_the_student_of_the_last(workdir, monkeypatch):
    run_until_distill(workdir, 3)
    set_param(workdir, "distill", "rounds", 2)
    teachers = []
    real = selfsup.distill.targets
    monkeypatch.setattr(selfsup.distill, "targets", lambda logits, *a: teachers.append(logits) or real(logits, *a))
    students, real_fit = [], selfsup.distill.fit

    def fit(*args, **kwargs):  # each round's student, as the round left it
        result = real_fit(*args, **kwargs)
        students.append({k: v.clone() for k, v in result.best_state.items()})
        return result

    monkeypatch.setattr(selfsup.distill, "fit", fit)
    distill.main(DISTILL)
    first, second = teachers
    teacher = load_classifier(load_checkpoint(workdir / "ft/model.pt"))
    train = load_prepared("prepared", splits=("train",)).splits["train"]
    meta = json.loads((workdir / "prepared/meta.json").read_text())
    runtime = Runtime(Compute.resolve(load_params().compute), Runtime.plain(meta).norm)
    assert torch.allclose(first, predict(teacher, train.images, runtime, 1000))
    student = load_classifier(load_checkpoint(workdir / "ft/model.pt"))  # init: teacher, so the teacher's shape
    student.load_state_dict(students[0])
    taught = predict(student, train.images, runtime, 1000)
    torch.testing.assert_close(second, taught, atol=1e-5, rtol=0)  # the first round's student (within rounding)
    assert (first - second).abs().max() > 1e-3  # which the fine-tuned teacher is not


class BrightnessTeacher(torch.nn.Module):
    """Class c for an image whose (normalised) pixels sit nearest `levels[c]`: a teacher whose answer for an
    image can be read off the image itself."""

    def __init__(self, levels: torch.Tensor):
        super().__init__()
        self.register_buffer("levels", levels)

    def forward(self, x):
        return -1e3 * (x.mean((1, 2, 3)).unsqueeze(1) - self.levels).abs()


def test_each_target_row_is_its_own_images(monkeypatch):
    """Row i of the targets belongs to image i, in every shuffled training batch: each image of 4 brightness
    levels (class = level) meets the target the teacher gave that very image."""
    runtime = Runtime.plain({"mean": [0.0], "std": [1.0]})
    levels = torch.tensor([20, 90, 160, 230], dtype=torch.uint8)
    classes = torch.randint(0, 4, (96,), generator=torch.Generator().manual_seed(0))
    images = levels[classes].view(-1, 1, 1, 1).expand(-1, 1, 8, 8).contiguous()
    teacher = BrightnessTeacher(levels.float() / 255)
    student = initial_classifier(Start(build_backbone(ModelParams(norm="none", dropout=0.0), 1, 8).state_dict(),
                                       ModelParams(norm="none", dropout=0.0), {"channels": 1, "image_size": 8}, 4), 0, "all")
    met = []
    real_objective = selfsup.distill.objective

    def spy_objective(model, rows, cfg):
        spec = real_objective(model, rows, cfg)
        make = spec.make_batch

        def make_batch(x, positions, gen):
            views, batch_rows = make(x, positions, gen)
            # x: the batch's clean images in [0, 1]; each image's own class is its brightness level
            own = (x.mean((1, 2, 3)).unsqueeze(1) - levels.float() / 255).abs().argmin(1)
            met.append(torch.equal(batch_rows.argmax(1), own) and torch.equal(x, images[positions].float() / 255))
            return views, batch_rows

        return dataclasses.replace(spec, make_batch=make_batch)

    monkeypatch.setattr(selfsup.distill, "objective", spy_objective)
    val = Split(images[:8], classes[:8], "train", torch.arange(8))
    cfg = DistillParams(epochs=2, rounds=1, threshold=0.0, batch_size=16, augment=DistillParams().augment)
    nothing = torch.tensor([], dtype=torch.long)
    _, rows = selfsup.distill.distill(teacher, student, images, Labelled(nothing, nothing), val, cfg, runtime)
    assert torch.equal(rows.argmax(1), classes)  # row i: image i's class, for all 96
    assert len(met) == 2 * 96 // 16 and all(met)


@pytest.mark.parametrize("init", ["teacher", "backbone"])
def test_a_student_keeps_its_teachers_head_layer_and_leaves_the_unused_fc_layers_alone(init):
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    images, labels = bars(64, gen)
    runtime = Runtime.plain({"mean": [0.3], "std": [0.2]})
    model_cfg = ModelParams(norm="batch", dropout=0.5)
    torch.manual_seed(0)
    start = Start(build_backbone(model_cfg, 1, 8).state_dict(), model_cfg, {"channels": 1, "image_size": 8}, 2)
    teacher = initial_classifier(start, 0, "conv", "conv1")
    with torch.no_grad():  # a teacher unlike a fresh classifier, as a trained one is: the two inits then differ
        for p in teacher.parameters():
            p.add_(1)
    before = {k: v.clone() for k, v in teacher.backbone.fc3.state_dict().items()}
    val = Split(images[:8], labels[:8], "train", torch.arange(8))
    cfg = DistillParams(init=init, epochs=1, rounds=1, batch_size=16)
    student = new_student(teacher, start, cfg, "conv")
    fresh = initial_classifier(start, 0, "conv", "conv1")  # what init: backbone starts from
    expected, other = (teacher, fresh) if init == "teacher" else (fresh, teacher)
    assert student is not teacher and student.state_dict().keys() == expected.state_dict().keys()
    for key, value in student.state_dict().items():  # the whole student, before it trains
        assert torch.equal(value, expected.state_dict()[key]), key
    assert not torch.equal(student.backbone.fc3.weight, other.backbone.fc3.weight)
    selfsup.distill.distill(teacher, student, images, Labelled(torch.arange(4), labels[:4]), val, cfg, runtime)
    assert student.layer == "conv1"
    start = before if init == "teacher" else fresh.backbone.fc3.state_dict()
    assert all(torch.equal(v, start[k]) for k, v in student.backbone.fc3.state_dict().items())
    assert not torch.equal(student.backbone.fc3.weight, other.backbone.fc3.weight)


def test_per_class_keeps_each_classs_most_confident_guesses_whatever_the_threshold():
    # class 0 is guessed confidently three times, class 1 only unsurely twice: a threshold of 0.9 would starve
    # class 1; two per class keep the two surest guesses of class 0 and both of class 1
    logits = torch.tensor([[5.0, 0.0], [4.0, 0.0], [3.0, 0.0], [0.0, 0.5], [0.0, 0.3]])
    none = torch.tensor([], dtype=torch.long)
    assert targets(logits, none, none, DistillParams(threshold=0.9)).sum(0).tolist() == [3.0, 0.0]
    rows = targets(logits, none, none, DistillParams(threshold=0.9, per_class=2))
    assert rows.tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    # a labelled image keeps its true label whether or not it is among the chosen
    rows = targets(logits, torch.tensor([2]), torch.tensor([1]), DistillParams(per_class=1))
    assert rows.tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0]]


def test_most_confident_breaks_ties_by_position():
    confidence = torch.tensor([0.5, 0.9, 0.5, 0.5])
    guess = torch.tensor([0, 0, 0, 0])
    assert most_confident(confidence, guess, 2).tolist() == [True, True, False, False]
