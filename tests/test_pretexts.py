import dataclasses

import pytest

from selfsup.params import PretrainParams
from selfsup.pretexts import PRETEXTS, get_pretext


@pytest.mark.parametrize("name", sorted(PRETEXTS))
def test_every_pretext_has_its_params_section(name):
    sections = {f.name: f.type for f in dataclasses.fields(PretrainParams)}
    assert name in sections, f"add `{name}` to PretrainParams and params.yaml"
    assert isinstance(getattr(PretrainParams(), name), PRETEXTS[name].params)


@pytest.mark.parametrize("name", sorted(PRETEXTS))
def test_a_pretext_that_trains_says_how(name):
    spec = get_pretext(name)
    assert (spec.make_head is None) == (spec.make_batch is None)


def test_none_is_the_untrained_baseline():
    assert not get_pretext("none").trains


def test_unknown_pretext_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown pretext 'bogus'; valid pretexts: none"):
        get_pretext("bogus")
