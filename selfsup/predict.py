"""Classify image files with a trained model: `python -m selfsup.predict MODEL IMAGE_OR_FOLDER... [--csv FILE]`.

MODEL is the delivered checkpoint (models/distill/model.pt, the distilled student or, with distillation off, the
fine-tuned model; models/finetune/model.pt works too: runs where `compute.device: auto` would, in the precision
`compute.precision: auto` picks, as evaluate does by default) or the exported file (models/export/model.pt2: runs on
the CPU in fp32, with torch alone). Every image is prepared as the model's training images were: the channels and
size the model records, through the same decoder as preprocess. Folders are walked to any depth; files without an
image suffix there are left out, unreadable images are listed and the others still classified.
"""

from __future__ import annotations

import argparse
import csv
import sys
import zipfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from selfsup import SelfSupError
from selfsup.cli import run_stage
from selfsup.export import damaged, delivered_model, load_exported, model_spec
from selfsup.images import IMAGE_SUFFIXES, decode_files, say_warnings, walk_images
from selfsup.io import atomic_path
from selfsup.models import CLASSIFIER_FILES, EXPORTED, TTA, foreign_file, load_checkpoint, pointer_beside
from selfsup.params import ComputeParams, EvaluateParams
from selfsup.runtime import predict, resolve_device, setup

PREDICT_FILES = f"{CLASSIFIER_FILES}, or the exported models/export/model.pt2"
CHUNK = 1024  # images decoded and classified at a time: memory stays flat for any number of files


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
        module, spec = load_exported(path)

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
    warned = {}  # what Pillow warned about files it read, said once for all chunks
    with tqdm(total=len(files), desc="predict", unit="image", disable=len(files) < CHUNK, mininterval=2) as bar:
        for start in range(0, len(files), CHUNK):
            chunk = files[start : start + CHUNK]
            images, unreadable = decode_files(chunk, size, channels, warned=warned)  # threads: no fork after torch's
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
    say_warnings(warned)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m selfsup.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
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
