"""Stage finetune: train a classifier on the labelled subset, starting from the `pretext` backbone."""

from pathlib import Path

from selfsup import distributed
from selfsup.arguments import BACKBONE, DATA, LIVE, stage_parser
from selfsup.cli import open_live, run_stage
from selfsup.data import check_budget, load_prepared, unlabelled_images
from selfsup.finetune import Start, finetune_backbone
from selfsup.models import load_backbone, save_checkpoint
from selfsup.params import load_params, to_dict
from selfsup.pretexts import get_pretext
from selfsup.runtime import setup


def main(argv=None):
    args = stage_parser(__doc__, backbone=BACKBONE, data=DATA, out="folder for model.pt", metrics=LIVE).parse_args(argv)
    params = load_params()
    cfg = params.finetune
    prepared = load_prepared(args.data, splits=("train", "val"))
    meta, train, val = prepared.meta, prepared.splits["train"], prepared.splits["val"]
    short = check_budget(train.labels, cfg.labels_per_class, prepared.classes, "finetune.labels_per_class",
                         cfg.budget == "at_most")
    extra = unlabelled_images(args.data, meta) if cfg.unlabelled == "consistency" else None

    ckpt = load_backbone(args.backbone, params.pretext, params.model)
    runtime = setup(params.compute, meta)
    live = open_live(args.metrics)
    start = Start(ckpt["state_dict"], params.model, meta, len(prepared.classes))
    model, result, counts, val = finetune_backbone(start, train, val, cfg, get_pretext(params.pretext).trains,
                                                   runtime, live, extra)
    # the device and precision it ran in: a silent fall-back to the CPU shows in `dvc metrics diff`
    live.summary.update({"compute": runtime.describe(), "kept_epoch": result.best_epoch, "steps": result.steps,
                         "layer": model.layer, "labelled_images": counts.labelled, "val_images": len(val)})
    if cfg.keep == "best":  # the kept epoch's val accuracy (val/accuracy is the last epoch's, where the curves end)
        live.summary["kept_val_accuracy"] = result.best_score
    if cfg.unlabelled == "consistency":
        live.summary["unlabelled_images"] = counts.unlabelled
    if short:  # at_most: the classes that had fewer training images than the budget, used whole
        live.summary["short_classes"] = short
    if distributed.is_main():  # under torchrun, rank 0 alone writes
        save_checkpoint(
            Path(args.out) / "model.pt", model, pretext=params.pretext, classes=prepared.classes,
            config={"model": to_dict(params.model), "finetune": to_dict(cfg)},
            data={k: meta[k] for k in ("dataset", "channels", "image_size", "mean", "std")},
            best_epoch=result.best_epoch, layer=model.layer,
        )
    live.end()


if __name__ == "__main__":
    run_stage(main)
