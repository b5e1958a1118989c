from xml.etree import ElementTree

from selfsup.svg import line_chart, scatter

NS = "{http://www.w3.org/2000/svg}"


def test_line_chart_draws_one_line_and_legend_entry_per_series():
    svg = line_chart({"none": [(10, 70.0, 1.0), (100, 80.0, 0.5)], "rotation": [(10, 75.0, 2.0), (100, 84.0, 0.0)]},
                     [(10, "10"), (100, "100")], "accuracy", "labels per class", "test accuracy (%)")
    root = ElementTree.fromstring(svg)
    assert len(root.findall(f"{NS}polyline")) == 2
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "none" in texts and "rotation" in texts and "labels per class" in texts


def test_scatter_draws_every_point_coloured_by_group():
    svg = scatter([(0.0, 1.0), (1.0, 0.0), (0.5, 0.5)], [0, 1, 1], ["a", "b"], "pca")
    circles = ElementTree.fromstring(svg).findall(f"{NS}circle")
    assert len(circles) == 3 and circles[1].get("fill") == circles[2].get("fill") != circles[0].get("fill")
