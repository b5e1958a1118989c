"""The pull-request review: what a change does to params, metrics and plots against a base revision, as one
markdown report, read from the committed dvc.lock, metrics and plot data (the author's real run): nothing is
trained to write it.

    python -m selfsup.review main > report.md              # locally, against the main branch
    python -m selfsup.review origin/main --html plots      # as CI does, with the changed plots rendered

The pull-request workflow (.github/workflows/review.yml) posts its output as one comment with CML.
Needs git and dvc only, not torch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from selfsup import SelfSupError

# Metrics files in the order a reviewer reads them: the delivered model's test metrics first.
ORDER = ("metrics/evaluate/", "metrics/distill/", "metrics/finetune/", "metrics/probe/", "metrics/pretrain/")


def _run(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SelfSupError(f"`{' '.join(args)}` failed: {last}")
    return proc.stdout


def _number(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _rank(path: str) -> int:
    return next((i for i, prefix in enumerate(ORDER) if path.startswith(prefix)), len(ORDER))


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows])


def params_table(diff: dict) -> str:
    """`dvc params diff --json` as a table: param, base, this change."""
    rows = [[name, "—" if v.get("old") is None else str(v["old"]), "—" if v.get("new") is None else str(v["new"])]
            for _, params in sorted(diff.items()) for name, v in sorted(params.items())]
    return _table(["param", "base", "this change"], rows) if rows else "No params changed."


def metrics_table(diff: dict) -> str:
    """`dvc metrics diff --json` as a table, the delivered model's test metrics first: file, metric, base, this
    change, difference."""
    rows = []
    for path in sorted(diff, key=lambda p: (_rank(p), p)):
        metrics = diff[path]
        # within a file: test accuracy first, then the rest by name
        for name in sorted(metrics, key=lambda n: (n != "test.accuracy", n)):
            v = metrics[name]
            change = v.get("diff")
            rows.append([path, name, _number(v.get("old")), _number(v.get("new")),
                         f"{change:+.4f}" if isinstance(change, float) else _number(change)])
    return _table(["file", "metric", "base", "this change", "difference"], rows) if rows else "No metrics changed."


def changed_plots(base: str, cwd: Path) -> list[str]:
    """The plot data files DVC knows whose committed content differs between `base` and the working tree."""
    shown = json.loads(_run(["dvc", "plots", "show", "--json"], cwd))
    known = [path for path in shown.get("data", {}) if (cwd / path).is_file()]
    if not known:
        return []
    changed = set(_run(["git", "diff", "--name-only", base, "--", *known], cwd).split())
    return [path for path in known if path in changed]


def report(base: str, cwd: Path = Path("."), html: Path | None = None) -> str:
    """The review of the working tree against `base`, as markdown; with `html`, the changed plots rendered there."""
    _run(["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"], cwd)  # one clear error for a bad revision
    params = json.loads(_run(["dvc", "params", "diff", base, "--json"], cwd) or "{}")
    metrics = json.loads(_run(["dvc", "metrics", "diff", base, "--json"], cwd) or "{}")
    plots = changed_plots(base, cwd)
    head = _run(["git", "rev-parse", "--short", "HEAD"], cwd).strip()
    uncommitted = _run(["git", "status", "--porcelain", "--", "dvc.lock", "params.yaml", "metrics"], cwd).strip()
    parts = [f"## Review of {head} against {base}", ""]
    if uncommitted:
        parts += ["**Uncommitted changes to dvc.lock, params.yaml or metrics/ are included below.**", ""]
    parts += ["### Params", "", params_table(params), "", "### Metrics", "", metrics_table(metrics), "", "### Plots", ""]
    if plots:
        parts += [f"{len(plots)} plot data file{'s' * (len(plots) > 1)} changed:", "",
                  *(f"- `{path}`" for path in plots), ""]
        if html is not None:
            _run(["dvc", "plots", "diff", base, "--targets", *plots, "-o", str(html)], cwd)
            parts += [f"Rendered against {base} in `{html}/index.html` (`dvc plots diff {base}`).", ""]
    else:
        parts += ["No plot data changed.", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m selfsup.review", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the revision to compare with: the pull request's base branch, e.g. main")
    parser.add_argument("--html", type=Path, help="folder for the changed plots, rendered by `dvc plots diff`")
    args = parser.parse_args(argv)
    try:
        print(report(args.base, Path("."), args.html))
    except SelfSupError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
