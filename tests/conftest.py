import gzip
import os
from pathlib import Path

import pytest
import torch

from selfsup.download import MIRROR_ENV

REPO = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: torch.Tensor) -> Path:
    """Write a uint8 tensor as a gzipped IDX file, the Fashion-MNIST format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.numpy().tobytes()))
    return path


def shrink_params(params: dict, batch_size: int, val_images: int) -> dict:
    """params.yaml settings for a smoke run: one epoch per pretext, two of fine-tuning, small batches,
    probes with a few labels per class."""
    params["pretrain"]["common"].update(batch_size=batch_size, val_images=val_images)
    for section in params["pretrain"].values():
        if "epochs" in (section or {}):
            section["epochs"] = 1
    params["finetune"]["epochs"] = 2
    params["probe"].update(select_labels_per_class=5, labels_per_class=[2, "all"], seeds=2, steps=20)
    return params


@pytest.fixture(scope="session")
def fmnist_mirror() -> str | None:
    """The offline Fashion-MNIST mirror when one is configured; None means the official mirrors (internet)."""
    return os.environ.get(MIRROR_ENV) or None


@pytest.fixture(scope="session")
def fmnist_raw(tmp_path_factory, fmnist_mirror) -> Path:
    """The four real Fashion-MNIST files, fetched once per test session through the download code."""
    from selfsup.download import download_fashion_mnist

    out = tmp_path_factory.mktemp("raw")
    download_fashion_mnist(out, fmnist_mirror)
    return out
