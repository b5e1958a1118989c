"""Stage finetune: train a classifier on the labelled subset, starting from the `pretext` backbone."""

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from selfsup import SelfSupError
from selfsup.augment import flip_translate
from selfsup.cli import open_live, run_stage
from selfsup.data import labelled_subset, load_prepared
from selfsup.models import Classifier, build_backbone, load_backbone_into, load_checkpoint, save_checkpoint
from selfsup.params import load_params, to_dict
from selfsup.train import Normalize, Objective, fit, pick_device, predict, top1_accuracy


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

    ckpt = load_checkpoint(args.backbone)
    if ckpt.get("pretext") != params.pretext or ckpt["config"]["model"] != to_dict(params.model):
        raise SelfSupError(
            f"{args.backbone} holds pretext {ckpt.get('pretext')!r} with model {ckpt['config']['model']}, but "
            f"params.yaml asks for pretext {params.pretext!r} with model {to_dict(params.model)}; rerun `dvc repro`"
        )
    torch.manual_seed(cfg.seed)
    model = Classifier(build_backbone(to_dict(params.model), meta["channels"], meta["image_size"]), len(prepared.classes))
    load_backbone_into(model, ckpt["state_dict"])

    chosen = labelled_subset(train.labels, cfg.labels_per_class, cfg.seed)
    device = pick_device()
    norm = Normalize(meta["mean"], meta["std"], device)
    aug = cfg.augment

    def make_batch(x, y, gen):
        return flip_translate(x, aug.flip, aug.translate, gen), y

    def validate(net):
        logits = predict(net, val.images, norm, batch_size=1000)
        return {"val/loss": F.cross_entropy(logits, val.labels).item(),
                "val/accuracy": (logits.argmax(1) == val.labels).float().mean().item()}

    frozen = [model.backbone] if cfg.protocol == "head" else []
    live = open_live(args.metrics)
    objective = Objective(model, make_batch, F.cross_entropy, frozen, accuracy=top1_accuracy)
    result = fit(objective, train.images[chosen], train.labels[chosen], cfg, cfg.epochs, norm, live,
                 validate=validate, select="val/accuracy", desc="finetune")
    model.load_state_dict(result.best_state)
    live.summary.update({"best/epoch": result.best_epoch, "best/val_accuracy": result.best_score,
                         "labelled_images": len(chosen)})
    save_checkpoint(
        Path(args.out) / "model.pt", model, pretext=params.pretext, classes=prepared.classes,
        config={"model": to_dict(params.model), "finetune": to_dict(cfg)},
        data={k: meta[k] for k in ("dataset", "channels", "image_size", "mean", "std")},
        best_epoch=result.best_epoch,
    )
    live.end()


if __name__ == "__main__":
    run_stage(main)
