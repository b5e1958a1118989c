"""The delivered model as one self-contained file: a `torch.export` program (.pt2) that takes uint8 images and
returns class probabilities, with the class names and the input spec inside it and beside it (model.json).

Loading it needs torch alone, not this package:

    extra = {"model.json": ""}
    program = torch.export.load("model.pt2", extra_files=extra)
    spec = json.loads(extra["model.json"])
    probabilities = program.module()(images)  # uint8 N×C×H×W as the spec says

torch.export.load unpickles and evaluates parts of the file; `load_exported` reads one only after `check_export`
has found nothing there but what `save_exported` writes, so a .pt2 from elsewhere cannot run code through it.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from selfsup import SelfSupError
from selfsup.images import MODES
from selfsup.io import atomic_path
from selfsup.models import EXPORTED, TTA, foreign_file, load_classifier, pointer_beside

SPEC_FILE = "model.json"  # its name inside the .pt2 archive, and beside it
# how selfsup.images.decode prepares any image (selfsup.predict's and the folders' route), in model.json's words
RESIZE = ("any image: turned upright by its EXIF orientation, a 16-bit one scaled to 8 bits, converted to `mode`, "
          "squashed to height x width by PIL's bilinear resize with reducing_gap=2.0 (a JPEG decoded at a reduced "
          "scale first, Image.draft), as selfsup.predict does")


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
                  "resize": RESIZE},
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


# What torch.export.save writes for this project's export (selfsup.export.save_exported), by its name inside the
# archive's one top-level folder: torch.export.load reads nothing else without running what the file says. Outside
# this, in torch 2.14: a weight or constant whose *_config.json entry has use_pickle (torch.load with
# weights_only=False), a constant named custom_obj_* or opaque_obj_* (TorchScript's unpickler, pickle.loads), a
# non-empty data/sample_inputs/model.pt or the legacy data/weights/model.pt and data/constants/model.pt (torch.load,
# falling back to weights_only=False), data/aotinductor/ (a compiled library it loads), a top-level `version` (the
# 2.7 format, loaded the same way); and in models/model.json, guards_code (made into Python code and exec'd) and
# each expr_str (evaluated by sympy.sympify: Python's eval).
EXPORT_ENTRIES = re.compile(r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
                            r"|\.format_version|\.storage_alignment|models/model\.json|extra/model\.json"
                            r"|data/weights/model_weights_config\.json|data/weights/weight_\d+"
                            r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+"
                            r"|data/sample_inputs/model\.pt)")
PAYLOADS = {"data/weights/model_weights_config.json": re.compile(r"weight_\d+"),
            "data/constants/model_constants_config.json": re.compile(r"tensor_\d+")}
# the operators of the program: aten's, and the region in which FastLRN turns autocast off
TARGETS = re.compile(r"torch\.ops\.aten\.\w+\.\w+|torch\.ops\.higher_order\.wrap_with_autocast")
SYMBOL = re.compile(r"[a-z]+\d+")  # a size torch.export made symbolic: s34, the free batch dimension
# sympy's constructors a shape expression may call (srepr's), and the operators between them
SYMPY_CALLS = {"Symbol", "Integer", "Rational", "Add", "Mul", "Pow", "Max", "Min", "Mod", "FloorDiv", "CeilDiv",
               "CleanDiv", "ModularIndexing", "PythonMod", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not"}
SAFE_NODES = (ast.Expression, ast.Call, ast.Name, ast.Load, ast.Constant, ast.keyword, ast.BinOp, ast.UnaryOp,
              ast.Compare, ast.BoolOp, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


def plain_shape(expr: str) -> bool:
    """Whether a symbolic size of the program (an expr_str, which torch evaluates with sympy.sympify, i.e. eval) is
    sympy constructors, names of sizes and numbers alone."""
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return False
    for node in ast.walk(tree):
        if not isinstance(node, SAFE_NODES):
            return False
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in SYMPY_CALLS):
            return False
        if isinstance(node, ast.Name) and node.id not in SYMPY_CALLS and not SYMBOL.fullmatch(node.id):
            return False
        if isinstance(node, ast.Constant) and not (isinstance(node.value, (bool, int, float)) or
                                                   isinstance(node.value, str) and SYMBOL.fullmatch(node.value)):
            return False
    return True


def _items(data):
    """Every (key, value) of the dicts in JSON `data`, at any depth."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                yield key, value
                stack.append(value)
        elif isinstance(item, list):
            stack += item


def _program_problem(program) -> str | None:
    """What in the serialized program (models/model.json) torch would run as code, in words; None if nothing."""
    if not isinstance(program, dict):
        return "a program that is not one"
    if program.get("guards_code"):
        return "guards_code (Python code) in models/model.json"
    for name, limits in (program.get("range_constraints") or {}).items():
        if not SYMBOL.fullmatch(str(name)) or not isinstance(limits, dict) or any(
                v is not None and type(v) is not int for v in limits.values()):
            return f"a range constraint {name!r} that is not a size's in models/model.json"
    for key, value in _items(program):
        if key == "expr_str" and not (isinstance(value, str) and plain_shape(value)):
            return f"a shape expression that is Python code in models/model.json ({str(value)[:60]!r})"
        if key == "target" and not (isinstance(value, str) and TARGETS.fullmatch(value)):
            return f"a call of {str(value)[:60]!r} in models/model.json"
        if key in ("as_operator", "as_custom_obj", "custom_obj_values") and value:
            return f"{key} in models/model.json"
    return None


