"""CifarNet backbone (TF-slim `nets/cifarnet.py`), the classifier composed on it, checkpoint I/O.

Pretext heads live with their pretext (selfsup/pretexts/)."""

from __future__ import annotations

import codecs
import json
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from selfsup import SelfSupError
from selfsup.io import atomic_path
from selfsup.params import ModelParams, to_dict

FEATURE_DIM = 192
ARCH = "cifarnet"


class FastLRN(nn.Module):
    """nn.LocalResponseNorm computed as one matrix product over channels.

    The sum of squares over each channel's window is `x² @ band`, a C×C 0/1 band matrix; on a channels_last
    tensor that is a single GEMM, where nn.LocalResponseNorm pads and average-pools a 5-D view. Same
    formula, same output within float rounding (tests compare them).
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, channels: int = 64):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        offset = torch.arange(channels)[None, :] - torch.arange(channels)[:, None]  # [c', c] = c - c'
        band = ((offset >= -((size - 1) // 2)) & (offset <= size // 2)).float()
        self.register_buffer("band", band, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In fp32 whatever the autocast: in fp16 the sum of squares overflows (65,504) from activations of
        # about 85, and the output collapses to 0 or NaN.
        with torch.autocast(x.device.type, enabled=False):
            xf = x.float()
            squares = (xf * xf).permute(0, 2, 3, 1)  # N×H×W×C: contiguous when x is channels_last
            window = (squares @ self.band).permute(0, 3, 1, 2)
            return (xf / (self.k + self.alpha / self.size * window).pow(self.beta)).to(x.dtype)


def _norm_layer(norm: str) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(64)
    if norm == "lrn":
        # TF lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75): PyTorch divides alpha by size.
        return FastLRN(size=9, alpha=0.001, beta=0.75, k=1.0)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; valid: batch, lrn, none")


class CifarNet(nn.Module):
    """CifarNet up to fc4: conv5x5x64 → pool → norm → conv5x5x64 → norm → pool → fc384 → fc192.

    SAME padding and ReLU as in TF-slim. `norm` replaces TF-slim's LRN: `lrn` keeps it, `batch`
    puts batch norm after each convolution (before the ReLU), `none` drops it.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, norm: str = "batch", dropout: float = 0.5):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 (two 2x2 pools), got {image_size}")
        batch = norm == "batch"
        conv1 = nn.Conv2d(in_channels, 64, 5, padding=2, bias=not batch)
        conv2 = nn.Conv2d(64, 64, 5, padding=2, bias=not batch)
        if batch:
            block1 = [conv1, _norm_layer(norm), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            block2 = [conv2, _norm_layer(norm), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        else:
            block1 = [conv1, nn.ReLU(inplace=True), nn.MaxPool2d(2), _norm_layer(norm)]
            block2 = [conv2, nn.ReLU(inplace=True), _norm_layer(norm), nn.MaxPool2d(2)]
        self.conv = nn.Sequential(*block1, *block2)
        self.conv_dim = 64 * (image_size // 4) ** 2
        self.fc3 = nn.Linear(self.conv_dim, 384)
        self.dropout = nn.Dropout(dropout)
        self.fc4 = nn.Linear(384, FEATURE_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the 192-d fc4 features (after ReLU)."""
        x = self.conv(x).flatten(1)
        x = self.dropout(torch.relu(self.fc3(x)))
        return torch.relu(self.fc4(x))

    def layer_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat features of every layer, for frozen-feature probes (call in eval mode).

        conv1: the first block's 64 maps average-pooled to the second block's size (3,136-d at 28 px);
        conv2: the second block's output; fc3, fc4: the fully connected layers after ReLU.
        """
        first = self.conv[:4](x)
        second = self.conv[4:](first)
        fc3 = torch.relu(self.fc3(second.flatten(1)))
        return {
            "conv1": _half(first),
            "conv2": second.flatten(1),
            "fc3": fc3,
            "fc4": torch.relu(self.fc4(fc3)),
        }

    def features_at(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """The flat features of one layer, as layer_features gives them, computing only what it needs (and with
        dropout after fc3 in training mode, as forward): fc4 is forward's output."""
        if layer == "fc4":
            return self(x)
        first = self.conv[:4](x)
        if layer == "conv1":
            return _half(first)
        if layer == "conv2":
            return self.conv[4:](first).flatten(1)
        raise _no_features(layer)

    def feature_dim(self, layer: str) -> int:
        return FEATURE_DIM if layer == "fc4" else self.conv_dim


HEAD_LAYERS = ("conv1", "conv2", "fc4")  # the layers a classifier's logits can sit on (fc4: the whole backbone)


def _half(first: torch.Tensor) -> torch.Tensor:
    """The first block's maps average-pooled to the second block's size (the second pools by 2; image_size is a
    multiple of 4), flat. avg_pool2d, not adaptive_avg_pool2d: the same numbers, forward and backward (checked in
    fp32 and bf16), and unlike the adaptive one's, its CUDA backward is deterministic."""
    return F.avg_pool2d(first, 2).flatten(1)


def _no_features(layer: str) -> ValueError:
    return ValueError(f"no features at {layer!r}; valid: {', '.join(HEAD_LAYERS)}")


class Classifier(nn.Module):
    """A backbone with a linear `logits` layer on the features of one of its layers: fc4, the whole backbone (the
    default), or a convolution (conv1, conv2: the layer a frozen-feature probe often prefers), where the fully
    connected layers after it are left unused (`unused`)."""

    def __init__(self, backbone: CifarNet, num_classes: int, layer: str = "fc4"):
        super().__init__()
        if layer not in HEAD_LAYERS:
            raise _no_features(layer)
        self.backbone, self.layer = backbone, layer
        self.logits = nn.Linear(backbone.feature_dim(layer), num_classes)
        nn.init.zeros_(self.logits.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.features_at(x, self.layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(x))

    def unused(self) -> list[nn.Module]:
        """The backbone's layers after the head's: kept (the checkpoint holds the whole backbone), never trained."""
        return [] if self.layer == "fc4" else [self.backbone.fc3, self.backbone.fc4]


class FlipAverage(nn.Module):
    """Test-time augmentation: the mean of a classifier's logits on the images and on their mirror images, as
    airbench classifies. For models trained with horizontal flips (`augment.flip`)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.classifier(x) + self.classifier(x.flip(-1)))


TTA = {"none": lambda classifier: classifier, "flip": FlipAverage}  # evaluate.tta -> the model that classifies


def build_backbone(model_cfg: ModelParams, in_channels: int, image_size: int) -> CifarNet:
    """The backbone `model_cfg` (the params.yaml `model` section) describes."""
    return CifarNet(in_channels, image_size, norm=model_cfg.norm, dropout=model_cfg.dropout)


def build_classifier(model_cfg: ModelParams, data: dict, num_classes: int, layer: str = "fc4") -> Classifier:
    """The classifier for data with `data["channels"]` and `data["image_size"]` (prepared meta or a checkpoint's),
    its logits on `layer`."""
    return Classifier(build_backbone(model_cfg, data["channels"], data["image_size"]), num_classes, layer)


def load_classifier(ckpt: dict) -> Classifier:
    """The classifier of a finetune or distill checkpoint (as load_checkpoint returns it), weights loaded."""
    model = build_classifier(ModelParams(**ckpt["config"]["model"]), ckpt["data"], len(ckpt["classes"]),
                             ckpt.get("layer", "fc4"))
    model.load_state_dict(ckpt["state_dict"])
    return model


def save_checkpoint(path: str | Path, model: nn.Module, **meta) -> None:
    """Write a state dict with plain-data metadata (config, pretext, ...), atomically."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"arch": ARCH, "state_dict": state, **meta}, tmp)


# The files a user may hand over where a model is expected, by what they are for.
CLASSIFIER_FILES = "models/distill/model.pt (the delivered model) or models/finetune/model.pt"
BACKBONE_FILES = "models/pretrain/<pretext>/backbone.pt (written by pretrain@<pretext>)"
EXPORTED = "an exported model (torch.export .pt2)"
SPEC_JSON = "the exported model's description (JSON)"
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


# a file that is neither text nor a format it knows: another kind of file, or a checkpoint damaged from its first byte
UNKNOWN = ("a file of no format it knows (another kind of file, or a damaged checkpoint: if it is one the pipeline "
           "wrote, delete it and rerun `dvc repro`)")


def foreign_file(path: str | Path) -> str | None:
    """What the file at `path` is when it is plainly not a checkpoint of this project (an image, JSON or other text,
    an exported program, another zip archive, an empty file), in words for an error message; None for what may be
    one: torch's zip format (whole or damaged: torch.load tells) or a pickle (its older format)."""
    path = Path(path)
    with open(path, "rb") as f:
        start = f.read(4096)
    head = start[:16]
    if not head:
        return "an empty file"
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "an image"
    if head.lstrip()[:1] in (b"{", b"["):
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            return "a text file"
        return SPEC_JSON if isinstance(data, dict) and {"classes", "input"} <= data.keys() else "a JSON file"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:  # a zip cut short or garbled: a damaged checkpoint, as likely as anything
            return None
        if any(name.endswith("/archive_format") for name in names):
            return EXPORTED
        return None if any(name.endswith("data.pkl") for name in names) else "a zip archive"
    if head[:1] == b"\x80":  # a pickle: torch.save's older format
        return None
    try:
        codecs.getincrementaldecoder("utf-8")().decode(start)  # a character cut at the end is no error
    except UnicodeDecodeError:
        return UNKNOWN
    return "a text file" if b"\0" not in start else UNKNOWN  # NULs: e.g. a checkpoint zeroed by a crash


def pointer_beside(path: Path, what: str) -> str:
    """The model file next to a description or export the user gave, when there is one: a pointer to it."""
    if what == SPEC_JSON and path.with_suffix(".pt2").is_file():
        return f" (the model it describes is {path.with_suffix('.pt2')})"
    return ""


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict:
    """Read a checkpoint written by save_checkpoint, refusing anything but plain tensors and data.

    `kind`: "classifier" (finetune, distill) or "backbone" (pretrain), or None for either. A file of another kind
    (an image, JSON, an exported program, a resume state, the other kind of checkpoint) is an error that says what
    it is and which file to give; only a damaged checkpoint is one to delete and remake."""
    path = Path(path)
    right = BACKBONE_FILES if kind == "backbone" else CLASSIFIER_FILES
    if not path.is_file():
        raise SelfSupError(f"checkpoint {path} not found; run `dvc repro` to create it")
    what = foreign_file(path)
    if what is not None:
        raise SelfSupError(f"{path} is {what}, not a checkpoint{pointer_beside(path, what)}; give {right}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors have many types; all mean the same to the user
        raise SelfSupError(f"checkpoint {path} is unreadable ({type(err).__name__}); delete it and rerun `dvc repro`") from None
    if isinstance(ckpt, dict) and {"fingerprint", "optimizer"} <= ckpt.keys():
        raise SelfSupError(f"{path} is the training state kept to resume an interrupted run, not a model; give {right}")
    if not isinstance(ckpt, dict) or ckpt.get("arch") != ARCH:
        raise SelfSupError(f"{path} is not a {ARCH} checkpoint of this project; give {right}, or rerun `dvc repro` "
                           "if it is one of those")
    actual = "classifier" if "classes" in ckpt else "backbone"
    if kind is not None and actual != kind:
        held = f"a pre-trained backbone (pretext {ckpt.get('pretext')!r})" if actual == "backbone" else \
            "a classifier (finetune or distill)"
        raise SelfSupError(f"{path} is {held}, not a {kind}; give {right}")
    return ckpt


def check_fits(ckpt: dict, path: str | Path, meta: dict, data_dir: str | Path) -> None:
    """A SelfSupError unless the classifier `ckpt` (read from `path`) was trained on data like that prepared in
    `data_dir` (`meta`: its meta.json): the same classes in the same order, channels and image size."""
    data = ckpt["data"]
    mine, theirs = list(ckpt["classes"]), list(meta["classes"])
    fix = ("the model and the data come from different runs; give the model trained on this data, or rerun "
           "`dvc repro` to train one")
    if mine != theirs:
        same = "the same classes in another order" if sorted(mine) == sorted(theirs) else \
            f"{len(theirs)} classes ({', '.join(theirs[:3])}{', ...' * (len(theirs) > 3)})"
        raise SelfSupError(f"{path} classifies {len(mine)} classes ({', '.join(mine[:3])}{', ...' * (len(mine) > 3)}), "
                           f"but {data_dir} holds {same}: {fix}")
    for key, say in (("channels", lambda n: f"{n} channel{'s' * (n != 1)}"), ("image_size", "{} pixels square".format)):
        if data[key] != meta[key]:
            raise SelfSupError(f"{path} takes images of {say(data[key])}, but {data_dir} holds {say(meta[key])}: {fix}")


def load_backbone(path: str | Path, pretext: str, model_cfg: ModelParams) -> dict:
    """The backbone checkpoint at `path`, which must hold `pretext` trained with the `model_cfg` params."""
    ckpt = load_checkpoint(path, "backbone")
    if ckpt.get("pretext") != pretext or ckpt.get("config", {}).get("model") != to_dict(model_cfg):
        raise SelfSupError(
            f"{path} holds pretext {ckpt.get('pretext')!r} with model {ckpt.get('config', {}).get('model')}, but "
            f"params.yaml asks for pretext {pretext!r} with model {to_dict(model_cfg)}; rerun `dvc repro`"
        )
    return ckpt


def load_backbone_into(classifier: Classifier, backbone_state: dict) -> None:
    """Load pretrained backbone weights into `classifier`; only the new logits layer may be missing."""
    fix = "pretrain and finetune must use the same `model` params and data; rerun `dvc repro`"
    state = {f"backbone.{k}": v for k, v in backbone_state.items()}
    try:
        result = classifier.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a shape mismatch: another image size or channel count
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise SelfSupError(f"pretrained backbone does not fit the classifier ({first}); {fix}") from None
    expected_missing = {"logits.weight", "logits.bias"}
    if set(result.missing_keys) != expected_missing or result.unexpected_keys:
        raise SelfSupError(
            "pretrained backbone does not fit the classifier: missing "
            f"{sorted(set(result.missing_keys) - expected_missing)}, unexpected {sorted(result.unexpected_keys)}; {fix}"
        )
