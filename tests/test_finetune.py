import pytest
import torch

from selfsup.finetune import FROZEN, objective
from selfsup.models import CifarNet, Classifier
from selfsup.params import FinetuneParams, ModelParams
from selfsup.train import param_groups


def classifier():
    torch.manual_seed(0)
    return Classifier(CifarNet(1, 8), 3)


def ids(params) -> set[int]:
    return {id(p) for p in params}


@pytest.mark.parametrize("transfer", ["all", "conv"])
@pytest.mark.parametrize("protocol", ["full", "fc"])
def test_pretrained_lr_scales_only_the_layers_the_pretext_trained(protocol, transfer):
    from selfsup.finetune import Start, initial_classifier

    torch.manual_seed(1)
    start = Start(CifarNet(1, 8).state_dict(), ModelParams(), {"channels": 1, "image_size": 8}, 3)
    model = initial_classifier(start, 0, transfer)  # with transfer: conv, fc3 and fc4 start afresh
    cfg = FinetuneParams(protocol=protocol, transfer=transfer, lr=0.1, pretrained_lr=0.3)
    groups = {round(g["lr"], 9): ids(g["params"]) for g in param_groups(objective(model, cfg, True), 0.1)}
    backbone = model.backbone
    transferred = backbone if transfer == "all" else backbone.conv
    trained = [backbone] if protocol == "full" else [backbone.fc3, backbone.fc4]  # protocol fc freezes the convolutions
    slow = ids(transferred.parameters()) & ids(p for m in trained for p in m.parameters())
    fresh = ids(model.parameters()) - ids(backbone.conv.parameters() if protocol == "fc" else []) - slow
    assert fresh >= ids(model.logits.parameters())  # the new head: the full rate
    assert groups == ({0.1: fresh, 0.03: slow} if slow else {0.1: fresh})
    assert (transfer, protocol) != ("conv", "fc") or not slow  # nothing the pretext trained is left to train


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


def test_lp_ft_starts_from_a_head_that_is_the_linear_probe_of_the_frozen_features():
    from selfsup.finetune import fit_head
    from selfsup.probe import LinearProbe
    from selfsup.runtime import Runtime, predict

    model = classifier()
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    images = (labels.view(-1, 1, 1, 1) * 70 + torch.randint(0, 40, (60, 1, 8, 8), generator=gen)).to(torch.uint8)
    runtime = Runtime.plain({"mean": [0.3], "std": [0.3]})
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    cfg = FinetuneParams(protocol="lp-ft", weight_decay=1e-3)
    fit_head(model, images, labels, cfg, runtime)
    features = predict(model.backbone, images, runtime, 1000)
    probe = LinearProbe(3, cfg.weight_decay, 100, standardise=False).fit(features, labels)
    logits = predict(model, images, runtime, 1000)
    assert torch.equal(logits.argmax(1), probe.predict(features))  # the head is the probe of the raw features
    with torch.no_grad():
        assert torch.allclose(logits, probe.linear(features.double()).float(), atol=1e-4)  # copied in float32
    assert (logits.argmax(1) == labels).float().mean() > 0.9
    assert all(torch.equal(v, backbone_before[k]) for k, v in model.backbone.state_dict().items())  # frozen
    assert FROZEN["lp-ft"](model) == []  # then every layer trains


def test_label_smoothing_reaches_the_loss():
    model = classifier()
    outputs, targets = torch.randn(8, 3), torch.arange(8) % 3
    plain = objective(model, FinetuneParams(), True).loss(outputs, targets)
    smoothed = objective(model, FinetuneParams(label_smoothing=0.2), True).loss(outputs, targets)
    assert plain == torch.nn.functional.cross_entropy(outputs, targets)
    assert smoothed == torch.nn.functional.cross_entropy(outputs, targets, label_smoothing=0.2) != plain


def test_cutout_is_applied_when_asked():
    from selfsup.params import AugmentParams

    model = classifier()
    x, y = torch.ones(16, 1, 8, 8), torch.arange(16) % 3
    make = objective(model, FinetuneParams(augment=AugmentParams(flip=False, translate=0, cutout=4)), True).make_batch
    inputs, _ = make(x, y, torch.Generator().manual_seed(0))
    assert (inputs == 0).any() and (inputs == 0).flatten(1).sum(1).le(16).all()


@pytest.mark.parametrize("transfer", ["all", "conv"])
def test_transfer_conv_keeps_the_pretext_convolutions_and_starts_the_fc_layers_afresh(transfer):
    from selfsup.data import Split
    from selfsup.finetune import Start, finetune_backbone
    from selfsup.runtime import Runtime

    torch.manual_seed(1)
    pretext = CifarNet(1, 8)
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(24) % 3
    data = Split(torch.randint(0, 255, (24, 1, 8, 8), dtype=torch.uint8, generator=gen), labels, "train", torch.arange(24))
    cfg = FinetuneParams(transfer=transfer, epochs=1, min_steps=0, lr=1e-9, momentum=0.0, weight_decay=0.0, batch_size=8)
    start = Start(pretext.state_dict(), ModelParams(norm="batch", dropout=0.5), {"channels": 1, "image_size": 8}, 3)
    model, _, labelled, val = finetune_backbone(start, data, data, cfg, True, Runtime.plain({"mean": [0.5], "std": [0.3]}))
    assert labelled == (24, 0) and len(val) == 24
    close = {name: torch.allclose(model.backbone.state_dict()[name], value, atol=1e-6)
             for name, value in pretext.state_dict().items() if name.endswith("weight")}
    assert close["conv.0.weight"] and close["conv.4.weight"]
    assert close["fc3.weight"] == close["fc4.weight"] == (transfer == "all")


