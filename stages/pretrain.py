"""Stage pretrain@<pretext>: pre-train a CifarNet backbone on unlabelled training images."""

from pathlib import Path

import torch

from selfsup import distributed
from selfsup.arguments import DATA, LIVE, stage_parser
from selfsup.cli import open_live, run_stage
from selfsup.data import fingerprint, load_prepared, pretraining_images
from selfsup.io import files_digest, loaded_sources
from selfsup.models import build_backbone, save_checkpoint
from selfsup.params import load_params, to_dict
from selfsup.pretexts import get_pretext
from selfsup.pretrain import filter_grid, pretrain, recorded_common
from selfsup.progress import Progress, Resume, write_curves
from selfsup.runtime import setup


def main(argv=None):
    parser = stage_parser(__doc__, pretext=True, data=DATA, out="folder for backbone.pt", metrics=LIVE)
    parser.add_argument("--checkpoint", help="training state saved after every epoch; an interrupted run resumes "
                                             "from it, and it is removed once the backbone is written")
    args = parser.parse_args(argv)
    params = load_params()
    spec = get_pretext(args.pretext)
    common, cfg = params.pretrain.common, params.pretrain.section(args.pretext, spec.params)
    prepared = load_prepared(args.data, splits=("train", "val"))
    meta = prepared.meta
    # Labels never reach pre-training: a pretext sees images (the training split's and any unlabelled ones) and
    # each image's index, its identity.
    images = pretraining_images(prepared, args.data)
    val_images = prepared.splits["val"].images[: common.val_images]

    # a floor that does not lengthen the epochs changes nothing, so neither the backbone nor a resumed state holds it
    config = {"model": to_dict(params.model),
              "pretrain": {"common": recorded_common(spec, cfg, common, len(images)), args.pretext: to_dict(cfg)}}
    torch.manual_seed(common.seed)
    backbone = build_backbone(params.model, meta["channels"], meta["image_size"])
    live = open_live(args.metrics)
    live.summary["backbone_parameters"] = sum(p.numel() for p in backbone.parameters())
    resume = None
    if spec.trains:
        runtime = setup(params.compute, meta)
        live.summary["compute"] = runtime.describe()
        if args.checkpoint:  # a state saved by other code (of the modules this stage runs) is not resumed
            code = files_digest(loaded_sources("selfsup", "stages"))
            # deterministic too: a state of nondeterministic kernels resumed under `deterministic: true` would
            # break the bitwise promise
            resume = Resume(Path(args.checkpoint), {"pretext": args.pretext, "config": config, "compute": runtime.describe(),
                                                    "deterministic": params.compute.deterministic,
                                                    "data": [fingerprint(images), fingerprint(val_images)], "code": code})
        pretrain(spec, cfg, common, backbone, images, val_images, runtime,
                 Progress(f"pretrain {args.pretext}", live, resume))
        backbone.cpu()
    if distributed.is_main():  # under torchrun, rank 0 alone draws and writes
        live.log_image("filters.png", filter_grid(backbone))
        if not spec.trains:  # no epochs: the curves file with its header alone, so every pretext declares one
            write_curves(args.metrics, [])
        save_checkpoint(Path(args.out) / "backbone.pt", backbone, pretext=args.pretext, config=config,
                        data={k: meta[k] for k in ("dataset", "channels", "image_size")})
    live.end()
    if resume is not None:
        distributed.barrier()  # no rank drops its state before rank 0 has written the backbone: a kill meanwhile resumes
        resume.clear()


if __name__ == "__main__":
    run_stage(main)
