"""Rotation prediction (Gidaris, Singh & Komodakis, "Unsupervised representation learning by predicting
image rotations", ICLR 2018): each image is shown in all four rotations (0, 90, 180, 270 degrees), as in
the paper, or in `views` < 4 of them drawn at random (more distinct images per step, for the same compute),
and a 4-way head on the backbone's features predicts which one was applied. A light random flip and
translation come first, so the rotation cannot be read off the border."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
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
    views: int = field(default=1, metadata=check(lambda v: 1 <= v <= 4, "1 to 4 rotations per image"))


def random_rotate90(x: torch.Tensor, views: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image in `views` (< 4) distinct rotations drawn at random, and the rotation index of each;
    view-major like rotate90 (the first view of every image, then the second...)."""
    ks = torch.rand(len(x), 4, generator=generator, device=x.device).argsort(1)[:, :views].T.reshape(-1)
    source = x.repeat(views, 1, 1, 1)
    # all four rotations of every input, then each input's own: no boolean mask, so nothing waits for the device
    every = torch.stack([torch.rot90(source, k, dims=(-2, -1)) for k in range(4)])
    return every[ks, torch.arange(len(source), device=x.device)], ks


def make_batch(cfg: RotationParams):
    """Images → (`views` of their rotations, the rotation index of each): `views` network inputs per image."""

    def make(x, ids, gen):
        x = flip_translate(x, cfg.flip, cfg.translate, gen)
        return rotate90(x) if cfg.views == 4 else random_rotate90(x, cfg.views, gen)

    return make


SPEC = PretextSpec(
    params=RotationParams,
    make_head=lambda cfg, channels, size: nn.Linear(FEATURE_DIM, 4),
    make_batch=make_batch,
    loss=F.cross_entropy,
    accuracy=top1_accuracy,
    views=lambda cfg: cfg.views,
)
