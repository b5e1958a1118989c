"""Stage download: the raw data. Fashion-MNIST: the four files, md5-verified, trying $FASHION_MNIST_MIRROR
first. DeepFashion (cannot be fetched by a script): check the user's copy and copy its lists. Your own image
folder: check its layout and list its images with their checksums."""

import os
from pathlib import Path

from selfsup.arguments import stage_parser
from selfsup.cli import run_stage
from selfsup.deepfashion import copy_lists, find_root
from selfsup.download import MIRROR_ENV, download_fashion_mnist
from selfsup.folders import write_listing
from selfsup.folders import find_root as find_folder
from selfsup.params import load_params


def main(argv=None):
    parser = stage_parser(__doc__, out="folder for the raw files")
    parser.add_argument("--mirror", default=os.environ.get(MIRROR_ENV),
                        help=f"Fashion-MNIST: extra mirror tried first, a folder or URL (default: ${MIRROR_ENV})")
    args = parser.parse_args(argv)
    data = load_params().data
    if data.dataset == "deepfashion":
        cfg = data.deepfashion
        paths = copy_lists(find_root(cfg.root), Path(args.out), need_partition=cfg.partition == "official")
    elif data.dataset == "folder":
        paths = write_listing(find_folder(data.folder.root), Path(args.out))
    else:
        paths = download_fashion_mnist(args.out, args.mirror)
    for path in paths:
        print(f"ok {path}")


if __name__ == "__main__":
    run_stage(main)
