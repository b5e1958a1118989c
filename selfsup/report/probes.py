"""The default run and the frozen-feature probes (docs/results.md): the run's headline and per-class table, each
backbone's linear and kNN probes, the fine-tuned model against its probe, and the probes' embedding pictures."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import yaml

from selfsup.report.data import COMPARISON, read_comparison, read_probes
from selfsup.report.tables import budget_grid, budget_order, interval_cell
from selfsup.report.targets import SEED_SUPERVISED
from selfsup.statistics import paired_interval
from selfsup.svg import scatter

def results_markdown(params: dict, finetune: dict, evaluate: dict, per_class: pd.DataFrame) -> str:
    """Markdown for one evaluated run: headline row, then one row per class (test images, accuracy, F1)."""
    test = evaluate["test"]
    ft = params["finetune"]
    dataset = params["data"]["dataset"]
    anchor = SEED_SUPERVISED.get(dataset)
    lines = [
        "| dataset | pretext | protocol | labels per class | labelled images | kept epoch | test accuracy "
        "| balanced accuracy | macro-F1 | AML19 supervised |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {dataset} | {params['pretext']} | {ft['protocol']} | {ft['labels_per_class']} "
        f"| {finetune['labelled_images']} | {finetune['kept_epoch']} of {ft['epochs']} "
        f"| **{100 * test['accuracy']:.2f}%** | {100 * test['balanced_accuracy']:.2f}% | {test['macro_f1']:.4f} "
        f"| {'—' if anchor is None else f'{100 * anchor:.2f}%'} |",
        "",
        "| class | test images | test accuracy | F1 |",
        "|---|---|---|---|",
        *(f"| {c['class']} | {c['support']} | {100 * c['accuracy']:.1f}% | {c['f1']:.3f} |"
          for c in per_class.to_dict("records")),
    ]
    return "\n".join(lines)


def render_run(root: Path, read=lambda p: p.read_text()) -> str:
    """The default run's block for the repository at `root`; `read` maps a path to its text."""
    params = yaml.safe_load(read(root / "params.yaml"))
    finetune = json.loads(read(root / "metrics/finetune/metrics.json"))
    evaluate = json.loads(read(root / "metrics/evaluate/metrics.json"))
    per_class = pd.read_csv(io.StringIO(read(root / "metrics/evaluate/per_class.csv")), keep_default_na=False)
    return results_markdown(params, finetune, evaluate, per_class)


def probe_markdown(probes: dict[str, dict]) -> str:
    """Frozen-feature test accuracy per pretext: linear probe per label budget (mean ± std, and the layers its
    draws chose), kNN with all labels."""
    budgets = budget_order(next(iter(probes.values()))["test"])
    lines = ["| pretext | " + " | ".join(f"linear, {b} per class (layer)" for b in budgets) + " | kNN, all |",
             "|---" * (len(budgets) + 2) + "|"]
    for pretext, m in probes.items():
        cells = [f"{100 * m['test'][b]['linear']['mean']:.2f} ± {100 * m['test'][b]['linear']['std']:.2f} ("
                 + ", ".join(layer + (f" ×{n}" if n > 1 else "") for layer, n in m["test"][b]["layers"].items()) + ")"
                 for b in budgets]
        knn = m["test"].get("all", m["test"][budgets[-1]])["knn"]["mean"]
        lines.append(f"| {pretext} | " + " | ".join(cells) + f" | {100 * knn:.2f} |")
    return "\n".join(lines)


def probe_draws(probes: dict[str, dict]) -> pd.DataFrame:
    """The linear probe's test accuracy per pretext, budget and seed (a probe's label draw i is seed i's, the
    labelled images finetune draws with finetune.seed i; `all` has one draw, seed 0)."""
    rows = [{"pretext": pretext, "labels_per_class": budget, "seed": seed, "probe": draw["linear"]}
            for pretext, detail in probes.items() for budget, draws in detail["draws"].items()
            for seed, draw in enumerate(draws)]
    return pd.DataFrame(rows, columns=["pretext", "labels_per_class", "seed", "probe"])


def probe_gaps(table: pd.DataFrame, draws: pd.DataFrame, protocol: str | None = "full") -> pd.DataFrame:
    """Per pretext and budget: the fine-tuned model's test accuracy minus the frozen linear probe's of the same
    backbone on the same labelled images, paired by seed, with its 95% interval (`paired_interval`); of the rows of
    `protocol`, or (None) of every row."""
    rows = table if protocol is None else table[table.protocol == protocol]
    rows = rows.merge(draws, on=["pretext", "labels_per_class", "seed"])
    out = []
    for (pretext, budget), group in rows.groupby(["pretext", "labels_per_class"], sort=False):
        n, mean, low, high = paired_interval(group.test_accuracy - group.probe)
        out.append({"pretext": pretext, "labels_per_class": budget, "seeds": n, "gain": mean, "low": low, "high": high})
    return pd.DataFrame(out, columns=["pretext", "labels_per_class", "seeds", "gain", "low", "high"])


def probe_gap_markdown(gaps: pd.DataFrame, order=()) -> str:
    return "\n".join(budget_grid(gaps, "fine-tuned − probe", "{} labels per class", interval_cell, order))


def render_probe(root: Path, read=lambda p: p.read_text(), exists=lambda p: p.is_file()) -> str:
    probes = read_probes(root, read)
    gaps = ""
    if exists(root / COMPARISON):
        table = probe_gaps(read_comparison(root, read), probe_draws(probes))
        if len(table):
            gaps = ("\n\nThe fine-tuned model (the sweep's, before distillation) against the linear probe of the same "
                    "backbone on the same labelled images, test accuracy, paired by seed, with its 95% interval "
                    "(**bold**: it excludes 0):\n\n" + probe_gap_markdown(table, list(probes)))
    return f"{probe_markdown(probes)}{gaps}"


def embedding_path(pretext: str) -> Path:
    return Path(f"metrics/probe/{pretext}/embedding.svg")


def embedding_svg(root: Path, pretext: str, read=lambda p: p.read_text()) -> str:
    """The PCA scatter of probe@<pretext>'s embedding.csv (the test features of its chosen layer)."""
    # Python's float(): the numbers exactly as written, whatever parser a pandas release defaults to
    points = pd.read_csv(io.StringIO(read(root / f"metrics/probe/{pretext}/embedding.csv")),
                         converters={"pc1": float, "pc2": float})
    layer = json.loads(read(root / f"metrics/probe/{pretext}/metrics.json"))["layer"]
    named = dict(zip(points.label, points["class"]))
    classes = [named.get(i, str(i)) for i in range(max(named) + 1)]
    return scatter(list(zip(points.pc1, points.pc2)), points.label.tolist(), classes,
                   f"{pretext}: test features of {layer}, PCA")
