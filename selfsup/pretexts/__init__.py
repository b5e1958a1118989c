"""The pretext registry: every module of this package is one pretext, named after its file.

A pretext module defines its params dataclass (the `pretrain.<name>` section of params.yaml), its head,
batch maker and loss, cites its paper, and ends with `SPEC = PretextSpec(...)`. Adding a pretext is that
module, its `pretrain.<name>` section and its name in `pretexts`; nothing else is edited.

`names()` lists the modules without importing them and `get_pretext(name)` imports only the one asked
for, so a stage that runs one pretext never loads another's code: `pretrain@<name>` depends on
`selfsup/pretexts/<name>.py` alone among them. This module imports nothing heavy (params.py reads the
names from it to validate params.yaml).

A pretext's make_batch receives images in [0, 1] and each image's index in the training set (never a label).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class PretextSpec:
    """One pretext task.

    params: the dataclass of its `pretrain.<name>` section.
    make_head: (pretext params, channels, image size) → the head put on the backbone's 192-d features;
        None means the task does not train (the backbone stays as initialised).
    make_batch: pretext params → selfsup.train.MakeBatch, turning unlabelled images (and their indices)
        into (inputs, targets).
    loss: outputs × targets → scalar (required when the task trains).
    accuracy: outputs × targets → fraction correct, for tasks that have one.
    shows_images: outputs are images; the pretrain stage logs a grid of inputs and outputs each epoch.
    views: pretext params → how many network inputs make_batch turns each source image into.
    """

    params: type
    make_head: Callable | None = None
    make_batch: Callable | None = None
    loss: Callable | None = None
    accuracy: Callable | None = None
    shows_images: bool = False
    views: Callable[[object], int] = lambda cfg: 1

    def __post_init__(self):
        if self.make_head is not None and (self.make_batch is None or self.loss is None):
            raise TypeError("a pretext that trains (make_head) needs make_batch and loss")

    @property
    def trains(self) -> bool:
        return self.make_head is not None

    def source_batch_size(self, cfg, batch_size: int) -> int:
        """Source images per step so that the network sees about `batch_size` inputs, as in a plain step.

        On a CPU the cost per image grows with the batch (cache), so a pretext that fed the network
        4 or 6 times the plain batch would pay up to 1.4x per image for nothing but its size.
        """
        return max(1, batch_size // self.views(cfg))


def names() -> list[str]:
    """The registered pretexts: the modules of this package (those not starting with _), sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get_pretext(name: str) -> PretextSpec:
    """The spec of pretext `name` (importing its module only); ValueError listing the valid names otherwise."""
    if name not in names():
        raise ValueError(f"unknown pretext {name!r}; valid pretexts: {', '.join(names())}")
    module = importlib.import_module(f"{__name__}.{name}")
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, PretextSpec):
        raise TypeError(f"{module.__file__} must define SPEC = PretextSpec(...)")
    return spec
