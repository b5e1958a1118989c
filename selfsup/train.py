"""The one training loop, used by every pretext and by fine-tuning; they differ only by Objective."""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from selfsup import SelfSupError, distributed
from selfsup.io import atomic_path
from selfsup.params import ComputeParams, OptimParams

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
    accuracy: outputs × targets → fraction correct, logged where the task has one;
    lr_scales: (submodule, factor) pairs whose parameters train at factor × lr (e.g. pretrained layers).
    """

    model: nn.Module
    make_batch: MakeBatch
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
    frozen: list[nn.Module] = field(default_factory=list)
    accuracy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    lr_scales: list[tuple[nn.Module, float]] = field(default_factory=list)


def top1_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose highest logit is the target class."""
    return (logits.argmax(1) == targets).float().mean()


def _native_bf16_cpu() -> bool:
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # AVX512-BF16 / AMX: bf16 at full speed
    return bool(check and check())


@dataclass(frozen=True)
class Compute:
    """The device and the autocast precision (None: plain fp32) that training and inference run in."""

    device: torch.device
    dtype: torch.dtype | None = None

    @classmethod
    def resolve(cls, cfg: ComputeParams | None = None) -> "Compute":
        """`auto` device: cuda, else mps, else cpu. `auto` precision: bf16 where the hardware runs it
        natively (CUDA with bf16, CPUs with AVX512-BF16 or AMX), fp16 on other CUDA GPUs, else fp32."""
        cfg = cfg or ComputeParams()
        name = cfg.device
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        if name == "cuda" and not torch.cuda.is_available() or name == "mps" and not torch.backends.mps.is_available():
            raise SelfSupError(f"compute.device is {name!r} but this machine has no {name}; set compute.device: auto")
        device = torch.device(name)
        precision = cfg.precision
        if precision == "auto":
            if name == "cuda":
                precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                precision = "bf16" if name == "cpu" and _native_bf16_cpu() else "fp32"
        if precision == "fp16" and name != "cuda":
            raise SelfSupError(f"compute.precision fp16 needs a CUDA device, not {name}; use bf16, fp32 or auto")
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        return cls(device, dtype)

    def autocast(self):
        """Mixed precision for the forward pass (weights, gradients and the optimiser stay fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def describe(self) -> str:
        world = distributed.world_size()
        return (f"{self.device.type} {str(self.dtype or torch.float32).removeprefix('torch.')}"
                + (f" x{world} processes" if world > 1 else ""))


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


def _param_groups(objective: Objective, lr: float) -> list[dict]:
    """Trainable parameters (the frozen modules left out), grouped by learning rate."""
    frozen = {id(p) for m in objective.frozen for p in m.parameters()}
    scale = {id(p): factor for m, factor in objective.lr_scales for p in m.parameters()}
    groups: dict[float, list[nn.Parameter]] = {}
    for p in objective.model.parameters():
        if id(p) not in frozen:
            groups.setdefault(scale.get(id(p), 1.0), []).append(p)
    return [{"params": ps, "lr": lr * factor} for factor, ps in sorted(groups.items(), reverse=True)]


def setup(cfg: ComputeParams, stats: dict) -> tuple[Compute, Normalize]:
    """The resolved compute setting and, on its device, the normalisation by `stats` (the mean and std of
    a prepared meta.json or of a checkpoint's data): what every stage that runs the model starts with."""
    compute = Compute.resolve(cfg)
    # under torchrun: join the process group and take this rank's GPU (a single process keeps its device)
    compute = Compute(distributed.init(compute.device), compute.dtype)
    return compute, Normalize(stats["mean"], stats["std"], compute.device)


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, norm: Normalize, batch_size: int,
            compute: Compute | None = None, method: str | None = None):
    """Model outputs (fp32, on the cpu) for uint8 images, in batches, in eval mode.

    `method` names another of the model's functions to apply instead (e.g. "layer_features"); one that
    returns a dict of tensors gives a dict of the concatenated tensors."""
    model.eval()
    device = norm.mean.device
    fn = getattr(model, method) if method else model
    chunks = []
    with (compute or Compute(device)).autocast():
        for i in range(0, len(images), batch_size):
            out = fn(norm(norm.unit(images[i : i + batch_size].to(device, non_blocking=True))))
            chunks.append({k: v.float().cpu() for k, v in out.items()} if isinstance(out, dict) else out.float().cpu())
    if isinstance(chunks[0], dict):
        return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
    return torch.cat(chunks)


