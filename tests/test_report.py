import subprocess

import pytest

from selfsup.report import END, START, render, replace_block, results_markdown
from tests.conftest import REPO

PARAMS = {"pretext": "none", "data": {"dataset": "fashion_mnist"},
          "finetune": {"protocol": "full", "labels_per_class": "all", "epochs": 15}}
FINETUNE = {"labelled_images": 54000, "best/epoch": 14}
EVALUATE = {"test": {"accuracy": 0.91234, "macro_f1": 0.9111,
                     "per_class": {"a": {"accuracy": 0.5}, "b": {"accuracy": 1.0}}}}


def test_results_markdown_reads_the_numbers():
    md = results_markdown(PARAMS, FINETUNE, EVALUATE)
    assert "| fashion_mnist | none | full | all | 54000 | 14 of 15 | **91.23%** | 0.9111 | 90.33% |" in md
    assert "| test accuracy | 50.0% | 100.0% |" in md


def test_replace_block_keeps_the_rest():
    assert replace_block(f"a\n{START}\nold\n{END}\nb", "NEW") == "a\nNEW\nb"
    with pytest.raises(ValueError, match="no <!-- results:start -->"):
        replace_block("no markers", "NEW")


def test_readme_results_match_the_committed_metrics():
    """No number in the README is typed by hand: it is what the committed metrics/ say."""
    def committed(path):
        proc = subprocess.run(["git", "show", f"HEAD:{path.relative_to(REPO)}"], cwd=REPO,
                              capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"not a git checkout with committed metrics: {proc.stderr.strip()}")
        return proc.stdout

    block = render(REPO, read=committed)
    assert block in (REPO / "README.md").read_text(), "README.md is stale: run `python -m selfsup.report`"
