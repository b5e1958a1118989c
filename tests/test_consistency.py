"""Consistency training: the strong view, the thresholds (fixed and per class), the batches (labels of the labelled
images only, the model's confident guesses for the rest), the loss, the pool (never val or test) and a fine-tuning
that learns from unlabelled images where a plain one cannot."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.consistency import IGNORED, Thresholds, consistency_batches, consistency_loss, labelled_part, strong_view
from selfsup.data import Split
from selfsup.evaluate import top1_accuracy
from selfsup.finetune import Start, finetune_backbone, unlabelled_pool
from selfsup.models import build_backbone
from selfsup.params import AugmentParams, ConsistencyParams, FinetuneParams, ModelParams, ParamsError, StrongParams, parse_params
from selfsup.runtime import Runtime, predict
from selfsup.train import Objective, Plan, _Trainer
from tests.test_distill import bars

RUNTIME = Runtime.plain({"mean": [0.5], "std": [0.25]})


def test_the_strong_view_changes_every_image_keeps_the_range_and_repeats_with_the_seed():
    x = torch.rand(16, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    a = strong_view(x, StrongParams(), torch.Generator().manual_seed(0))
    b = strong_view(x, StrongParams(), torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert all(not torch.equal(a[i], x[i]) for i in range(16))
    off = StrongParams(rotate=0, scale_min=1, scale_max=1, translate=0, brightness=0, contrast=0, cutout=0)
    mirrored = strong_view(x, off, torch.Generator().manual_seed(0))  # only the flip is left
    assert all(torch.allclose(m, v, atol=1e-6) or torch.allclose(m, v.flip(-1), atol=1e-6) for m, v in zip(mirrored, x))


def test_a_fixed_threshold_keeps_the_guesses_at_least_that_confident():
    thresholds = Thresholds(ConsistencyParams(threshold=0.8), 4, 3, torch.device("cpu"))
    keep = thresholds(torch.tensor([0.9, 0.8, 0.5]), torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))
    assert keep.tolist() == [True, True, False] and thresholds.state == {}


def test_per_class_thresholds_are_low_for_a_class_rarely_guessed_confidently_and_remembered():
    thresholds = Thresholds(ConsistencyParams(threshold=0.8, thresholds="per_class"), 6, 3, torch.device("cpu"))
    # nothing guessed yet: every class's learning effect is 0, so its threshold is 0 (FlexMatch's warm-up)
    assert thresholds.class_thresholds().tolist() == [0.0, 0.0, 0.0]
    keep = thresholds(torch.tensor([0.9, 0.95, 0.85, 0.6]), torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 2, 3]))
    assert keep.all()
    assert thresholds.state["guess"].tolist() == [0, 0, 1, -1, -1, -1]  # 0.6 is under 0.8: not remembered
    # β: class 0 guessed twice, class 1 once, class 2 never, over max(2, 3 not guessed yet) = 3
    beta = torch.tensor([2 / 3, 1 / 3, 0.0])
    assert torch.allclose(thresholds.class_thresholds(), 0.8 * beta / (2 - beta))
    # thresholds now: class 0 0.8 · (2/3) / (4/3) = 0.4, class 1 0.8 · (1/3) / (5/3) = 0.16, class 2 0
    keep = thresholds(torch.tensor([0.39, 0.17, 0.01]), torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]))
    assert keep.tolist() == [False, True, True]


class Fixed(nn.Module):
    """A model whose logits are the same for every image."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def weak(x, y, gen):
    return x, y


def test_a_batch_holds_the_labelled_images_labels_and_the_models_confident_guesses_for_the_strong_views():
    pool = torch.randint(0, 255, (50, 1, 8, 8), dtype=torch.uint8)
    labelled, labels = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 1])
    cfg = ConsistencyParams(ratio=3, threshold=0.9)
    confident = consistency_batches(Fixed([0.0, 0.0, 9.0]), weak, pool, cfg,
                                    Thresholds(cfg, 50, 3, torch.device("cpu")), RUNTIME)
    inputs, targets = confident(labelled, labels, torch.Generator().manual_seed(0))
    assert inputs.shape == (16, 1, 8, 8) and torch.equal(inputs[:4], labelled)
    assert targets.tolist() == [0, 1, 2, 1] + [2] * 12
    unsure = consistency_batches(Fixed([1.0, 1.0, 1.0]), weak, pool, cfg,
                                 Thresholds(cfg, 50, 3, torch.device("cpu")), RUNTIME)
    _, targets = unsure(labelled, labels, torch.Generator().manual_seed(0))
    assert targets.tolist() == [0, 1, 2, 1] + [IGNORED] * 12


