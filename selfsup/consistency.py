"""Consistency training during fine-tuning (FixMatch, Sohn et al. 2020): every step also takes `ratio` unlabelled
images per labelled one; the model's guess on a weak view of an unlabelled image (the fine-tuning augmentation),
where confident enough, is the target for a strong view of the same image (`strong_view`).

With `thresholds: per_class` (FlexMatch, Zhang et al. 2021) a class the model is rarely confident about yet gets a
lower threshold than the fixed one, so that hard classes are not starved of targets (`Thresholds`).

Labels are read only for the labelled images; the unlabelled pool is the training images outside the budget (and
a folder's unlabelled/ images), never val or test (`finetune.unlabelled_pool`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.augment import cutout, jitter_intensity, random_affine
from selfsup.distributed import all_gathered
from selfsup.params import ConsistencyParams, StrongParams
from selfsup.runtime import Runtime
from selfsup.train import MakeBatch

IGNORED = -1  # the target of an unlabelled image whose weak view's guess is not confident enough


def strong_view(x: torch.Tensor, cfg: StrongParams, gen: torch.Generator) -> torch.Tensor:
    """A strong view of each image in [0, 1]: a random rotation, zoom, shift and mirror, then contrast and
    brightness, then a cut-out square; batched on the images' device."""
    x = random_affine(x, gen, cfg.rotate, (cfg.scale_min, cfg.scale_max), cfg.translate, flip=True)
    return cutout(jitter_intensity(x, gen, cfg.brightness, cfg.contrast), cfg.cutout, gen)


class Thresholds:
    """Which guesses become targets. `fixed`: those at least `threshold` confident. `per_class` (FlexMatch with its
    warm-up): each unlabelled image's last guess above `threshold` is remembered (`state["guess"]`, -1: none yet);
    class c's learning effect β(c) is the number of images last guessed c over the larger of the most guessed
    class's number and the images not guessed yet, and its threshold threshold · β(c) / (2 − β(c)): low while the
    model has learnt little of c, the full threshold once c is guessed as often as any class. Sync-free on a GPU; under
    torchrun the ranks share the remembered guesses, as one process would keep them."""

    def __init__(self, cfg: ConsistencyParams, pool_size: int, num_classes: int, device: torch.device):
        self.threshold, self.per_class, self.num_classes = cfg.threshold, cfg.thresholds == "per_class", num_classes
        self.state = {"guess": torch.full((pool_size,), -1, dtype=torch.long, device=device)} if self.per_class else {}

    def class_thresholds(self) -> torch.Tensor:
        """The threshold of every class now (per_class only)."""
        guess = self.state["guess"]
        counts = torch.zeros(self.num_classes + 1, device=guess.device).scatter_add_(
            0, guess + 1, torch.ones(len(guess), device=guess.device))  # [not yet guessed, class 0, class 1, ...]
        beta = counts[1:] / counts.max()
        return self.threshold * beta / (2 - beta)

    def __call__(self, confidence: torch.Tensor, guess: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Which of the guesses (with their confidence, of the pool's images at `positions`) become targets."""
        if not self.per_class:
            return confidence >= self.threshold
        mask = confidence >= self.class_thresholds()[guess]
        remembered = self.state["guess"]
        update = torch.where(confidence > self.threshold, guess, remembered[positions])
        # under torchrun every rank remembers every rank's guesses (in rank order): one state, one set of thresholds;
        # the positions and guesses travel stacked, one gather per step
        gathered = all_gathered(torch.stack([positions, update])).view(-1, 2, len(positions))
        remembered[gathered[:, 0].flatten()] = gathered[:, 1].flatten()
        return mask


def consistency_batches(model: nn.Module, weak: MakeBatch, pool: torch.Tensor, cfg: ConsistencyParams,
                        thresholds: Thresholds, runtime: Runtime) -> MakeBatch:
    """A MakeBatch: the labelled images' weak views (`weak`) and labels, followed by strong views of `ratio` times as
    many images drawn from the uint8 `pool` (on the device), whose targets are the `model`'s confident guesses on
    their weak views (IGNORED where not confident; no gradient flows through the guesses)."""
    norm = runtime.norm

    def make_batch(x, y, gen):
        inputs, targets = weak(x, y, gen)
        positions = torch.randint(len(pool), (cfg.ratio * len(x),), generator=gen, device=pool.device)
        u = norm.unit(pool[positions])
        with torch.no_grad(), runtime.autocast():
            probs = model(norm(weak(u, None, gen)[0])).float().softmax(1)
        confidence, guess = probs.max(1)
        keep = thresholds(confidence, guess, positions)
        return (torch.cat([inputs, strong_view(u, cfg.strong, gen)]),
                torch.cat([targets, torch.where(keep, guess, IGNORED)]))

    return make_batch


def consistency_loss(labelled_loss, cfg: ConsistencyParams):
    """outputs × targets of `consistency_batches` → `labelled_loss` of the labelled images plus `weight` × the
    cross-entropy of the strong views against their targets, averaged over every unlabelled image (one without a
    target counts 0, as in FixMatch)."""

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n = len(targets) // (1 + cfg.ratio)
        unlabelled = F.cross_entropy(outputs[n:], targets[n:], ignore_index=IGNORED, reduction="sum")
        return labelled_loss(outputs[:n], targets[:n]) + cfg.weight * unlabelled / (len(targets) - n)

    return loss


def labelled_part(metric, ratio: int):
    """outputs × targets of `consistency_batches` → `metric` of the labelled images alone."""
    return lambda outputs, targets: metric(outputs[: len(targets) // (1 + ratio)],
                                           targets[: len(targets) // (1 + ratio)])
