import hashlib
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from selfsup.augment import adjust_intensity, affine, affine_grid, flip_translate, jitter_intensity, random_affine


def images(n=16, size=10):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))


def shifted(img: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """img moved right by dx and down by dy, zeros shifted in."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = \
        img[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return out


def test_identity_when_disabled():
    x = images()
    assert flip_translate(x, False, 0, torch.Generator()) is x


def test_flip_gives_each_image_or_its_mirror_both_occurring():
    x = images()
    y = flip_translate(x, True, 0, torch.Generator().manual_seed(0))
    same = [torch.equal(a, b) for a, b in zip(y, x)]
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(y, x)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert any(same) and any(mirrored)


def test_translation_is_an_exact_integer_shift_per_image():
    x = images()
    y = flip_translate(x, False, 2, torch.Generator().manual_seed(0))
    candidates = [(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)]
    found = set()
    for a, b in zip(y, x):
        matches = [c for c in candidates if torch.equal(a, shifted(b, *c))]
        assert matches, "output is not an integer shift of its input"
        found.add(matches[0])
    assert len(found) > 3  # parameters differ per image


def test_same_generator_seed_same_output():
    x = images()
    a = flip_translate(x, True, 2, torch.Generator().manual_seed(5))
    b = flip_translate(x, True, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


# The exemplar transforms' geometry, on a synthetic image with a known answer.

def marker(size=28):
    """Black, with one bright 2×2 square right of and above the centre (columns 18-19, rows 8-9)."""
    x = torch.zeros(1, 1, size, size)
    x[..., 8:10, 18:20] = 1.0
    return x


def centre_of_mass(img: torch.Tensor) -> tuple[float, float]:
    """(column, row) of the brightness-weighted centre of an H×W image."""
    h, w = img.shape[-2:]
    total = img.sum()
    rows = (img.sum(-1).flatten() * torch.arange(h)).sum() / total
    cols = (img.sum(-2).flatten() * torch.arange(w)).sum() / total
    return cols.item(), rows.item()


def one(value: float) -> torch.Tensor:
    return torch.tensor([value])


def test_a_rotation_by_90_degrees_is_rot90_counter_clockwise():
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = affine(x, torch.full((3,), 90.0), torch.ones(3), torch.zeros(3, 2))
    torch.testing.assert_close(out, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_a_zoom_above_one_magnifies_about_the_centre():
    x = torch.zeros(1, 1, 28, 28)
    x[..., 10:18, 10:18] = 1.0  # an 8×8 square around the centre
    out = affine(x, one(0.0), one(2.0), torch.zeros(1, 2))
    assert out.sum().item() == pytest.approx(4 * x.sum().item(), rel=1e-4)  # twice as wide and high
    assert out[..., 7:21, 7:21].min() == pytest.approx(1.0) and out[..., :5, :].max() == 0.0
    assert centre_of_mass(out[0, 0]) == pytest.approx((13.5, 13.5))
    smaller = affine(x, one(0.0), one(0.5), torch.zeros(1, 2))  # below one: shrinks, zeros around
    assert smaller.sum().item() == pytest.approx(x.sum().item() / 4, rel=1e-4)


def test_a_positive_shift_moves_the_content_left_and_up_by_that_fraction():
    x = marker()
    out = affine(x, one(0.0), one(1.0), torch.tensor([[0.25, 0.25]]))  # 7 pixels of 28
    torch.testing.assert_close(out[..., 1:3, 11:13], torch.ones(1, 1, 2, 2), atol=1e-5, rtol=0)
    assert out.sum().item() == pytest.approx(4.0, abs=1e-4)


def test_sign_minus_one_mirrors_horizontally():
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    out = affine(x, torch.zeros(2), torch.ones(2), torch.zeros(2, 2), torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(out[0], x[0].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], x[1], atol=1e-5, rtol=0)


# two transforms whose grid products are inexact, so the order of the roundings shows in the bytes
THETA = [[[0.9, -0.31, 0.12], [0.27, 1.1, -0.05]], [[-0.83, 0.47, 0.3], [-0.47, -0.83, 0.07]]]
GRID_MD5 = "cef70fdae1a2f8915a796dbe4d74d8e5"  # (x·θ₀ + y·θ₁) + θ₂ in float32, as the committed backbones saw it


def test_affine_grid_is_torchs_grid_rounded_one_way_on_every_machine():
    theta = torch.tensor(THETA)
    ours = affine_grid(theta, 28, 28)
    torch.testing.assert_close(ours, F.affine_grid(theta, [2, 1, 28, 28], align_corners=False), atol=1e-6, rtol=0)
    assert hashlib.md5(ours.numpy().tobytes()).hexdigest() == GRID_MD5  # the same bytes on any CPU
    for h, w in [(28, 28), (32, 20), (1, 5), (3, 1)]:  # identity: the pixel centres themselves, exactly
        identity = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
        assert torch.equal(affine_grid(identity, h, w), F.affine_grid(identity, [1, 1, h, w], align_corners=False))


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="torch is built without MKL")
def test_affine_grid_rounds_as_mkls_unfused_path():
    """torch's own grid under MKL held to AVX2 (no fused multiply-add in that product) has the same bytes; on a
    CPU with AVX-512, MKL's default path gives other bytes, which is why the grid is not torch's."""
    code = ("import hashlib, torch, torch.nn.functional as F; theta = torch.tensor(%r); "
            "print(hashlib.md5(F.affine_grid(theta, [2, 1, 28, 28], align_corners=False).numpy().tobytes()).hexdigest())"
            % THETA)
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == GRID_MD5


def test_random_affine_stays_within_its_ranges():
    """A single bright pixel's displacement bounds the drawn rotation, zoom and shift."""
    x = marker().repeat(64, 1, 1, 1)
    out = random_affine(x, torch.Generator().manual_seed(0), rotate=0, scale=(1, 1), translate=0.1)
    shifts = [centre_of_mass(img[0]) for img in out]
    dx = [18.5 - c for c, _ in shifts]
    dy = [8.5 - r for _, r in shifts]
    assert max(map(abs, dx + dy)) <= 0.1 * 28 + 1e-3 and min(dx) < -1 and max(dx) > 1
    # rotation and zoom about the centre (13.5, 13.5): the marker, 5√2 pixels up and right of it (45 degrees as
    # displayed), turns by the drawn angle and moves out by the drawn zoom
    out = random_affine(x, torch.Generator().manual_seed(1), rotate=30, scale=(0.8, 1.2))
    polar = []
    for img in out:
        col, row = centre_of_mass(img[0])
        polar.append((math.degrees(math.atan2(13.5 - row, col - 13.5)), math.hypot(col - 13.5, row - 13.5)))
    angles, distances = [a for a, _ in polar], [d / (5 * math.sqrt(2)) for _, d in polar]
    assert 45 - 30 - 1 <= min(angles) and max(angles) <= 45 + 30 + 1  # within ± 30 degrees
    assert min(angles) < 45 - 20 and max(angles) > 45 + 20  # and spread over the range
    assert 0.8 - 0.03 <= min(distances) and max(distances) <= 1.2 + 0.03  # zoomed within 0.8 to 1.2
    assert min(distances) < 0.9 and max(distances) > 1.1


def test_contrast_scales_deviations_from_the_image_mean_and_brightness_adds():
    x = torch.tensor([0.2, 0.4, 0.6]).view(1, 1, 1, 3)  # mean 0.4
    out = adjust_intensity(x, torch.full((1, 1, 1, 1), 1.5), torch.full((1, 1, 1, 1), 0.1))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.2, 0.5, 0.8]))
    clamped = adjust_intensity(x, torch.full((1, 1, 1, 1), 1.0), torch.full((1, 1, 1, 1), 0.5))
    assert clamped.max() == 1.0  # 0.6 + 0.5, clamped to the [0, 1] scale


