"""Batched, on-device image transforms with per-sample random parameters."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flip_translate(x: torch.Tensor, flip: bool, translate: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and integer translation of up to `translate` pixels, per image.

    One `affine_grid`/`grid_sample` call for the whole batch; pixels shifted in are zero (background).
    """
    if not flip and translate == 0:
        return x
    n, _, h, w = x.shape
    theta = torch.zeros(n, 2, 3, device=x.device)
    sign = torch.ones(n, device=x.device)
    if flip:
        sign = torch.where(torch.rand(n, generator=generator, device=x.device) < 0.5, -1.0, 1.0)
    theta[:, 0, 0] = sign
    theta[:, 1, 1] = 1.0
    if translate:
        shift = torch.randint(-translate, translate + 1, (n, 2), generator=generator, device=x.device)
        theta[:, 0, 2] = shift[:, 0] * 2.0 / w  # normalised coordinates span 2 over the image
        theta[:, 1, 2] = shift[:, 1] * 2.0 / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
