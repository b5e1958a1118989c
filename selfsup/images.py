"""Image files to uint8 tensors: the one decode path for a folder of JPEG/PNG files.

DeepFashion's preprocess, an image-folder dataset and `selfsup.predict` all read files through `decode_files`,
so an image predicted from a file is prepared exactly as the training images were: turned upright by its EXIF
orientation (as a photo viewer shows it), converted to the model's channels (grayscale or RGB) and squashed to
size×size with bilinear filtering. 16-bit grayscale (PNG, TIFF) is scaled to 8 bits, 0-65535 to 0-255, and
floating-point grayscale read as 0-1, rather than clipped at 255.

Files are decoded on threads, not forked processes: Pillow lets go of the GIL while it decodes and resizes, and a
fork of a process whose torch threads have run can hang in the child on a lock one of them held.

What Pillow warns about a file it still reads (corrupt EXIF data, say) is gathered, each message with the files it
concerns, and said once at the end, naming the first of them: as it comes, it names no file, and a folder of photos
repeats it for every distinct byte count.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from selfsup.data import DataError

# What a folder walk takes for an image; anything else is left out (and counted). PIL reads more formats,
# but these are the ones cameras, shops and datasets write.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MODES = {1: "L", 3: "RGB"}
_decoding = threading.local()  # .caught: what Pillow warned while this thread decodes a file (see `_noted`)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_listed(path: Path) -> bool:
    """Whether a walk lists `path`: a file (or a link to one), or a link to nothing; not a folder (nor a link to
    one: a linked class folder), a pipe or a socket."""
    return path.is_file() or (path.is_symlink() and not path.exists())


def walk_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """Every file under `folder` (any depth, hidden ones left out), sorted: (images by suffix, other files).

    Linked folders are followed (a class folder may link to images kept elsewhere); a folder reached a second
    time, through a link or a link loop, is read once. A link to nothing is listed as what its name says (an image
    gone then fails to read, and is said so, instead of being left out unsaid)."""
    files, seen = [], set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [Path(top, n) for n in names if not n.startswith(".") and is_listed(Path(top, n))]
    files.sort()
    return [p for p in files if is_image(p)], [p for p in files if not is_image(p)]


def decode(path: str | Path, size: int, channels: int) -> tuple[bytes | None, str | None]:
    """One image file as size×size uint8 bytes (H×W×C, C = `channels`), or None and why it cannot be read."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img.draft(MODES[channels], (size, size))  # JPEG: decode at a reduced scale, much faster than full size
            img = eight_bit(ImageOps.exif_transpose(img))
            img = img.convert(MODES[channels]).resize((size, size), Image.BILINEAR, reducing_gap=2.0)
            return img.tobytes(), None
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001  a damaged file makes Pillow raise more than OSError (SyntaxError, TypeError)
        return None, f"{type(err).__name__}: {str(err).replace(' ' + repr(str(path)), '')}"


def _noted(task: tuple[str, int, int]) -> tuple[tuple[bytes | None, str | None], list[str]]:
    """decode(*task), and the messages of the warnings `caught_warnings` caught on this thread meanwhile."""
    _decoding.caught = caught = []
    try:
        return decode(*task), caught
    finally:
        _decoding.caught = None


@contextmanager
def caught_warnings():
    """Within: a warning raised on a thread decoding a file (`_noted`) is caught for that file instead of printed;
    Pillow's own are kept every time, not once per message. Other warnings pass as usual."""
    with warnings.catch_warnings():
        warnings.filterwarnings("always", module=r"PIL\.")
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            caught = getattr(_decoding, "caught", None)
            if caught is None:
                return shown(message, category, filename, lineno, file, line)
            caught.append(f"{category.__name__}: {' '.join(str(message).split())}")

        warnings.showwarning = show
        yield


