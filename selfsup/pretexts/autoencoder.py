"""Autoencoder: CifarNet encodes each image to its 192-d features and a light mirrored decoder
reconstructs it, under the mean squared error (the classic unsupervised pre-training of Hinton &
Salakhutdinov, Science 2006; Masci et al., ICANN 2011, for convolutional ones). No augmentation: the
target is the input itself."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.models import FEATURE_DIM
from selfsup.params import check, positive
from selfsup.pretexts import PretextSpec


@dataclass(frozen=True)
class AutoencoderParams:
    epochs: int = field(default=8, metadata=check(positive, "a positive integer"))


class Decoder(nn.Module):
    """A light mirror of CifarNet: fc 192 → 384 → 64·(s/4)², then two transposed 4×4 convolutions of
    stride 2 (s/4 → s/2 with 32 maps → s).

    Lighter than the encoder on purpose (about a fifth of its multiply-adds, no full-size intermediate
    maps): a reconstruction step then costs little more than a plain step, and the encoder, not the
    decoder, has to carry the information. Ends in a sigmoid: reconstructions live on the [0, 1] scale.
    """

    def __init__(self, out_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.side = image_size // 4
        self.fc = nn.Sequential(nn.Linear(FEATURE_DIM, 384), nn.ReLU(inplace=True),
                                nn.Linear(384, 64 * self.side**2), nn.ReLU(inplace=True))
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, out_channels, 4, stride=2, padding=1), nn.Sigmoid(),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(self.fc(features).view(-1, 64, self.side, self.side))


def make_batch(cfg: AutoencoderParams):
    """Images → (the images, the images): the input is its own target."""

    def make(x, ids, gen):
        return x, x

    return make


SPEC = PretextSpec(
    params=AutoencoderParams,
    make_head=lambda cfg, channels, size: Decoder(channels, size),
    make_batch=make_batch,
    loss=F.mse_loss,
    shows_images=True,
)
