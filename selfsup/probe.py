"""Frozen-feature evaluation: what a pretrained backbone's layers know before any fine-tuning.

Two probes on the features of each layer (CifarNet.layer_features, computed by runtime.predict): a
k-nearest-neighbour vote under cosine similarity, and a linear probe (multinomial logistic regression,
L2-regularised, full-batch L-BFGS on standardised features, in float64; convex, so its result depends on the
labels only, not on a seed, and in float64 hardly on the thread count or the CPU's kernels: `exact`).

The protocol (`probe_backbone`), honest at every budget: for each of `labels_per_class` labels per class
and each of `seeds` label draws, the layer is chosen by a linear probe of every layer trained on that
draw and scored on at most as many val images per class, and both probes at that layer are scored on test.
"""

from __future__ import annotations

import math
import statistics
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data import labelled_subset, val_subset
from selfsup.params import ProbeParams


@torch.inference_mode()
def knn_predict(train: torch.Tensor, train_labels: torch.Tensor, query: torch.Tensor, k: int, num_classes: int,
                chunk: int = 1000) -> torch.Tensor:
    """Class of each query row by a vote of its k most cosine-similar training rows, weighted by similarity.

    In fp32: in bf16 the similarities of sparse ReLU features tie often enough to cost several points.
    """
    train, train_labels = F.normalize(train, dim=1), train_labels.to(train.device)
    k = min(k, len(train))
    out = []
    for i in range(0, len(query), chunk):
        sim, idx = (F.normalize(query[i : i + chunk], dim=1) @ train.T).topk(k, dim=1)
        votes = torch.zeros(len(idx), num_classes, device=sim.device)
        votes.scatter_add_(1, train_labels[idx], sim.clamp(min=0) + 1e-6)
        out.append(votes.argmax(1))
    return torch.cat(out)


def exact(features: torch.Tensor) -> torch.Tensor:
    """The features in float64, where the linear probe fits and predicts and the PCA projects: in float32,
    L-BFGS's line search turns the last-bit differences of another summation order (thread count, the CPU's
    BLAS kernels) into weights that differ in the fourth digit, enough to move val accuracies and flip a layer
    choice between near-tied layers. In float64 (measured on the probe stage: 1 or 2 threads, MKL or ATen held to
    AVX2) no layer choice moved and a score by one image at most; not bit-exact, 100 iterations still carry the
    last bits along. On the features' device, but for MPS (no float64): on the CPU."""
    return (features.cpu() if features.device.type == "mps" else features).to(torch.float64)


class LinearProbe:
    """Multinomial logistic regression on standardised features (or, `standardise=False`, the features as
    they are): fit(features, labels), then predict; in float64 (`exact`), on the features' device."""

    def __init__(self, num_classes: int, weight_decay: float, steps: int, standardise: bool = True):
        self.num_classes, self.weight_decay, self.steps, self.standardise = num_classes, weight_decay, steps, standardise

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> "LinearProbe":
        features = exact(features)
        device, labels = features.device, labels.to(features.device)
        if self.standardise:
            self.mean = features.mean(0)
            self.std = features.std(0, unbiased=False).clamp(min=1e-6)
        else:
            dim = features.shape[1]
            self.mean, self.std = features.new_zeros(dim), features.new_ones(dim)
        x = (features - self.mean) / self.std
        self.linear = nn.Linear(x.shape[1], self.num_classes, device=device, dtype=torch.float64)
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
        return self.linear((exact(features) - self.mean) / self.std).argmax(1)


def accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    return (predicted.cpu() == labels.cpu()).float().mean().item()


def pca_2d(features: torch.Tensor) -> torch.Tensor:
    """The rows projected on their first two principal components (signs fixed: positive skew), in float32;
    computed in float64 (`exact`), where the points did not move with the thread count or with MKL or ATen held
    to AVX2 (in float32, 1 or 2 threads moved one printed coordinate in 70)."""
    features = exact(features)
    centred = features - features.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    points = centred @ v[:2].T
    return (points * torch.where((points**3).sum(0) < 0, -1.0, 1.0)).float()


