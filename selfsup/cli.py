"""What every stage script shares: one-line errors instead of tracebacks for problems the user can fix."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from selfsup import SelfSupError


def run_stage(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's main(); a SelfSupError becomes one line on stderr and exit status 1."""
    try:
        main(argv)
    except SelfSupError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    finally:
        if "selfsup.distributed" in sys.modules:  # only a stage that trained joined a process group; the others
            from selfsup import distributed  # never import torch for it (select starts in a third of the time)

            distributed.shutdown()


def open_live(directory: str):
    """A dvclive logger that writes only under `directory` and never touches dvc.yaml or DVC experiments;
    a logger that writes nothing on the ranks other than 0 of a torchrun launch."""
    from selfsup import distributed

    if not distributed.is_main():
        return distributed.NullLive()
    from dvclive import Live  # late: importing dvclive is slow and not every caller logs

    return Live(directory, dvcyaml=False, save_dvc_exp=False, report=None)


def at_least(minimum: int):
    """An argparse type: an integer of at least `minimum` (argparse's one-line error otherwise)."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is below {minimum}")
        return value

    return parse