def test_the_loss_is_the_labelled_loss_plus_the_weighted_mean_over_every_unlabelled_image():
    cfg = ConsistencyParams(ratio=2, weight=0.5)
    outputs = torch.randn(6, 3)
    targets = torch.tensor([0, 2, 1, IGNORED, 2, IGNORED])
    expected = (F.cross_entropy(outputs[:2], targets[:2])
                + 0.5 * (F.cross_entropy(outputs[2:3], targets[2:3]) + F.cross_entropy(outputs[4:5], targets[4:5])) / 4)
    assert torch.allclose(consistency_loss(F.cross_entropy, cfg)(outputs, targets), expected)
    nothing = torch.tensor([0, 2, IGNORED, IGNORED, IGNORED, IGNORED])
    assert torch.allclose(consistency_loss(F.cross_entropy, cfg)(outputs, nothing), F.cross_entropy(outputs[:2], nothing[:2]))
    accuracy = labelled_part(top1_accuracy, cfg.ratio)(torch.eye(3)[[0, 1, 0, 0, 0, 0]], targets)
    assert accuracy.item() == 0.5  # the labelled pair only: 0 right, 2 wrong


def test_the_pool_is_the_training_images_outside_the_budget_and_the_extra_ones():
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 2, 2).contiguous()
    train = Split(images, torch.tensor([0, 1, 0, 1, 0, 1]), "train", torch.arange(6))
    pool = unlabelled_pool(train, torch.tensor([1, 4]), None)
    assert pool[:, 0, 0, 0].tolist() == [0, 2, 3, 5]
    extra = torch.full((2, 1, 2, 2), 9, dtype=torch.uint8)
    assert unlabelled_pool(train, torch.tensor([1, 4]), extra)[:, 0, 0, 0].tolist() == [0, 2, 3, 5, 9, 9]


def test_the_per_class_state_is_saved_and_restored_with_a_resumed_run():
    cfg = ConsistencyParams(thresholds="per_class")
    thresholds = Thresholds(cfg, 5, 2, torch.device("cpu"))
    model = Fixed([0.0, 1.0])
    objective = consistency_batches(model, weak, torch.zeros(5, 1, 2, 2, dtype=torch.uint8), cfg, thresholds, RUNTIME)
    spec = Objective(model, objective, consistency_loss(F.cross_entropy, cfg), state=thresholds.state)
    trainer = _Trainer(spec, 4, Plan(FinetuneParams(batch_size=2), 1), RUNTIME, "test")
    thresholds.state["guess"][:] = torch.tensor([1, 0, -1, 1, 0])
    saved = trainer.state("key")
    thresholds.state["guess"].fill_(-1)
    trainer.restore(saved)
    assert thresholds.state["guess"].tolist() == [1, 0, -1, 1, 0]


def test_consistency_params_are_checked():
    with pytest.raises(ParamsError, match="scale_min .* is above scale_max"):
        parse_params({"finetune": {"consistency": {"strong": {"scale_min": 1.5}}}})
    with pytest.raises(ParamsError, match="finetune.unlabelled"):
        parse_params({"finetune": {"unlabelled": "fixmatch"}})


