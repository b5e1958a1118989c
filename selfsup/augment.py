"""Batched, on-device image transforms with per-sample random parameters."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _coordinates(steps: int, like: torch.Tensor) -> torch.Tensor:
    """The normalised centres of `steps` pixels along one axis, as `F.affine_grid` (align_corners=False) makes them."""
    if steps <= 1:
        return torch.zeros(steps, dtype=like.dtype, device=like.device)
    return torch.linspace(-1, 1, steps, dtype=like.dtype, device=like.device) * (steps - 1) / steps


def affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """`F.affine_grid(theta, (N, C, h, w), align_corners=False)`, rounded the same on every machine.

    torch computes the grid as a batched matrix product, which BLAS rounds by the CPU: MKL fuses a multiply and
    an add where it has AVX-512 (Intel) and not elsewhere (AMD, AVX2), so every view made from it, and what a
    pretext learned from those views, changed in its last bits from one kind of CPU to another. Here each
    coordinate is (x·θ₀ + y·θ₁) + θ₂ in the grid's dtype, one rounding after each operation, the order that
    MKL's unfused path takes (the committed backbones were pre-trained with it).
    """
    t = theta[:, None, None]  # N×1×1×2×3: the two output coordinates' rows
    x = _coordinates(w, theta).view(1, 1, w, 1)
    y = _coordinates(h, theta).view(1, h, 1, 1)
    return (x * t[..., 0] + y * t[..., 1]) + t[..., 2]


def flip_translate(x: torch.Tensor, flip: bool, translate: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and integer translation of up to `translate` pixels, per image.

    One `affine_grid`/`grid_sample` call for the whole batch; pixels shifted in are zero (background).
    (The grid's sums are exact here, so BLAS's rounding, see `affine_grid`, never mattered.)
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
    return F.grid_sample(x, affine_grid(theta, h, w), mode="nearest", padding_mode="zeros", align_corners=False)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Per image, a `size`×`size` square at a uniformly random centre set to 0 (background); the square may
    reach past the border, so less of it is cut there (DeVries & Taylor 2017). 0: the images unchanged."""
    if size == 0:
        return x
    n, _, h, w = x.shape
    top = torch.randint(0, h, (n, 1, 1), generator=generator, device=x.device) - size // 2
    left = torch.randint(0, w, (n, 1, 1), generator=generator, device=x.device) - size // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)
    return x.masked_fill(inside.unsqueeze(1), 0.0)


def rotate90(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image in all four rotations (0, 90, 180, 270 degrees) and the rotation index of each."""
    views = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)])
    return views, torch.arange(4, device=x.device).repeat_interleave(len(x))


def affine(x: torch.Tensor, angle: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor,
           sign: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Per-image rotation by `angle` degrees (positive: counter-clockwise as displayed), zoom by `zoom`
    (above 1 magnifies about the centre, cropping the border), shift by `shift` (N×2, x and y, as a fraction
    of the size; positive moves the content left and up) and a horizontal mirror where `sign` is -1.

    One `affine_grid`/`grid_sample` call for the whole batch, bilinear, zeros shifted in.
    """
    angle = angle * torch.pi / 180
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([
        torch.stack([cos * sign, -sin, shift[:, 0] * 2], 1),  # normalised coordinates span 2 over the image
        torch.stack([sin * sign, cos, shift[:, 1] * 2], 1),
    ], 1)
    return F.grid_sample(x, affine_grid(theta, *x.shape[-2:]), mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    rotate: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
    translate: float = 0.0,
    flip: bool = False,
) -> torch.Tensor:
    """`affine` with per-image random parameters: rotation in ± `rotate` degrees, zoom in `scale`,
    shift in ± `translate` (fraction of the size) along each axis, and a flip with probability 1/2."""
    n, device = len(x), x.device

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)

    angle = uniform(-rotate, rotate)
    zoom = uniform(*scale)
    sign = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0) if flip else 1.0
    shift_x = uniform(-translate, translate)
    shift = torch.stack([shift_x, uniform(-translate, translate)], 1)
    return affine(x, angle, zoom, shift, sign)


def adjust_intensity(x: torch.Tensor, contrast: torch.Tensor, brightness: torch.Tensor) -> torch.Tensor:
    """Per image: deviations from the image's mean scaled by `contrast`, then `brightness` added, clamped
    to [0, 1] (both N×1×1×1)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + brightness).clamp_(0, 1)


def jitter_intensity(x: torch.Tensor, generator: torch.Generator, brightness: float, contrast: float) -> torch.Tensor:
    """`adjust_intensity` with per-image random contrast 1 ± `contrast` and brightness ± `brightness`."""
    n, device = len(x), x.device
    c = 1 + contrast * (2 * torch.rand(n, 1, 1, 1, generator=generator, device=device) - 1)
    b = brightness * (2 * torch.rand(n, 1, 1, 1, generator=generator, device=device) - 1)
    return adjust_intensity(x, c, b)