def probe_backbone(feats: dict[str, dict[str, torch.Tensor]], labels: dict[str, torch.Tensor], cfg: ProbeParams,
                   num_classes: int, log: Callable[[str], None] = print) -> dict:
    """The probe protocol on precomputed features (split → layer → N×D) and labels (split → N).

    Per label budget k and draw: the layer is chosen with the draw's own labels, by the val accuracy of a
    linear probe on each layer (trained on the draw, at most `select_labels_per_class` per class of it, for
    speed; scored on at most k val images per class, `data.val_subset`), then both probes at that layer are
    trained on the whole draw and scored on test.

    Returns {"layer": the layer chosen at the largest budget (its first draw), "test": {budget: {"linear",
    "knn": {"mean", "std"}, "layers": {layer: draws that chose it}}}, "draws": {budget: [{"layer",
    "val": {layer: linear val accuracy}, "val_images", "linear", "knn"}]}}.
    """
    at_most = cfg.budget == "at_most"
    selections: dict[tuple[bytes, bytes], dict[str, float]] = {}  # the same draws give the same choice

    def select(draw: torch.Tensor, per_class, seed: int) -> tuple[dict[str, float], int]:
        train = draw
        if per_class == "all" or per_class > cfg.select_labels_per_class:
            train = draw[labelled_subset(labels["train"][draw], cfg.select_labels_per_class, seed, at_most=True)]
        val = val_subset(labels["val"], per_class, seed)
        key = (train.numpy().tobytes(), val.numpy().tobytes())
        if key not in selections:
            selections[key] = {
                layer: accuracy(LinearProbe(num_classes, cfg.weight_decay, cfg.steps)
                                .fit(feats["train"][layer][train], labels["train"][train])
                                .predict(feats["val"][layer][val]), labels["val"][val])
                for layer in feats["train"]}
        return selections[key], len(val)

    budgets, draws = {}, {}
    for per_class in cfg.labels_per_class:
        runs = []
        # With every label there is nothing to draw, and both probes are deterministic: one run.
        for seed in [0] if per_class == "all" else range(cfg.seeds):
            draw = labelled_subset(labels["train"], per_class, seed, "probe.labels_per_class", at_most)
            val, val_images = select(draw, per_class, seed)
            layer = max(val, key=val.get)
            x, y = feats["train"][layer][draw], labels["train"][draw]
            linear = LinearProbe(num_classes, cfg.weight_decay, cfg.steps).fit(x, y)
            runs.append({"layer": layer, "val": val, "val_images": val_images,
                         "linear": accuracy(linear.predict(feats["test"][layer]), labels["test"]),
                         "knn": accuracy(knn_predict(x, y, feats["test"][layer], cfg.k, num_classes), labels["test"])})
        chosen = [r["layer"] for r in runs]
        budgets[str(per_class)] = {
            **{probe: {"mean": statistics.fmean(r[probe] for r in runs),
                       "std": statistics.pstdev(r[probe] for r in runs) if len(runs) > 1 else 0.0}
               for probe in ("linear", "knn")},
            "layers": {layer: chosen.count(layer) for layer in dict.fromkeys(chosen)},
        }
        draws[str(per_class)] = runs
        summary = budgets[str(per_class)]
        log(f"{per_class} labels per class: layer {', '.join(chosen)} (on {runs[0]['val_images']} val images); "
            + ", ".join(f"{p} {summary[p]['mean']:.4f} ± {summary[p]['std']:.4f}" for p in ("linear", "knn")))
    return {"layer": draws[str(largest(cfg.labels_per_class))][0]["layer"], "test": budgets, "draws": draws}


def largest(labels_per_class) -> int | str:
    """The largest of budgets listed in any order (`all` above every number)."""
    return max(labels_per_class, key=lambda b: math.inf if b == "all" else b)
