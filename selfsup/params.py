"""Load params.yaml into frozen dataclasses, with one clear error per bad value."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from selfsup import SelfSupError
from selfsup.params_audit import AUDIT, audit_log, audited
from selfsup.pretexts import names as pretext_names


class ParamsError(SelfSupError):
    """params.yaml holds a value the pipeline cannot use."""


def positive(value) -> bool:
    return value > 0


def non_negative(value) -> bool:
    return value >= 0


def fraction(value) -> bool:
    return 0 < value <= 1


def check(rule, hint: str):
    """Field metadata: a predicate on the value and the hint printed when it fails."""
    return {"check": rule, "hint": hint}


# A seed seeds torch's generators, and training derives per-rank seeds from it by multiplying by about 10^6: below
# 2^32 every derived seed stays within the 64 bits a generator takes.
SEED = check(lambda s: 0 <= s < 2**32, "an integer from 0 to 4294967295 (2^32 - 1)")


def check_order(params, low: str, high: str, where: str) -> None:
    """A ParamsError unless `params.<low>` is at most `params.<high>` (a range drawn from, e.g. a zoom)."""
    lo, hi = getattr(params, low), getattr(params, high)
    if lo > hi:
        raise ParamsError(f"params.yaml: {where}.{low} ({lo}) is above {high} ({hi}); swap them")


@dataclass(frozen=True)
class DeepFashionParams:
    """Where the user's copy of DeepFashion is and how preprocess turns it into tensors."""

    root: str | None = None
    image_size: int = field(default=32, metadata=check(lambda s: s >= 8 and s % 4 == 0, "a multiple of 4, at least 8"))
    partition: Literal["official", "seeded"] = "official"
    test_fraction: float = field(default=0.2, metadata=check(lambda f: 0 < f < 1, "a number in (0, 1)"))
    max_unreadable: int = field(default=10, metadata=check(non_negative, "0 or more images"))


@dataclass(frozen=True)
class FolderParams:
    """A folder of the user's own images: labelled/<class>/, optional unlabelled/ and test/<class>/."""

    root: str | None = None
    image_size: int = field(default=32, metadata=check(lambda s: s >= 8 and s % 4 == 0, "a multiple of 4, at least 8"))
    channels: Literal[1, 3] = 3
    test_fraction: float = field(default=0.2, metadata=check(lambda f: 0 < f < 1, "a number in (0, 1)"))
    max_unreadable: int = field(default=10, metadata=check(non_negative, "0 or more images"))


@dataclass(frozen=True)
class DataParams:
    dataset: Literal["fashion_mnist", "deepfashion", "folder"] = "fashion_mnist"
    deepfashion: DeepFashionParams = DeepFashionParams()
    folder: FolderParams = FolderParams()


@dataclass(frozen=True)
class PreprocessParams:
    seed: int = field(default=0, metadata=SEED)
    val_fraction: float = field(default=0.1, metadata=check(lambda f: 0 < f < 1, "a number in (0, 1)"))
    fraction: float = field(default=1.0, metadata=check(fraction, "a number in (0, 1]"))


@dataclass(frozen=True)
class ModelParams:
    norm: Literal["batch", "lrn", "none"] = "batch"
    dropout: float = field(default=0.5, metadata=check(lambda p: 0 <= p < 1, "a number in [0, 1)"))


@dataclass(frozen=True)
class ComputeParams:
    """Where and in which precision training runs; `auto` picks the fastest the machine offers."""

    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    processes: int = field(default=1, metadata=check(positive, "a positive integer (1: no torchrun)"))
    deterministic: bool = True


@dataclass(frozen=True)
class OptimParams:
    """Settings every training stage shares: the optimiser and the batch (SGD, cosine schedule)."""

    seed: int = field(default=0, metadata=SEED)
    batch_size: int = field(default=128, metadata=check(positive, "a positive integer"))
    lr: float = field(default=0.05, metadata=check(positive, "a positive number, e.g. 0.05"))
    momentum: float = field(default=0.9, metadata=check(lambda m: 0 <= m < 1, "a number in [0, 1)"))
    weight_decay: float = field(default=5e-4, metadata=check(non_negative, "0 or more"))


