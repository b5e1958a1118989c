import math

import torch
import torch.nn.functional as F

from selfsup.pretexts.exemplar import SPEC, ExemplarParams, Projection, multi_positive_loss, view_retrieval_accuracy
from tests.pretexts.garments import garments


def loop_loss(features: torch.Tensor, ids: torch.Tensor, temperature: float) -> float:
    """The multi-positive loss written out view by view: for view i, the mean over the other views j of its
    image of −log(exp(cos_ij / T) / Σ_{k≠i} exp(cos_ik / T)); then the mean over views."""
    unit = [[v / math.sqrt(sum(u * u for u in f)) for v in f] for f in features.tolist()]
    total = 0.0
    for i, a in enumerate(unit):
        sims = {j: sum(p * q for p, q in zip(a, b)) / temperature for j, b in enumerate(unit) if j != i}
        log_denominator = math.log(sum(math.exp(s) for s in sims.values()))
        positives = [j for j in sims if ids[j] == ids[i]]
        total += sum(log_denominator - sims[j] for j in positives) / len(positives)
    return total / len(unit)


def test_the_loss_of_the_projection_equals_a_plain_loop_over_views():
    torch.manual_seed(0)
    features = torch.randn(12, 192, dtype=torch.float64)
    ids = torch.tensor([5, 5, 5, 9, 9, 9, 2, 2, 2, 7, 7, 7])
    for temperature in (0.2, 1.0):
        head = Projection(16, temperature).double()
        z = head(features)
        expected = loop_loss(head.mlp(features), ids, temperature)
        assert math.isclose(multi_positive_loss(z, ids).item(), expected, rel_tol=1e-9)


def test_a_view_is_never_its_own_positive_or_negative():
    """Two images, two views each, all four views identical: each view has one positive among three
    equally similar others, whatever the temperature (its similarity to itself is masked out)."""
    z = F.normalize(torch.ones(4, 8), dim=1) * 3
    loss = multi_positive_loss(z, torch.tensor([0, 0, 1, 1]))
    assert math.isclose(loss.item(), math.log(3), rel_tol=1e-6)


def test_the_loss_prefers_views_of_the_same_image():
    ids = torch.tensor([0, 0, 1, 1])
    aligned = F.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]]), dim=1) * 3
    crossed = aligned[[0, 2, 1, 3]]
    assert multi_positive_loss(aligned, ids) < multi_positive_loss(crossed, ids)
    assert view_retrieval_accuracy(aligned, ids) == 1 and view_retrieval_accuracy(crossed, ids) == 0


def test_views_share_their_images_stable_label():
    cfg = ExemplarParams()
    x, ids = garments(n=4)
    make = SPEC.make_batch(cfg)
    first_inputs, first = make(x, ids, torch.Generator().manual_seed(0))
    second_inputs, second = make(x, ids, torch.Generator().manual_seed(1))
    assert first.tolist() == [i for i in ids.tolist() for _ in range(cfg.views)]
    assert torch.equal(first, second)  # the label is the image's index, whatever the epoch or batch
    assert not torch.equal(first_inputs, second_inputs)  # while the views are fresh each time
    views = first_inputs.view(4, cfg.views, 1, 28, 28)
    assert all(not torch.equal(views[i, 0], views[i, 1]) for i in range(4))  # views of one image differ
    perm = torch.tensor([2, 0, 3, 1])  # a shuffled batch keeps each image's label
    _, shuffled = make(x[perm], ids[perm], torch.Generator().manual_seed(2))
    assert shuffled.view(4, cfg.views)[:, 0].tolist() == ids[perm].tolist()


def test_views_without_any_transformation_are_the_image():
    cfg = ExemplarParams(rotate=0, scale_min=1, scale_max=1, translate=0, flip=False, brightness=0, contrast=0)
    x, ids = garments(n=3)
    views, _ = SPEC.make_batch(cfg)(x, ids, torch.Generator().manual_seed(0))
    torch.testing.assert_close(views, x.repeat_interleave(cfg.views, 0), atol=1e-5, rtol=0)


def test_the_flip_mirrors_about_half_the_views_and_does_nothing_else():
    cfg = ExemplarParams(rotate=0, scale_min=1, scale_max=1, translate=0, flip=True, brightness=0, contrast=0, views=6)
    x, ids = garments(n=8)
    views, _ = SPEC.make_batch(cfg)(x, ids, torch.Generator().manual_seed(0))
    source = x.repeat_interleave(cfg.views, 0)
    close = lambda a, b: torch.allclose(a, b, atol=1e-5, rtol=0)  # noqa: E731
    mirrored = [close(v, s.flip(-1)) for v, s in zip(views, source)]
    assert all(m or close(v, s) for m, v, s in zip(mirrored, views, source))  # each view: the image or its mirror
    assert 0.25 < sum(mirrored) / len(mirrored) < 0.75  # both occur, each about half the time (48 views)
