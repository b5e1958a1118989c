"""Distillation after fine-tuning: the fine-tuned model (the teacher) labels every training image, and a
student learns those labels on augmented views (SimCLRv2, Chen et al. 2020, "Big self-supervised models are
strong semi-supervised learners"; the teacher sees clean images, the student noised ones, as in Noisy
Student, Xie et al. 2020).

What reaches the loss is one target row per training image (`targets`): the teacher's temperature-softened
probabilities, or (threshold > 0) its one-hot guess where it is at least that confident and nothing where it is
not, or (per_class > 0) its one-hot guess on the per_class images it is most confident of in every class and
nothing elsewhere (Noisy Student's balancing: a class the teacher is rarely sure of still gets its share); on
the labelled images the true label, mixed in by `label_weight`. Only the labelled subset's labels
are ever read: the function that builds the targets is given those and nothing else.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from selfsup.augment import cutout, flip_translate
from selfsup.data import Split
from selfsup.evaluate import top1_accuracy
from selfsup.finetune import Start, initial_classifier, validation
from selfsup.models import Classifier
from selfsup.params import DistillParams
from selfsup.progress import Progress
from selfsup.runtime import Runtime, predict
from selfsup.train import FitResult, Objective, Plan, fit


def wanted(cfg: DistillParams, labelled: int, images: int) -> bool:
    """Whether the distill stage trains a student: `auto` does when some training images are unlabelled."""
    return cfg.when == "always" or (cfg.when == "auto" and labelled < images)


def targets(teacher_logits: torch.Tensor, labelled: torch.Tensor, labels: torch.Tensor,
            cfg: DistillParams) -> torch.Tensor:
    """The target row of every training image (N × classes); a row's sum is its weight in the loss (0: unused).

    teacher_logits: the teacher's outputs on every training image; labelled: the positions of the labelled
    images among them; labels: their labels (the only labels this function sees)."""
    if cfg.per_class > 0 or cfg.threshold > 0:  # hard pseudo-labels
        confidence, guess = teacher_logits.float().softmax(1).max(1)
        kept = most_confident(confidence, guess, cfg.per_class) if cfg.per_class > 0 else confidence >= cfg.threshold
        rows = F.one_hot(guess, teacher_logits.shape[1]).float() * kept.float().unsqueeze(1)
    else:
        rows = (teacher_logits.float() / cfg.temperature).softmax(1)
    truth = F.one_hot(labels, teacher_logits.shape[1]).float()
    rows[labelled] = cfg.label_weight * truth + (1 - cfg.label_weight) * rows[labelled]
    return rows


def most_confident(confidence: torch.Tensor, guess: torch.Tensor, per_class: int) -> torch.Tensor:
    """Which images are among the `per_class` most confident guesses of their guessed class (all of a class guessed
    fewer times); ties broken by position, so the choice is deterministic."""
    kept = torch.zeros_like(guess, dtype=torch.bool)
    for c in guess.unique():
        members = (guess == c).nonzero().squeeze(1)
        order = torch.sort(confidence[members], descending=True, stable=True).indices
        kept[members[order[:per_class]]] = True
    return kept


def soft_cross_entropy(temperature: float):
    """outputs × target rows → the mean over the batch of −Σ target · log softmax(outputs / temperature);
    a row of zeros adds nothing (but counts in the mean, so that a step's size does not depend on how
    many of its images the teacher was sure of)."""

    def loss(outputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return -(rows * (outputs / temperature).log_softmax(1)).sum(1).mean()

    return loss


def agreement(outputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """How often the student's guess is the target's, over the rows that have a target."""
    used = rows.sum(1) > 0
    return top1_accuracy(outputs[used], rows[used].argmax(1)) if used.any() else outputs.new_zeros(())


def objective(student: Classifier, rows: torch.Tensor, cfg: DistillParams) -> Objective:
    """The student on flipped, shifted (and cut-out) views of image i, against target row i: `fit` is
    handed the images' positions as their 'labels'."""
    aug = cfg.augment

    def make_batch(x, positions, gen):
        return cutout(flip_translate(x, aug.flip, aug.translate, gen), aug.cutout, gen), rows[positions]

    return Objective(student, make_batch, soft_cross_entropy(cfg.temperature), student.unused(), accuracy=agreement)


@dataclass(frozen=True)
class Labelled:
    """The labels distillation may read: the positions of the labelled images among the training images, and their
    labels (no other image's)."""

    positions: torch.Tensor
    labels: torch.Tensor


def distill(teacher: Classifier, student: Classifier, train_images: torch.Tensor, labelled: Labelled, val: Split,
            cfg: DistillParams, runtime: Runtime, live=None) -> tuple[FitResult, torch.Tensor]:
    """Train `student` on every training image against the teacher's targets for cfg.epochs; the last epoch
    is kept (nothing is chosen with labels; `val`, at most the budget per class, only draws the curves). With
    cfg.rounds > 1 the student of a round is the teacher of the next (Noisy Student's iterations); the curves
    are the last round's.

    Returns the last round's fit result and target rows (their sums say which images had a target)."""
    device = runtime.device
    for n in range(1, cfg.rounds + 1):
        logits = predict(teacher.to(device), train_images, runtime, 1000)
        rows = targets(logits, labelled.positions, labelled.labels, cfg).to(device)
        progress = Progress("distill" if cfg.rounds == 1 else f"distill round {n}/{cfg.rounds}",
                            live if n == cfg.rounds else None)
        result = fit(objective(student, rows, cfg), train_images, torch.arange(len(train_images)),
                     Plan(cfg, cfg.epochs), runtime, validation(val, runtime), progress)
        student.load_state_dict(result.best_state)
        teacher = student
    return result, rows.cpu()


def new_student(teacher: Classifier, start: Start, cfg: DistillParams, transfer: str) -> Classifier:
    """The student distillation trains: a copy of the teacher (init: teacher), or afresh from the pretext's backbone
    as finetune starts (init: backbone, with finetune's `transfer`) seeded by cfg.seed; the dropout masks seeded
    by cfg.seed after it."""
    if cfg.init == "teacher":
        model = copy.deepcopy(teacher)
    else:
        model = initial_classifier(start, cfg.seed, transfer, teacher.layer)
    torch.manual_seed(cfg.seed)  # dropout masks
    return model
