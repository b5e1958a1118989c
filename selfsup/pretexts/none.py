"""No pre-training: the backbone is the seeded random initialisation, so `pretext=none` is the
supervised-from-scratch baseline every other pretext is measured against."""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.pretexts import PretextSpec


@dataclass(frozen=True)
class NoneParams:
    """`none` has nothing to tune: its backbone is the seeded random initialisation."""


SPEC = PretextSpec(params=NoneParams)
