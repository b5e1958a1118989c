"""What every registered pretext must satisfy: parametrised over the registry, so a new pretext module is
tested without editing this file."""

import importlib

import pytest
import torch
import yaml
from torch import nn

from selfsup.models import CifarNet
from selfsup.params import load_params
from selfsup.pretexts import PretextSpec, get_pretext, names
from tests.conftest import REPO
from tests.pretexts.garments import garments

TRAINABLE = [name for name in names() if get_pretext(name).trains]


def spec_and_cfg(name):
    spec = get_pretext(name)
    return spec, load_params(REPO / "params.yaml").pretrain.section(name, spec.params)


def test_the_registry_is_the_modules_of_the_package():
    modules = sorted(p.stem for p in (REPO / "selfsup/pretexts").glob("*.py") if not p.stem.startswith("_"))
    assert names() == modules and {"none", "rotation", "exemplar", "autoencoder"} <= set(names())


@pytest.mark.parametrize("name", names())
def test_every_pretext_has_a_spec_and_its_params_section(name):
    spec = get_pretext(name)
    assert isinstance(spec, PretextSpec)
    assert name in yaml.safe_load((REPO / "params.yaml").read_text())["pretrain"], f"add pretrain.{name} to params.yaml"
    assert isinstance(spec_and_cfg(name)[1], spec.params)
    assert len(importlib.import_module(f"selfsup.pretexts.{name}").__doc__ or "") > 40, "say what it is, cite the paper"


def test_none_is_the_untrained_baseline_and_the_rest_train():
    assert not get_pretext("none").trains
    assert {"rotation", "exemplar", "autoencoder"} <= set(TRAINABLE)


def test_unknown_pretext_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown pretext 'bogus'; valid pretexts: autoencoder, exemplar, none, rotation"):
        get_pretext("bogus")


def test_a_pretext_that_trains_needs_a_batch_maker_and_a_loss():
    with pytest.raises(TypeError, match="needs make_batch and loss"):
        PretextSpec(params=object, make_head=lambda cfg, c, s: nn.Identity())


@pytest.mark.parametrize("name", TRAINABLE)
def test_shapes_and_finite_loss(name):
    spec, cfg = spec_and_cfg(name)
    x, ids = garments()
    inputs, targets = spec.make_batch(cfg)(x, ids, torch.Generator().manual_seed(0))
    assert len(inputs) == spec.views(cfg) * len(x)
    model = nn.Sequential(CifarNet(1, 28), spec.make_head(cfg, 1, 28))
    outputs = model(inputs)
    assert outputs.shape[0] == inputs.shape[0] == targets.shape[0]
    loss = spec.loss(outputs, targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    if spec.accuracy is not None:
        assert 0 <= float(spec.accuracy(outputs, targets)) <= 1


@pytest.mark.parametrize("name", TRAINABLE)
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(name):
    spec, cfg = spec_and_cfg(name)
    torch.manual_seed(0)
    x, ids = garments(n=16)
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


@pytest.mark.parametrize("name", TRAINABLE)
def test_a_batch_depends_on_the_images_and_the_generator_only(name):
    """Same images, indices and seed: the same batch (determinism); the batch maker gets no labels."""
    spec, cfg = spec_and_cfg(name)
    x, ids = garments()
    make = spec.make_batch(cfg)
    first = make(x, ids, torch.Generator().manual_seed(3))
    second = make(x.clone(), ids.clone(), torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
