"""Small synthetic images for the pretext tests."""

import torch


def garments(n=8, size=28, seed=0):
    """Garment-like test images in [0, 1]: a bright rectangle with a notch at its top-left (so rotations
    differ), and indices 100.. standing in for their positions in a training set."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size)
    for img in x:
        top, left = torch.randint(2, 8, (2,), generator=gen).tolist()
        height, width = torch.randint(10, 18, (2,), generator=gen).tolist()
        img[:, top : top + height, left : left + width] = 0.5 + 0.5 * torch.rand(1, generator=gen)
        img[:, top : top + 4, left : left + 4] = 0
    return x, torch.arange(100, 100 + n)
