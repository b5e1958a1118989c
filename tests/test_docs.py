"""The README and docs/ as a reader meets them: short, every number in the README's prose rendered from a
committed file, no words about how the project was made, and every link and anchor resolving."""

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
BLOCK = re.compile(r"<!-- ([a-z-]+):start -->.*?<!-- \1:end -->", re.S)
# a measured number: a percentage, a decimal with two or more places, a ± spread, a duration, a speed-up
# (not a confidence level, "95% interval", nor a version, "Python 3.10+")
MEASURED = re.compile(r"(?<!\d)\d+(?:\.\d+)?\s?%(?!\s(?:interval|confidence|CI))|(?<![\w.])\d+\.\d{2,}(?![\d.+])|±"
                      r"|\b\d+(?:\.\d+)?\s?(?:s|seconds?|min|minutes?|hours?)\b|\b\d+(?:\.\d+)?×(?!\d)")
MAKING = re.compile(r"one-off|honest|session|workplace|DESIGN\.md|\bissues?\b|the seed\b", re.I)


def prose(text: str) -> str:
    """A page without its code blocks and without the blocks the report renders."""
    return BLOCK.sub("", FENCE.sub("", text))


def test_the_readme_is_short_and_its_prose_carries_no_measured_number():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    found = [(line, m.group()) for line in prose(text).splitlines() for m in MEASURED.finditer(line)]
    assert not found, f"measured numbers in the README's prose (render them, or move them to docs/): {found}"
    made = MAKING.findall(prose(text))
    assert not made, f"the README speaks of how it was made: {made}"


def test_the_prose_checks_catch_what_they_look_for():
    assert MEASURED.search("it took 12 minutes") and MEASURED.search("91.02") and MEASURED.search("3.5× faster")
    assert MEASURED.search("about 40%") and not MEASURED.search("two 5×5 convolutions, 10,000 test images")
    assert not MEASURED.search("Python 3.10+, a 95% interval") and MEASURED.search("a 95% share")
    assert prose("a\n```\n91.02%\n```\n<!-- x:start -->\n91.02%\n<!-- x:end -->\nb") == "a\n\n\nb"


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_link_and_anchor_resolves(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target) or target.startswith("<"):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: links that lead nowhere: {broken}"


def test_every_param_a_documented_command_sets_is_a_param():
    """`dvc exp run -S key=value` in the README and docs/: every key is one of params.yaml's (a renamed or dropped
    param breaks the command a reader copies, the quick look first)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())

    def known(key: str) -> bool:
        node = params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    keys = {(page.name, key) for page in PAGES for block in FENCE.findall(page.read_text())
            for key in re.findall(r"(?<!\S)-S '?([\w.]+)=", block)}
    assert ("README.md", "preprocess.fraction") in keys  # the quick look is among them
    unknown = sorted((page, key) for page, key in keys if not known(key))
    assert not unknown, f"documented commands set params that params.yaml does not have: {unknown}"
