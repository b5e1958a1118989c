"""Stage distill: a student trained on every training image (and every unlabelled one, for a folder of your own
images) with the fine-tuned model's predictions as targets (or, when distillation is off, the fine-tuned model
passed on as it is): the model evaluate and export deliver."""

import shutil
from pathlib import Path

from selfsup import SelfSupError
from selfsup.arguments import BACKBONE, DATA, LIVE, stage_parser
from selfsup.cli import open_live, run_stage
from selfsup.data import load_prepared, pretraining_images
from selfsup.distill import Labelled, distill, new_student, wanted
from selfsup.finetune import Start, budget
from selfsup.io import atomic_path
from selfsup.models import load_backbone, load_checkpoint, load_classifier, save_checkpoint
from selfsup.params import load_params, to_dict
from selfsup.progress import write_curves
from selfsup.runtime import setup


def main(argv=None):
    args = stage_parser(__doc__, teacher="model.pt written by finetune", backbone=BACKBONE, data=DATA,
                        out="folder for model.pt", metrics=LIVE).parse_args(argv)
    params = load_params()
    cfg, ft = params.distill, params.finetune
    teacher_ckpt = load_checkpoint(args.teacher, "classifier")
    if teacher_ckpt["config"].get("finetune") != to_dict(ft):
        raise SelfSupError(f"{args.teacher} was fine-tuned with other finetune params than params.yaml's; "
                           "rerun `dvc repro distill` to fine-tune again first")
    if teacher_ckpt.get("pretext") != params.pretext:
        raise SelfSupError(f"{args.teacher} was fine-tuned on the {teacher_ckpt.get('pretext')} backbone but params.yaml's "
                           f"pretext is {params.pretext}; rerun `dvc repro distill` to fine-tune again first")
    prepared = load_prepared(args.data, splits=("train", "val"))
    meta, train = prepared.meta, prepared.splits["train"]
    images = pretraining_images(prepared, args.data)  # the training split's first, then any unlabelled ones
    chosen, val = budget(train, prepared.splits["val"], ft)
    live = open_live(args.metrics)
    out = Path(args.out) / "model.pt"
    if not wanted(cfg, len(chosen), len(images)):
        with atomic_path(out) as tmp:  # the fine-tuned model is the delivered one
            shutil.copyfile(args.teacher, tmp)
        live.summary.update({"distilled": False, "labelled_images": len(chosen), "images": len(images)})
        write_curves(args.metrics, [])  # the declared plot: its header alone, nothing was trained
        live.end()
        print(f"distill: off (when: {cfg.when}, {len(chosen)} of {len(images)} training images labelled); "
              "the fine-tuned model is delivered")
        return
    runtime = setup(params.compute, meta)
    teacher = load_classifier(teacher_ckpt)
    backbone = load_backbone(args.backbone, params.pretext, params.model)["state_dict"]
    student = new_student(teacher, Start(backbone, params.model, meta, teacher.logits.out_features), cfg,
                          ft.transfer)
    # the labels of the labelled subset, and no other, leave this function
    result, rows = distill(teacher, student, images, Labelled(chosen, train.labels[chosen]), val, cfg, runtime, live)
    live.summary.update({"distilled": True, "labelled_images": len(chosen), "images": len(images),
                         "targets": int((rows.sum(1) > 0).sum()), "val_images": len(val)})
    save_checkpoint(out, student, pretext=params.pretext, classes=teacher_ckpt["classes"],
                    config={**teacher_ckpt["config"], "distill": to_dict(cfg)}, data=teacher_ckpt["data"],
                    best_epoch=result.best_epoch, layer=student.layer)
    live.end()


if __name__ == "__main__":
    run_stage(main)
