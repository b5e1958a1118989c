"""`python -m selfsup.report`: render the results, after collecting the sweep's DVC experiments if asked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup import SelfSupError
from selfsup.cli import run_stage
from selfsup.io import atomic_path
from selfsup.report.blocks import rendered
from selfsup.report.data import COMPARISON, DISTILLED
from selfsup.report.experiments import RECIPE_FILES, collect, uncommitted

ROOT_HINT = "run it in the project's root (where dvc.yaml and params.yaml are)"


def project_root(cwd: Path) -> Path:
    """The folder the report reads and writes: the nearest of `cwd` and the folders above it holding params.yaml (the
    project's root from any folder inside it, e.g. docs/)."""
    for folder in (cwd, *cwd.parents):
        if (folder / "params.yaml").is_file():
            return folder
    raise SelfSupError(f"no params.yaml in {cwd} or any folder above it; {ROOT_HINT}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m selfsup.report", formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        description="Render the results: README.md's and docs/results.md's tables and the charts, from metrics/ "
                    "and params.yaml. Everything is computed before anything is written; a file whose text is "
                    "unchanged is left alone.",
        epilog="After a sweep (docs/results.md: The label-efficiency sweep):\n"
               "  python -m selfsup.report --experiments            # the experiments of HEAD\n"
               "  python -m selfsup.report --experiments --rev abc1234  # ... of the commit they were queued from")
    parser.add_argument("--experiments", action="store_true",
                        help=f"first collect the finished DVC experiments into {COMPARISON} and {DISTILLED}: a row "
                             "of the same settings is replaced, every other row kept; a run that did not make all "
                             "its metrics with its params, or remade a stage of its commit with other results (a "
                             "backbone pre-trained anew elsewhere), is left out and named; with none to collect, "
                             "an error and nothing written")
    parser.add_argument("--rev", metavar="COMMIT",
                        help="with --experiments: the commit the experiments were queued from (default HEAD)")
    parser.add_argument("--replace", action="store_true",
                        help="with --experiments: the tables hold the collected experiments alone, every other "
                             "row dropped (and a chart they leave nothing to draw is removed)")
    parser.add_argument("--uncommitted", action="store_true",
                        help="render even where params.yaml or dvc.lock differ from the last commit (an experiment "
                             "applied to the workspace, an edit): its recipe and results then replace the committed "
                             "ones on the pages")
    args = parser.parse_args(argv)
    if (args.rev is not None or args.replace) and not args.experiments:
        parser.error("--rev and --replace go with --experiments")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = project_root(Path.cwd())
    dirty = [] if args.uncommitted else uncommitted(root)
    if dirty:  # e.g. a `dvc exp run -S ...` left in the workspace: its settings would redraw the published answer
        raise SelfSupError(
            f"{' and '.join(dirty)} differ{'s' * (len(dirty) == 1)} from the last commit, so the pages would show "
            "this workspace's recipe and results instead of the committed ones; commit them, or restore the "
            f"committed ones (git checkout HEAD -- {' '.join(RECIPE_FILES)} metrics), or pass --uncommitted to "
            "render the workspace as it is. Nothing was written")
    pending = collect(root, args.rev or "HEAD", args.replace) if args.experiments else {}
    try:  # everything is read before anything is written
        pages = rendered(root, pending)
    except FileNotFoundError as err:  # a page or a file the pages are drawn from
        raise SelfSupError(f"{err.filename or err} not found; {ROOT_HINT}") from None
    changed = []
    for path, text in pages.items():
        if text is None:  # a chart with nothing left to draw
            path.unlink(missing_ok=True)
            changed.append(f"{path.relative_to(root).as_posix()} (removed: nothing to draw)")
        elif not path.is_file() or path.read_text() != text:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
            changed.append(path.relative_to(root).as_posix())
    where = "" if root == Path.cwd() else f" in {root}"
    print(f"updated {', '.join(changed)}{where}" if changed else f"the results{where} are up to date: nothing changed",
          file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
