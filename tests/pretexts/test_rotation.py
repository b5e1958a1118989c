import pytest
import torch

from selfsup.pretexts.rotation import SPEC, RotationParams
from tests.pretexts.garments import garments


def test_targets_match_rot90_of_the_input():
    cfg = RotationParams(flip=False, translate=0, views=4)
    x, ids = garments(n=5)
    inputs, targets = SPEC.make_batch(cfg)(x, ids, torch.Generator())
    assert inputs.shape == (20, 1, 28, 28) and targets.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    for view, k, i in zip(inputs, targets, list(range(5)) * 4):
        assert torch.equal(view, torch.rot90(x[i], int(k), dims=(-2, -1)))


def test_the_flip_and_shift_come_before_the_rotation():
    """All four rotations of one image are rotations of the same augmented image."""
    cfg = RotationParams(flip=True, translate=2, views=4)
    x, ids = garments(n=6)
    inputs, _ = SPEC.make_batch(cfg)(x, ids, torch.Generator().manual_seed(1))
    upright = inputs[:6]
    for k in range(1, 4):
        assert torch.equal(inputs[6 * k : 6 * (k + 1)], torch.rot90(upright, k, dims=(-2, -1)))
    assert not torch.equal(upright, x)  # some image was flipped or shifted


@pytest.mark.parametrize("views", [2, 3])
def test_fewer_views_also_rotate_one_flipped_and_shifted_image(views):
    """An image's random rotations (views < 4, the default's path) are rotations of the same augmented image."""
    cfg = RotationParams(flip=True, translate=2, views=views)
    x, ids = garments(n=6)
    inputs, targets = SPEC.make_batch(cfg)(x, ids, torch.Generator().manual_seed(1))
    upright = torch.stack([torch.rot90(view, -int(k), dims=(-2, -1)) for view, k in zip(inputs, targets)])
    for v in range(1, views):
        assert torch.equal(upright[6 * v : 6 * (v + 1)], upright[:6])
    assert not torch.equal(upright[:6], x)  # some image was flipped or shifted


def test_four_views_per_image_halve_nothing_but_the_source_batch():
    cfg = RotationParams(views=4)
    assert SPEC.views(cfg) == 4 and SPEC.source_batch_size(cfg, 128) == 32


def test_fewer_views_are_distinct_random_rotations_whose_targets_match_the_input():
    cfg = RotationParams(flip=False, translate=0, views=2)
    x, ids = garments(n=6)
    inputs, targets = SPEC.make_batch(cfg)(x, ids, torch.Generator().manual_seed(3))
    assert inputs.shape == (12, 1, 28, 28) and targets.shape == (12,)
    for view, k, i in zip(inputs, targets, list(range(6)) * 2):
        assert torch.equal(view, torch.rot90(x[i], int(k), dims=(-2, -1)))
    assert all(targets[i] != targets[6 + i] for i in range(6))  # an image's two rotations differ
    again, same = SPEC.make_batch(cfg)(x, ids, torch.Generator().manual_seed(3))
    assert torch.equal(again, inputs) and torch.equal(same, targets)  # drawn from the generator alone


def test_one_view_per_image_draws_every_rotation_and_feeds_four_times_the_sources():
    cfg = RotationParams(flip=False, translate=0, views=1)
    x, ids = garments(n=64)
    _, targets = SPEC.make_batch(cfg)(x, ids, torch.Generator().manual_seed(0))
    assert len(targets) == 64 and set(targets.tolist()) == {0, 1, 2, 3}
    assert SPEC.source_batch_size(cfg, 128) == 128



def masked_rotate90(x, views, generator):
    """The batch maker as it was, one boolean mask per rotation (a host synchronisation each on a GPU): the
    reference the mask-free one must equal byte for byte."""
    ks = torch.rand(len(x), 4, generator=generator, device=x.device).argsort(1)[:, :views].T.reshape(-1)
    source = x.repeat(views, 1, 1, 1)
    rotated = torch.empty_like(source)
    for k in range(4):
        chosen = ks == k
        rotated[chosen] = torch.rot90(source[chosen], k, dims=(-2, -1))
    return rotated, ks


def test_the_mask_free_batch_maker_gives_the_masked_ones_bytes_labels_and_generator_state():
    from selfsup.pretexts.rotation import random_rotate90

    x, _ = garments(n=9)
    x = x.float() / 255
    for views in (1, 2, 3):
        new_gen, old_gen = torch.Generator().manual_seed(views), torch.Generator().manual_seed(views)
        for _ in range(3):  # successive batches: the generators stay in step
            (new, new_ks), (old, old_ks) = random_rotate90(x, views, new_gen), masked_rotate90(x, views, old_gen)
            assert torch.equal(new, old) and torch.equal(new_ks, old_ks) and new.is_contiguous()
        assert torch.equal(new_gen.get_state(), old_gen.get_state())
    # four views: every rotation of each image, as before (rotate90)
    cfg = RotationParams(flip=False, translate=0, views=4)
    inputs, targets = SPEC.make_batch(cfg)(x, None, torch.Generator())
    assert torch.equal(inputs, torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]))
