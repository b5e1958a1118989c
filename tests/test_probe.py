import torch

from selfsup.probe import LinearProbe, accuracy, knn_predict, pca_2d


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


def test_pca_finds_the_direction_of_largest_variance():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=gen) * torch.tensor([10.0, 1.0, 0.1])
    points = pca_2d(x)
    assert points.shape == (500, 2)
    assert points[:, 0].var() > 50 * points[:, 1].var() / 1.5 and points[:, 1].var() > 0.5
