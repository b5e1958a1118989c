"""Stage select: check that `pretext` names a pre-trained backbone before finetune looks for its folder.

DVC checks a stage's dependencies before running it, so without this stage `-S pretext=<typo>` would end in
DVC's "no such file models/pretrain/<typo>" instead of the list of valid pretexts.
"""

import argparse

from selfsup.cli import run_stage
from selfsup.io import write_json
from selfsup.params import load_params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--out", required=True, help="JSON file recording the chosen pretext")
    args = parser.parse_args(argv)
    params = load_params()  # an unknown or un-pretrained pretext is one error that lists the valid names
    write_json(args.out, {"pretext": params.pretext})
    print(f"pretext {params.pretext}: models/pretrain/{params.pretext}")


if __name__ == "__main__":
    run_stage(main)
