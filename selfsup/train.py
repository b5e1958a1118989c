"""The one training loop, used by every pretext and by fine-tuning; they differ only by Objective.

`fit` reads top to bottom as: the optimiser and its schedule (`_optimizer`), the batches of an epoch
(`_batch_plan`, `shard`), the average of the weights (`WeightAverage`), the training state a resumed run
restores (`_Trainer.state`/`restore`), one epoch (`_Trainer.train_epoch`) and the best epoch kept (`_keep_best`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from selfsup import SelfSupError, distributed
from selfsup.params import OptimParams
from selfsup.progress import Progress, is_image, log_epoch, rng_states, set_rng_states, storable
from selfsup.runtime import Runtime

# (images in [0, 1], labels or image indices or None, generator) -> (model inputs, targets)
MakeBatch = Callable[[torch.Tensor, "torch.Tensor | None", torch.Generator], tuple[torch.Tensor, torch.Tensor]]


CHECK_EVERY = 50  # steps between checks that the loss is finite (each one waits for the device)


class DivergedError(SelfSupError):
    """The loss stopped being a finite number."""


@dataclass
class Objective:
    """What one training stage optimises.

    model: maps inputs to outputs; make_batch: builds (inputs, targets) from a batch of images in [0, 1]
    (augmentation and the pretext's transformation live here); loss: outputs × targets → scalar;
    frozen: submodules kept in eval mode and out of the optimiser (e.g. the backbone for a linear head);
    accuracy: outputs × targets → fraction correct, logged where the task has one;
    lr_scales: (submodule, factor) pairs whose parameters train at factor × lr (e.g. pretrained layers);
    state: tensors make_batch updates in place as it trains (e.g. consistency training's per-class thresholds),
    saved and restored with the rest of a resumed run.
    """

    model: nn.Module
    make_batch: MakeBatch
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
    frozen: list[nn.Module] = field(default_factory=list)
    accuracy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    lr_scales: list[tuple[nn.Module, float]] = field(default_factory=list)
    state: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """How long `fit` trains and what it keeps: the optimiser's params (`cfg`: batch size, lr, momentum, weight
    decay, seed), the epochs (of at least `min_steps` optimizer steps in all), the validated metric whose best
    epoch is kept (`select`; None: the last), and the decay of a moving average of the weights that is validated
    and kept instead of them (`average`; 0: off)."""

    cfg: OptimParams
    epochs: int
    min_steps: int = 0
    select: str | None = None
    average: float = 0.0


@dataclass
class FitResult:
    best_state: dict
    best_epoch: int
    best_score: float | None
    steps: int = 0  # optimizer steps of the whole schedule


def param_groups(objective: Objective, lr: float) -> list[dict]:
    """Trainable parameters (the frozen modules left out), grouped by learning rate, highest first."""
    frozen = {id(p) for m in objective.frozen for p in m.parameters()}
    scale = {id(p): factor for m, factor in objective.lr_scales for p in m.parameters()}
    groups: dict[float, list[nn.Parameter]] = {}
    for p in objective.model.parameters():
        if id(p) not in frozen:
            groups.setdefault(scale.get(id(p), 1.0), []).append(p)
    return [{"params": ps, "lr": lr * factor} for factor, ps in sorted(groups.items(), reverse=True)]


def _optimizer(objective: Objective, cfg: OptimParams, total_steps: int):
    """SGD with Nesterov momentum, and a cosine decay of every group's learning rate to 0 over all steps."""
    optimizer = torch.optim.SGD(param_groups(objective, cfg.lr), lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))
    return optimizer, scheduler


