import json
import re
from xml.etree import ElementTree

import pytest
import yaml

from selfsup.svg import COLOURS, line_chart, scatter
from tests.conftest import REPO

NS = "{http://www.w3.org/2000/svg}"


def test_line_chart_draws_one_line_and_legend_entry_per_series():
    svg = line_chart({"none": [(10, 70.0, 1.0), (100, 80.0, 0.5)], "rotation": [(10, 75.0, 2.0), (100, 84.0, 0.0)]},
                     [(10, "10"), (100, "100")], ("accuracy", "labels per class", "test accuracy (%)"))
    root = ElementTree.fromstring(svg)
    assert len(root.findall(f"{NS}polyline")) == 2
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "none" in texts and "rotation" in texts and "labels per class" in texts


def test_an_error_given_as_bounds_draws_an_uneven_bar():
    svg = line_chart({"a": [(10, 20.0, (10.0, 60.0)), (100, 50.0, (50.0, 50.0))], "b": [(10, 30.0, 10.0)]},
                     [(10, "10"), (100, "100")], ("saved", "labels per class", "labels saved (%)"), log_x=False)
    root = ElementTree.fromstring(svg)
    bars = [line for line in root.findall(f"{NS}line") if line.get("x1") == line.get("x2")]
    assert len(bars) == 2  # a's at 10 and b's; a's at 100 has bounds of no width: none drawn
    a10 = root.findall(f"{NS}circle")[0]  # the points in order: a's, then b's
    bar = next(b for b in bars if b.get("x1") == a10.get("cx"))
    y, low, high = float(a10.get("cy")), float(bar.get("y1")), float(bar.get("y2"))
    assert high < y < low and y - high == pytest.approx(4 * (low - y), rel=0.02)  # 40 points up, 10 down


def test_scatter_draws_every_point_coloured_by_group():
    svg = scatter([(0.0, 1.0), (1.0, 0.0), (0.5, 0.5)], [0, 1, 1], ["a", "b"], "pca")
    circles = ElementTree.fromstring(svg).findall(f"{NS}circle")
    assert len(circles) == 3 and circles[1].get("fill") == circles[2].get("fill") != circles[0].get("fill")


def test_dodge_sets_series_apart_and_the_zero_line_stays_in_view():
    series = {"a": [(10, 1.0, 0.5), (100, 2.0, 0.5)], "b": [(10, 1.5, 0.5), (100, 2.5, 0.5)]}
    plain = line_chart(series, [(10, "10"), (100, "100")], ("t", "x", "y"))
    dodged = line_chart(series, [(10, "10"), (100, "100")], ("t", "x", "y"), zero_line=True, dodge=6)
    xs = lambda svg: sorted({float(x) for x in re.findall(r'<circle cx="([\d.]+)"', svg)})  # noqa: E731
    assert len(xs(plain)) == 2 and len(xs(dodged)) == 4  # each series 3 px to its side of the budget
    assert xs(dodged)[1] - xs(dodged)[0] == pytest.approx(6, abs=0.11)
    assert 'stroke-dasharray="4 3"' in dodged and ">0<" in dodged  # y = 0 drawn, and its tick shown


def test_dvcs_label_efficiency_page_colours_each_pretext_as_the_readmes_charts_do():
    """The README's charts colour the pretexts in params.yaml's order with COLOURS; DVC's template the same."""
    template = json.loads((REPO / ".dvc/plots/label_efficiency.json").read_text())
    scale = template["encoding"]["color"]["scale"]
    pretexts = yaml.safe_load((REPO / "params.yaml").read_text())["pretexts"]
    assert scale["domain"] == pretexts and scale["range"] == COLOURS[:len(pretexts)]


def test_a_long_legend_widens_the_chart_instead_of_being_clipped():
    short = line_chart({"none": [(10, 70.0, 1.0)]}, [(10, "10")], ("t", "x", "y"))
    long = line_chart({"autoencoder, fine-tuned": [(10, 70.0, 1.0)]}, [(10, "10")], ("t", "x", "y"))
    width = lambda svg: int(re.search(r'<svg [^>]*width="(\d+)"', svg).group(1))
    assert width(short) == 640 and width(long) >= 640 - 150 + 15 + 18 + 7 * len("autoencoder, fine-tuned")
