"""`python -m selfsup.report` from a folder inside the project (e.g. docs/) works on the project's root; from outside
any project, one line."""

import shutil

import pytest

from selfsup.cli import run_stage
from selfsup.report.__main__ import main as report_main
from tests.conftest import REPO
from tests.test_report import COMPARISON_BLOCK as BLOCK, make_stale

REPORTED = ["README.md", "docs/results.md", "params.yaml", "metrics"]  # what the report reads and writes


def project(root):
    """A copy of what the report reads and writes, its README's comparison block stale (so that the report has a
    page to write: a copy as committed is up to date, and the report leaves such a file alone)."""
    (root / "docs").mkdir(parents=True)
    for name in REPORTED:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, root / name)
    make_stale(root)
    return root


def snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_from_docs_the_report_renders_the_projects_root_as_from_the_root(tmp_path, monkeypatch, capsys):
    inside, beside = project(tmp_path / "inside"), project(tmp_path / "beside")
    monkeypatch.chdir(beside)
    report_main([])
    monkeypatch.chdir(inside / "docs")
    report_main([])
    assert snapshot(inside) == snapshot(beside)  # the same files written, none under docs/docs/
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("updated README.md") and err.endswith(f" in {inside}")
    readme = (inside / "README.md").read_text()  # the root's README rewritten, its block rendered again
    assert "<!-- comparison:start -->\nstale\n" not in readme
    assert BLOCK.search(readme).group(0) == BLOCK.search((REPO / "README.md").read_text()).group(0)
    assert not (inside / "docs/README.md").exists() and not (inside / "docs/docs").exists()


def test_help_from_docs_writes_nothing(tmp_path, monkeypatch, capsys):
    root = project(tmp_path / "p")  # its README stale: a report that ran would rewrite it
    before = snapshot(root)
    monkeypatch.chdir(root / "docs")
    with pytest.raises(SystemExit) as exit_:
        report_main(["--help"])
    assert exit_.value.code == 0 and "usage: python -m selfsup.report" in capsys.readouterr().out
    assert snapshot(root) == before


def test_outside_a_project_is_one_line_that_says_where_to_run_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        run_stage(report_main, [])
    assert exit_.value.code == 1 and capsys.readouterr().err == (
        f"error: no params.yaml in {tmp_path} or any folder above it; run it in the project's root (where dvc.yaml "
        "and params.yaml are)\n")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")  # a params.yaml without the pages it renders
    with pytest.raises(SystemExit):
        run_stage(report_main, [])
    assert capsys.readouterr().err.startswith(f"error: {tmp_path}/docs/results.md not found; run it in the project's")
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]
