"""Pre-training a backbone with a pretext: the objective its spec describes, the pretext's loss on
held-out images each epoch, and pictures of what it learned."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from selfsup.params import PretrainCommon, floor_lengthens, to_dict
from selfsup.pretexts import PretextSpec
from selfsup.progress import Progress
from selfsup.runtime import Runtime
from selfsup.train import Objective, Plan, evaluate_objective, fit

if TYPE_CHECKING:
    import PIL.Image

GRID_IMAGES = 8  # held-out images in the reconstruction grid of a pretext whose outputs are images


def grid_image(images: torch.Tensor, nrow: int, padding: int, zoom: int, pad_value: float = 0.0) -> "PIL.Image.Image":
    """Images (N ≥ 2, C, H, W; values in [0, 1]) in rows of `nrow`, `padding` pixels of `pad_value` between and
    around them, `zoom`× enlarged (nearest), as one 8-bit RGB image: what torchvision's make_grid and to_pil_image
    make (a test compares the bytes), without importing torchvision, which imports torch's compiler (about 2 s of
    every pretrain stage's start)."""
    from PIL import Image

    images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    count, channels, height, width = images.shape
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    grid = images.new_full((channels, rows * (height + padding) + padding, columns * (width + padding) + padding),
                           pad_value)
    for k, image in enumerate(images):
        row, column = divmod(k, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        grid[:, top:top + height, left:left + width] = image
    grid = grid.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2)
    return Image.fromarray((grid.permute(1, 2, 0) * 255).to(torch.uint8).numpy())


def image_grid(inputs: torch.Tensor, outputs: torch.Tensor, zoom: int = 3) -> "PIL.Image.Image":
    """Inputs (top row) above outputs (bottom row), `zoom`× enlarged (nearest: the pixels stay pixels), as one
    8-bit image for dvclive."""
    return grid_image(torch.cat([inputs, outputs]).float().clamp(0, 1).cpu(), nrow=len(inputs), padding=2, zoom=zoom)


def filter_grid(backbone: nn.Module, zoom: int = 8) -> "PIL.Image.Image":
    """The first convolution's 64 filters, each stretched to [0, 1], 8 to a row, `zoom`× enlarged (about 400 px
    square: large enough to compare two pretexts' side by side): what the pretext taught the first layer (a random
    backbone's filters are noise)."""
    weight = backbone.conv[0].weight.detach().float().cpu()
    low = weight.amin(dim=(1, 2, 3), keepdim=True)
    high = weight.amax(dim=(1, 2, 3), keepdim=True)
    return grid_image((weight - low) / (high - low).clamp(min=1e-12), nrow=8, padding=1, zoom=zoom, pad_value=1.0)


def pretext_objective(spec: PretextSpec, cfg, backbone: nn.Module, channels: int, image_size: int) -> Objective:
    """The backbone with the pretext's head on it, and the pretext's batches, loss and accuracy."""
    head = spec.make_head(cfg, channels, image_size)
    return Objective(nn.Sequential(backbone, head), spec.make_batch(cfg), spec.loss, accuracy=spec.accuracy)


def recorded_common(spec: PretextSpec, cfg, common: PretrainCommon, n: int) -> dict:
    """`common` as the backbone records it, for n pre-training images: `min_steps` only where it lengthened the
    epochs, so that the record says what ran (a floor the epochs pass changes nothing, and the backbones made
    before it existed record the same)."""
    recorded = to_dict(common)
    if not (spec.trains and floor_lengthens(n, spec.source_batch_size(cfg, common.batch_size), cfg.epochs,
                                            common.min_steps)):
        del recorded["min_steps"]
    return recorded


def pretrain(spec: PretextSpec, cfg, common: PretrainCommon, backbone: nn.Module, images: torch.Tensor,
             val_images: torch.Tensor, runtime: Runtime, progress: Progress = Progress("pretrain")) -> None:
    """Train `backbone` in place on the uint8 `images` by the pretext `spec` with its params `cfg`; log the
    pretext loss (and accuracy) on `val_images` each epoch. The batch maker is given each image's index in
    `images`, never a label. The epochs make `common.min_steps` optimizer steps at least. Pretext tasks have no
    labelled val set to select on: the last epoch is the backbone."""
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

    fit(objective, images, torch.arange(len(images)), Plan(optim, cfg.epochs, common.min_steps), runtime, validate,
        progress)
