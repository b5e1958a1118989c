"""Fine-tuning a classifier from a pretrained backbone: which layers train (the protocol), at which
learning rate, with which augmentation, and the val accuracy that picks the kept epoch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.augment import flip_translate
from selfsup.data import Split
from selfsup.evaluate import top1_accuracy
from selfsup.models import Classifier
from selfsup.params import FinetuneParams
from selfsup.runtime import Compute, Normalize, predict
from selfsup.train import FitResult, Objective, fit

# The modules each protocol keeps frozen. head: only the new logits layer trains; fc: also fc3 and fc4;
# full: every layer.
FROZEN = {
    "head": lambda model: [model.backbone],
    "fc": lambda model: [model.backbone.conv],
    "full": lambda model: [],
}


def objective(model: Classifier, cfg: FinetuneParams, pretrained: bool) -> Objective:
    """Cross-entropy on flipped and shifted labelled images. Layers a pretext trained (`pretrained`) learn
    at pretrained_lr × lr; a random (`none`) backbone and the new head train at lr."""
    aug = cfg.augment

    def make_batch(x, y, gen):
        return flip_translate(x, aug.flip, aug.translate, gen), y

    scales = [(model.backbone, cfg.pretrained_lr)] if pretrained else []
    return Objective(model, make_batch, F.cross_entropy, FROZEN[cfg.protocol](model), accuracy=top1_accuracy,
                     lr_scales=scales)


def validation(val: Split, norm: Normalize, compute: Compute, batch_size: int = 1000):
    """model → its val loss and accuracy (what selects the kept epoch)."""

    def validate(model) -> dict[str, float]:
        logits = predict(model, val.images, norm, batch_size, compute)
        return {"val/loss": F.cross_entropy(logits, val.labels).item(),
                "val/accuracy": top1_accuracy(logits, val.labels).item()}

    return validate


def finetune(model: Classifier, images: torch.Tensor, labels: torch.Tensor, val: Split, cfg: FinetuneParams,
             pretrained: bool, compute: Compute, norm: Normalize, live=None) -> FitResult:
    """Train `model` on the labelled `images` for cfg.epochs and load the epoch with the best val accuracy
    into it."""
    result = fit(objective(model, cfg, pretrained), images, labels, cfg, cfg.epochs, norm, live,
                 validate=validation(val, norm, compute), select="val/accuracy", desc="finetune", compute=compute)
    model.load_state_dict(result.best_state)
    return result
