import os
import subprocess
import sys

import pytest
import torch

from selfsup.io import atomic_path, files_digest, write_json
from tests.conftest import REPO


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_success_leaves_only_the_file(tmp_path):
    write_json(tmp_path / "a" / "m.json", {"x": 1})
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["m.json"]
    assert (tmp_path / "a" / "m.json").read_text() == '{\n  "x": 1\n}\n'


def test_torch_outputs_are_byte_identical_across_writes(tmp_path):
    """DVC hashes outputs: the same tensors must give the same bytes (torch.save records the file name)."""
    data = {"images": torch.arange(10, dtype=torch.uint8)}
    for folder in ("a", "b"):
        with atomic_path(tmp_path / folder / "train.pt") as tmp:
            torch.save(data, tmp)
    assert (tmp_path / "a/train.pt").read_bytes() == (tmp_path / "b/train.pt").read_bytes()


def test_files_digest_follows_contents_not_order(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    digest = files_digest([a, b])
    assert files_digest([b, a]) == digest
    b.write_text("y = 3\n")
    assert files_digest([a, b]) != digest


def test_the_code_a_run_loaded_includes_the_module_run_as_main(tmp_path):
    """A stage runs as `python -m stages.<name>` (or through selfsup.launch): its own file is __main__ in
    sys.modules, and belongs in the digest that keeps a resumed state to the code that saved it."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/__init__.py").write_text("")
    (tmp_path / "pkg/helper.py").write_text("")
    (tmp_path / "pkg/stage.py").write_text("import pkg.helper\nfrom selfsup.io import loaded_sources\n"
                                            "print(*(p.name for p in loaded_sources('pkg')))\n")
    out = subprocess.run([sys.executable, "-m", "pkg.stage"], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}).stdout
    assert out.split() == ["__init__.py", "helper.py", "stage.py"]
