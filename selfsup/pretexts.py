"""The pretext registry: a name maps to how that task pre-trains a backbone without labels.

Adding a pretext is one PretextSpec entry here plus one params section `pretrain.<name>`
(a dataclass field of PretrainParams); the `pretrain@<name>` stage then exists by listing it in `pretexts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn.functional as F
from torch import nn

from selfsup import params as P
from selfsup.train import MakeBatch


@dataclass(frozen=True)
class PretextSpec:
    """One pretext task.

    params: the dataclass of its `pretrain.<name>` section.
    make_head: pretext params → the head put on the backbone's 192-d features; None means the task does
        not train (the backbone stays as initialised).
    make_batch: pretext params → MakeBatch, turning unlabelled images into (inputs, targets).
    loss: outputs × targets → scalar.
    classify: targets are class indices (pretext accuracy is logged).
    """

    params: type
    make_head: Callable[[object], nn.Module] | None = None
    make_batch: Callable[[object], MakeBatch] | None = None
    loss: Callable = F.cross_entropy
    classify: bool = True

    @property
    def trains(self) -> bool:
        return self.make_head is not None


PRETEXTS: dict[str, PretextSpec] = {
    # No pre-training: a seeded random initialisation, so `pretext=none` is the supervised baseline.
    "none": PretextSpec(params=P.NoneParams),
}


def get_pretext(name: str) -> PretextSpec:
    """The spec registered under `name`; ValueError listing the valid names otherwise."""
    try:
        return PRETEXTS[name]
    except KeyError:
        raise ValueError(f"unknown pretext {name!r}; valid pretexts: {', '.join(PRETEXTS)}") from None