def damaged(path: Path, why: str) -> SelfSupError:
    """The error for a .pt2 that cannot be read as an archive, `why` in brackets."""
    return SelfSupError(f"{path} is damaged or not an export ({why}); give models/export/model.pt2, or export it "
                        "again with `dvc repro export`")


def check_export(path: Path) -> None:
    """Refuse a .pt2 with anything torch.export.load would unpickle, load as a library or run as Python code (see
    EXPORT_ENTRIES): only what this project's export writes is loaded. Reads the archive as torch does (its own zip
    reader) and as the 2.7 format's fallback does (zipfile)."""
    def refuse(what: str, runs: bool = True):
        return SelfSupError(f"{path} holds {what}, which this project's export never writes"
                            f"{' and loading would run as code' if runs else ''}; export the model again with "
                            "`dvc repro export`")

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        reader = torch._C.PyTorchFileReader(str(path))
        records = reader.get_all_records()
    except Exception as err:  # a damaged archive fails in many ways
        raise damaged(path, type(err).__name__) from None
    if len(set(names)) != len(names):
        raise refuse("two files of the same name")
    if len({name.split("/", 1)[0] for name in names}) != 1 or any("/" not in name for name in names):
        raise refuse("files outside its one top-level folder (the 2.7 format's, loaded with pickle)")
    try:
        configs = {name: json.loads(reader.get_record(name)) for name in records if name.endswith("_config.json")}
        program = json.loads(reader.get_record("models/model.json")) if "models/model.json" in records else None
    except (ValueError, RuntimeError) as err:
        raise damaged(path, type(err).__name__) from None
    for name, config in configs.items():  # use_pickle anywhere: torch.load(weights_only=False) or pickle.loads
        if any(key == "use_pickle" and value is not False for key, value in _items(config)):
            raise refuse(f"pickled objects (use_pickle in {name})")
    for name, config in configs.items():
        entries = config.get("config") if isinstance(config, dict) else None
        if name not in PAYLOADS or not isinstance(entries, dict):
            continue
        for entry in entries.values():
            payload = entry.get("path_name") if isinstance(entry, dict) else None
            if not (isinstance(payload, str) and PAYLOADS[name].fullmatch(payload)):  # custom_obj_*, opaque_obj_*
                raise refuse(f"pickled objects ({name} names {str(payload)[:60]!r})")
    for name in records:  # torch reads what is under data/ and models/; the rest it leaves alone
        if not EXPORT_ENTRIES.fullmatch(name):
            runs = name.startswith(("data/", "models/"))
            raise refuse(f"pickled objects or code ({name})" if runs else name, runs)
    if "data/sample_inputs/model.pt" in records and reader.get_record("data/sample_inputs/model.pt"):
        raise refuse("pickled objects (data/sample_inputs/model.pt: example inputs, which the export leaves out)")
    problem = _program_problem(program) if program is not None else None  # no program: torch.export.load fails
    if problem:
        raise refuse(problem)


def _spec_problem(spec) -> str | None:
    """What the export's model.json lacks of what its users read (classes, input size and channels); None if
    nothing."""
    image = spec.get("input") if isinstance(spec, dict) else None
    if not (isinstance(spec, dict) and isinstance(spec.get("classes"), list) and spec["classes"]
            and all(isinstance(c, str) for c in spec["classes"])):
        return "model.json: no list of classes"
    if not (isinstance(image, dict) and type(image.get("height")) is int and image.get("channels") in MODES):
        return "model.json: no input height and channels"
    return None


def load_exported(path: str | Path) -> tuple[nn.Module, dict]:
    """The exported model (a module on the CPU) and its spec, read with torch alone once check_export has found
    nothing in the file that loading would run as code; any failure one SelfSupError."""
    path = Path(path)
    if not path.is_file():
        raise SelfSupError(f"exported model {path} not found; run `dvc repro export` to create it")
    what = foreign_file(path)
    if what not in (None, EXPORTED):
        raise SelfSupError(f"{path} is {what}, not an exported model{pointer_beside(path, what)}; "
                           "give models/export/model.pt2")
    check_export(path)
    extra = {SPEC_FILE: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
        spec = json.loads(extra[SPEC_FILE])
        module = program.module()
    except Exception as err:  # a truncated or foreign archive fails in many ways; all mean the same to the user
        raise SelfSupError(f"{path} is not a model exported by this project ({type(err).__name__}); "
                           "rerun `dvc repro export`") from None
    problem = _spec_problem(spec)
    if problem:
        raise SelfSupError(f"{path} is not a model exported by this project ({problem}); rerun `dvc repro export`")
    return module, spec
