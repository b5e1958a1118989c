"""The stage scripts' command lines: a parser per stage, built the same way, and the help texts several share."""

from __future__ import annotations

import argparse

DATA = "preprocess output folder"  # the --data of the stages after preprocess
LIVE = "dvclive folder"  # a training stage's --metrics
BACKBONE = "backbone.pt of the pretext that params.yaml names"  # finetune's and distill's --backbone
DELIVERED = "model.pt written by distill: the delivered model"  # evaluate's and export's --model


def stage_parser(doc: str, *, pretext: bool = False, **required: str) -> argparse.ArgumentParser:
    """A stage's arguments: its docstring as the description, no abbreviated flags (a shortened or unknown
    flag is an error), the pretext first where the stage runs once per pretext, then a required `--name` per
    keyword, in order, its value the help. A stage adds its optional flags to the parser it gets back."""
    parser = argparse.ArgumentParser(description=doc, allow_abbrev=False)
    if pretext:
        parser.add_argument("pretext", help="a name from the pretext registry")
    for name, text in required.items():
        parser.add_argument(f"--{name}", required=True, help=text)
    return parser
