import torch
from torch import nn

from selfsup.models import FEATURE_DIM, CifarNet
from selfsup.pretexts.autoencoder import SPEC, AutoencoderParams, Decoder


def test_decoder_reconstructs_the_input_shape_in_unit_range():
    out = Decoder(3, 32)(torch.rand(2, FEATURE_DIM))
    assert out.shape == (2, 3, 32, 32) and 0 <= out.min() and out.max() <= 1


def test_the_target_is_the_input_and_the_output_has_its_shape():
    cfg = AutoencoderParams()
    for channels, size in [(1, 28), (3, 32)]:
        x = torch.rand(2, channels, size, size)
        inputs, targets = SPEC.make_batch(cfg)(x, torch.arange(2), torch.Generator())
        out = nn.Sequential(CifarNet(channels, size), SPEC.make_head(cfg, channels, size))(inputs)
        assert out.shape == x.shape and torch.equal(targets, x) and torch.equal(inputs, x)


def test_the_loss_is_the_mean_squared_error_and_shows_images():
    a, b = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    assert SPEC.loss(a, b).item() == 0.25 and SPEC.shows_images and SPEC.accuracy is None
