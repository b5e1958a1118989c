"""Atomic file output: a killed stage never leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path for `path`; on success rename it onto `path`, on error delete it.

    The temporary file has `path`'s own name inside a hidden folder beside it, because some writers
    record the file name in the file (torch.save names its zip archive after it): outputs stay
    byte-identical from run to run, so DVC sees the same hash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_json(path: str | Path, data) -> None:
    """Write `data` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def files_digest(paths) -> str:
    """SHA-256 over the names and contents of `paths`, in sorted order: equal files, equal digests."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def loaded_sources(*packages: str) -> list[Path]:
    """The source files of the modules of `packages` this process has imported: the code a run depends on
    (e.g. for a digest that refuses to resume a state saved by other code)."""
    import sys

    files = set()
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        name = spec.name if spec is not None else name  # a stage run by `-m` (or by launch) is __main__ here
        if name.split(".")[0] in packages and getattr(module, "__file__", None):
            files.add(Path(module.__file__).resolve())
    return sorted(files)