def test_jitter_draws_contrast_and_brightness_within_their_ranges():
    x = torch.full((256, 1, 4, 4), 0.5)
    x[:, :, 0, 0] = 0.3  # so that contrast has a deviation to scale
    out = jitter_intensity(x, torch.Generator().manual_seed(0), brightness=0.2, contrast=0.3)
    mean = x.mean(dim=(1, 2, 3))
    shift = out.mean(dim=(1, 2, 3)) - mean  # brightness, where nothing clamps
    scale = (out[:, 0, 0, 0] - out[:, 0, 1, 1]) / (x[:, 0, 0, 0] - x[:, 0, 1, 1])
    assert shift.abs().max() <= 0.2 + 1e-6 and shift.abs().max() > 0.15
    assert (scale - 1).abs().max() <= 0.3 + 1e-5 and (scale - 1).abs().max() > 0.25


def test_cutout_zeros_one_square_per_image_clipped_at_the_border():
    from selfsup.augment import cutout

    x = torch.ones(200, 2, 10, 10)
    assert cutout(x, 0, torch.Generator()) is x
    y = cutout(x, 4, torch.Generator().manual_seed(0))
    cut = (y == 0)
    assert torch.equal(cut[:, 0], cut[:, 1])  # every channel alike
    sizes = cut[:, 0].flatten(1).sum(1)
    assert sizes.max() == 16 and sizes.min() >= 4  # whole inside; a corner keeps at least 2×2
    rows, cols = cut[:, 0].any(2), cut[:, 0].any(1)
    assert (rows.sum(1) * cols.sum(1) == sizes).all()  # one rectangle
    assert len({tuple(c.nonzero()[0].tolist()) for c in cut[:, 0]}) > 20  # placed per image
    assert torch.equal(y, cutout(x, 4, torch.Generator().manual_seed(0)))  # seeded
