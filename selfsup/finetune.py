"""Fine-tuning a classifier from a pretrained backbone: which layers train (the protocol), at which
learning rate, with which augmentation and loss, and which epoch is kept.

The honest protocol: the classifier sees only the budget's labelled training images; its val images (the
curves, and the kept epoch with `keep: best`) are at most as many per class as the budget
(`data.val_subset`), drawn from the val split. With `keep: last` nothing is chosen with labels at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F

from selfsup.augment import cutout, flip_translate
from selfsup.consistency import Thresholds, consistency_batches, consistency_loss, labelled_part
from selfsup.data import Split, labelled_subset, val_subset
from selfsup.evaluate import top1_accuracy
from selfsup.models import HEAD_LAYERS, Classifier, build_classifier, load_backbone_into
from selfsup.params import FinetuneParams, ModelParams
from selfsup.probe import LinearProbe, accuracy
from selfsup.progress import Progress
from selfsup.runtime import Runtime, predict
from selfsup.train import FitResult, Objective, Plan, fit

# The modules each protocol keeps frozen. head: only the new logits layer trains; fc: also fc3 and fc4;
# full and lp-ft: every layer (lp-ft first fits the head on the frozen features: `fit_head`).
FROZEN = {
    "head": lambda model: [model.backbone],
    "fc": lambda model: [model.backbone.conv],
    "full": lambda model: [],
    "lp-ft": lambda model: [],
}


# The layers that start from the pretext's weights, per finetune.transfer (the others are drawn afresh)
TRANSFERRED = {
    "all": lambda model: model.backbone,
    "conv": lambda model: model.backbone.conv,
}


def objective(model: Classifier, cfg: FinetuneParams, pretrained: bool, unlabelled: Unlabelled | None = None
              ) -> Objective:
    """Cross-entropy (label-smoothed by cfg.label_smoothing) on flipped, shifted (and cut-out) labelled
    images. Layers a pretext trained (`pretrained`) learn at pretrained_lr × lr: the whole backbone, or with
    `transfer: conv` its convolutions alone (fc3 and fc4 start afresh, `initial_classifier`); a random (`none`)
    backbone, fresh layers and the new head train at lr. With `unlabelled` images (cfg.unlabelled: consistency), every step also trains
    on strong views of them against the model's confident guesses (selfsup.consistency)."""
    aug = cfg.augment

    def make_batch(x, y, gen):
        return cutout(flip_translate(x, aug.flip, aug.translate, gen), aug.cutout, gen), y

    scales = [(TRANSFERRED[cfg.transfer](model), cfg.pretrained_lr)] if pretrained else []
    loss = partial(F.cross_entropy, label_smoothing=cfg.label_smoothing) if cfg.label_smoothing else F.cross_entropy
    frozen = FROZEN[cfg.protocol](model) + model.unused()
    if unlabelled is None:
        return Objective(model, make_batch, loss, frozen, accuracy=top1_accuracy, lr_scales=scales)
    cc = cfg.consistency
    thresholds = Thresholds(cc, len(unlabelled.images), model.logits.out_features, unlabelled.runtime.device)
    return Objective(model, consistency_batches(model, make_batch, unlabelled.images, cc, thresholds,
                                                unlabelled.runtime),
                     consistency_loss(loss, cc), frozen, accuracy=labelled_part(top1_accuracy, cc.ratio),
                     lr_scales=scales, state=thresholds.state)


@dataclass(frozen=True)
class Unlabelled:
    """Consistency training's pool: uint8 images without their labels, on the runtime's device."""

    images: torch.Tensor
    runtime: Runtime


def unlabelled_pool(train: Split, chosen: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
    """The images consistency training may use without their labels: the training images outside the budget's
    `chosen` positions, and `extra` (a folder's unlabelled/ images); never val or test."""
    outside = torch.ones(len(train), dtype=torch.bool)
    outside[chosen] = False
    images = train.images[outside]
    return images if extra is None else torch.cat([images, extra])


HEAD_STEPS = 100  # L-BFGS iterations of a head fitted on frozen features
SELECT_PER_CLASS = 1000  # at most this many labelled images per class choose the head's layer (as the probe stage)


def head_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: FinetuneParams) -> LinearProbe:
    """A linear probe (L2-regularised logistic regression by L-BFGS, weight decay cfg.weight_decay) of frozen
    features, on the features as they are: dividing by the spread of a feature that is (nearly) constant on a few
    labelled images would give it a huge weight, and fine-tuning from it would diverge."""
    return LinearProbe(num_classes, cfg.weight_decay, HEAD_STEPS, standardise=False).fit(features, labels)


def fit_head(model: Classifier, images: torch.Tensor, labels: torch.Tensor, cfg: FinetuneParams,
             runtime: Runtime) -> None:
    """LP-FT's first step (Kumar et al. 2022): the logits layer set to a linear probe (`head_probe`) of the frozen
    backbone's features (at the head's layer) of the labelled images, so that full fine-tuning starts from a head
    that fits the features instead of a random one that distorts them."""
    features = predict(model, images, runtime, 1000, method="features")
    probe = head_probe(features, labels, model.logits.out_features, cfg)
    with torch.no_grad():
        model.logits.weight.copy_(probe.linear.weight)
        model.logits.bias.copy_(probe.linear.bias)


