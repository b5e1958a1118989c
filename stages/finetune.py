"""Stage finetune: train a classifier on the labelled subset, starting from the `pretext` backbone."""

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from selfsup import distributed
from selfsup.augment import flip_translate
from selfsup.cli import open_live, run_stage
from selfsup.data import labelled_subset, load_prepared
from selfsup.models import build_classifier, load_backbone, load_backbone_into, save_checkpoint
from selfsup.params import load_params, to_dict
from selfsup.pretexts import get_pretext
from selfsup.train import Objective, fit, predict, setup, top1_accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", required=True, help="backbone.pt of the pretext that params.yaml names")
    parser.add_argument("--data", required=True, help="preprocess output folder")
    parser.add_argument("--out", required=True, help="folder for model.pt")
    parser.add_argument("--metrics", required=True, help="dvclive folder")
    args = parser.parse_args(argv)
    params = load_params()
    cfg = params.finetune
    prepared = load_prepared(args.data, splits=("train", "val"))
    meta, train, val = prepared.meta, prepared.splits["train"], prepared.splits["val"]

    ckpt = load_backbone(args.backbone, params.pretext, to_dict(params.model))
    torch.manual_seed(cfg.seed)
    model = build_classifier(to_dict(params.model), meta, len(prepared.classes))
    load_backbone_into(model, ckpt["state_dict"])

    chosen = labelled_subset(train.labels, cfg.labels_per_class, cfg.seed)
    compute, norm = setup(params.compute, meta)
    aug = cfg.augment

    def make_batch(x, y, gen):
        return flip_translate(x, aug.flip, aug.translate, gen), y

    def validate(net):
        logits = predict(net, val.images, norm, 1000, compute)
        return {"val/loss": F.cross_entropy(logits, val.labels).item(),
                "val/accuracy": (logits.argmax(1) == val.labels).float().mean().item()}

    # head: only the new logits layer trains; fc: also fc3 and fc4; full: every layer.
    frozen = {"head": [model.backbone], "fc": [model.backbone.conv], "full": []}[cfg.protocol]
    # Layers a pretext trained learn at pretrained_lr × lr; a `none` backbone is random and trains at lr.
    scales = [(model.backbone, cfg.pretrained_lr)] if get_pretext(params.pretext).trains else []
    live = open_live(args.metrics)
    objective = Objective(model, make_batch, F.cross_entropy, frozen, accuracy=top1_accuracy, lr_scales=scales)
    result = fit(objective, train.images[chosen], train.labels[chosen], cfg, cfg.epochs, norm, live,
                 validate=validate, select="val/accuracy", desc="finetune", compute=compute)
    model.load_state_dict(result.best_state)
    live.summary.update({"best/epoch": result.best_epoch, "best/val_accuracy": result.best_score,
                         "labelled_images": len(chosen)})
    if distributed.is_main():  # under torchrun, rank 0 alone writes
        save_checkpoint(
            Path(args.out) / "model.pt", model, pretext=params.pretext, classes=prepared.classes,
            config={"model": to_dict(params.model), "finetune": to_dict(cfg)},
            data={k: meta[k] for k in ("dataset", "channels", "image_size", "mean", "std")},
            best_epoch=result.best_epoch,
        )
    live.end()


if __name__ == "__main__":
    run_stage(main)
