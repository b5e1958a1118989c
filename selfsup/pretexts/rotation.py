"""Rotation prediction (Gidaris, Singh & Komodakis, "Unsupervised representation learning by predicting
image rotations", ICLR 2018): each image is shown in all four rotations (0, 90, 180, 270 degrees) and a
4-way head on the backbone's features predicts which one was applied. A light random flip and
translation come first, so the rotation cannot be read off the border."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import nn

from selfsup.augment import flip_translate, rotate90
from selfsup.evaluate import top1_accuracy
from selfsup.models import FEATURE_DIM
from selfsup.params import check, non_negative, positive
from selfsup.pretexts import PretextSpec


@dataclass(frozen=True)
class RotationParams:
    epochs: int = field(default=4, metadata=check(positive, "a positive integer"))
    flip: bool = True
    translate: int = field(default=2, metadata=check(non_negative, "0 or more pixels"))


def make_batch(cfg: RotationParams):
    """Images → (their four rotations, the rotation index of each): 4 network inputs per image."""

    def make(x, ids, gen):
        return rotate90(flip_translate(x, cfg.flip, cfg.translate, gen))

    return make


SPEC = PretextSpec(
    params=RotationParams,
    make_head=lambda cfg, channels, size: nn.Linear(FEATURE_DIM, 4),
    make_batch=make_batch,
    loss=F.cross_entropy,
    accuracy=top1_accuracy,
    views=lambda cfg: 4,
)
