import pytest
import torch

from selfsup.probe import LinearProbe, accuracy, knn_predict, largest, pca_2d


def blobs(n_per_class=50, dim=16, classes=3, seed=0):
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(42)) * 4  # shared by every seed
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + torch.randn(len(labels), dim, generator=gen), labels


def test_knn_votes_by_cosine_neighbours():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[5.0, 0.2], [0.3, 7.0]])  # length does not matter under cosine similarity
    assert knn_predict(train, labels, query, k=2, num_classes=2).tolist() == [0, 1]
    assert knn_predict(train, labels, query, k=10, num_classes=2).tolist() == [0, 1]  # k capped, votes weighted


def test_linear_probe_separates_blobs_and_generalises():
    x, y = blobs()
    x_test, y_test = blobs(seed=1)
    probe = LinearProbe(3, weight_decay=1e-3, steps=50).fit(x, y)
    assert accuracy(probe.predict(x_test), y_test) > 0.95


def test_linear_probe_is_deterministic():
    x, y = blobs()
    first, second = (LinearProbe(3, 1e-3, 20).fit(x, y) for _ in range(2))
    assert torch.equal(first.linear.weight, second.linear.weight)


def test_linear_probe_fits_the_same_weights_whatever_the_order_of_its_rows():
    """Another summation order (a thread count, a CPU's BLAS kernels; here: the rows shuffled) moves float32
    L-BFGS weights by ~1e-4, enough to flip near-tied layer choices; the probe fits in float64, ~1e-13 apart."""
    x, y = blobs(n_per_class=100, dim=64, classes=5)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    first, shuffled = LinearProbe(5, 1e-3, 100).fit(x, y), LinearProbe(5, 1e-3, 100).fit(x[order], y[order])
    assert first.linear.weight.dtype == torch.float64
    torch.testing.assert_close(shuffled.linear.weight, first.linear.weight, atol=1e-9, rtol=0)
    x_test, _ = blobs(n_per_class=100, dim=64, classes=5, seed=1)
    assert torch.equal(first.predict(x_test), shuffled.predict(x_test))  # float32 features in, as the stages give


def test_pca_finds_the_direction_of_largest_variance():
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen))  # a fixed rotation: the axes are not the components
    # skewed along each axis (exponential: skew 2), the second axis mirrored (skew -2), then rotated by q and moved
    latent = (-torch.rand(500, 3, generator=gen).log() - 1) * torch.tensor([10.0, -1.0, 0.1])
    x = latent @ q.T + torch.tensor([5.0, -3.0, 2.0])
    points = pca_2d(x)
    assert points.shape == (500, 2)
    assert points[:, 0].var() > 50 * points[:, 1].var() / 1.5 and points[:, 1].var() > 0.5
    # the rows projected on the components: the first direction is q's first column, the second q's second;
    # signs fixed as the docstring says, each component's skew positive: so +q[:, 0] and -q[:, 1] (mirrored)
    centred = x - x.mean(0)
    directions = torch.linalg.lstsq(centred, points).solution  # 3×2: points = centred @ directions
    torch.testing.assert_close(centred @ directions, points, atol=1e-3, rtol=0)
    cos = (directions / directions.norm(dim=0)).T @ q[:, :2]
    assert cos[0, 0] > 0.99 and cos[1, 1] < -0.99, cos
    assert ((points**3).sum(0) > 0).all()
    torch.testing.assert_close(pca_2d(-x), points, atol=1e-3, rtol=1e-4)  # mirrored data: the same points


def test_pca_gives_the_same_points_whatever_the_order_of_its_rows():
    """As the linear probe: in float32 another summation order moved the points by ~1e-4 (a printed digit of the
    plot data); computed in float64, they come back in float32 equal to ~1e-7."""
    gen = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(1000, 256, generator=gen) * torch.linspace(3, 0.1, 256) + 1)  # sparse, as ReLU features
    order = torch.randperm(len(x), generator=gen)
    points = pca_2d(x)
    assert points.dtype == torch.float32
    torch.testing.assert_close(pca_2d(x[order]), points[order], atol=1e-6, rtol=0)


@pytest.mark.parametrize("budgets, expected", [((10, 100, 1000, "all"), "all"), (("all", 10), "all"), ((100, 10), 100)])
def test_the_layer_reported_is_the_one_chosen_at_the_largest_budget_however_they_are_listed(budgets, expected):
    assert largest(budgets) == expected
