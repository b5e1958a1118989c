"""The one training loop, used by every pretext and by fine-tuning; they differ only by Objective."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from selfsup import SelfSupError
from selfsup.params import OptimParams

DEVICE_ENV = "SELFSUP_DEVICE"

# (images in [0, 1], labels or None, generator) -> (model inputs, targets)
MakeBatch = Callable[[torch.Tensor, "torch.Tensor | None", torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class DivergedError(SelfSupError):
    """The loss stopped being a finite number."""


@dataclass
class Objective:
    """What one training stage optimises.

    model: maps inputs to outputs; make_batch: builds (inputs, targets) from a batch of images in [0, 1]
    (augmentation and the pretext's transformation live here); loss: outputs × targets → scalar;
    frozen: submodules kept in eval mode and out of the optimiser (e.g. the backbone for a linear head);
    accuracy: outputs × targets → fraction correct, logged where the task has one.
    """

    model: nn.Module
    make_batch: MakeBatch
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
    frozen: list[nn.Module] = field(default_factory=list)
    accuracy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


def top1_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose highest logit is the target class."""
    return (logits.argmax(1) == targets).float().mean()


def pick_device() -> torch.device:
    """SELFSUP_DEVICE if set, else cuda when available, else cpu."""
    return torch.device(os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu"))


class Normalize:
    """Scale uint8 images to [0, 1] and standardise with the training split's channel statistics."""

    def __init__(self, mean: list[float], std: list[float], device: torch.device):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def unit(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().div_(255)

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        return ((x01 - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


@dataclass
class FitResult:
    best_state: dict
    best_epoch: int
    best_score: float | None


def _trainable_parameters(objective: Objective) -> list[nn.Parameter]:
    frozen = {id(p) for m in objective.frozen for p in m.parameters()}
    return [p for p in objective.model.parameters() if id(p) not in frozen]


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, norm: Normalize, batch_size: int) -> torch.Tensor:
    """Model outputs for uint8 images, in batches, in eval mode."""
    model.eval()
    device = norm.mean.device
    outs = [model(norm(norm.unit(images[i : i + batch_size].to(device)))).float().cpu()
            for i in range(0, len(images), batch_size)]
    return torch.cat(outs)


@torch.inference_mode()
def evaluate_objective(objective: Objective, images: torch.Tensor, ids: torch.Tensor, norm: Normalize,
                       batch_size: int, seed: int) -> dict[str, float]:
    """Mean loss (and accuracy) of the objective on held-out images, batched as in training, in eval mode.

    A fixed `seed` draws the same random views every time, so epochs are compared on equal terms.
    """
    objective.model.eval()
    device = norm.mean.device
    gen = torch.Generator(device=device).manual_seed(seed)
    losses, accuracies = [], []
    for i in range(0, len(images), batch_size):
        x = norm.unit(images[i : i + batch_size].to(device))
        inputs, targets = objective.make_batch(x, ids[i : i + batch_size].to(device), gen)
        outputs = objective.model(norm(inputs))
        losses.append(objective.loss(outputs, targets).item())
        if objective.accuracy is not None:
            accuracies.append(objective.accuracy(outputs, targets).item())
    metrics = {"val/loss": sum(losses) / len(losses)}
    if accuracies:
        metrics["val/accuracy"] = sum(accuracies) / len(accuracies)
    return metrics


def fit(
    objective: Objective,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    cfg: OptimParams,
    epochs: int,
    norm: Normalize,
    live=None,
    validate: Callable[[nn.Module], dict[str, float]] | None = None,
    select: str | None = None,
    desc: str = "train",
) -> FitResult:
    """Train `objective.model` for `epochs` on uint8 `images` (and `labels`); keep the best epoch.

    SGD with Nesterov momentum and a cosine learning-rate schedule over all steps. After each epoch,
    `validate(model)` returns metrics; the epoch with the highest `select` metric is kept (a copy of its
    weights), or the last epoch when `select` is None. Metrics go to the dvclive `live` per epoch.
    """
    device = norm.mean.device
    model = objective.model.to(device).to(memory_format=torch.channels_last)
    for module in objective.frozen:
        module.requires_grad_(False)
    params = _trainable_parameters(objective)
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                                weight_decay=cfg.weight_decay)
    n = len(images)
    batch_size = min(cfg.batch_size, n)
    steps_per_epoch = n // batch_size  # the ragged last batch is dropped: batch norm dislikes tiny batches
    total_steps = max(1, steps_per_epoch * epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    images = images.to(device)
    labels = labels.to(device) if labels is not None else None

    def snapshot() -> dict:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    result = FitResult(snapshot(), 0, None)
    for epoch in range(1, epochs + 1):
        model.train()
        for module in objective.frozen:
            module.eval()
        perm = torch.randperm(n, generator=gen, device=device)
        loss_sum = correct = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"{desc} epoch {epoch}/{epochs}", leave=False, mininterval=2)
        for step in bar:
            idx = perm[step * batch_size : (step + 1) * batch_size]
            inputs, targets = objective.make_batch(norm.unit(images[idx]), None if labels is None else labels[idx], gen)
            outputs = model(norm(inputs))
            loss = objective.loss(outputs, targets)
            if not torch.isfinite(loss):
                raise DivergedError(
                    f"{desc}: loss became {loss.item()} at epoch {epoch}, step {step + 1}; "
                    "lower the learning rate (lr) and rerun — no model was written"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item()
            if objective.accuracy is not None:
                correct += objective.accuracy(outputs.detach(), targets).item()
        metrics = {"train/loss": loss_sum / steps_per_epoch}
        if objective.accuracy is not None:
            metrics["train/accuracy"] = correct / steps_per_epoch
        if validate is not None:
            metrics.update(validate(model))
        score = metrics[select] if select else None
        if select is None or result.best_score is None or score > result.best_score:
            result = FitResult(snapshot(), epoch, score)
        if live is not None:
            for key, value in metrics.items():
                live.log_metric(key, value)
            live.next_step()
        tqdm.write(f"{desc} epoch {epoch}/{epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return result
