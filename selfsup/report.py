"""The README's results sections, rendered from the committed metrics/ and params.yaml.

`python -m selfsup.report` rewrites the parts of README.md between the results markers;
`python -m selfsup.report --experiments` first collects every DVC experiment (`dvc exp show --json`)
into metrics/comparison.tsv. Tests check that the README agrees with the files committed beside it,
so no number in it is typed by hand.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

START, END = "<!-- results:start -->", "<!-- results:end -->"
CMP_START, CMP_END = "<!-- comparison:start -->", "<!-- comparison:end -->"
COMPARISON = Path("metrics/comparison.tsv")
PRETEXT_ORDER = ["none", "rotation", "exemplar", "autoencoder"]
SEED_SUPERVISED = 0.9033  # the seed project's supervised CifarNet on the Fashion-MNIST test set


def results_markdown(params: dict, finetune: dict, evaluate: dict) -> str:
    """Markdown for one evaluated run: headline row, then per-class test accuracy."""
    test = evaluate["test"]
    ft = params["finetune"]
    lines = [
        "| dataset | pretext | protocol | labels per class | labelled images | best epoch | test accuracy | macro-F1 | seed's supervised |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {params['data']['dataset']} | {params['pretext']} | {ft['protocol']} | {ft['labels_per_class']} "
        f"| {finetune['labelled_images']} | {finetune['best/epoch']} of {ft['epochs']} "
        f"| **{100 * test['accuracy']:.2f}%** | {test['macro_f1']:.4f} | {100 * SEED_SUPERVISED:.2f}% |",
        "",
        "| class | " + " | ".join(test["per_class"]) + " |",
        "|---" * (len(test["per_class"]) + 1) + "|",
        "| test accuracy | " + " | ".join(f"{100 * c['accuracy']:.1f}%" for c in test["per_class"].values()) + " |",
    ]
    return "\n".join(lines)


def render(root: Path, read=lambda p: p.read_text()) -> str:
    """The results block for the repository at `root`; `read` maps a path to its text."""
    params = yaml.safe_load(read(root / "params.yaml"))
    finetune = json.loads(read(root / "metrics/finetune/metrics.json"))
    evaluate = json.loads(read(root / "metrics/evaluate/metrics.json"))
    return f"{START}\n{results_markdown(params, finetune, evaluate)}\n{END}"


def experiment_rows(show: list) -> pd.DataFrame:
    """One row per commit or experiment of `dvc exp show --json` that has evaluate metrics."""
    rows = []
    for commit in show:
        entries = [commit] + [rev for exp in commit.get("experiments") or [] for rev in exp.get("revs", [])]
        for entry in entries:
            data = entry.get("data") or {}
            params = data.get("params", {}).get("params.yaml", {}).get("data")
            metrics = data.get("metrics", {}).get("metrics/evaluate/metrics.json", {}).get("data")
            if entry.get("rev") == "workspace" or not params or not metrics:
                continue
            ft = params["finetune"]
            rows.append({
                "experiment": entry.get("name") or entry["rev"][:7], "timestamp": data.get("timestamp"),
                "dataset": params["data"]["dataset"], "pretext": params["pretext"], "protocol": ft["protocol"],
                "labels_per_class": str(ft["labels_per_class"]), "epochs": ft["epochs"], "seed": ft["seed"],
                "test_accuracy": metrics["test"]["accuracy"], "macro_f1": metrics["test"]["macro_f1"],
            })
    keys = ["dataset", "pretext", "protocol", "labels_per_class", "epochs", "seed"]
    table = pd.DataFrame(rows, columns=["experiment", "timestamp", *keys, "test_accuracy", "macro_f1"])
    # the same settings run twice (a commit and its experiment): keep the newest
    return table.sort_values("timestamp").drop_duplicates(keys, keep="last").drop(columns="timestamp")


def comparison_markdown(table: pd.DataFrame) -> str:
    """Test accuracy per pretext (rows) and label budget (columns), with the fine-tuning epochs of each."""
    table = table.assign(cell=[f"{100 * a:.2f}% ({e} ep.)" for a, e in zip(table.test_accuracy, table.epochs)])
    grid = table.pivot_table(index="pretext", columns="labels_per_class", values="cell", aggfunc="first")
    grid = grid.reindex([p for p in PRETEXT_ORDER if p in grid.index] + [p for p in grid.index if p not in PRETEXT_ORDER])
    columns = sorted(grid.columns, key=lambda c: (c == "all", int(c) if c.isdigit() else 0), reverse=True)
    lines = ["| pretext | " + " | ".join(f"{c} labels per class" for c in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for pretext, row in grid[columns].iterrows():
        lines.append(f"| {pretext} | " + " | ".join(str(v) if isinstance(v, str) else "—" for v in row) + " |")
    return "\n".join(lines)


def render_comparison(root: Path, read=lambda p: p.read_text()) -> str:
    table = pd.read_csv(io.StringIO(read(root / COMPARISON)), sep="\t", dtype={"labels_per_class": str})
    return f"{CMP_START}\n{comparison_markdown(table)}\n{CMP_END}"


def replace_block(readme: str, block: str, start: str = START, end: str = END) -> str:
    """README text with the block between `start` and `end` swapped for `block`."""
    head, sep, rest = readme.partition(start)
    _, sep2, tail = rest.partition(end)
    if not sep or not sep2:
        raise ValueError(f"README.md has no {start} ... {end} block")
    return head + block + tail


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    root = Path.cwd()
    if "--experiments" in argv:
        show = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], check=True, capture_output=True,
                                         text=True, cwd=root).stdout)
        experiment_rows(show).to_csv(root / COMPARISON, sep="\t", index=False, float_format="%.6f")
    readme = root / "README.md"
    text = replace_block(readme.read_text(), render(root))
    if (root / COMPARISON).is_file():
        text = replace_block(text, render_comparison(root), CMP_START, CMP_END)
    readme.write_text(text)
    print(f"updated the results in {readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
