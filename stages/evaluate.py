"""Stage evaluate: test accuracy, balanced accuracy, per-class accuracy, macro-F1 and the confusion plot of the
delivered model (distill's), and the fine-tuned model's beside it (per class too): what distillation added. Both
classify as the exported model does (`evaluate.tta`: flip averages the logits of each image and its mirror image)."""

from pathlib import Path

import pandas as pd

from selfsup.arguments import DATA, DELIVERED, stage_parser
from selfsup.cli import run_stage
from selfsup.data import load_prepared
from selfsup.evaluate import classification_metrics
from selfsup.io import atomic_path, write_json
from selfsup.models import TTA, check_fits, load_checkpoint, load_classifier
from selfsup.params import load_params
from selfsup.runtime import predict, setup


def main(argv=None):
    parser = stage_parser(__doc__, model=DELIVERED, data=DATA, metrics="folder for metrics.json and confusion.csv")
    parser.add_argument("--finetuned", help="model.pt written by finetune (distill's teacher), evaluated beside it")
    args = parser.parse_args(argv)
    params = load_params()
    cfg = params.evaluate
    ckpt = load_checkpoint(args.model, "classifier")
    prepared = load_prepared(args.data, splits=("test",))
    check_fits(ckpt, args.model, prepared.meta, args.data)
    test = prepared.splits["test"]
    classes = ckpt["classes"]
    runtime = setup(params.compute, ckpt["data"])

    def test_predictions(checkpoint):
        model = TTA[cfg.tta](load_classifier(checkpoint)).to(runtime.device)
        return predict(model, test.images, runtime, cfg.batch_size).argmax(1)

    predicted = test_predictions(ckpt)
    metrics = classification_metrics(test.labels, predicted, classes)
    per_class = pd.DataFrame([{"class": name, **values} for name, values in metrics.pop("per_class").items()])
    # the headline (the delivered model), whether it was distilled, and the fine-tuned model's beside it
    summary = {"test": metrics, "distilled": "distill" in ckpt["config"]}
    if args.finetuned:
        finetuned = load_checkpoint(args.finetuned, "classifier")  # read either way: a wrong file is still an error
        check_fits(finetuned, args.finetuned, prepared.meta, args.data)
        # not distilled, the delivered model is the fine-tuned one (distill copied its file): predicted already
        again = test_predictions(finetuned) if summary["distilled"] else predicted
        summary["finetuned"] = classification_metrics(test.labels, again, classes)
        # beside the delivered model's recall and F1 per class: what distillation changed for each class
        theirs = summary["finetuned"].pop("per_class")
        for column in ("accuracy", "f1"):
            per_class[f"finetuned_{column}"] = [theirs[name][column] for name in per_class["class"]]
    out = Path(args.metrics)
    write_json(out / "metrics.json", summary)
    with atomic_path(out / "per_class.csv") as tmp:
        per_class.to_csv(tmp, index=False, float_format="%.6g")
    # numbered names, so that the confusion plot (which sorts its axes alphabetically) keeps the label order
    width = len(str(len(classes) - 1))
    names = pd.Series([f"{i:0{width}d} {name}" for i, name in enumerate(classes)])
    with atomic_path(out / "confusion.csv") as tmp:
        pd.DataFrame({"actual": names[test.labels.numpy()].values,
                      "predicted": names[predicted.numpy()].values}).to_csv(tmp, index=False)
    print(f"test accuracy {metrics['accuracy']:.4f}, balanced accuracy {metrics['balanced_accuracy']:.4f}, "
          f"macro-F1 {metrics['macro_f1']:.4f} on {len(test)} images")


if __name__ == "__main__":
    run_stage(main)
