"""Classification metrics: accuracy, per-class accuracy, macro-F1, confusion matrix."""

from __future__ import annotations

import torch


def confusion_matrix(actual: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts C[i, j] of images of class i predicted as class j."""
    return torch.bincount(actual * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


def classification_metrics(actual: torch.Tensor, predicted: torch.Tensor, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy (the mean recall of the classes present: what accuracy would be if every
    class were equally frequent), macro-F1, and per-class accuracy (recall), F1 and support, by class name."""
    cm = confusion_matrix(actual, predicted, len(classes)).double()
    tp = cm.diag()
    support = cm.sum(1)
    predicted_count = cm.sum(0)
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    precision = torch.where(predicted_count > 0, tp / predicted_count.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    present = support > 0
    return {
        "accuracy": (tp.sum() / cm.sum()).item(),
        "balanced_accuracy": recall[present].mean().item(),
        "macro_f1": f1[present].mean().item(),
        "per_class": {
            name: {"accuracy": recall[i].item(), "f1": f1[i].item(), "support": int(support[i])}
            for i, name in enumerate(classes)
        },
    }


def top1_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose highest logit is the target class (a tensor, for use inside training)."""
    return (logits.argmax(1) == targets).float().mean()
