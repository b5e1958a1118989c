import ast
import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The suite runs on every core (pytest-xdist, pyproject's addopts): each worker, and the pipeline stages its
# end-to-end tests start, computes with one thread, or two OpenMP pools on two cores spin against each other
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import torch  # noqa: E402  (after the thread count, which torch reads once)
import yaml

from benchmarks.device import official_mirror_reachable
from benchmarks.device import smoke_params as shrink_params  # noqa: F401  (the tests import it from here)
from selfsup.data import make_splits, save_prepared
from selfsup.download import MIRROR_ENV
from selfsup.pretexts import names

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items):
    """The end-to-end tests first: the longest, so that the other workers take the short ones meanwhile. Two that
    share the tiny run lead: xdist (`--dist load`) starts each worker on two consecutive tests, so the first worker
    builds the tiny run while the second runs the end-to-end tests that need nothing of it, and none waits."""
    e2e = [item for item in items if item.get_closest_marker("e2e")]
    shared = [item for item in e2e if "tiny_run" in item.fixturenames]
    own = [item for item in e2e if "tiny_run" not in item.fixturenames]
    items[:] = shared[:2] + own + shared[2:] + [item for item in items if not item.get_closest_marker("e2e")]


def write_idx(path: Path, array: torch.Tensor) -> Path:
    """Write a uint8 tensor as a gzipped IDX file, the Fashion-MNIST format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.numpy().tobytes()))
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A cwd with params.yaml (tiny settings, every pretext) and a prepared 8×8 dataset of 4 classes."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["pretexts"] = names()
    shrink_params(params, batch_size=16, val_images=16)
    params["finetune"]["batch_size"] = 16
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 4
    images = (labels.view(-1, 1, 1, 1) * 60 + torch.randint(0, 30, (200, 1, 8, 8), generator=gen)).to(torch.uint8)
    sets = {"train": (images[:160], labels[:160]), "test": (images[160:], labels[160:])}
    save_prepared(tmp_path / "prepared", make_splits(sets, 0.2, 1.0, 0), ["w", "x", "y", "z"], "synthetic")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def modules_loaded(code: str, cwd: Path = REPO) -> set[str]:
    """The names of the modules a fresh interpreter holds after running `code` in `cwd`, the project importable:
    what a stage's start costs is mostly what it imports."""
    script = f"{code}\nimport sys; print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, check=True).stdout
    return set(ast.literal_eval(out.splitlines()[-1]))


def project_env(extra_env=None) -> dict:
    """The environment to run DVC and git in."""
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", **(extra_env or {})}


def set_param(workdir, section, key, value):
    """Set params.yaml's `section.key` in the workdir."""
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params[section][key] = value
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


def fashion_mnist_source(env=os.environ, reachable=official_mirror_reachable) -> str | None:
    """Where the tests fetch Fashion-MNIST from: $FASHION_MNIST_MIRROR, or None (the official mirrors) when one
    answers. With neither, a test that needs the data is skipped, with the reason and the fix."""
    if env.get(MIRROR_ENV):
        return env[MIRROR_ENV]
    if reachable():
        return None
    pytest.skip(f"needs Fashion-MNIST: {MIRROR_ENV} is not set and no official mirror answers; set {MIRROR_ENV} "
                "to a folder holding the four .gz files (.ci/run does) or run where the internet is reachable")


@pytest.fixture(scope="session")
def fmnist_mirror() -> str | None:
    """The offline Fashion-MNIST mirror when one is configured; None means the official mirrors (internet)."""
    return fashion_mnist_source()


@pytest.fixture(scope="session")
def fmnist_raw(tmp_path_factory, fmnist_mirror) -> Path:
    """The four real Fashion-MNIST files, fetched once per test session through the download code."""
    from selfsup.download import download_fashion_mnist

    out = tmp_path_factory.mktemp("raw")
    download_fashion_mnist(out, fmnist_mirror)
    return out