def say_warnings(warned: dict[str, list[str]]) -> None:
    """One line per message gathered by `decode_files`, on stderr: how many files, and the first of them."""
    for message, paths in warned.items():
        files = list(dict.fromkeys(paths))  # a file may raise it more than once (EXIF is read twice)
        many = len(files) > 1
        print(f"warning for {len(files)} image{'s' * many}, which {'were' if many else 'was'} read all the same: "
              f"{message} (first: {files[0]})", file=sys.stderr)


def eight_bit(img):
    """A grayscale image of more than 8 bits scaled to 8 (Pillow's own convert clips it at 255): integer modes
    (I;16 and the 32-bit I that 16-bit files may open as) from 0-65535, floating point (F) from 0-1."""
    import numpy as np
    from PIL import Image

    if img.mode.startswith("I"):
        scale, top = 255 / 65535, 65535
    elif img.mode == "F":
        scale, top = 255, 1
    else:
        return img
    values = np.asarray(img, dtype=np.float64)
    return Image.fromarray(np.rint(np.clip(values, 0, top) * scale).astype(np.uint8), "L")


def _in_order(tasks: list[tuple[str, int, int]], workers: int):
    """`_noted(task)` for every task, in order, on `workers` threads (a bounded window of them in flight)."""
    if workers <= 1:
        yield from map(_noted, tasks)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending, queue = deque(), iter(tasks)
        for task in queue:
            pending.append(pool.submit(_noted, task))
            if len(pending) >= 8 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def decode_files(paths: list[str | Path], size: int, channels: int = 3, workers: int | None = None,
                 desc: str = "decode", warned: dict[str, list[str]] | None = None
                 ) -> tuple[torch.Tensor, dict[int, str]]:
    """Decode and resize every file (squashed to size×size) on `workers` threads (all cores), with a progress bar.

    Returns the N×C×size×size uint8 tensor (unreadable images left black) and, by position, the reason each
    unreadable image could not be read. Warnings raised while decoding a file are added to `warned` (message: the
    files it concerns, in the order of `paths`, whichever thread finished first) when given (a caller decoding in
    chunks says them once), else said at the end (`say_warnings`).
    """
    if channels not in MODES:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    out = torch.zeros(len(paths), size, size, channels, dtype=torch.uint8)
    unreadable = {}
    tasks = [(str(path), size, channels) for path in paths]
    workers = min(workers or os.cpu_count() or 1, max(1, len(tasks) // 64))  # a small set is faster in-process
    results, gathered = _in_order(tasks, workers), {} if warned is None else warned
    with caught_warnings():
        for i, ((pixels, reason), caught) in enumerate(tqdm(results, total=len(tasks), desc=desc, mininterval=2,
                                                            disable=len(tasks) < 256)):
            for message in caught:  # in the files' order, not the order the threads finished them in
                gathered.setdefault(message, []).append(tasks[i][0])
            if pixels is None:
                unreadable[i] = reason
            else:
                out[i] = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).view(size, size, channels)
    if warned is None:
        say_warnings(gathered)
    return out.permute(0, 3, 1, 2).contiguous(), unreadable


def decode_dataset(root: Path, names: list[str], size: int, channels: int, max_unreadable: int, what: str,
                   fix: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
    """A dataset's images (`names` relative to `root`), the policy for unreadable ones applied: up to
    `max_unreadable` are skipped and listed, more stop with one error (`what` names the dataset, `fix` the remedy).

    Returns the images, a mask of the readable ones, and each skipped name with its reason."""
    images, unreadable = decode_files([root / name for name in names], size, channels)
    skipped = {names[i]: reason for i, reason in unreadable.items()}
    if len(skipped) > max_unreadable:
        name, reason = next(iter(skipped.items()))
        raise DataError(f"{len(skipped)} of {len(images)} {what} images cannot be read (first: {root / name}: "
                        f"{reason}); {fix}")
    for name, reason in skipped.items():
        print(f"skipped unreadable image {root / name}: {reason}")
    keep = torch.ones(len(images), dtype=torch.bool)
    keep[list(unreadable)] = False
    return images, keep, skipped
