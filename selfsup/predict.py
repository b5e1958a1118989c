"""Classify image files with a trained model: `python -m selfsup.predict MODEL IMAGE_OR_FOLDER... [--csv FILE]`.

MODEL is the delivered checkpoint (models/distill/model.pt, the distilled student or, with distillation off, the
fine-tuned model; models/finetune/model.pt works too: runs where `compute.device: auto` would, in the
precision evaluate used) or the exported file (models/export/model.pt2: runs on the CPU in fp32, with torch
alone). Every image is prepared as the model's training images were: the channels and size the model records,
through the same decoder as preprocess. Folders are walked to any depth; files without an image suffix there
are left out, unreadable images are listed and the others still classified.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import re
import sys
import zipfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from selfsup import SelfSupError
from selfsup.cli import run_stage
from selfsup.export import delivered_model, load_exported, model_spec
from selfsup.images import IMAGE_SUFFIXES, MODES, decode_files, walk_images
from selfsup.io import atomic_path
from selfsup.models import CLASSIFIER_FILES, EXPORTED, TTA, foreign_file, load_checkpoint, pointer_beside
from selfsup.params import ComputeParams, EvaluateParams
from selfsup.runtime import predict, resolve_device, setup

PREDICT_FILES = f"{CLASSIFIER_FILES}, or the exported models/export/model.pt2"
CHUNK = 1024  # images decoded and classified at a time: memory stays flat for any number of files


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
    problem = _program_problem(program)
    if program is not None and problem:
        raise refuse(problem)


def _spec_problem(spec) -> str | None:
    """What the export's model.json lacks of what predict reads; None if nothing."""
    image = spec.get("input") if isinstance(spec, dict) else None
    if not (isinstance(spec, dict) and isinstance(spec.get("classes"), list) and spec["classes"]
            and all(isinstance(c, str) for c in spec["classes"])):
        return "model.json: no list of classes"
    if not (isinstance(image, dict) and type(image.get("height")) is int and image.get("channels") in MODES):
        return "model.json: no input height and channels"
    return None


def _load_exported(path: Path) -> tuple[torch.nn.Module, dict]:
    """The exported program, after check_export; any failure past it one line."""
    check_export(path)
    try:
        module, spec = load_exported(path)
    except SelfSupError:
        raise
    except Exception as err:  # torch builds the program in many steps; any failure means the same to the user
        raise SelfSupError(f"{path} is not a model exported by this project ({type(err).__name__}); "
                           "rerun `dvc repro export`") from None
    problem = _spec_problem(spec)
    if problem:
        raise SelfSupError(f"{path} is not a model exported by this project ({problem}); rerun `dvc repro export`")
    return module, spec


def _why(err: Exception) -> str:
    """An exception of building a model from a checkpoint, in one line."""
    if isinstance(err, KeyError):
        return f"no {err.args[0]!r} in it" if err.args else "KeyError"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    line = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0] if lines else ""
    return f"{type(err).__name__}: {line}" if line else type(err).__name__