def floor_lengthens(n: int, batch_size: int, epochs: int, min_steps: int) -> bool:
    """Whether a floor of `min_steps` optimizer steps lengthens `epochs` passes over n images at `batch_size`
    (selfsup.train._batch_plan; a test holds them together)."""
    return math.ceil(min_steps / epochs) > n // min(batch_size, n)


@dataclass(frozen=True)
class PretrainCommon(OptimParams):
    """Shared by every pretext; `seed` also seeds the random initialisation; `min_steps`, optimizer steps at
    least, lengthens the epochs of a few hundred images (Fashion-MNIST's make more)."""

    val_images: int = field(default=2000, metadata=check(positive, "a positive number of images"))
    min_steps: int = field(default=1000, metadata=check(non_negative, "0 or more optimizer steps"))


@dataclass(frozen=True)
class PretrainParams:
    """`common`, and one section per pretext, checked against that pretext's own params dataclass when the
    pretext is loaded (`section`): validating every section here would load every pretext's code into
    every stage."""

    common: PretrainCommon = PretrainCommon()
    sections: dict = field(default_factory=dict)  # pretext name -> its raw mapping from params.yaml

    @classmethod
    def from_raw(cls, raw: Any, where: str) -> "PretrainParams":
        raw = _mapping(raw, where)
        known = pretext_names()
        unknown = sorted(set(raw) - {"common", *known})
        if unknown:
            raise ParamsError(f"params.yaml: unknown key '{where}.{unknown[0]}' (a typo, or a pretext with no "
                              f"module in selfsup/pretexts/?); valid keys here: common, {', '.join(known)}")
        sections = {}
        for name in known:
            if raw.get(name) is not None:
                sections[name] = _mapping(raw[name], f"{where}.{name}")
        return cls(_build(PretrainCommon, raw.get("common"), f"{where}.common"), sections)

    def section(self, name: str, params_cls: type):
        """The `pretrain.<name>` section as `params_cls` (the pretext's params dataclass), validated."""
        return _build(params_cls, self.sections.get(name), f"pretrain.{name}")


@dataclass(frozen=True)
class AugmentParams:
    flip: bool = True
    translate: int = field(default=2, metadata=check(non_negative, "0 or more pixels"))
    cutout: int = field(default=0, metadata=check(non_negative, "0 (off) or the side of the square, in pixels"))


@dataclass(frozen=True)
class StrongParams:
    """Consistency training's strong view of an unlabelled image: a random affine (and flip), contrast and brightness,
    and a cut-out square."""

    rotate: float = field(default=20.0, metadata=check(non_negative, "0 or more degrees"))
    scale_min: float = field(default=0.8, metadata=check(positive, "a positive zoom, e.g. 0.8"))
    scale_max: float = field(default=1.2, metadata=check(positive, "a positive zoom, e.g. 1.2"))
    translate: float = field(default=0.15, metadata=check(lambda t: 0 <= t < 1, "a fraction of the size in [0, 1)"))
    brightness: float = field(default=0.3, metadata=check(non_negative, "0 or more, on the [0, 1] scale"))
    contrast: float = field(default=0.4, metadata=check(lambda c: 0 <= c < 1, "a number in [0, 1)"))
    cutout: int = field(default=12, metadata=check(non_negative, "0 (off) or the side of the square, in pixels"))


