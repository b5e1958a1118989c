"""The pull-request review: what a change does to params, metrics and plots against a base revision, as one
markdown report, read from the committed dvc.lock, metrics and plot data (the author's real run): nothing is
trained to write it.

    python -m selfsup.review main > report.md              # locally, against the main branch
    python -m selfsup.review origin/main --html plots      # as CI does, with the changed plots rendered

The pull-request workflow (.github/workflows/review.yml) writes its output to the job summary and, for a branch of
the same repository, posts it as one comment with CML.
Needs git, dvc, pandas and pyyaml, not torch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from selfsup import SelfSupError
from selfsup.report.data import COMPARISON, read_comparison
from selfsup.report.sweep import sweep_summary

# Metrics files in the order a reviewer reads them: the delivered model's test metrics first.
ORDER = ("metrics/evaluate/", "metrics/distill/", "metrics/finetune/", "metrics/probe/", "metrics/pretrain/")


def _run(args: list[str], cwd: Path) -> str:
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise SelfSupError(f"`{args[0]}` not found; the review needs git and dvc on the PATH") from None
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
    with tempfile.TemporaryDirectory(prefix="review-plots-") as out:  # the images it renders (dvc_plots/ by default)
        shown = json.loads(_run(["dvc", "plots", "show", "--json", "-o", out], cwd))  # are not needed: only the names
    known = [path for path in shown.get("data", {}) if (cwd / path).is_file()]
    if not known:
        return []
    changed = set(_run(["git", "diff", "--name-only", base, "--", *known], cwd).split())
    return [path for path in known if path in changed]


HEADLINE = Path("metrics/evaluate/metrics.json")  # the delivered model's test metrics
# the committed results besides the metrics and plot data DVC knows: the sweep tables, the charts, the pages
RESULTS = ("metrics", "README.md", "docs/results.md")


def headline(cwd: Path, metrics: dict) -> str | None:
    """A line for the delivered model's test accuracy where the change did not move it."""
    if "test.accuracy" in metrics.get(HEADLINE.as_posix(), {}) or not (cwd / HEADLINE).is_file():
        return None
    accuracy = json.loads((cwd / HEADLINE).read_text()).get("test", {}).get("accuracy")
    return None if accuracy is None else f"Test accuracy {100 * accuracy:.2f}%, unchanged."


def sweep_table(base: str, cwd: Path) -> str:
    """The cells of the sweep's answer (mean test accuracy per protocol, pretext and budget, of the rows the README
    shows) that `base` and the working tree disagree on: base, this change (runs), difference."""
    def at_base(path: Path) -> str:
        return _run(["git", "show", f"{base}:{path.relative_to(cwd).as_posix()}"], cwd)

    keys = ["protocol", "pretext", "labels_per_class"]
    try:
        old = sweep_summary(read_comparison(cwd, at_base)).set_index(keys)
    except SelfSupError:  # no sweep table at the base
        old = None
    new = sweep_summary(read_comparison(cwd)).set_index(keys) if (cwd / COMPARISON).is_file() else None  # deleted
    rows = []
    for key in sorted(set(() if new is None else new.index) | set(() if old is None else old.index)):
        before = None if old is None or key not in old.index else old.loc[key]
        after = None if new is None or key not in new.index else new.loc[key]
        cells = [f"{100 * r['mean']:.2f} ({int(r['runs'])})" if r is not None else "—" for r in (before, after)]
        if cells[0] != cells[1]:
            change = "—" if before is None or after is None else f"{100 * (after['mean'] - before['mean']):+.2f}"
            rows.append([*map(str, key), *cells, change])
    return _table(["protocol", "pretext", "labels per class", "base (runs)", "this change (runs)", "difference"],
                  rows) if rows else "The answer's cells are unchanged."


def check_base(base: str, cwd: Path) -> None:
    """One clear error for a revision that names no commit (of which `git rev-parse --quiet` says nothing)."""
    _run(["git", "rev-parse", "--git-dir"], cwd)  # outside a git repository: git's own words
    try:
        _run(["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"], cwd)
    except SelfSupError:
        raise SelfSupError(f"no commit {base} in this repository; give a branch, tag or commit, e.g. main") from None


def report(base: str, cwd: Path = Path("."), html: Path | None = None) -> str:
    """The review of the working tree against `base`, as markdown; with `html`, the changed plots rendered there."""
    check_base(base, cwd)
    params = json.loads(_run(["dvc", "params", "diff", base, "--json"], cwd) or "{}")
    metrics = json.loads(_run(["dvc", "metrics", "diff", base, "--json"], cwd) or "{}")
    plots = changed_plots(base, cwd)
    head = _run(["git", "rev-parse", "--short", "HEAD"], cwd).strip()
    uncommitted = _run(["git", "status", "--porcelain", "--", "dvc.lock", "params.yaml", "metrics"], cwd).strip()
    parts = [f"## Review of {head} against {base}", ""]
    if uncommitted:
        parts += ["**Uncommitted changes to dvc.lock, params.yaml or metrics/ are included below.**", ""]
    line = headline(cwd, metrics)
    parts += ["### Params", "", params_table(params), "", "### Metrics", "", *([line, ""] if line else []),
              metrics_table(metrics), "", "### Plots", ""]
    if plots:
        parts += [f"{len(plots)} plot data file{'s' * (len(plots) > 1)} changed:", "",
                  *(f"- `{path}`" for path in plots), ""]
        if html is not None:
            _run(["dvc", "plots", "diff", base, "--targets", *plots, "-o", str(html)], cwd)
            parts += [f"Rendered against {base} in `{html}/index.html` (`dvc plots diff {base}`).", ""]
    else:
        parts += ["No plot data changed.", ""]
    results = [path for path in _run(["git", "diff", "--name-only", base, "--", *RESULTS], cwd).split()
               if path not in plots and path not in metrics]
    parts += ["### Results", ""]
    if COMPARISON.as_posix() in results:
        parts += ["The sweep's answer (`metrics/comparison.tsv`), the test accuracy in %, where it changed:", "",
                  sweep_table(base, cwd), ""]
    parts += [f"{len(results)} result file{'s' * (len(results) != 1)} changed:", "",
              *(f"- `{path}`" for path in results), ""] if results else ["No other result changed.", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m selfsup.review", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
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
