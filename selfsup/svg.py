"""Two small SVG charts (lines with error bars, a coloured scatter), so the README can show plots that
render anywhere (GitHub included) without a plotting dependency."""

from __future__ import annotations

import math
from html import escape

# Tableau 10: distinguishable, and the default of most plotting libraries.
COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 640, 400, 60, 150, 30, 50
CHAR = 7  # the width of a character of the 12 px sans-serif text, generously


def _width(names) -> int:
    """The chart's width: WIDTH, or wider where the legend's longest name would not fit right of the plot."""
    return max(WIDTH, WIDTH - RIGHT + 15 + 18 + CHAR * max((len(str(n)) for n in names), default=0) + 5)


def _frame(title: str, x_label: str, y_label: str, body: list[str], width: int = WIDTH) -> str:
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT + w / 2}" y="18" text-anchor="middle" font-size="14">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="none" stroke="#888"/>',
        f'<text x="{LEFT + w / 2}" y="{HEIGHT - 10}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="15" y="{TOP + h / 2}" text-anchor="middle" transform="rotate(-90 15 {TOP + h / 2})">{escape(y_label)}</text>',
        *body,
        "</svg>",
    ]) + "\n"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = 10 ** math.floor(math.log10((hi - lo) / n or 1))
    step *= next(m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= n)
    return [i * step for i in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


DASH = "6 4"  # the stroke-dasharray of a dashed series


def _legend(names: list[str], colours: list[str] | None = None, dashed=()) -> list[str]:
    """A swatch and a name per series, right of the plot: a square, or for a `dashed` series a dashed line."""
    x = WIDTH - RIGHT + 15
    colours = colours or [COLOURS[i % len(COLOURS)] for i in range(len(names))]

    def swatch(i, name, colour):
        if name in dashed:
            y = TOP + 18 * i + 6
            return (f'<line x1="{x - 2}" x2="{x + 14}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="2" '
                    f'stroke-dasharray="{DASH}"/>')
        return f'<rect x="{x}" y="{TOP + 18 * i}" width="12" height="12" fill="{colour}"/>'

    return [swatch(i, n, c) + f'<text x="{x + 18}" y="{TOP + 18 * i + 11}">{escape(str(n))}</text>'
            for i, (n, c) in enumerate(zip(names, colours))]


def line_chart(series: dict[str, list[tuple[float, float, float | tuple[float, float]]]],
               x_ticks: list[tuple[float, str]],
               titles: tuple[str, str, str], log_x: bool = True, colours: dict[str, str] | None = None,
               zero_line: bool = False, dodge: float = 0.0, dashed=()) -> str:
    """One line per series of (x, mean, error) points, the error (a std, an interval's half-width, or an interval's
    (low, high) bounds) as error bars, None for a point without one (drawn hollow, the title says so, so that it is
    not read as an exact one);
    x_ticks are (x, label); `titles` are the chart's, the x axis's and the y axis's; `colours` fixes a series' colour (by default, its place in the palette); `zero_line`
    draws y = 0 (and keeps it in view); `dodge` shifts series apart by that many pixels so that error bars at the
    same x do not hide each other; the series named in `dashed` are drawn dashed."""
    title, x_label, y_label = titles
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs = [fx(x) for x, _ in x_ticks]
    def bounds(m, s) -> tuple[float, float]:
        return s if isinstance(s, tuple) else (m, m) if s is None else (m - s, m + s)

    if any(s is None for pts in series.values() for _, _, s in pts):
        title += " (hollow: no interval)"

    lows = [bounds(m, s)[0] for pts in series.values() for _, m, s in pts] + [0.0] * zero_line
    highs = [bounds(m, s)[1] for pts in series.values() for _, m, s in pts] + [0.0] * zero_line
    y_lo, y_hi = min(lows), max(highs)
    pad = (y_hi - y_lo) * 0.05 or 1
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_lo, x_hi = min(xs), max(xs)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x):
        return LEFT + 10 + (fx(x) - x_lo) / ((x_hi - x_lo) or 1) * (w - 20)

    def py(y):
        return TOP + h - (y - y_lo) / (y_hi - y_lo) * h

    body = []
    for y in _ticks(y_lo, y_hi):
        body.append(f'<line x1="{LEFT}" x2="{LEFT + w}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>'
                    f'<text x="{LEFT - 5}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
    if zero_line:
        body.append(f'<line x1="{LEFT}" x2="{LEFT + w}" y1="{py(0):.1f}" y2="{py(0):.1f}" stroke="#444" '
                    'stroke-dasharray="4 3"/>')
    for x, label in x_ticks:
        body.append(f'<text x="{px(x):.1f}" y="{TOP + h + 18}" text-anchor="middle">{escape(label)}</text>')
    palette = [(colours or {}).get(name, COLOURS[i % len(COLOURS)]) for i, name in enumerate(series)]
    for i, ((name, pts), colour) in enumerate(zip(series.items(), palette)):
        shift = dodge * (i - (len(series) - 1) / 2)
        path = " ".join(f"{px(x) + shift:.1f},{py(m):.1f}" for x, m, _ in pts)
        dash = f' stroke-dasharray="{DASH}"' if name in dashed else ""
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for x, m, s in pts:
            fill = f'fill="white" stroke="{colour}"' if s is None else f'fill="{colour}"'
            body.append(f'<circle cx="{px(x) + shift:.1f}" cy="{py(m):.1f}" r="3" {fill}/>')
            low, high = bounds(m, s)
            if high > low:
                body.append(f'<line x1="{px(x) + shift:.1f}" x2="{px(x) + shift:.1f}" y1="{py(low):.1f}" '
                            f'y2="{py(high):.1f}" stroke="{colour}"/>')
    return _frame(title, x_label, y_label, body + _legend(list(series), palette, dashed), _width(series))


def scatter(points: list[tuple[float, float]], groups: list[int], names: list[str], title: str) -> str:
    """2-D points coloured by group (an index into names), axes unlabelled beyond their component names."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def scale(v, lo, hi, size):
        return (v - lo) / ((hi - lo) or 1) * (size - 10) + 5

    body = [f'<circle cx="{LEFT + scale(x, min(xs), max(xs), w):.1f}" cy="{TOP + h - scale(y, min(ys), max(ys), h):.1f}" '
            f'r="1.6" fill="{COLOURS[g % len(COLOURS)]}" fill-opacity="0.7"/>' for (x, y), g in zip(points, groups)]
    return _frame(title, "principal component 1", "principal component 2", body + _legend(names), _width(names))
