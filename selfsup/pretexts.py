"""The pretext registry: a name maps to how that task pre-trains a backbone without labels.

Adding a pretext is one PretextSpec entry here plus one params section `pretrain.<name>`
(a dataclass field of PretrainParams); the `pretrain@<name>` stage then exists by listing it in `pretexts`.
A pretext's make_batch receives images in [0, 1] and each image's index in the training set (never a label).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from selfsup import distributed
from selfsup import params as P
from selfsup.augment import flip_translate, jitter_intensity, random_affine, rotate90
from selfsup.models import FEATURE_DIM, Decoder
from selfsup.train import MakeBatch, top1_accuracy


@dataclass(frozen=True)
class PretextSpec:
    """One pretext task.

    params: the dataclass of its `pretrain.<name>` section.
    make_head: (pretext params, channels, image size) → the head put on the backbone's 192-d features;
        None means the task does not train (the backbone stays as initialised).
    make_batch: pretext params → MakeBatch, turning unlabelled images (and their indices) into (inputs, targets).
    loss: outputs × targets → scalar.
    accuracy: outputs × targets → fraction correct, for tasks that have one.
    shows_images: outputs are images; the pretrain stage logs a grid of inputs and outputs each epoch.
    views: pretext params → how many network inputs make_batch turns each source image into.
    """

    params: type
    make_head: Callable[[object, int, int], nn.Module] | None = None
    make_batch: Callable[[object], MakeBatch] | None = None
    loss: Callable = F.cross_entropy
    accuracy: Callable | None = top1_accuracy
    shows_images: bool = False
    views: Callable[[object], int] = lambda cfg: 1

    @property
    def trains(self) -> bool:
        return self.make_head is not None

    def source_batch_size(self, cfg, batch_size: int) -> int:
        """Source images per step so that the network sees about `batch_size` inputs, as in a plain step.

        On a CPU the cost per image grows with the batch (cache), so a pretext that fed the network
        4 or 6 times the plain batch would pay up to 1.4x per image for nothing but its size.
        """
        return max(1, batch_size // self.views(cfg))


def rotation_batch(cfg: P.RotationParams) -> MakeBatch:
    """Rotation prediction (Gidaris, Singh & Komodakis, ICLR 2018): each image in all four rotations,
    the target is which one. Light flip/translation first, so the rotation is not read off the border."""

    def make(x, ids, gen):
        return rotate90(flip_translate(x, cfg.flip, cfg.translate, gen))

    return make


def exemplar_batch(cfg: P.ExemplarParams) -> MakeBatch:
    """Exemplar CNN (Dosovitskiy et al., NIPS 2014): every source image is its own surrogate class, and
    `views` randomly transformed copies of it (rotation, scale, translation, crop by zoom, flip,
    brightness and contrast) are that class's samples. The class is the image's index in the training
    set, so it never changes between batches or epochs.

    We use the within-batch, non-parametric form: a view must pick out the other views of its own image
    among all views in the batch (a multi-positive softmax over cosine similarities, as in SupCon,
    Khosla et al. 2020), instead of the paper's N-way parametric softmax. The parametric head needs one
    output per surrogate image and sees each class only a few times in the epochs a CPU affords; the
    non-parametric form compares every view with every other at each step, learns within one epoch,
    and costs the same for 1,000 or 54,000 surrogate images.
    """

    def make(x, ids, gen):
        views = x.repeat_interleave(cfg.views, dim=0)
        views = random_affine(views, gen, rotate=cfg.rotate, scale=(cfg.scale_min, cfg.scale_max),
                              translate=cfg.translate, flip=cfg.flip)
        views = jitter_intensity(views, gen, cfg.brightness, cfg.contrast)
        return views, ids.repeat_interleave(cfg.views)

    return make


class Projection(nn.Module):
    """Exemplar head: a small MLP onto the unit sphere, where views are compared by cosine similarity."""

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


def autoencoder_batch(cfg: P.AutoencoderParams) -> MakeBatch:
    """Autoencoder: CifarNet encodes to its 192-d features, a mirrored decoder reconstructs the image.
    No augmentation: the target is the input itself."""

    def make(x, ids, gen):
        return x, x

    return make


def image_grid(inputs: torch.Tensor, outputs: torch.Tensor) -> "PIL.Image.Image":
    """Inputs (top row) above outputs (bottom row), as one 8-bit image for dvclive."""
    from torchvision.transforms.functional import to_pil_image
    from torchvision.utils import make_grid

    grid = make_grid(torch.cat([inputs, outputs]).float().clamp(0, 1).cpu(), nrow=len(inputs), padding=2)
    return to_pil_image(grid)


PRETEXTS: dict[str, PretextSpec] = {
    # No pre-training: a seeded random initialisation, so `pretext=none` is the supervised baseline.
    "none": PretextSpec(params=P.NoneParams),
    "rotation": PretextSpec(
        params=P.RotationParams,
        make_head=lambda cfg, channels, size: nn.Linear(FEATURE_DIM, 4),
        make_batch=rotation_batch,
        views=lambda cfg: 4,
    ),
    "exemplar": PretextSpec(
        params=P.ExemplarParams,
        make_head=lambda cfg, channels, size: Projection(cfg.projection_dim, cfg.temperature),
        make_batch=exemplar_batch,
        loss=multi_positive_loss,
        accuracy=view_retrieval_accuracy,
        views=lambda cfg: cfg.views,
    ),
    "autoencoder": PretextSpec(
        params=P.AutoencoderParams,
        make_head=lambda cfg, channels, size: Decoder(channels, size),
        make_batch=autoencoder_batch,
        loss=F.mse_loss,
        accuracy=None,
        shows_images=True,
    ),
}


def get_pretext(name: str) -> PretextSpec:
    """The spec registered under `name`; ValueError listing the valid names otherwise."""
    try:
        return PRETEXTS[name]
    except KeyError:
        raise ValueError(f"unknown pretext {name!r}; valid pretexts: {', '.join(PRETEXTS)}") from None
