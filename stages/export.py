"""Stage export: the fine-tuned model as a self-contained torch.export file (normalisation inside, class names and
input spec inside and beside it), checked against the eager model on real test images before it is written."""

import torch

from selfsup import SelfSupError
from selfsup.arguments import DATA, DELIVERED, stage_parser
from selfsup.cli import run_stage
from selfsup.data import load_prepared
from selfsup.export import delivered_model, export_program, model_spec, save_exported
from selfsup.models import TTA, check_fits, load_checkpoint

CHECK_IMAGES = 512  # test images on which the exported program must agree with the eager model
TOLERANCE = 1e-5    # largest difference in any class probability (both fp32 on the CPU)


def main(argv=None):
    parser = stage_parser(__doc__, model=DELIVERED, data=f"{DATA} (test images for the check)",
                          out="folder for model.pt2 and model.json")
    parser.add_argument("--tta", default="none", choices=list(TTA),
                        help="test-time augmentation built into the program (dvc.yaml passes evaluate.tta)")
    args = parser.parse_args(argv)
    ckpt = load_checkpoint(args.model, "classifier")
    model = delivered_model(ckpt, args.tta)
    prepared = load_prepared(args.data, splits=("test",))
    check_fits(ckpt, args.model, prepared.meta, args.data)
    images = prepared.splits["test"].images[:CHECK_IMAGES].clone()
    program = export_program(model, images[:2])
    with torch.inference_mode():
        difference = (program.module()(images) - model(images)).abs().max().item()
    if not difference <= TOLERANCE:
        raise SelfSupError(f"the exported model differs from the eager one by {difference:.2e} in a class probability "
                           f"on test images (tolerance {TOLERANCE}); nothing written")
    spec = model_spec(ckpt, args.tta) | {"check": {"test_images": len(images), "max_probability_difference": difference}}
    path = save_exported(program, spec, args.out)
    print(f"exported {path}: {len(spec['classes'])} classes, {tuple(images.shape[1:])} uint8 images in; "
          f"agrees with the eager model within {difference:.1e} on {len(images)} test images")


if __name__ == "__main__":
    run_stage(main)
