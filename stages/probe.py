"""Stage probe@<pretext>: kNN and linear probes on the frozen features of a pretrained backbone
(selfsup.probe: per label budget and draw, every layer on as many val labels, the best on test), and the 2-D PCA
of the test features of that layer as plot data."""

import time
from pathlib import Path

import pandas as pd
import torch

from selfsup.arguments import DATA, stage_parser
from selfsup.cli import run_stage
from selfsup.data import check_budget, load_prepared
from selfsup.io import atomic_path, write_json
from selfsup.models import build_classifier, load_backbone, load_backbone_into
from selfsup.params import load_params
from selfsup.probe import pca_2d, probe_backbone
from selfsup.runtime import predict, setup

EMBEDDING_POINTS = 2000  # of the test set, in the PCA plot


def main(argv=None):
    started = time.perf_counter()
    args = stage_parser(__doc__, pretext=True, backbone="backbone.pt written by pretrain@<pretext>", data=DATA,
                        metrics="folder for metrics.json and embedding.csv").parse_args(argv)
    params = load_params()
    cfg = params.probe
    prepared = load_prepared(args.data)
    meta, classes = prepared.meta, prepared.classes
    # before the features: a budget a class cannot fill is refused at once (exact), or listed (at_most)
    short = {str(b): s for b in cfg.labels_per_class if (s := check_budget(
        prepared.splits["train"].labels, b, classes, "probe.labels_per_class", cfg.budget == "at_most"))}
    ckpt = load_backbone(args.backbone, args.pretext, params.model)
    model = build_classifier(params.model, meta, len(classes))
    load_backbone_into(model, ckpt["state_dict"])  # checks that every layer fits
    backbone = model.backbone
    runtime = setup(params.compute, meta)
    backbone.to(runtime.device).to(memory_format=torch.channels_last)
    # the features stay on the device, where the probes run
    feats = {split: predict(backbone, s.images, runtime, 1000, method="layer_features", on_device=True)
             for split, s in prepared.splits.items()}
    labels = {split: s.labels for split, s in prepared.splits.items()}
    print(f"probe {args.pretext}: features of {sum(map(len, labels.values()))} images in {time.perf_counter() - started:.0f} s")
    metrics = probe_backbone(feats, labels, cfg, len(classes), log=lambda line: print(f"probe {args.pretext} {line}"))
    if short:  # budget at_most: per budget, the classes with fewer training images, used whole
        metrics["short_classes"] = short

    out = Path(args.metrics)
    write_json(out / "detail.json", metrics)  # per budget and draw: every layer on val, the choice, both probes
    # the headline, for `dvc metrics diff`: the layer chosen with the most labels, and the linear probe's mean test
    # accuracy per budget (at the layer each draw chose)
    write_json(out / "metrics.json", {"layer": metrics["layer"],
                                      "test": {b: v["linear"]["mean"] for b, v in metrics["test"].items()},
                                      **({"short_classes": short} if short else {})})
    points = pca_2d(feats["test"][metrics["layer"]][:EMBEDDING_POINTS]).cpu()
    test_labels = labels["test"][:EMBEDDING_POINTS].tolist()
    with atomic_path(out / "embedding.csv") as tmp:
        pd.DataFrame({"pc1": points[:, 0].numpy(), "pc2": points[:, 1].numpy(), "label": test_labels,
                      "class": [classes[i] for i in test_labels]}).to_csv(tmp, index=False, float_format="%.5g")


if __name__ == "__main__":
    run_stage(main)
