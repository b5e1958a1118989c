import dataclasses

import pytest
import torch
from torch import nn

from selfsup.models import CifarNet
from selfsup.params import PretrainParams
from selfsup.pretexts import PRETEXTS, get_pretext, multi_positive_loss

TRAINABLE = sorted(name for name, spec in PRETEXTS.items() if spec.trains)


def batch(n=8, size=28, seed=0):
    """Garment-like test images: a bright rectangle with a notch at its top-left (so rotations differ)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size)
    for img in x:
        top, left = torch.randint(2, 8, (2,), generator=gen).tolist()
        height, width = torch.randint(10, 18, (2,), generator=gen).tolist()
        img[:, top : top + height, left : left + width] = 0.5 + 0.5 * torch.rand(1, generator=gen)
        img[:, top : top + 4, left : left + 4] = 0
    return x, torch.arange(100, 100 + n)


def spec_and_cfg(name):
    spec = get_pretext(name)
    return spec, getattr(PretrainParams(), name)


@pytest.mark.parametrize("name", sorted(PRETEXTS))
def test_every_pretext_has_its_params_section(name):
    sections = {f.name for f in dataclasses.fields(PretrainParams)}
    assert name in sections, f"add `{name}` to PretrainParams and params.yaml"
    assert isinstance(getattr(PretrainParams(), name), PRETEXTS[name].params)


def test_none_is_the_untrained_baseline_and_the_rest_train():
    assert not get_pretext("none").trains
    assert TRAINABLE == ["autoencoder", "exemplar", "rotation"]


def test_unknown_pretext_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown pretext 'bogus'; valid pretexts: none, rotation, exemplar, autoencoder"):
        get_pretext("bogus")


@pytest.mark.parametrize("name", TRAINABLE)
def test_shapes_and_finite_loss(name):
    spec, cfg = spec_and_cfg(name)
    x, ids = batch()
    inputs, targets = spec.make_batch(cfg)(x, ids, torch.Generator().manual_seed(0))
    model = nn.Sequential(CifarNet(1, 28), spec.make_head(cfg, 1, 28))
    outputs = model(inputs)
    assert outputs.shape[0] == inputs.shape[0] == (len(targets) if targets.ndim == 1 else targets.shape[0])
    loss = spec.loss(outputs, targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    if spec.accuracy is not None:
        assert 0 <= float(spec.accuracy(outputs, targets)) <= 1


@pytest.mark.parametrize("name", TRAINABLE)
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(name):
    spec, cfg = spec_and_cfg(name)
    torch.manual_seed(0)
    x, ids = batch(n=16)
    inputs, targets = spec.make_batch(cfg)(x, ids, torch.Generator().manual_seed(0))
    model = nn.Sequential(CifarNet(1, 28, dropout=0.0), spec.make_head(cfg, 1, 28))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = spec.loss(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_rotation_targets_match_rot90_of_the_input():
    spec, cfg = spec_and_cfg("rotation")
    cfg = dataclasses.replace(cfg, flip=False, translate=0)
    x, ids = batch(n=5)
    inputs, targets = spec.make_batch(cfg)(x, ids, torch.Generator())
    assert inputs.shape == (20, 1, 28, 28) and targets.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    for view, k, i in zip(inputs, targets, list(range(5)) * 4):
        assert torch.equal(view, torch.rot90(x[i], int(k), dims=(-2, -1)))


def test_exemplar_views_share_their_images_stable_label():
    spec, cfg = spec_and_cfg("exemplar")
    x, ids = batch(n=4)
    make = spec.make_batch(cfg)
    first_inputs, first = make(x, ids, torch.Generator().manual_seed(0))
    second_inputs, second = make(x, ids, torch.Generator().manual_seed(1))
    assert first.tolist() == [i for i in ids.tolist() for _ in range(cfg.views)]
    assert torch.equal(first, second)  # the label is the image's index, whatever the epoch or batch
    assert not torch.equal(first_inputs, second_inputs)  # while the views are fresh each time
    views = first_inputs.view(4, cfg.views, 1, 28, 28)
    assert all(not torch.equal(views[i, 0], views[i, 1]) for i in range(4))  # views of one image differ
    # a shuffled batch keeps each image's label
    perm = torch.tensor([2, 0, 3, 1])
    _, shuffled = make(x[perm], ids[perm], torch.Generator().manual_seed(2))
    assert shuffled.view(4, cfg.views)[:, 0].tolist() == ids[perm].tolist()


def test_multi_positive_loss_prefers_views_of_the_same_image():
    ids = torch.tensor([0, 0, 1, 1])
    aligned = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]]), dim=1) * 3
    crossed = aligned[[0, 2, 1, 3]]
    assert multi_positive_loss(aligned, ids) < multi_positive_loss(crossed, ids)


def test_autoencoder_output_has_the_input_shape():
    spec, cfg = spec_and_cfg("autoencoder")
    for channels, size in [(1, 28), (3, 32)]:
        x = torch.rand(2, channels, size, size)
        inputs, targets = spec.make_batch(cfg)(x, torch.arange(2), torch.Generator())
        out = nn.Sequential(CifarNet(channels, size), spec.make_head(cfg, channels, size))(inputs)
        assert out.shape == x.shape and torch.equal(targets, x)