def _batch_plan(n: int, batch_size: int, world: int, desc: str, min_steps: int = 0,
                epochs: int = 1) -> tuple[int, int]:
    """(images per step, steps per epoch) for n training images: one pass over them, the ragged last batch
    dropped (batch norm dislikes tiny batches), or, where `epochs` passes would take fewer than `min_steps`
    steps (a few labelled images), ceil(min_steps / epochs) steps, passing over the images several times."""
    batch_size = min(batch_size, n)
    if batch_size < world:
        raise SelfSupError(f"{desc}: a batch of {batch_size} images cannot be shared by {world} processes; "
                           "raise batch_size or lower compute.processes")
    return batch_size, max(n // batch_size, math.ceil(min_steps / epochs))


def epoch_order(n: int, steps: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
    """The positions an epoch of `steps` batches trains on: fresh permutations of the n images, one after
    another, as many as the steps need (one, for an epoch that is one pass), so that every image is seen
    equally often, give or take one."""
    passes = max(1, math.ceil(steps * batch_size / n))
    return torch.cat([torch.randperm(n, generator=gen) for _ in range(passes)])


def shard(perm: torch.Tensor, step: int, batch_size: int, world: int, rank: int) -> torch.Tensor:
    """The positions rank `rank` of `world` trains on at `step`: its slice of that step's batch of the
    permutation. Every rank's shard has the same size; a remainder of the batch (batch_size mod world)
    is dropped."""
    batch = perm[step * batch_size : (step + 1) * batch_size]
    return batch[: batch_size - batch_size % world][rank::world]


class WeightAverage:
    """An exponential moving average of a model's weights and batch-norm statistics (Polyak averaging, as timm's
    ModelEmaV3): after step t, average ← d·average + (1 − d)·weights, d = min(decay, (1 + t) / (10 + t)). The
    warm-up makes a short run (60 steps at 10 labels per class) average its last steps, not its random start;
    `decay` caps how far back a long one reaches. Integer buffers (batch norm's counter) are copied."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.steps = decay, 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for average, current in zip(self.module.state_dict().values(), model.state_dict().values()):
            if average.is_floating_point():
                average.lerp_(current.detach(), 1 - d)
            else:
                average.copy_(current)


def _keep_best(result: FitResult, epoch: int, score: float | None, select: str | None, snapshot) -> FitResult:
    """The better of the kept epoch and this one (a deep copy of its weights); the last epoch when there
    is no `select` metric."""
    if select is None or result.best_score is None or score > result.best_score:
        return FitResult(snapshot(), epoch, score)
    return result


@torch.inference_mode()
def evaluate_objective(objective: Objective, images: torch.Tensor, ids: torch.Tensor, runtime: Runtime,
                       batch_size: int, seed: int) -> dict[str, float]:
    """Mean loss (and accuracy) of the objective on held-out images, batched as in training, in eval mode.

    A fixed `seed` draws the same random views every time, so epochs are compared on equal terms.
    """
    objective.model.eval()
    norm, device = runtime.norm, runtime.device
    gen = torch.Generator(device=device).manual_seed(seed)
    losses, accuracies = [], []
    for i in range(0, len(images), batch_size):
        x = norm.unit(images[i : i + batch_size].to(device))
        inputs, targets = objective.make_batch(x, ids[i : i + batch_size].to(device), gen)
        with runtime.autocast():
            outputs = objective.model(norm(inputs))
        outputs = outputs.float()
        losses.append(objective.loss(outputs, targets).item())
        if objective.accuracy is not None:
            accuracies.append(objective.accuracy(outputs, targets).item())
    metrics = {"val/loss": sum(losses) / len(losses)}
    if accuracies:
        metrics["val/accuracy"] = sum(accuracies) / len(accuracies)
    return metrics


def derived_seeds(seed: int, rank: int) -> tuple[int, int]:
    """The seeds of a rank's own random streams, from the run's `seed`: augmentation on the device, and dropout
    (under torchrun); distinct for every rank below 500,000 and every seed."""
    return seed * 1_000_003 + rank + 1, seed * 1_000_003 + 500_000 + rank


class _Trainer:
    """One run of fit: the model (DDP-wrapped under torchrun), optimiser, schedule, gradient scaler, random
    generators, the best epoch so far and the logged history: everything a resumed run restores."""

    def __init__(self, objective: Objective, n: int, plan: Plan, runtime: Runtime, desc: str):
        cfg, epochs, average = plan.cfg, plan.epochs, plan.average
        self.objective, self.norm, self.compute, self.desc, self.epochs = objective, runtime.norm, runtime.compute, desc, epochs
        device = self.device = runtime.device
        compute = runtime.compute
        self.scaler = torch.amp.GradScaler(device.type, enabled=compute.dtype == torch.float16)
        self.model = objective.model.to(device).to(memory_format=torch.channels_last)
        for module in objective.frozen:
            module.requires_grad_(False)
        self.world, self.rank = distributed.world_size(), distributed.rank()
        # Under torchrun every rank holds a replica; DDP averages the gradients of the ranks' shards.
        self.train_model = (DistributedDataParallel(self.model, device_ids=[device] if device.type == "cuda" else None)
                            if self.world > 1 else self.model)
        self.n = n
        self.batch_size, self.steps = _batch_plan(n, cfg.batch_size, self.world, desc, plan.min_steps, epochs)
        self.optimizer, self.scheduler = _optimizer(objective, cfg, max(1, self.steps * epochs))
        # the batch order: drawn on the CPU, so every rank draws the same one whatever its GPU model
        self.gen = torch.Generator().manual_seed(cfg.seed)
        # augmentation: the batch order's generator in a single CPU process; on a GPU and on each rank of
        # several, a stream of its own on the device
        augment_seed, dropout_seed = derived_seeds(cfg.seed, self.rank)
        self.aug_gen = (self.gen if self.world == 1 and device.type == "cpu"
                        else torch.Generator(device=device).manual_seed(augment_seed))
        if self.world > 1:
            # dropout: masks of its own on each rank (the weights are already equal: DDP sent rank 0's)
            torch.manual_seed(dropout_seed)
        # the weights that are validated and kept: the model's, or (average > 0) their moving average
        self.average = WeightAverage(self.model, average) if average > 0 else None
        self.result = FitResult(self.snapshot(), 0, None)
        self.history: list[dict] = []
        self.epoch = 0  # epochs finished

    @property
    def kept_model(self) -> nn.Module:
        """The model whose weights are validated and kept: the trained one, or their moving average."""
        return self.average.module if self.average is not None else self.model

    def snapshot(self) -> dict:
        return {k: v.detach().clone() for k, v in self.kept_model.state_dict().items()}

    def state(self, key: str) -> dict:
        return {"fingerprint": key, "epoch": self.epoch, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "generators": [self.gen.get_state(), self.aug_gen.get_state()],
                "rng": rng_states(self.device), "best_state": self.result.best_state,
                "best_epoch": self.result.best_epoch, "best_score": self.result.best_score, "history": self.history,
                "objective": {name: t.clone() for name, t in self.objective.state.items()},
                **({"average": self.average.module.state_dict(), "average_steps": self.average.steps}
                   if self.average is not None else {})}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])  # moves its buffers to the parameters' device
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        for g, saved in zip((self.gen, self.aug_gen), state["generators"]):
            g.set_state(saved)
        set_rng_states(state["rng"], self.device)
        for name, saved in state.get("objective", {}).items():
            self.objective.state[name].copy_(saved)
        self.result = FitResult(state["best_state"], state["best_epoch"], state["best_score"])
        self.history, self.epoch = state["history"], state["epoch"]
        if self.average is not None:
            self.average.module.load_state_dict(state["average"])
            self.average.steps = state["average_steps"]

    def check_finite(self, losses: torch.Tensor, epoch: int) -> None:
        """DivergedError naming the first step whose loss (in `losses`, this epoch's so far) is not finite."""
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            step = int(bad[0])
            hint = " or use precision bf16 or fp32 (fp16 overflows above 65,504)" if self.compute.dtype == torch.float16 else ""
            raise DivergedError(f"{self.desc}: loss became {losses[step].item()} at epoch {epoch}, step {step + 1}; "
                                f"lower the learning rate (lr){hint} and rerun — no model was written")

    def train_epoch(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        """One pass over a fresh permutation of the images; the mean training loss (and accuracy) of its steps.

        A step leaves its loss (and accuracy) on the device and never waits for the host: the values are
        read once per epoch, and checked for divergence every CHECK_EVERY steps."""
        objective, norm = self.objective, self.norm
        epoch = self.epoch + 1
        self.train_model.train()
        for module in objective.frozen:
            module.eval()
        perm = epoch_order(self.n, self.steps, self.batch_size, self.gen).to(self.device)
        losses = torch.zeros(self.steps, device=self.device)
        accuracies = torch.zeros(self.steps, device=self.device)
        bar = tqdm(range(self.steps), desc=f"{self.desc} epoch {epoch}/{self.epochs}", leave=False, mininterval=2,
                   disable=not distributed.is_main())
        for step in bar:
            idx = shard(perm, step, self.batch_size, self.world, self.rank)
            inputs, targets = objective.make_batch(norm.unit(images[idx]), None if labels is None else labels[idx],
                                                   self.aug_gen)
            with self.compute.autocast():
                outputs = self.train_model(norm(inputs))
            outputs = outputs.float()
            loss = objective.loss(outputs, targets)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.average is not None:
                self.average.update(self.model)
            losses[step] = loss.detach()
            if objective.accuracy is not None:
                accuracies[step] = objective.accuracy(outputs.detach(), targets)
            if (step + 1) % CHECK_EVERY == 0:
                self.check_finite(losses[: step + 1], epoch)
        self.check_finite(losses, epoch)
        # summed on the host in float64, one step after another: the numbers a per-step .item() would give
        loss_sum, correct = sum(losses.tolist()), sum(accuracies.tolist())
        loss_sum, correct = distributed.all_mean([loss_sum, correct], self.device)
        metrics = {"train/loss": loss_sum / self.steps}
        if objective.accuracy is not None:
            metrics["train/accuracy"] = correct / self.steps
        return metrics


def fit(objective: Objective, images: torch.Tensor, labels: torch.Tensor | None, plan: Plan, runtime: Runtime,
        validate: Callable[[nn.Module], dict] | None = None, progress: Progress = Progress()) -> FitResult:
    """Train `objective.model` for `plan.epochs` on uint8 `images` (and `labels`); keep the best epoch.

    SGD with Nesterov momentum and a cosine learning-rate schedule over all steps. After each epoch,
    `validate(model)` returns metrics (and images: PIL images under keys ending in .png); the epoch with
    the highest `plan.select` metric is kept (a copy of its weights), or the last epoch when it is None.
    Metrics go to the dvclive `progress.live` per epoch. The forward pass runs under `runtime`'s autocast; the
    whole image set sits on the device, so a step moves no data between host and device. With
    `progress.resume`, the full training state is saved after every epoch and an interrupted run continues from
    it. With `plan.average` (a decay in (0, 1)), what is validated and kept is an exponential moving average of
    the weights (`WeightAverage`), updated after every step; `objective.model` itself ends with the last step's
    weights. With `plan.min_steps`, an epoch of a small image set repeats it until the epochs add up to at least
    that many steps (`_batch_plan`): the same schedule length whatever the number of labelled images.
    """
    epochs, select, desc, live, resume = plan.epochs, plan.select, progress.desc, progress.live, progress.resume
    trainer = _Trainer(objective, len(images), plan, runtime, desc)
    images = images.to(trainer.device)
    labels = labels.to(trainer.device) if labels is not None else None
    saved = resume.load(desc, trainer.device) if resume is not None else None
    if saved is not None:
        trainer.restore(saved)
        tqdm.write(f"{desc}: resuming after epoch {trainer.epoch}/{epochs} from {resume.local_path()}")
        if live is not None:
            for epoch in range(1, len(trainer.history) + 1):
                log_epoch(live, trainer.history[:epoch])
    if live is not None:
        live.step = trainer.epoch + 1  # the epoch about to run, counted from 1: validate may name images by it
    while trainer.epoch < epochs:
        metrics = trainer.train_epoch(images, labels)
        trainer.epoch += 1
        if distributed.is_main():  # one process validates, selects, logs and writes
            if validate is not None:
                metrics.update(validate(trainer.kept_model))
            trainer.result = _keep_best(trainer.result, trainer.epoch, metrics[select] if select else None, select,
                                        trainer.snapshot)
            metrics = storable(metrics)
            trainer.history.append(metrics)
            if live is not None:
                log_epoch(live, trainer.history)
            tqdm.write(f"{desc} epoch {trainer.epoch}/{epochs}: "
                       + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if not is_image(k)))
        if resume is not None:
            resume.save(trainer.state(resume.key()))
    return dataclasses.replace(trainer.result, steps=trainer.steps * epochs)
