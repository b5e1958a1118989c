"""What every stage that runs the model needs, training or not: the device and precision, the
normalisation of uint8 images, and batched prediction. Evaluation and probing import this, not the
training loop, so a change to `train` never reruns them."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn

from selfsup import SelfSupError, distributed
from selfsup.params import ComputeParams


def _native_bf16_cpu() -> bool:
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # AVX512-BF16 / AMX: bf16 at full speed
    return bool(check and check())


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


# bf16 autocast on Apple's GPUs arrived in PyTorch 2.6 (2.5 had float16 only, which needs a gradient scaler this
# project runs on CUDA alone; older releases had none: autocast there would be silently off).
MPS_BF16_SINCE = (2, 6)


def resolve_device(name: str) -> torch.device:
    """`auto`: cuda, else mps, else cpu; a device this machine lacks is one clear error. Touches no GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available() or name == "mps" and not torch.backends.mps.is_available():
        raise SelfSupError(f"compute.device is {name!r} but this machine has no {name}; set compute.device: auto")
    return torch.device(name)


def set_determinism(device: torch.device, deterministic: bool) -> None:
    """On CUDA: deterministic kernels (cuDNN, cuBLAS with a fixed workspace, torch's own) when asked, else
    cuDNN's autotuned fastest ones; and fp32 convolutions in fp32, never TF32, either way (TF32 rounds the
    inputs to 10 bits of mantissa: `precision` alone says when arithmetic is reduced). The CPU needs no
    setting: its results are bitwise repeatable at a fixed thread count."""
    if device.type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    # warn_only: an operation with no deterministic CUDA kernel warns (and stays as it is) instead of failing
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


@dataclass(frozen=True)
class Compute:
    """The device and the autocast precision (None: plain fp32) that training and inference run in."""

    device: torch.device
    dtype: torch.dtype | None = None

    @classmethod
    def resolve(cls, cfg: ComputeParams | None = None, device: torch.device | None = None) -> "Compute":
        """The device (`cfg.device`, unless given: e.g. this rank's GPU) and the precision. `auto` precision:
        bf16 where the hardware runs it natively (CUDA GPUs of compute capability 8.0 and newer, CPUs with
        AVX512-BF16 or AMX), fp16 with a gradient scaler on older CUDA GPUs (where bf16 would be emulated,
        and slow), else fp32. Asks the GPU `device` itself, so no process opens a context on another GPU."""
        cfg = cfg or ComputeParams()
        device = device or resolve_device(cfg.device)
        name, precision = device.type, cfg.precision
        if precision == "auto":
            if name == "cuda":
                precision = "bf16" if torch.cuda.get_device_capability(device) >= (8, 0) else "fp16"
            else:
                precision = "bf16" if name == "cpu" and _native_bf16_cpu() else "fp32"
        if precision == "fp16" and name != "cuda":
            raise SelfSupError(f"compute.precision fp16 needs a CUDA device, not {name}; use bf16, fp32 or auto")
        if name == "mps" and precision == "bf16" and _torch_version() < MPS_BF16_SINCE:
            since = ".".join(map(str, MPS_BF16_SINCE))
            raise SelfSupError(f"compute.precision bf16 on mps needs torch {since} or newer (this is {torch.__version__}); "
                               "use fp32 or auto")
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


@dataclass(frozen=True, eq=False)
class Runtime:
    """What a stage runs the model with, built once (`setup`) and passed down: the device and precision
    (`compute`) and the normalisation of uint8 images on that device (`norm`)."""

    compute: Compute
    norm: Normalize

    @classmethod
    def plain(cls, stats: dict, device: torch.device | str = "cpu") -> "Runtime":
        """fp32 on `device` (nothing asked of the hardware), normalised by `stats`: for tools and tests."""
        device = torch.device(device)
        return cls(Compute(device), Normalize(stats["mean"], stats["std"], device))

    @property
    def device(self) -> torch.device:
        return self.compute.device

    def autocast(self):
        return self.compute.autocast()

    def describe(self) -> str:
        return self.compute.describe()


def setup(cfg: ComputeParams, stats: dict) -> Runtime:
    """The resolved compute setting and, on its device, the normalisation by `stats` (the mean and std of
    a prepared meta.json or of a checkpoint's data): what every stage that runs the model starts with."""
    # under torchrun: join the process group and take this rank's GPU first (a single process keeps its
    # device), so that the precision is asked of that GPU
    device = distributed.init(resolve_device(cfg.device))
    set_determinism(device, cfg.deterministic)
    compute = Compute.resolve(cfg, device)
    return Runtime(compute, Normalize(stats["mean"], stats["std"], compute.device))


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, runtime: Runtime, batch_size: int, method: str | None = None,
            on_device: bool = False):
    """Model outputs (fp32, on the cpu; `on_device`: on the runtime's device) for uint8 images, in batches, in
    eval mode.

    `method` names another of the model's functions to apply instead (e.g. "layer_features"); one that
    returns a dict of tensors gives a dict of the concatenated tensors."""
    model.eval()
    norm, device = runtime.norm, runtime.device
    fn = getattr(model, method) if method else model
    keep = (lambda t: t.float()) if on_device else (lambda t: t.float().cpu())
    chunks = []
    with runtime.autocast():
        for i in range(0, len(images), batch_size):
            out = fn(norm(norm.unit(images[i : i + batch_size].to(device, non_blocking=True))))
            chunks.append({k: keep(v) for k, v in out.items()} if isinstance(out, dict) else keep(out))
    if isinstance(chunks[0], dict):
        return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
    return torch.cat(chunks)
