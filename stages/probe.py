"""Stage probe@<pretext>: kNN and linear probes on the frozen features of a pretrained backbone.

Every layer is probed with `select_labels_per_class` labels per class; the layer whose linear probe scores
best on val is the backbone's representation, and is then probed on test with `labels_per_class` labels
per class, `seeds` draws each.
Also writes a 2-D PCA picture of the test features of that layer.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

from selfsup.cli import run_stage
from selfsup.data import labelled_subset, load_prepared
from selfsup.io import atomic_path, write_json
from selfsup.models import build_classifier, load_backbone, load_backbone_into
from selfsup.params import load_params, to_dict
from selfsup.probe import LinearProbe, accuracy, knn_predict, pca_2d
from selfsup.svg import scatter
from selfsup.train import predict, setup

EMBEDDING_POINTS = 2000  # of the test set, in the picture


def main(argv=None):
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pretext", help="a name from the pretext registry")
    parser.add_argument("--backbone", required=True, help="backbone.pt written by pretrain@<pretext>")
    parser.add_argument("--data", required=True, help="preprocess output folder")
    parser.add_argument("--metrics", required=True, help="folder for metrics.json and the embedding plot")
    args = parser.parse_args(argv)
    params = load_params()
    cfg = params.probe
    prepared = load_prepared(args.data)
    meta, classes = prepared.meta, prepared.classes
    ckpt = load_backbone(args.backbone, args.pretext, to_dict(params.model))
    model = build_classifier(to_dict(params.model), meta, len(classes))
    load_backbone_into(model, ckpt["state_dict"])  # checks that every layer fits
    backbone = model.backbone
    compute, norm = setup(params.compute, meta)
    backbone.to(compute.device).to(memory_format=torch.channels_last)
    feats = {split: predict(backbone, s.images, norm, 1000, compute, method="layer_features")
             for split, s in prepared.splits.items()}
    labels = {split: s.labels for split, s in prepared.splits.items()}
    print(f"probe {args.pretext}: features of {sum(map(len, labels.values()))} images in {time.perf_counter() - started:.0f} s")
    n_classes = len(classes)

    def probes(layer: str, chosen: torch.Tensor, split: str) -> dict[str, float]:
        x, y = feats["train"][layer][chosen], labels["train"][chosen]
        linear = LinearProbe(n_classes, cfg.weight_decay, cfg.steps).fit(x, y)
        return {"linear": accuracy(linear.predict(feats[split][layer]), labels[split]),
                "knn": accuracy(knn_predict(x, y, feats[split][layer], cfg.k, n_classes), labels[split])}

    selection = labelled_subset(labels["train"], cfg.select_labels_per_class, 0, "probe.select_labels_per_class")
    layers = {}
    for layer in feats["train"]:
        layers[layer] = {"val": probes(layer, selection, "val")}
        print(f"probe {args.pretext} {layer}: val linear {layers[layer]['val']['linear']:.4f}, "
              f"kNN {layers[layer]['val']['knn']:.4f}")
    best = max(layers, key=lambda name: layers[name]["val"]["linear"])

    budgets = {}
    for per_class in cfg.labels_per_class:
        # With every label there is nothing to draw, and both probes are deterministic: one run.
        draws = [0] if per_class == "all" else range(cfg.seeds)
        runs = [probes(best, labelled_subset(labels["train"], per_class, seed, "probe.labels_per_class"), "test")
                for seed in draws]
        budgets[str(per_class)] = {
            probe: {"mean": statistics.fmean(r[probe] for r in runs),
                    "std": statistics.pstdev(r[probe] for r in runs) if len(runs) > 1 else 0.0}
            for probe in ("linear", "knn")
        }
        print(f"probe {args.pretext} {best}, {per_class} labels per class: " +
              ", ".join(f"{p} {v['mean']:.4f} ± {v['std']:.4f}" for p, v in budgets[str(per_class)].items()))

    out = Path(args.metrics)
    write_json(out / "metrics.json", {"layer": best, "layers": layers, "test": budgets})
    test_labels = labels["test"][:EMBEDDING_POINTS]
    points = pca_2d(feats["test"][best][:EMBEDDING_POINTS])
    with atomic_path(out / "embedding.svg") as tmp:
        tmp.write_text(scatter(points.tolist(), test_labels.tolist(), classes,
                               f"{args.pretext}: test features of {best}, PCA"))


if __name__ == "__main__":
    run_stage(main)
