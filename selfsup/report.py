"""The README's results section, rendered from the committed metrics/ and params.yaml.

`python -m selfsup.report` rewrites the part of README.md between the results markers; a test checks
that the README agrees with the metrics committed beside it, so no number in it is typed by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

START, END = "<!-- results:start -->", "<!-- results:end -->"
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


def replace_block(readme: str, block: str) -> str:
    """README text with the results block swapped for `block`."""
    head, sep, rest = readme.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"README.md has no {START} ... {END} block")
    return head + block + tail


def main() -> None:
    root = Path.cwd()
    readme = root / "README.md"
    readme.write_text(replace_block(readme.read_text(), render(root)))
    print(f"updated the results in {readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
