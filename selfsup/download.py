"""Fetch the Fashion-MNIST files from a list of mirrors, verifying md5, writing atomically."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from selfsup import SelfSupError
from selfsup.io import atomic_path

# The release's files, md5s, mirrors and class names, as torchvision's FashionMNIST knows them (a test compares
# them); written out, so that the download and preprocess stages start without importing torchvision, which
# imports torch's compiler (about 2 s).
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
OFFICIAL_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MIRROR_ENV = "FASHION_MNIST_MIRROR"


class DownloadError(SelfSupError):
    """No mirror delivered a file with the right md5."""


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_url(mirror: str) -> bool:
    return "://" in mirror


def _fetch(mirror: str, name: str, dest: Path, timeout: float) -> None:
    """Copy or download `name` from `mirror` to `dest`; raise OSError on any failure."""
    if _is_url(mirror):
        url = mirror.rstrip("/") + "/" + name
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, dest.open("wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, http.client.HTTPException, ValueError) as err:  # a reply cut short or not HTTP
            raise OSError(getattr(err, "reason", err)) from None
    else:
        shutil.copyfile(Path(mirror).expanduser() / name, dest)


def fetch_file(name: str, md5: str, mirrors: list[str], out_dir: Path, timeout: float = 30.0) -> Path:
    """Fetch one file into `out_dir` from the first mirror that has it with the right md5."""
    target = out_dir / name
    failures = []
    for mirror in mirrors:
        try:
            with atomic_path(target) as tmp:
                _fetch(mirror, name, tmp, timeout)
                got = md5sum(tmp)
                if got != md5:
                    raise OSError(f"md5 {got}, expected {md5}")
            return target
        except OSError as err:
            failures.append(f"{mirror}: {getattr(err, 'strerror', None) or err}")
    raise DownloadError(
        f"could not fetch {name} from any mirror ({'; '.join(failures)}); "
        f"set {MIRROR_ENV} to a folder or URL that holds the four Fashion-MNIST .gz files"
    )


def mirror_list(extra: str | None) -> list[str]:
    """The extra mirror (if any) first, then the official ones."""
    return ([extra] if extra else []) + list(OFFICIAL_MIRRORS)


def download_fashion_mnist(out_dir: str | Path, extra_mirror: str | None = None) -> list[Path]:
    """Fetch the four Fashion-MNIST files into `out_dir`; files already there with the right md5 are kept."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mirrors = mirror_list(extra_mirror)
    paths = []
    for name, md5 in FASHION_MNIST_FILES.items():
        existing = out_dir / name
        if existing.is_file() and md5sum(existing) == md5:
            paths.append(existing)
        else:
            paths.append(fetch_file(name, md5, mirrors, out_dir))
    return paths