def test_a_head_on_a_convolution_is_chosen_by_its_probe_on_val_and_leaves_the_fc_layers_untrained():
    from selfsup.data import Split
    from selfsup.finetune import Start, budget, finetune_backbone, initial_classifier, probe_layers
    from selfsup.runtime import Runtime

    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(90) % 3
    images = (labels.view(-1, 1, 1, 1) * 70 + torch.randint(0, 40, (90, 1, 8, 8), generator=gen)).to(torch.uint8)
    train = Split(images[:60], labels[:60], "train", torch.arange(60))
    val = Split(images[60:], labels[60:], "train", torch.arange(60, 90))
    runtime = Runtime.plain({"mean": [0.3], "std": [0.3]})
    torch.manual_seed(1)
    backbone = Start(CifarNet(1, 8).state_dict(), ModelParams(norm="batch", dropout=0.5), {"channels": 1, "image_size": 8}, 3)
    cfg = FinetuneParams(head="probe", labels_per_class=10, epochs=2, min_steps=0, batch_size=10, transfer="conv")
    start = initial_classifier(backbone, cfg.seed, cfg.transfer)
    chosen, held = budget(train, val, cfg)
    scores = probe_layers(start.backbone, train.images[chosen], train.labels[chosen], held, 3, cfg, runtime)
    assert set(scores) == {"conv1", "conv2", "fc4"} and all(0 <= v <= 1 for v in scores.values())
    model, result, labelled, _ = finetune_backbone(backbone, train, val, cfg, True, runtime)
    assert labelled == (30, 0) and result.steps == 6
    assert model.layer == max(scores, key=scores.get)
    on_conv = initial_classifier(backbone, cfg.seed, cfg.transfer, "conv2")
    cfg = FinetuneParams(head="conv2", labels_per_class=10, epochs=2, min_steps=0, batch_size=10, transfer="conv")
    model, *_ = finetune_backbone(backbone, train, val, cfg, True, runtime)
    assert model.layer == "conv2" and model.logits.in_features == 64 * 2 * 2
    for name in ("fc3", "fc4"):  # as transfer left them: unused, out of the optimiser
        assert torch.equal(getattr(model.backbone, name).weight, getattr(on_conv.backbone, name).weight)
    assert not torch.equal(model.backbone.conv[0].weight, on_conv.backbone.conv[0].weight)  # the convolutions train


def test_head_probe_puts_the_head_on_the_layer_with_the_best_probe_score(monkeypatch):
    """Fixed, distinct probe scores (on real small data every layer ties): the best, conv2, is neither the first
    nor the last layer, nor the worst."""
    import selfsup.finetune
    from selfsup.data import Split
    from selfsup.finetune import Start, finetune_backbone
    from selfsup.runtime import Runtime

    calls = []

    def scores(backbone, images, labels, val, num_classes, cfg, runtime):
        calls.append((len(images), len(val), num_classes))
        return {"conv1": 0.2, "conv2": 0.9, "fc4": 0.5}

    monkeypatch.setattr(selfsup.finetune, "probe_layers", scores)
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    images = torch.randint(0, 255, (60, 1, 8, 8), dtype=torch.uint8, generator=gen)
    train = Split(images[:45], labels[:45], "train", torch.arange(45))
    val = Split(images[45:], labels[45:], "train", torch.arange(45, 60))
    torch.manual_seed(1)
    start = Start(CifarNet(1, 8).state_dict(), ModelParams(norm="batch", dropout=0.5), {"channels": 1, "image_size": 8}, 3)
    cfg = FinetuneParams(head="probe", labels_per_class=5, epochs=1, min_steps=0, batch_size=15, transfer="conv")
    model, *_ = finetune_backbone(start, train, val, cfg, True, Runtime.plain({"mean": [0.5], "std": [0.3]}))
    assert calls == [(15, 15, 3)]  # once, on the budget's labelled images and val images
    assert model.layer == "conv2" and model.logits.in_features == 64 * 2 * 2


def test_the_heads_layer_is_chosen_on_at_most_select_per_class_images_of_each_class(monkeypatch):
    import selfsup.finetune
    from selfsup.data import Split
    from selfsup.runtime import Runtime

    monkeypatch.setattr(selfsup.finetune, "SELECT_PER_CLASS", 4)
    seen = []
    real = selfsup.finetune.head_probe
    monkeypatch.setattr(selfsup.finetune, "head_probe", lambda f, y, *a: seen.append(y) or real(f, y, *a))
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(30) % 3
    images = torch.randint(0, 255, (30, 1, 8, 8), dtype=torch.uint8, generator=gen)
    val = Split(images[:6], labels[:6], "train", torch.arange(6))
    torch.manual_seed(0)
    selfsup.finetune.probe_layers(CifarNet(1, 8), images, labels, val, 3, FinetuneParams(), Runtime.plain(
        {"mean": [0.5], "std": [0.3]}))
    assert [torch.bincount(y).tolist() for y in seen] == [[4, 4, 4]] * 3  # one probe per layer, 4 of each class