def probe_layers(backbone, images: torch.Tensor, labels: torch.Tensor, val: Split, num_classes: int,
                 cfg: FinetuneParams, runtime: Runtime) -> dict[str, float]:
    """Per layer a head can sit on (HEAD_LAYERS), the val accuracy of a `head_probe` of the frozen `backbone`'s
    features of the labelled images (at most SELECT_PER_CLASS of each class, seeded: as the probe stage chooses its
    layer, for speed with many labels): what `head: probe` chooses by, on at most the budget's val images per class."""
    kept = labelled_subset(labels, SELECT_PER_CLASS, cfg.seed, at_most=True)
    images, labels = images[kept], labels[kept]
    train, held = (predict(backbone, x, runtime, 1000, method="layer_features") for x in (images, val.images))
    return {layer: accuracy(head_probe(train[layer], labels, num_classes, cfg).predict(held[layer]), val.labels)
            for layer in HEAD_LAYERS}


def validation(val: Split, runtime: Runtime, batch_size: int = 1000):
    """model → its val loss and accuracy (the curves; with keep: best, what selects the kept epoch)."""

    def validate(model) -> dict[str, float]:
        logits = predict(model, val.images, runtime, batch_size)
        return {"val/loss": F.cross_entropy(logits, val.labels).item(),
                "val/accuracy": top1_accuracy(logits, val.labels).item()}

    return validate


def finetune(model: Classifier, labelled: Split, val: Split, cfg: FinetuneParams, pretrained: bool,
             runtime: Runtime, live=None, unlabelled: torch.Tensor | None = None) -> FitResult:
    """Train `model` on the `labelled` images for cfg.epochs (of at least cfg.min_steps steps in all: a few
    labelled images are passed over many times) and load the kept epoch into it: the last, or
    (keep: best) the one with the best accuracy on `val`; with cfg.ema, of the moving average of the weights.
    With `unlabelled` uint8 images, consistency training uses them too (`objective`)."""
    images, labels = labelled.images, labelled.labels
    model.to(runtime.device)
    if cfg.protocol == "lp-ft":
        fit_head(model, images, labels.cpu(), cfg, runtime)
    plan = Plan(cfg, cfg.epochs, cfg.min_steps, "val/accuracy" if cfg.keep == "best" else None, cfg.ema)
    pool = None if unlabelled is None else Unlabelled(unlabelled.to(runtime.device), runtime)
    result = fit(objective(model, cfg, pretrained, pool), images, labels, plan, runtime, validation(val, runtime),
                 Progress("finetune", live))
    model.load_state_dict(result.best_state)
    return result


@dataclass(frozen=True)
class Start:
    """What a classifier starts from: a pretext's backbone weights, the model settings it was built with, and the
    data's meta (channels, image size) and number of classes."""

    backbone: dict
    model_cfg: ModelParams
    meta: dict
    num_classes: int


def initial_classifier(start: Start, seed: int, transfer: str, layer: str = "fc4") -> Classifier:
    """A classifier seeded by `seed` on the backbone: all of it, or (transfer: conv) only its convolutions; its
    logits on `layer`."""
    torch.manual_seed(seed)
    model = build_classifier(start.model_cfg, start.meta, start.num_classes, layer)
    load_backbone_into(model, start.backbone)
    kept = set(TRANSFERRED[transfer](model).modules())  # transfer: conv leaves the pretext's fc3 and fc4 behind
    for module in model.backbone.modules():  # in the order they were built, as their first draw was
        if module not in kept and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def budget(train: Split, val: Split, cfg: FinetuneParams) -> tuple[torch.Tensor, Split]:
    """The positions of the budget's labelled training images, and the val images that go with them: at most
    as many per class (the honest protocol). Distillation draws the same ones from the same params."""
    chosen = labelled_subset(train.labels, cfg.labels_per_class, cfg.seed, at_most=cfg.budget == "at_most")
    return chosen, val.subset(val_subset(val.labels, cfg.labels_per_class, cfg.seed))


def finetune_backbone(start: Start, train: Split, val: Split, cfg: FinetuneParams, pretrained: bool, runtime: Runtime,
                      live=None, extra: torch.Tensor | None = None) -> tuple[Classifier, FitResult, Counts, Split]:
    """The finetune stage's work: `initial_classifier`, its head on cfg.head's layer (`probe`: the layer whose
    linear probe scores best on the val images, `probe_layers`), fine-tuned on the budget's labelled training
    images with at most as many val images per class (`budget`); with cfg.unlabelled: consistency, also on the
    training images outside the budget and the `extra` unlabelled images (`unlabelled_pool`), where there are any.

    Returns the model (the kept epoch loaded), the fit's result, the numbers of labelled and unlabelled images
    trained on, and the val images."""
    chosen, val = budget(train, val, cfg)
    pool = unlabelled_pool(train, chosen, extra) if cfg.unlabelled == "consistency" else None
    if pool is not None and not len(pool):
        print("finetune: every training image is labelled and there are no unlabelled images; "
              "consistency training has nothing to add and is skipped")
        pool = None
    labelled = train.subset(chosen)
    layer = cfg.head
    if layer == "probe":
        first = initial_classifier(start, cfg.seed, cfg.transfer)
        scores = probe_layers(first.backbone.to(runtime.device), labelled.images, labelled.labels, val,
                              start.num_classes, cfg, runtime)
        layer = max(scores, key=scores.get)
        print(f"finetune: head on {layer} (linear probes on {len(val)} val images: "
              + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()) + ")")
    model = initial_classifier(start, cfg.seed, cfg.transfer, layer)
    result = finetune(model, labelled, val, cfg, pretrained, runtime, live, pool)
    return model, result, Counts(len(chosen), 0 if pool is None else len(pool)), val


class Counts(NamedTuple):
    """The images a fine-tuning trained on: with labels, and without them (consistency training's pool)."""

    labelled: int
    unlabelled: int