@torch.inference_mode()
def evaluate_objective(objective: Objective, images: torch.Tensor, ids: torch.Tensor, norm: Normalize,
                       batch_size: int, seed: int, compute: Compute | None = None) -> dict[str, float]:
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
        with (compute or Compute(device)).autocast():
            outputs = objective.model(norm(inputs))
        outputs = outputs.float()
        losses.append(objective.loss(outputs, targets).item())
        if objective.accuracy is not None:
            accuracies.append(objective.accuracy(outputs, targets).item())
    metrics = {"val/loss": sum(losses) / len(losses)}
    if accuracies:
        metrics["val/accuracy"] = sum(accuracies) / len(accuracies)
    return metrics


@dataclass(frozen=True)
class Resume:
    """Where fit keeps its training state after every epoch, and what the state must match to be resumed.

    An interrupted run restarted with the same `fingerprint` (e.g. params, data, compute, code) continues from the
    last finished epoch and ends exactly as an uninterrupted run would; a state saved under another
    fingerprint is ignored. The file is removed by the caller once its outputs are written.
    """

    path: Path
    fingerprint: dict

    def key(self) -> str:
        return json.dumps(self.fingerprint, sort_keys=True)

    def local_path(self) -> Path:
        """This process's state file: `path` itself, or a file beside it for rank r > 0 of several."""
        r = distributed.rank()
        return self.path if r == 0 else self.path.with_name(f"{self.path.stem}.rank{r}{self.path.suffix}")


def _rng_states(device: torch.device) -> dict:
    """The global random states a training step draws from (dropout uses the device's default generator)."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        states["mps"] = torch.mps.get_rng_state()
    return states


def _set_rng_states(states: dict, device: torch.device) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)
    if "mps" in states:
        torch.mps.set_rng_state(states["mps"])


def _is_image(key: str) -> bool:
    return key.endswith(".png")


def _log_epoch(live, metrics: dict) -> None:
    """Send one epoch's numbers (and images, keys ending in .png) to dvclive, then advance its step."""
    for key, value in metrics.items():
        if _is_image(key):
            live.log_image(key, value.numpy())
        else:
            live.log_metric(key, value)
    live.next_step()


def _storable(metrics: dict) -> dict:
    """Epoch metrics with images as uint8 H×W×C tensors, so the training state loads with weights_only."""
    import numpy as np

    return {k: torch.from_numpy(np.array(v)) if _is_image(k) else v for k, v in metrics.items()}