@dataclass(frozen=True)
class ConsistencyParams:
    """FixMatch: an unlabelled image's confident guess on a weak view is the target for a strong view of it."""

    threshold: float = field(default=0.95, metadata=check(lambda t: 0 < t < 1, "a confidence in (0, 1), e.g. 0.95"))
    thresholds: Literal["fixed", "per_class"] = "fixed"
    ratio: int = field(default=3, metadata=check(positive, "a positive number of unlabelled images per labelled one"))
    weight: float = field(default=1.0, metadata=check(non_negative, "0 or more, e.g. 1"))
    strong: StrongParams = StrongParams()


@dataclass(frozen=True)
class FinetuneParams(OptimParams):
    protocol: Literal["full", "fc", "head", "lp-ft"] = "full"
    transfer: Literal["all", "conv"] = "conv"
    head: Literal["fc4", "conv1", "conv2", "probe"] = "fc4"
    pretrained_lr: float = field(default=1.0, metadata=check(fraction, "a fraction of lr in (0, 1]"))
    labels_per_class: Union[int, Literal["all"]] = field(
        default="all", metadata=check(lambda n: n == "all" or n > 0, "a positive integer or `all`")
    )
    budget: Literal["exact", "at_most"] = "exact"
    augment: AugmentParams = AugmentParams()
    epochs: int = field(default=7, metadata=check(positive, "a positive integer"))
    min_steps: int = field(default=500, metadata=check(non_negative, "0 or more optimizer steps"))
    keep: Literal["last", "best"] = "last"
    label_smoothing: float = field(default=0.0, metadata=check(lambda e: 0 <= e < 1, "a number in [0, 1)"))
    ema: float = field(default=0.0, metadata=check(lambda d: 0 <= d < 1, "0 (off) or a decay in (0, 1), e.g. 0.999"))
    unlabelled: Literal["none", "consistency"] = "none"
    consistency: ConsistencyParams = ConsistencyParams()

    def __post_init__(self):
        check_order(self.consistency.strong, "scale_min", "scale_max", "finetune.consistency.strong")


@dataclass(frozen=True)
class DistillParams(OptimParams):
    """A student trained on every training image with the fine-tuned model's predictions as targets."""

    when: Literal["auto", "always", "never"] = "never"
    init: Literal["teacher", "backbone"] = "teacher"
    epochs: int = field(default=3, metadata=check(positive, "a positive integer"))
    rounds: int = field(default=2, metadata=check(positive, "a positive integer"))
    temperature: float = field(default=1.0, metadata=check(positive, "a positive number, e.g. 1"))
    threshold: float = field(default=0.9, metadata=check(lambda t: 0 <= t < 1, "a number in [0, 1): 0 for soft targets"))
    per_class: int = field(default=0, metadata=check(non_negative, "0 (off) or a number of images per class"))
    label_weight: float = field(default=1.0, metadata=check(lambda w: 0 <= w <= 1, "a number in [0, 1]"))
    augment: AugmentParams = AugmentParams()


@dataclass(frozen=True)
class ProbeParams:
    """Frozen-feature evaluation of every pretrained backbone: kNN and a linear probe per layer."""

    k: int = field(default=20, metadata=check(positive, "a positive number of neighbours"))
    select_labels_per_class: int = field(default=1000, metadata=check(positive, "a positive integer"))
    labels_per_class: tuple[Union[int, Literal["all"]], ...] = (10, 100, 1000, "all")
    budget: Literal["exact", "at_most"] = "at_most"  # a ladder of budgets: one beyond a small class uses it whole
    seeds: int = field(default=3, metadata=check(positive, "a positive number of label draws"))
    weight_decay: float = field(default=1e-4, metadata=check(non_negative, "0 or more"))
    steps: int = field(default=100, metadata=check(positive, "a positive number of L-BFGS iterations"))


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int = field(default=1000, metadata=check(positive, "a positive integer"))
    tta: Literal["none", "flip"] = "none"


