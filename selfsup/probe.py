"""Frozen-feature evaluation: what a pretrained backbone's layers know before any fine-tuning.

Two probes on the features of each layer (CifarNet.layer_features, computed by train.predict): a k-nearest-neighbour vote under
cosine similarity, and a linear probe (multinomial logistic regression, L2-regularised, full-batch
L-BFGS on standardised features; convex, so its result depends on the labels only, not on a seed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn



@torch.inference_mode()
def knn_predict(train: torch.Tensor, train_labels: torch.Tensor, query: torch.Tensor, k: int, num_classes: int,
                chunk: int = 1000) -> torch.Tensor:
    """Class of each query row by a vote of its k most cosine-similar training rows, weighted by similarity.

    In fp32: in bf16 the similarities of sparse ReLU features tie often enough to cost several points.
    """
    train = F.normalize(train, dim=1)
    k = min(k, len(train))
    out = []
    for i in range(0, len(query), chunk):
        sim, idx = (F.normalize(query[i : i + chunk], dim=1) @ train.T).topk(k, dim=1)
        votes = torch.zeros(len(idx), num_classes).scatter_add_(1, train_labels[idx], sim.clamp(min=0) + 1e-6)
        out.append(votes.argmax(1))
    return torch.cat(out)


class LinearProbe:
    """Multinomial logistic regression on standardised features: fit(features, labels), then predict."""

    def __init__(self, num_classes: int, weight_decay: float, steps: int):
        self.num_classes, self.weight_decay, self.steps = num_classes, weight_decay, steps

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> "LinearProbe":
        self.mean = features.mean(0)
        self.std = features.std(0, unbiased=False).clamp(min=1e-6)
        x = (features - self.mean) / self.std
        self.linear = nn.Linear(x.shape[1], self.num_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        optimizer = torch.optim.LBFGS(self.linear.parameters(), lr=1, max_iter=self.steps, history_size=10,
                                      line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = F.cross_entropy(self.linear(x), labels) + 0.5 * self.weight_decay * self.linear.weight.square().sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        return self

    @torch.inference_mode()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std).argmax(1)


def accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    return (predicted == labels).float().mean().item()


def pca_2d(features: torch.Tensor) -> torch.Tensor:
    """The rows projected on their first two principal components (signs fixed: positive skew)."""
    centred = features - features.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    points = centred @ v[:2].T
    return points * torch.where((points**3).sum(0) < 0, -1.0, 1.0)
