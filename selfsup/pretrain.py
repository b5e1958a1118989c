"""Pre-training a backbone with a pretext: the objective its spec describes, the pretext's loss on
held-out images each epoch, and pictures of what it learned."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import nn

from selfsup.params import PretrainCommon
from selfsup.pretexts import PretextSpec
from selfsup.progress import Progress
from selfsup.runtime import Runtime
from selfsup.train import Objective, Plan, evaluate_objective, fit

if TYPE_CHECKING:
    import PIL.Image

GRID_IMAGES = 8  # held-out images in the reconstruction grid of a pretext whose outputs are images


def image_grid(inputs: torch.Tensor, outputs: torch.Tensor, zoom: int = 3) -> "PIL.Image.Image":
    """Inputs (top row) above outputs (bottom row), `zoom`× enlarged (nearest: the pixels stay pixels), as one
    8-bit image for dvclive."""
    from torchvision.transforms.functional import to_pil_image
    from torchvision.utils import make_grid

    grid = make_grid(torch.cat([inputs, outputs]).float().clamp(0, 1).cpu(), nrow=len(inputs), padding=2)
    return to_pil_image(grid.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2))


def filter_grid(backbone: nn.Module, zoom: int = 8) -> "PIL.Image.Image":
    """The first convolution's 64 filters, each stretched to [0, 1], 8 to a row, `zoom`× enlarged (about 400 px
    square: large enough to compare two pretexts' side by side): what the pretext taught the first layer (a random
    backbone's filters are noise)."""
    from torchvision.transforms.functional import to_pil_image
    from torchvision.utils import make_grid

    weight = backbone.conv[0].weight.detach().float().cpu()
    low = weight.amin(dim=(1, 2, 3), keepdim=True)
    high = weight.amax(dim=(1, 2, 3), keepdim=True)
    grid = make_grid((weight - low) / (high - low).clamp(min=1e-12), nrow=8, padding=1, pad_value=1.0)
    return to_pil_image(grid.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2))


def pretext_objective(spec: PretextSpec, cfg, backbone: nn.Module, channels: int, image_size: int) -> Objective:
    """The backbone with the pretext's head on it, and the pretext's batches, loss and accuracy."""
    head = spec.make_head(cfg, channels, image_size)
    return Objective(nn.Sequential(backbone, head), spec.make_batch(cfg), spec.loss, accuracy=spec.accuracy)


def pretrain(spec: PretextSpec, cfg, common: PretrainCommon, backbone: nn.Module, images: torch.Tensor,
             val_images: torch.Tensor, runtime: Runtime, progress: Progress = Progress("pretrain")) -> None:
    """Train `backbone` in place on the uint8 `images` by the pretext `spec` with its params `cfg`; log the
    pretext loss (and accuracy) on `val_images` each epoch. The batch maker is given each image's index in
    `images`, never a label. Pretext tasks have no labelled val set to select on: the last epoch is the
    backbone."""
    objective = pretext_objective(spec, cfg, backbone, images.shape[1], images.shape[-1])
    val_ids = torch.arange(len(val_images))
    # batch_size counts the images the network sees per step; a pretext with V views takes 1/V as many sources.
    optim = dataclasses.replace(common, batch_size=spec.source_batch_size(cfg, common.batch_size))

    def validate(model):
        metrics = evaluate_objective(objective, val_images, val_ids, runtime, optim.batch_size, common.seed)
        if spec.shows_images:
            norm = runtime.norm
            x = norm.unit(val_images[:GRID_IMAGES].to(runtime.device))
            with torch.no_grad(), runtime.autocast():
                metrics[f"reconstructions/epoch_{progress.live.step:02d}.png"] = image_grid(x, model(norm(x)))
        return metrics

    fit(objective, images, torch.arange(len(images)), Plan(optim, cfg.epochs), runtime, validate, progress)