@dataclass(frozen=True)
class Params:
    pretext: str = "none"
    pretexts: tuple[str, ...] = ("none",)
    data: DataParams = DataParams()
    preprocess: PreprocessParams = PreprocessParams()
    model: ModelParams = ModelParams()
    pretrain: PretrainParams = PretrainParams()
    compute: ComputeParams = ComputeParams()
    finetune: FinetuneParams = FinetuneParams()
    distill: DistillParams = DistillParams()
    probe: ProbeParams = ProbeParams()
    evaluate: EvaluateParams = EvaluateParams()

    def __post_init__(self):
        for name in (self.pretext, *self.pretexts):
            if name not in pretext_names():
                raise ParamsError(
                    f"params.yaml: unknown pretext {name!r}; valid pretexts: {', '.join(pretext_names())}"
                )
        if not self.probe.labels_per_class:
            raise ParamsError("params.yaml: probe.labels_per_class is empty; list at least one budget, e.g. "
                              "[10, 100, 1000, all]")
        for i, n in enumerate(self.probe.labels_per_class):
            if n != "all" and n <= 0:
                raise ParamsError(f"params.yaml: probe.labels_per_class holds {n!r}; expected positive integers or `all`")
            if n in self.probe.labels_per_class[:i]:
                raise ParamsError(f"params.yaml: probe.labels_per_class lists {n!r} twice; list each budget once")
        if self.pretext not in self.pretexts:
            raise ParamsError(
                f"params.yaml: pretext {self.pretext!r} is not pretrained; add it to `pretexts` "
                f"(now {list(self.pretexts)})"
            )


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "null"}.get(tp, str(tp))


def _convert(value: Any, tp, where: str):
    """Return `value` as type `tp`, or raise ParamsError naming `where` and what was expected."""
    origin = typing.get_origin(tp)
    if hasattr(tp, "from_raw"):
        return tp.from_raw(value, where)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is Literal:  # by type too: 3.0 and true equal 3 and 1 but are not them
        if any(value == option and type(value) is type(option) for option in typing.get_args(tp)):
            return value
    elif origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, where)
            except ParamsError:
                pass
    elif origin is tuple:
        if isinstance(value, list):
            return tuple(_convert(v, typing.get_args(tp)[0], f"{where}[{i}]") for i, v in enumerate(value))
    elif tp is float:  # a finite one: YAML reads .inf and .nan as numbers, and no setting here takes them
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        if isinstance(value, str):  # YAML reads 5e-4 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return number
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise ParamsError(f"params.yaml: {where} is {value!r}; expected {_describe(tp)}")


def _mapping(raw: Any, where: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ParamsError(f"params.yaml: {where or 'the file'} must be a mapping of keys to values")
    return raw


def _build(cls, raw: Any, where: str):
    raw = _mapping(raw, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        valid = ", ".join(fields) or "none"
        raise ParamsError(f"params.yaml: unknown key {key!r} (a typo?); valid keys here: {valid}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        meta = fields[name].metadata
        try:
            values[name] = _convert(value, hints[name], key)
            valid = "check" not in meta or meta["check"](values[name])
        except ParamsError:
            if "hint" not in meta:
                raise
            valid = False
        if not valid:
            raise ParamsError(f"params.yaml: {key} is {value!r}; expected {meta['hint']}")
    return cls(**values)


def parse_params(raw: dict) -> Params:
    """Validate a params mapping (as read from YAML) into Params."""
    return _build(Params, raw, "")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml. With $SELFSUP_PARAMS_AUDIT set (a folder; the tests set it), the params come
    audited (`audited`): the process writes the keys it read there when it ends."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found; run the stages from the repository root")
    with path.open() as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ParamsError(f"{path} is not valid YAML: {err}".replace("\n", " ")) from None
    params = parse_params(raw)
    folder = os.environ.get(AUDIT)
    if not folder:
        return params
    audit_log(Path(folder))
    return audited(params)


def to_dict(params) -> dict:
    """A plain dict of a params dataclass, safe to store in a weights_only checkpoint."""
    return dataclasses.asdict(params)
