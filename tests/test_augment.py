import torch

from selfsup.augment import flip_translate


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
