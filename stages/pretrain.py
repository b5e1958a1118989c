"""Stage pretrain@<pretext>: pre-train a CifarNet backbone on unlabelled training images."""

import argparse
import dataclasses
from pathlib import Path

import torch
from torch import nn

import selfsup
from selfsup import distributed
from selfsup.cli import open_live, run_stage
from selfsup.data import fingerprint, load_prepared
from selfsup.io import files_digest
from selfsup.models import build_backbone, save_checkpoint
from selfsup.params import load_params, to_dict
from selfsup.pretexts import get_pretext, image_grid
from selfsup.train import Objective, Resume, evaluate_objective, fit, setup


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pretext", help="a name from the pretext registry")
    parser.add_argument("--data", required=True, help="preprocess output folder")
    parser.add_argument("--out", required=True, help="folder for backbone.pt")
    parser.add_argument("--metrics", required=True, help="dvclive folder")
    parser.add_argument("--checkpoint", help="training state saved after every epoch; an interrupted run resumes "
                                             "from it, and it is removed once the backbone is written")
    args = parser.parse_args(argv)
    params = load_params()
    spec = get_pretext(args.pretext)
    common, pretext_cfg = params.pretrain.common, getattr(params.pretrain, args.pretext)
    prepared = load_prepared(args.data, splits=("train", "val"))
    meta = prepared.meta
    # Labels never reach pre-training: a pretext sees images and each image's index, its identity.
    images = prepared.splits["train"].images
    val_images = prepared.splits["val"].images[: common.val_images]

    config = {"model": to_dict(params.model), "pretrain": {"common": to_dict(common), args.pretext: to_dict(pretext_cfg)}}
    torch.manual_seed(common.seed)
    backbone = build_backbone(to_dict(params.model), meta["channels"], meta["image_size"])
    live = open_live(args.metrics)
    live.summary["backbone_parameters"] = sum(p.numel() for p in backbone.parameters())
    resume = None
    if spec.trains:
        head = spec.make_head(pretext_cfg, meta["channels"], meta["image_size"])
        objective = Objective(nn.Sequential(backbone, head), spec.make_batch(pretext_cfg), spec.loss,
                              accuracy=spec.accuracy)
        compute, norm = setup(params.compute, meta)
        val_ids = torch.arange(len(val_images))
        # batch_size counts the images the network sees per step; a pretext with V views takes 1/V as many sources.
        optim = dataclasses.replace(common, batch_size=spec.source_batch_size(pretext_cfg, common.batch_size))

        def validate(model):
            metrics = evaluate_objective(objective, val_images, val_ids, norm, optim.batch_size, common.seed, compute)
            if spec.shows_images:
                x = norm.unit(val_images[:8].to(norm.mean.device))
                with torch.no_grad(), compute.autocast():
                    metrics[f"reconstructions/epoch_{live.step + 1:02d}.png"] = image_grid(x, model(norm(x)))
            return metrics

        # Pretext tasks have no labelled val set to select on: the last epoch is the backbone.
        live.summary["compute"] = compute.describe()
        if args.checkpoint:
            code = [*Path(selfsup.__file__).parent.glob("*.py"), Path(__file__)]  # a state of other code is not resumed
            resume = Resume(Path(args.checkpoint), {"pretext": args.pretext, "config": config, "compute": compute.describe(),
                                                    "data": [fingerprint(images), fingerprint(val_images)],
                                                    "code": files_digest(code)})
        fit(objective, images, torch.arange(len(images)), optim, pretext_cfg.epochs, norm, live,
            validate=validate, desc=f"pretrain {args.pretext}", compute=compute, resume=resume)
        backbone.cpu()
    if distributed.is_main():  # under torchrun, rank 0 alone writes
        save_checkpoint(Path(args.out) / "backbone.pt", backbone, pretext=args.pretext, config=config,
                        data={k: meta[k] for k in ("dataset", "channels", "image_size")})
    live.end()
    if resume is not None:
        resume.local_path().unlink(missing_ok=True)


if __name__ == "__main__":
    run_stage(main)
