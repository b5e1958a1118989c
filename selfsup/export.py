"""The delivered model as one self-contained file: a `torch.export` program (.pt2) that takes uint8 images and
returns class probabilities, with the class names and the input spec inside it and beside it (model.json).

Loading it needs torch alone, not this package:

    extra = {"model.json": ""}
    program = torch.export.load("model.pt2", extra_files=extra)
    spec = json.loads(extra["model.json"])
    probabilities = program.module()(images)  # uint8 N×C×H×W as the spec says
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from selfsup import SelfSupError
from selfsup.images import MODES
from selfsup.io import atomic_path
from selfsup.models import EXPORTED, TTA, foreign_file, load_classifier, pointer_beside

SPEC_FILE = "model.json"  # its name inside the .pt2 archive, and beside it


class DeliveredModel(nn.Module):
    """uint8 images N×C×H×W in, class probabilities N×K out: the training split's normalisation inside."""

    def __init__(self, classifier: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.classifier = classifier
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() / 255 - self.mean) / self.std
        return self.classifier(x).softmax(1)


def delivered_model(ckpt: dict, tta: str = "none") -> DeliveredModel:
    """The model of a finetune or distill checkpoint, in eval mode, with its normalisation, classifying with the
    test-time augmentation `tta` (models.TTA)."""
    return DeliveredModel(TTA[tta](load_classifier(ckpt)), ckpt["data"]["mean"], ckpt["data"]["std"]).eval()


def model_spec(ckpt: dict, tta: str = "none") -> dict:
    """What a user of the exported file needs to know: the classes in output order and how to prepare images."""
    data = ckpt["data"]
    return {
        "classes": list(ckpt["classes"]),
        "input": {"dtype": "uint8", "layout": "NCHW", "channels": data["channels"], "height": data["image_size"],
                  "width": data["image_size"], "mode": MODES[data["channels"]],
                  "resize": "any image: converted to `mode`, squashed to height x width, bilinear (PIL), as selfsup.predict does"},
        "output": "class probabilities, N x classes, in the order of `classes`",
        "tta": tta,
        "pretext": ckpt.get("pretext"),
        "distilled": "distill" in ckpt["config"],
        "dataset": data["dataset"],
        "model": ckpt["config"]["model"],
    }


def export_program(model: DeliveredModel, example: torch.Tensor) -> torch.export.ExportedProgram:
    """`model` traced by torch.export on `example` images, with a free batch dimension, as a pure function of its
    weights: in inference form (no parameter requires a gradient), without the example images, and without the
    source locations torch.export records for every node (absolute paths of this checkout and of the interpreter's
    site-packages): the same checkpoint gives the same bytes on any machine, in any folder."""
    batch = torch.export.Dim("batch", min=1)
    model = copy.deepcopy(model).eval().requires_grad_(False)
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes={"images": {0: batch}})
    for module in program.graph_module.modules():
        if isinstance(module, torch.fx.GraphModule):
            for node in module.graph.nodes:
                node.meta.pop("stack_trace", None)
    program.example_inputs = None
    return program


def save_exported(program: torch.export.ExportedProgram, spec: dict, out_dir: str | Path) -> Path:
    """Write model.pt2 (the spec inside) and model.json beside it, atomically; return the .pt2 path."""
    out_dir = Path(out_dir)
    text = json.dumps(spec, indent=2) + "\n"
    with atomic_path(out_dir / "model.pt2") as tmp:
        torch.export.save(program, tmp, extra_files={SPEC_FILE: text})
    with atomic_path(out_dir / SPEC_FILE) as tmp:
        tmp.write_text(text)
    return out_dir / "model.pt2"


def load_exported(path: str | Path) -> tuple[nn.Module, dict]:
    """The exported model (a module on the CPU) and its spec, read with torch alone."""
    path = Path(path)
    if not path.is_file():
        raise SelfSupError(f"exported model {path} not found; run `dvc repro export` to create it")
    what = foreign_file(path)
    if what not in (None, EXPORTED):
        raise SelfSupError(f"{path} is {what}, not an exported model{pointer_beside(path, what)}; "
                           "give models/export/model.pt2")
    extra = {SPEC_FILE: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
        spec = json.loads(extra[SPEC_FILE])
    except Exception as err:  # a truncated or foreign archive fails in many ways; all mean the same to the user
        raise SelfSupError(f"{path} is not a model exported by this project ({type(err).__name__}); "
                           "rerun `dvc repro export`") from None
    return program.module(), spec
