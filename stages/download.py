"""Stage download: fetch the four Fashion-MNIST files, md5-verified, trying $FASHION_MNIST_MIRROR first."""

import argparse
import os

from selfsup.cli import run_stage
from selfsup.download import MIRROR_ENV, download_fashion_mnist


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="folder for the .gz files")
    parser.add_argument("--mirror", default=os.environ.get(MIRROR_ENV),
                        help=f"extra mirror tried first: a folder or URL (default: ${MIRROR_ENV})")
    args = parser.parse_args(argv)
    for path in download_fashion_mnist(args.out, args.mirror):
        print(f"ok {path}")


if __name__ == "__main__":
    run_stage(main)
