"""Every file the report writes, in one registry: the pages' blocks (a name, its page, the tables it needs, how it
is rendered) and the pictures; `rendered` is a loop over it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from selfsup.report import benchmarks, sweep
from selfsup.report.answer import render_comparison, render_detail
from selfsup.report.data import (BALANCE, COMPARISON, CONSISTENCY, DISTILL_RECIPE, DISTILLED, DISTILLED_PLOT,
                                 GAIN_PLOT, PLOT, PRETEXT_COMPUTE, README, RECIPE, REFERENCE_VIEWS, RESULTS_DOC,
                                 SAVING_PLOT, SCHEDULE, TUNING, all_labels_per_class, pretexts, read_comparison,
                                 read_distilled, read_table)
from selfsup.report.distilled import distillation_svg, render_distilled
from selfsup.report.probes import embedding_path, embedding_svg, render_probe, render_run

Read = Callable[[Path], str]
Exists = Callable[[Path], bool]


@dataclass(frozen=True)
class Block:
    """The part of `page` between `<!-- name:start -->` and `<!-- name:end -->`: `render(root, read, exists)`, drawn
    where every table of `needs` exists (a page without the markers is an error)."""
    name: str
    page: Path
    needs: tuple[Path, ...]
    render: Callable[[Path, Read, Exists], str]


@dataclass(frozen=True)
class Picture:
    """A chart at `path`: `draw(root, read)`, drawn where every table of `needs` exists (None: nothing to draw)."""
    path: Path
    needs: tuple[Path, ...]
    draw: Callable[[Path, Read], str | None]


def benchmark(path: Path, markdown) -> Callable[[Path, Read, Exists], str]:
    """A block of the benchmark table at `path`: `markdown(table, params, root, read)`."""
    return lambda root, read, _: markdown(read_table(root, path, read), yaml.safe_load(read(root / "params.yaml")),
                                       root, read)


def _gains(root: Path, read: Read) -> str | None:
    table = read_comparison(root, read)
    return sweep.gain_svg(table, pretexts(root, read)) if len(sweep.paired_gains(table)) else None


def _saving(root: Path, read: Read) -> str | None:
    matched = sweep.matching(read_comparison(root, read), all_per_class=all_labels_per_class(root, read))
    return sweep.saving_svg(matched, pretexts(root, read)) if len(matched) else None


BLOCKS = [
    Block("results", RESULTS_DOC, (), lambda root, read, _: render_run(root, read)),
    Block("probe", RESULTS_DOC, (), render_probe),
    Block("comparison", README, (COMPARISON,), lambda root, read, _: render_comparison(root, read)),
    Block("answer-detail", RESULTS_DOC, (COMPARISON,), lambda root, read, _: render_detail(root, read)),
    Block("views", RESULTS_DOC, (COMPARISON, REFERENCE_VIEWS), lambda root, read, _: sweep.render_views(root, read)),
    Block("distill", RESULTS_DOC, (DISTILLED,), lambda root, read, _: render_distilled(root, read)),
    Block("recipe", RESULTS_DOC, (RECIPE,), benchmark(RECIPE, lambda table, *_: benchmarks.recipe_markdown(table))),
    Block("epochs", RESULTS_DOC, (RECIPE,), benchmark(RECIPE, lambda table, *_: benchmarks.epochs_markdown(table))),
    Block("distill-recipe", RESULTS_DOC, (DISTILL_RECIPE,),
          benchmark(DISTILL_RECIPE, lambda table, *_: benchmarks.distill_recipe_markdown(table))),
    Block("pretext-compute", RESULTS_DOC, (PRETEXT_COMPUTE,),
          benchmark(PRETEXT_COMPUTE, lambda table, params, *_: benchmarks.pretext_compute_markdown(table, params))),
    Block("schedule", RESULTS_DOC, (SCHEDULE,), benchmark(SCHEDULE, benchmarks.schedule_block)),
    Block("tuning", RESULTS_DOC, (TUNING, SCHEDULE), benchmark(
        TUNING, lambda table, params, root, read: benchmarks.tuning_markdown(table, read_table(root, SCHEDULE, read),
                                                                             params))),
    Block("consistency", RESULTS_DOC, (CONSISTENCY, SCHEDULE), benchmark(
        CONSISTENCY, lambda table, params, root, read: benchmarks.consistency_markdown(
            table, read_table(root, SCHEDULE, read), params))),
    Block("distill-balance", RESULTS_DOC, (BALANCE,),
          benchmark(BALANCE, lambda table, params, *_: benchmarks.balance_markdown(table, params))),
]

def drawn_if_any(rows, draw):
    """A Picture's draw: `draw(table, pretexts)` of the `rows(root, read)` it reads, None where there are none."""
    def picture(root: Path, read: Read) -> str | None:
        table = rows(root, read)
        return draw(table, pretexts(root, read)) if len(table) else None
    return picture


PICTURES = [
    Picture(PLOT, (COMPARISON,), drawn_if_any(read_comparison, sweep.label_efficiency_svg)),
    Picture(GAIN_PLOT, (COMPARISON,), _gains),
    Picture(SAVING_PLOT, (COMPARISON,), _saving),
    Picture(DISTILLED_PLOT, (DISTILLED,), drawn_if_any(read_distilled, distillation_svg)),
]


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_block(text: str, name: str, body: str, page: str = "README.md") -> str:
    """`text` with what lies between block `name`'s markers swapped for `body`."""
    start, end = markers(name)
    head, sep, rest = text.partition(start)
    _, sep2, tail = rest.partition(end)
    if not sep or not sep2:
        raise ValueError(f"{page} has no {start} ... {end} block")
    return f"{head}{start}\n{body}\n{end}{tail}"


def rendered(root: Path, pending: dict[Path, str] | None = None,
             read_file=lambda p: p.read_text(), exists_file=lambda p: p.is_file()) -> dict[Path, str | None]:
    """Every file the report writes, as text: the `pending` tables, the pages' blocks and the pictures, all drawn
    from the files at `root` (read by `read_file`) as `pending` would leave them. A picture with nothing left to draw
    whose file exists maps to None: the report removes it (the pages no longer link it)."""
    out = dict(pending or {})

    def read(path: Path) -> str:
        return out[path] if path in out else read_file(path)

    def exists(path: Path) -> bool:
        return path in out or exists_file(path)

    def ready(needs) -> bool:
        return all(exists(root / p) for p in needs)

    for block in BLOCKS:
        if ready(block.needs):
            page = root / block.page
            out[page] = replace_block(read(page), block.name, block.render(root, read, exists), block.page.as_posix())
    for picture in PICTURES:
        drawn = picture.draw(root, read) if ready(picture.needs) else None
        if drawn is not None:
            out[root / picture.path] = drawn
        elif exists(root / picture.path):
            out[root / picture.path] = None
    for pretext in pretexts(root, read):
        out[root / embedding_path(pretext)] = embedding_svg(root, pretext, read)
    return out
