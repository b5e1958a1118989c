"""Stage select: check that `pretext` names a pre-trained backbone before finetune looks for its folder.

DVC checks a stage's dependencies before running it, so without this stage `-S pretext=<typo>` would end in
DVC's "no such file models/pretrain/<typo>" instead of the list of valid pretexts.
"""

from selfsup.arguments import stage_parser
from selfsup.cli import run_stage
from selfsup.io import write_json
from selfsup.params import load_params


def main(argv=None):
    args = stage_parser(__doc__, out="JSON file recording the chosen pretext").parse_args(argv)
    params = load_params()  # an unknown or un-pretrained pretext is one error that lists the valid names
    write_json(args.out, {"pretext": params.pretext})
    print(f"pretext {params.pretext}: models/pretrain/{params.pretext}")


if __name__ == "__main__":
    run_stage(main)