def fit(
    objective: Objective,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    cfg: OptimParams,
    epochs: int,
    norm: Normalize,
    live=None,
    validate: Callable[[nn.Module], dict] | None = None,
    select: str | None = None,
    desc: str = "train",
    compute: Compute | None = None,
    resume: Resume | None = None,
) -> FitResult:
    """Train `objective.model` for `epochs` on uint8 `images` (and `labels`); keep the best epoch.

    SGD with Nesterov momentum and a cosine learning-rate schedule over all steps. After each epoch,
    `validate(model)` returns metrics (and images: PIL images under keys ending in .png); the epoch with
    the highest `select` metric is kept (a copy of its weights), or the last epoch when `select` is None.
    Metrics go to the dvclive `live` per epoch. The forward pass runs under `compute`'s autocast; the
    whole image set sits on the device, so a step moves no data between host and device. With `resume`,
    the full training state is saved after every epoch and an interrupted run continues from it.
    """
    device = norm.mean.device
    compute = compute or Compute(device)
    scaler = torch.amp.GradScaler(device.type, enabled=compute.dtype == torch.float16)
    model = objective.model.to(device).to(memory_format=torch.channels_last)
    for module in objective.frozen:
        module.requires_grad_(False)
    world, rank, main = distributed.world_size(), distributed.rank(), distributed.is_main()
    # Under torchrun every rank holds a replica; DDP averages the gradients of the ranks' shards.
    train_model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) if world > 1 else model
    optimizer = torch.optim.SGD(_param_groups(objective, cfg.lr), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                                weight_decay=cfg.weight_decay)
    n = len(images)
    batch_size = min(cfg.batch_size, n)
    if batch_size < world:
        raise SelfSupError(f"{desc}: a batch of {batch_size} images cannot be shared by {world} processes; "
                           "raise batch_size or lower compute.processes")
    steps_per_epoch = n // batch_size  # the ragged last batch is dropped: batch norm dislikes tiny batches
    total_steps = max(1, steps_per_epoch * epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)  # the batch order: the same on every rank
    # augmentation: the same generator in a single process; its own stream on each rank of several
    aug_gen = gen if world == 1 else torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + rank + 1)
    images = images.to(device)
    labels = labels.to(device) if labels is not None else None

    def snapshot() -> dict:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    result = FitResult(snapshot(), 0, None)
    history: list[dict] = []
    done = 0
    state_path = resume.local_path() if resume is not None else None
    if state_path is not None and state_path.is_file():
        try:
            state = torch.load(state_path, map_location=device, weights_only=True)
        except Exception as err:  # noqa: BLE001  any unreadable state is only a lost head start
            state = {}
            tqdm.write(f"{desc}: {state_path} cannot be read ({type(err).__name__}); starting afresh")
        if state and state.get("fingerprint") != resume.key():
            tqdm.write(f"{desc}: {state_path} was saved under other params, data or code; starting afresh")
        elif state:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            for g, saved in zip((gen, aug_gen), state["generators"]):
                g.set_state(saved.cpu())
            _set_rng_states({k: v.cpu() for k, v in state["rng"].items()}, device)
            result = FitResult(state["best_state"], state["best_epoch"], state["best_score"])
            history, done = state["history"], state["epoch"]
            tqdm.write(f"{desc}: resuming after epoch {done}/{epochs} from {state_path}")
            if live is not None:
                for metrics in history:
                    _log_epoch(live, metrics)
    for epoch in range(done + 1, epochs + 1):
        train_model.train()
        for module in objective.frozen:
            module.eval()
        perm = torch.randperm(n, generator=gen, device=device)
        loss_sum = correct = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"{desc} epoch {epoch}/{epochs}", leave=False, mininterval=2,
                   disable=not main)
        for step in bar:
            # this rank's shard of the batch; all shards the same size (a remainder of the batch is dropped)
            idx = perm[step * batch_size : (step + 1) * batch_size][: batch_size - batch_size % world][rank::world]
            inputs, targets = objective.make_batch(norm.unit(images[idx]), None if labels is None else labels[idx], aug_gen)
            with compute.autocast():
                outputs = train_model(norm(inputs))
            outputs = outputs.float()
            loss = objective.loss(outputs, targets)
            if not torch.isfinite(loss):
                raise DivergedError(
                    f"{desc}: loss became {loss.item()} at epoch {epoch}, step {step + 1}; "
                    "lower the learning rate (lr) and rerun — no model was written"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.item()
            if objective.accuracy is not None:
                correct += objective.accuracy(outputs.detach(), targets).item()
        loss_sum, correct = distributed.all_mean([loss_sum, correct], device)
        metrics = {"train/loss": loss_sum / steps_per_epoch}
        if objective.accuracy is not None:
            metrics["train/accuracy"] = correct / steps_per_epoch
        if main:  # one process validates, selects, logs and writes
            if validate is not None:
                metrics.update(validate(model))
            score = metrics[select] if select else None
            if select is None or result.best_score is None or score > result.best_score:
                result = FitResult(snapshot(), epoch, score)
            metrics = _storable(metrics)
            history.append(metrics)
            if live is not None:
                _log_epoch(live, metrics)
            tqdm.write(f"{desc} epoch {epoch}/{epochs}: "
                       + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if not _is_image(k)))
        if state_path is not None:
            with atomic_path(state_path) as tmp:
                torch.save({"fingerprint": resume.key(), "epoch": epoch, "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                            "scaler": scaler.state_dict(), "generators": [gen.get_state(), aug_gen.get_state()],
                            "rng": _rng_states(device), "best_state": result.best_state,
                            "best_epoch": result.best_epoch, "best_score": result.best_score, "history": history}, tmp)
    return result
