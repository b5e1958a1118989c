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

