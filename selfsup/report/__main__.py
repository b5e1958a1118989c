"""`python -m selfsup.report`: render the results, after collecting the sweep's DVC experiments if asked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage
from selfsup.io import atomic_path
from selfsup.report.blocks import rendered
from selfsup.report.data import COMPARISON, DISTILLED, collect

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
                             "of the same settings is replaced, every other row kept; with none to collect, an "
                             "error and nothing written")
    parser.add_argument("--rev", metavar="COMMIT",
                        help="with --experiments: the commit the experiments were queued from (default HEAD)")
    parser.add_argument("--replace", action="store_true",
                        help="with --experiments: the tables hold the collected experiments alone, every other "
                             "row dropped")
    args = parser.parse_args(argv)
    if (args.rev is not None or args.replace) and not args.experiments:
        parser.error("--rev and --replace go with --experiments")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = Path.cwd()
    pending = collect(root, args.rev or "HEAD", args.replace) if args.experiments else {}
    changed = []
    for path, text in rendered(root, pending).items():
        if not path.is_file() or path.read_text() != text:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
            changed.append(path.relative_to(root).as_posix())
    print(f"updated {', '.join(changed)}" if changed else "the results are up to date: nothing changed",
          file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