def load_predictor(path: str | Path, device: str = "auto", batch_size: int = 256, tta: str | None = None):
    """(a function from uint8 images N×C×H×W to (class probabilities, the scores that rank them) on the CPU,
    the model's spec). A checkpoint ranks by its logits, as evaluate does: probabilities can tie in fp32 where the
    logits do not. `tta` (models.TTA) applies to a checkpoint, default evaluate.tta's default; an exported
    program has its own built in (its spec says which). `device` is --device: for a checkpoint."""
    path = Path(path)
    if path.is_dir():
        inside = [p for p in (path / "model.pt2", path / "model.pt") if p.is_file()]
        example = inside[0] if inside else "models/export/model.pt2"
        raise SelfSupError(f"{path} is a directory; give the model file, e.g. {example}")
    if not path.is_file():
        raise SelfSupError(f"model {path} not found; give {PREDICT_FILES}")
    what = foreign_file(path)
    if what is not None and what != EXPORTED:  # the description beside the export, an image given first, ...
        raise SelfSupError(f"{path} is {what}, not a model{pointer_beside(path, what)}; give {PREDICT_FILES} "
                           "first, then the images")
    if what is None and path.suffix == ".pt2" and not zipfile.is_zipfile(path):  # e.g. truncated: no zip directory
        raise damaged(path, "a .pt2 file that is not a readable zip archive")
    if what == EXPORTED:
        if tta is not None:
            raise SelfSupError(f"{path} has its test-time augmentation built in (model.json: tta); "
                               "leave out --tta, or give the checkpoint models/distill/model.pt")
        module, spec = _load_exported(path)

        @torch.inference_mode()
        def run(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            probs = torch.cat([module(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
            return probs, probs

        return run, spec
    try:
        resolve_device(device)
    except SelfSupError:  # its message names params.yaml's compute.device: here the flag is the fix
        raise SelfSupError(f"--device {device}, but this machine has no {device}; use --device auto (the best this "
                           "machine has) or --device cpu") from None
    ckpt = load_checkpoint(path, "classifier")
    tta = EvaluateParams().tta if tta is None else tta
    try:  # a checkpoint of another version: model params it no longer has, a missing key, weights of other shapes
        model = delivered_model(ckpt, tta).classifier  # without the wrapper: normalised as evaluate normalises
        spec = model_spec(ckpt, tta)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise SelfSupError(f"{path} is not a checkpoint this version can load ({_why(err)}); rerun `dvc repro` to "
                           "make it again") from None
    runtime = setup(ComputeParams(device=device), ckpt["data"])
    model.to(runtime.device)

    def run_checkpoint(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = predict(model, images, runtime, batch_size)
        return logits.softmax(1), logits

    return run_checkpoint, spec


def gather(inputs: list[str]) -> tuple[list[Path], int]:
    """The image files named or found under the folders named, and how many other files the folders held."""
    files, others = [], 0
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            images, rest = walk_images(path)
            if not images:
                raise SelfSupError(f"folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            files += images
            others += len(rest)
        elif path.is_file():
            files.append(path)  # named explicitly: tried whatever its suffix
        else:
            raise SelfSupError(f"{path} not found; give image files or folders of them")
    return files, others


def check_csv(out: str, model: str, inputs: list[Path]) -> None:
    """Refuse a --csv path that cannot take the table, or that would overwrite the model or an input image."""
    path = Path(out)
    if path.is_dir():
        raise SelfSupError(f"--csv {out} is a directory; give a file name for the table, e.g. {path / 'predictions.csv'}")
    for parent in path.parents:  # the nearest that exists must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise SelfSupError(f"--csv {out}: {parent} is a file, not a folder; give a path in a folder")
            break
    target = path.resolve()
    for what, other in (("the model", Path(model)), *(("an input image", Path(p)) for p in inputs)):
        if target == other.resolve():
            raise SelfSupError(f"--csv {out} is {what} ({other}): the table would overwrite it; give another file, "
                               "e.g. predictions.csv")


def classify(predictor, spec: dict, files: list[Path], top_k: int):
    """Yield (file, [(class, probability)] best first, None) or (file, None, why it cannot be read)."""
    size, channels = spec["input"]["height"], spec["input"]["channels"]
    classes = spec["classes"]
    k = min(top_k, len(classes))
    with tqdm(total=len(files), desc="predict", unit="image", disable=len(files) < CHUNK, mininterval=2) as bar:
        for start in range(0, len(files), CHUNK):
            chunk = files[start : start + CHUNK]
            images, unreadable = decode_files(chunk, size, channels)  # on threads: no fork after torch's have run
            readable = [i for i in range(len(chunk)) if i not in unreadable]
            probs, scores = predictor(images[readable]) if readable else (torch.empty(0, len(classes)),) * 2
            best = scores.sort(dim=1, descending=True, stable=True).indices[:, :k]  # ties: the first class, as argmax
            row = dict(zip(readable, range(len(readable))))
            for i, path in enumerate(chunk):
                if i in unreadable:
                    yield path, None, unreadable[i]
                else:
                    r = row[i]
                    yield path, [(classes[c], float(probs[r, c])) for c in best[r].tolist()], None
            bar.update(len(chunk))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m selfsup.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="models/distill/model.pt (or models/finetune/model.pt) or models/export/model.pt2")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, ... of any size or mode) or folders")
    parser.add_argument("--top-k", type=int, default=3, help="classes shown per image (default 3)")
    parser.add_argument("--csv", help="write one row per image to this file instead of printing")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="for a checkpoint (default auto); an exported .pt2 runs on the CPU")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--tta", choices=list(TTA),
                        help=f"test-time augmentation of a checkpoint (default {EvaluateParams().tta}, as evaluate's "
                             "default; flip: the mean of each image and its mirror image); a .pt2 has its own")
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1:
        raise SelfSupError("--top-k and --batch-size must be positive integers")
    files, others = gather(args.images)
    if args.csv:  # before the model is read: the table must not replace it or an image, and must have a place to go
        check_csv(args.csv, args.model, files)
    predictor, spec = load_predictor(args.model, args.device, args.batch_size, args.tta)
    results = list(classify(predictor, spec, files, args.top_k))
    bad = [(path, why) for path, top, why in results if top is None]
    if len(bad) == len(results):
        path, why = bad[0]
        more = f" (and {len(bad) - 1} more files)" if len(bad) > 1 else ""
        raise SelfSupError(f"{path} is not a readable image ({why}){more}; give PNG or JPEG files")
    if args.csv:
        k = min(args.top_k, len(spec["classes"]))
        header = ["path"] + [f"{name}{i}" for i in range(1, k + 1) for name in ("class", "probability")] + ["error"]
        with atomic_path(args.csv) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for path, top, why in results:
                cells = [c for name, p in top for c in (name, f"{p:.6f}")] if top else [""] * (2 * k)
                writer.writerow([str(path), *cells, why or ""])
        print(f"{len(results) - len(bad)} images classified into {args.csv}")
    else:
        for path, top, _ in results:
            if top:
                print(f"{path}\t" + ", ".join(f"{name} {p:.1%}" for name, p in top))
    if others:
        print(f"left out {others} file{'s' * (others > 1)} without an image suffix", file=sys.stderr)
    if bad:
        print(f"not classified, {len(bad)} file{'s are' if len(bad) > 1 else ' is'} not a readable image:", file=sys.stderr)
        for path, why in bad:
            print(f"  {path}: {why}", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
