"""Exemplar CNN (Dosovitskiy, Springenberg, Riedmiller & Brox, "Discriminative unsupervised feature
learning with convolutional neural networks", NIPS 2014): every source image is its own surrogate class,
and `views` randomly transformed copies of it (rotation, scale, translation, crop by zoom, flip,
brightness and contrast) are that class's samples. The class is the image's index in the training set,
so it never changes between batches or epochs.

We use the within-batch, non-parametric form: a view must pick out the other views of its own image
among all views in the batch (a multi-positive softmax over cosine similarities, as in SupCon, Khosla et
al. 2020), instead of the paper's N-way parametric softmax. The parametric head needs one output per
surrogate image and sees each class only a few times in the epochs a CPU affords; the non-parametric
form compares every view with every other at each step, learns within one epoch, and costs the same for
1,000 or 54,000 surrogate images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from selfsup import distributed
from selfsup.augment import jitter_intensity, random_affine
from selfsup.models import FEATURE_DIM
from selfsup.params import check, check_order, non_negative, positive
from selfsup.pretexts import PretextSpec


@dataclass(frozen=True)
class ExemplarParams:
    epochs: int = field(default=3, metadata=check(positive, "a positive integer"))
    views: int = field(default=3, metadata=check(lambda v: v >= 2, "2 or more views per image"))
    temperature: float = field(default=0.2, metadata=check(positive, "a positive number, e.g. 0.2"))
    projection_dim: int = field(default=128, metadata=check(positive, "a positive integer"))
    rotate: float = field(default=20.0, metadata=check(non_negative, "0 or more degrees"))
    scale_min: float = field(default=0.7, metadata=check(positive, "a positive number"))
    scale_max: float = field(default=1.3, metadata=check(positive, "a positive number"))
    translate: float = field(default=0.15, metadata=check(lambda t: 0 <= t < 1, "a fraction of the size in [0, 1)"))
    flip: bool = True
    brightness: float = field(default=0.3, metadata=check(non_negative, "0 or more"))
    contrast: float = field(default=0.4, metadata=check(lambda c: 0 <= c < 1, "a number in [0, 1)"))

    def __post_init__(self):
        check_order(self, "scale_min", "scale_max", "pretrain.exemplar")


def make_batch(cfg: ExemplarParams):
    """Images and their indices → (`views` transformed copies of each image, in image order, and each
    copy's surrogate class: its image's index)."""

    def make(x, ids, gen):
        views = x.repeat_interleave(cfg.views, dim=0)
        views = random_affine(views, gen, rotate=cfg.rotate, scale=(cfg.scale_min, cfg.scale_max),
                              translate=cfg.translate, flip=cfg.flip)
        views = jitter_intensity(views, gen, cfg.brightness, cfg.contrast)
        return views, ids.repeat_interleave(cfg.views)

    return make


class Projection(nn.Module):
    """Exemplar head: a small MLP onto the unit sphere, where views are compared by cosine similarity.

    Scaled by 1/√temperature, so the dot product of two outputs is their cosine similarity / temperature.
    """

    def __init__(self, dim: int, temperature: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FEATURE_DIM, FEATURE_DIM), nn.ReLU(inplace=True), nn.Linear(FEATURE_DIM, dim))
        self.temperature = temperature

    def forward(self, features):
        return F.normalize(self.mlp(features), dim=1) / self.temperature**0.5


def _similarity(z: torch.Tensor, keys: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled cosine similarities of the views `z` to `keys` (rows of z sit at offset.. in keys), each view's
    similarity to itself masked out; and that mask."""
    rows = torch.arange(len(z), device=z.device)
    itself = torch.zeros(len(z), len(keys), dtype=torch.bool, device=z.device)
    itself[rows, offset + rows] = True
    return (z @ keys.T).masked_fill(itself, float("-inf")), itself


def _all_views(z: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The views of the whole batch and where this process's start: under DDP training, every rank's views
    (gathered so that gradients flow back to their rank); otherwise this process's own."""
    if distributed.world_size() == 1 or not z.requires_grad:
        return z, ids, 0
    from torch.distributed.nn.functional import all_gather

    all_ids = [torch.empty_like(ids) for _ in range(distributed.world_size())]
    torch.distributed.all_gather(all_ids, ids)
    return torch.cat(all_gather(z)), torch.cat(all_ids), distributed.rank() * len(z)


def multi_positive_loss(z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean over views of −log(softmax mass on the other views of the same image).

    Under DDP the other ranks' views of the step count too, so N processes optimise the loss of the whole
    batch, as one process does (each rank's shard must then be the same size: fit sees to it)."""
    keys, key_ids, offset = _all_views(z, ids)
    sim, itself = _similarity(z, keys, offset)
    log_prob = sim.log_softmax(1)
    positive = (ids[:, None] == key_ids[None, :]) & ~itself
    return -(log_prob.masked_fill(~positive, 0).sum(1) / positive.sum(1).clamp(min=1)).mean()


def view_retrieval_accuracy(z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Fraction of views whose most similar other view (of this process's batch) comes from the same image."""
    return (ids[_similarity(z, z)[0].argmax(1)] == ids).float().mean()


SPEC = PretextSpec(
    params=ExemplarParams,
    make_head=lambda cfg, channels, size: Projection(cfg.projection_dim, cfg.temperature),
    make_batch=make_batch,
    loss=multi_positive_loss,
    accuracy=view_retrieval_accuracy,
    views=lambda cfg: cfg.views,
)