def finetuned(unlabelled: str, seed: int, thresholds: str = "fixed"):
    """At 3 labelled bars per class, 1,200 training images in all: the model's test accuracy and the counts."""
    gen = torch.Generator().manual_seed(seed)
    images, labels = bars(1200, gen)
    test_images, test_labels = bars(400, gen)
    model_cfg = ModelParams(norm="batch", dropout=0.5)
    torch.manual_seed(0)
    start = Start(build_backbone(model_cfg, 1, 8).state_dict(), model_cfg, {"channels": 1, "image_size": 8}, 2)
    train = Split(images, labels, "train", torch.arange(1200))
    val = Split(test_images[:20], test_labels[:20], "test", torch.arange(20))
    # views for 8-pixel images: shifts of a pixel (weak), of up to a third of the image and a 3-pixel cut-out (strong)
    strong = StrongParams(rotate=0, translate=0.3, cutout=3)
    cfg = FinetuneParams(labels_per_class=3, epochs=1, min_steps=150, batch_size=6, seed=seed, unlabelled=unlabelled,
                         augment=AugmentParams(flip=False, translate=1),
                         consistency=ConsistencyParams(threshold=0.9, thresholds=thresholds, ratio=4, strong=strong))
    model, _, counts, _ = finetune_backbone(start, train, val, cfg, False, RUNTIME)
    return top1_accuracy(predict(model, test_images, RUNTIME, 1000), test_labels).item(), counts


@pytest.mark.parametrize("seed", [0, 3])
def test_consistency_training_learns_from_unlabelled_images_where_plain_fine_tuning_cannot(seed):
    """3 labelled bars per class do not show every place a bar may be (plain fine-tuning: 87% and 87% on these
    seeds); the confident guesses on unlabelled bars near them, as targets of their strong views, spread to the
    rest (99% and more)."""
    torch.set_num_threads(1)
    plain, plain_counts = finetuned("none", seed)
    consistent, counts = finetuned("consistency", seed)
    assert plain_counts == (6, 0) and counts == (6, 1194)
    assert consistent > plain + 0.05, (plain, consistent)
    flex, _ = finetuned("consistency", seed, "per_class")
    assert flex > plain + 0.05, (plain, flex)


def test_consistency_with_every_image_labelled_is_plain_fine_tuning(capsys):
    gen = torch.Generator().manual_seed(0)
    images, labels = bars(40, gen)
    model_cfg = ModelParams(norm="batch", dropout=0.5)
    start = Start(build_backbone(model_cfg, 1, 8).state_dict(), model_cfg, {"channels": 1, "image_size": 8}, 2)
    train = Split(images, labels, "train", torch.arange(40))
    cfg = FinetuneParams(epochs=1, min_steps=0, batch_size=8)
    plain, *_ = finetune_backbone(start, train, train, cfg, False, RUNTIME)
    model, _, counts, _ = finetune_backbone(start, train, train, dataclasses.replace(cfg, unlabelled="consistency"),
                                            False, RUNTIME)
    assert counts == (40, 0) and "consistency training has nothing to add" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), model.state_dict().values()))


def test_the_stage_trains_on_the_training_images_outside_the_budget_and_the_folders_unlabelled_ones(workdir):
    """The finetune stage with `unlabelled: consistency`: the pool is the training split outside the budget plus the
    prepared unlabelled images (an image folder's unlabelled/); its size is in the stage's metrics."""
    import json

    from selfsup.data import load_prepared, save_prepared
    from stages import finetune as finetune_stage, pretrain
    from tests.conftest import set_param

    prepared = load_prepared("prepared")
    splits = {name: prepared.splits[name] for name in ("train", "val", "test")}
    extra = torch.randint(0, 255, (12, 1, 8, 8), dtype=torch.uint8)
    save_prepared("prepared", splits, prepared.classes, "synthetic", unlabelled=extra)
    pretrain.main(["none", "--data", "prepared", "--out", "pre", "--metrics", "m/pre"])
    set_param(workdir, "finetune", "labels_per_class", 3)
    set_param(workdir, "finetune", "unlabelled", "consistency")
    set_param(workdir, "finetune", "min_steps", 4)
    finetune_stage.main(["--backbone", "pre/backbone.pt", "--data", "prepared", "--out", "ft", "--metrics", "m/ft"])
    summary = json.loads((workdir / "m/ft/metrics.json").read_text())
    assert summary["labelled_images"] == 12
    assert summary["unlabelled_images"] == len(splits["train"]) - 12 + 12
