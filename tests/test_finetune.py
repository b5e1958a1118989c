import pytest
import torch

from selfsup.finetune import FROZEN, objective
from selfsup.models import CifarNet, Classifier
from selfsup.params import FinetuneParams
from selfsup.train import param_groups


def classifier():
    torch.manual_seed(0)
    return Classifier(CifarNet(1, 8), 3)


def ids(params) -> set[int]:
    return {id(p) for p in params}


@pytest.mark.parametrize("protocol", ["full", "fc"])
def test_pretrained_lr_scales_only_the_pretrained_layers(protocol):
    model = classifier()
    groups = param_groups(objective(model, FinetuneParams(protocol=protocol, lr=0.1, pretrained_lr=0.3), True), 0.1)
    assert [g["lr"] for g in groups] == pytest.approx([0.1, 0.03])
    assert ids(groups[0]["params"]) == ids(model.logits.parameters())  # the new head: the full rate
    trained = model.backbone if protocol == "full" else [model.backbone.fc3, model.backbone.fc4]
    expected = ids(model.backbone.parameters()) if protocol == "full" else ids(p for m in trained for p in m.parameters())
    assert ids(groups[1]["params"]) == expected


def test_a_random_backbone_trains_at_the_full_rate():
    model = classifier()
    groups = param_groups(objective(model, FinetuneParams(lr=0.1, pretrained_lr=0.3), pretrained=False), 0.1)
    assert len(groups) == 1 and groups[0]["lr"] == 0.1 and ids(groups[0]["params"]) == ids(model.parameters())


def test_protocols_freeze_what_they_say():
    model = classifier()
    assert FROZEN["head"](model) == [model.backbone]
    assert FROZEN["fc"](model) == [model.backbone.conv]
    assert FROZEN["full"](model) == []
    head = param_groups(objective(model, FinetuneParams(protocol="head"), True), 0.1)
    assert ids(p for g in head for p in g["params"]) == ids(model.logits.parameters())


def test_the_batches_are_augmented_and_keep_their_labels():
    model = classifier()
    make = objective(model, FinetuneParams(), True).make_batch
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 3
    inputs, targets = make(x, y, torch.Generator().manual_seed(0))
    assert targets is y and inputs.shape == x.shape and not torch.equal(inputs, x)
