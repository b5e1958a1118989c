"""End to end: the real pipeline under real DVC, on a stratified 2% of Fashion-MNIST, in a temporary git repo."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from filelock import FileLock
from PIL import Image

from benchmarks import device
from benchmarks.device import copy_project
from selfsup.params_audit import AUDIT
from selfsup.report.data import EXPERIMENT_KEYS
from selfsup.report.experiments import experiment_rows
from selfsup.report.probes import render_probe
from tests.conftest import REPO, project_env, shrink_params



def run(cmd: list[str], cwd, env) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def flatten(data):
    """The leaves of nested dicts."""
    for value in data.values():
        yield from flatten(value) if isinstance(value, dict) else [value]


def _leaves(data, prefix=""):
    """The dotted keys of nested dicts' leaves, as `dvc metrics show` names its columns."""
    for key, value in data.items():
        yield from _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def project_repo(tmp_path, edit_params, extra_env=None):
    """A git repo in tmp_path/repo holding the project's pipeline and code, with params.yaml edited by
    `edit_params(params)`; returns it and the environment to run DVC in."""
    return copy_project(tmp_path / "repo", edit_params), project_env(extra_env)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, fmnist_mirror):
    """The device run on the CPU, as docs/gpus.md has a GPU machine run it: `python -m benchmarks.device --device
    cpu --fraction 0.02 --smoke --keep DIR`, `dvc repro -f` of the project on a stratified 2% of Fashion-MNIST, the
    copy it ran in kept. Once per test session, however many workers share it; returns the run's folder and that
    copy (which the tests copy: `tiny_repo`)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    base = tmp_path_factory.getbasetemp()
    base = base.parent if worker else base  # the folder the workers of this session share
    folder, repo = base / "tiny-run", base / "tiny-repo"
    with FileLock(str(base / "tiny-run.lock")), pytest.MonkeyPatch.context() as patch:
        if not (folder / "metrics.json").is_file():  # the first to get here runs it; the others wait and share it
            if fmnist_mirror:
                patch.setenv("FASHION_MNIST_MIRROR", os.path.abspath(fmnist_mirror))
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(repo, ignore_errors=True)
            shutil.rmtree(base / "params-audit", ignore_errors=True)
            patch.setenv(AUDIT, str(base / "params-audit"))  # each stage notes the params it reads: test below
            assert device.main(["--device", "cpu", "--fraction", "0.02", "--smoke", "--skip-tests", "--out",
                                str(folder), "--keep", str(repo)]) == 0
    return folder, repo


def params_read(repo: Path, notes: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Per stage of `repo`'s dvc.lock: the params keys its process noted reading (SELFSUP_PARAMS_AUDIT, the notes
    in `notes`) and those of them that no key its dvc.lock entry records covers."""
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    noted = [json.loads(path.read_text()) for path in notes.glob("*.json")]
    found = {}
    for stage, entry in stages.items():
        words = shlex.split(entry["cmd"])
        module = words[words.index("-m") + 1]
        if module == "selfsup.launch":
            module = words[words.index("-m") + 2]
        args = words[words.index(module) + 1:]
        # argv[0]: the module's file (`python -m`), or its name (selfsup.launch's runpy)
        read = sorted({key for note in noted if note["argv"][1:] == args and (
            note["argv"][0] == module or Path(note["argv"][0]).as_posix().endswith(module.replace(".", "/") + ".py"))
            for key in note["read"]})
        declared = list((entry.get("params") or {}).get("params.yaml") or {})
        found[stage] = read, [key for key in read if not any(key == d or key.startswith(d + ".") for d in declared)]
    return found


def test_every_stage_reads_only_the_params_dvc_yaml_declares_for_it(tiny_run):
    """A param a stage reads but does not declare would leave its outputs stale when it changes (DVC reruns a stage
    only for its declared params). Every stage of the device run noted each key it read (SELFSUP_PARAMS_AUDIT);
    each must lie within one its dvc.lock entry records. What these settings leave unread is covered by the folder
    pipeline's run below (distillation on, another dataset), not by this one."""
    _, repo = tiny_run
    found = params_read(repo, repo.parent / "params-audit")
    assert not {stage: undeclared for stage, (_, undeclared) in found.items() if undeclared}
    # export takes its one param (evaluate.tta) on its command line and reads no params.yaml
    assert {stage for stage, (read, _) in found.items() if not read} == {"export"}


@pytest.fixture
def tiny_repo(tiny_run, tmp_path, fmnist_mirror):
    """A copy of the device run's repository (its DVC cache included), its outputs and dvc.lock committed; returns
    it, the environment to run DVC in, and the run's folder."""
    folder, built = tiny_run
    repo = tmp_path / "repo"
    shutil.copytree(built, repo, symlinks=True)
    env = project_env({"FASHION_MNIST_MIRROR": os.path.abspath(fmnist_mirror)} if fmnist_mirror else {})
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "baseline"], repo, env)
    return repo, env, folder


@pytest.mark.e2e
def test_every_stage_runs_once_and_the_delivered_model_serves_what_was_evaluated(tiny_repo):
    repo, env, folder = tiny_repo
    # the device run recorded the machine, every stage's seconds and the metrics, on the CPU
    info = json.loads((folder / "env.json").read_text())
    assert info["device"] == "cpu" and info["torch"] and info["stage_python"]
    # ... on 2% of the data, which preprocess says is no result
    said = (folder / "repro.log").read_text()
    assert "note: preprocess.fraction is 0.02, so every split keeps 2% of its images" in said
    seconds = pd.read_csv(folder / "stages.tsv", sep="\t")
    assert {"download", "preprocess", "finetune", "evaluate", "pretrain@rotation", "probe@none"} <= set(seconds.stage)
    assert (seconds.seconds >= 0).all() and (seconds.finished == "yes").all()
    measured = json.loads((folder / "metrics.json").read_text())
    assert 0.3 < measured["metrics/evaluate/metrics.json"]["test.accuracy"] <= 1
    assert measured["metrics/finetune/metrics.json"]["compute"].startswith("cpu")

    out = (folder / "repro.log").read_text()  # its `dvc repro -f`, the pipeline's first run
    pretexts = yaml.safe_load((repo / "params.yaml").read_text())["pretexts"]
    assert set(pretexts) == {"none", "rotation", "exemplar", "autoencoder"}
    assert stages_run(out) == {"download", "preprocess", "select", "finetune", "distill", "evaluate", "export",
                               *(f"pretrain@{p}" for p in pretexts), *(f"probe@{p}" for p in pretexts)}
    metrics = json.loads((repo / "metrics/evaluate/metrics.json").read_text())["test"]
    assert set(metrics) == {"accuracy", "balanced_accuracy", "macro_f1"} and 0 <= metrics["macro_f1"] <= 1
    per_class = pd.read_csv(repo / "metrics/evaluate/per_class.csv")
    assert len(per_class) == 10 and per_class.support.sum() == len(torch.load(repo / "data/prepared/test.pt", weights_only=True)["labels"])
    confusion = pd.read_csv(repo / "metrics/evaluate/confusion.csv")  # per test image: its class and the prediction
    assert metrics["accuracy"] == pytest.approx((confusion.actual == confusion.predicted).mean(), abs=1e-12)
    assert metrics["accuracy"] > 0.3  # two epochs on 1080 images: far above chance (0.1)
    assert (repo / "dvc.yaml").read_text() == (REPO / "dvc.yaml").read_text()  # dvclive left it alone

    out = run(["dvc", "repro"], repo, env)
    assert stages_run(out) == set() and "Data and pipelines are up to date" in out

    # the delivered model, used as a user would: every test image written to a PNG file and classified by
    # `selfsup.predict` gets the class evaluate gave it; and the registry hands out the exported file
    test = torch.load(repo / "data/prepared/test.pt", weights_only=True)["images"]
    pngs = repo.parent / "pngs"
    pngs.mkdir()
    for i, image in enumerate(test):
        Image.fromarray(image[0].numpy()).save(pngs / f"{i:04d}.png")
    run([sys.executable, "-m", "selfsup.predict", "models/distill/model.pt", str(pngs),
         "--csv", str(repo.parent / "predicted.csv")], repo, env)
    predicted = pd.read_csv(repo.parent / "predicted.csv")
    evaluated = pd.read_csv(repo / "metrics/evaluate/confusion.csv")
    assert len(predicted) == len(evaluated) == len(test)
    assert predicted["class1"].tolist() == evaluated["predicted"].str.split(" ", n=1).str[1].tolist()
    run(["git", "tag", "-a", "fashion-classifier@v0.1.0", "-m", "tiny"], repo, env)
    run(["dvc", "artifacts", "get", str(repo), "fashion-classifier", "-o", str(repo.parent / "got.pt2")], repo.parent, env)
    assert (repo.parent / "got.pt2").read_bytes() == (repo / "models/export/model.pt2").read_bytes()

    # code deps are the import graph: an edit of one pretext's module concerns its pre-training alone
    with (repo / "selfsup/pretexts/rotation.py").open("a") as f:
        f.write("# an edit that changes no number\n")
    assert set(json.loads(run(["dvc", "status", "--json"], repo, env))) == {"pretrain@rotation"}
    # ... which reruns, writes the same backbone, so probe@rotation (which reads it) is not rerun either
    assert stages_run(run(["dvc", "repro"], repo, env)) == {"pretrain@rotation"}
    run(["git", "commit", "-qam", "comment"], repo, env)

    # a pretext's dvclive folder is an output of its stage: left half-written (e.g. by a killed run), it is not
    # taken for done
    (repo / "metrics/pretrain/rotation/plots/images/filters.png").unlink()
    assert "pretrain@rotation" in run(["dvc", "status"], repo, env)
    run(["git", "checkout", "metrics/pretrain/rotation"], repo, env)

    # outputs are byte-identical when remade, so a forced rerun leaves dvc.lock as committed
    run(["dvc", "repro", "--force", "--single-item", "preprocess"], repo, env)
    assert run(["git", "diff", "--stat", "dvc.lock"], repo, env) == ""


@pytest.mark.e2e
def test_a_team_shares_outputs_through_a_remote_and_sweeps_across_machines(tiny_repo):
    repo, env, _ = tiny_repo
    # a teammate gets every output (and the run cache) from a shared remote instead of recomputing it
    run(["dvc", "remote", "add", "-d", "shared", str(repo.parent / "remote")], repo, env)
    run(["git", "commit", "-qam", "remote"], repo, env)
    run(["dvc", "push", "--run-cache"], repo, env)
    clone = repo.parent / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], repo.parent, env)
    run(["dvc", "pull", "--run-cache"], clone, env)
    assert (clone / "models/pretrain/exemplar/backbone.pt").is_file()
    out = run(["dvc", "repro"], clone, env)
    assert stages_run(out) == set() and "Data and pipelines are up to date" in out

    # a queued sweep of two pretexts on two workers, reusing the cached backbones: each fine-tunes its own
    queued = run(["dvc", "exp", "run", "--queue", "-S", "pretext=exemplar,autoencoder", "-S", "finetune.seed=1"],
                 repo, env)
    names = re.findall(r"Queued experiment '([^']+)'", queued)
    assert len(names) == 2
    run(["dvc", "exp", "run", "--run-all", "-j", "2"], repo, env)
    for name in names:
        log = run(["dvc", "queue", "logs", name], repo, env)
        assert stages_run(log) == {"select", "finetune", "distill", "evaluate", "export"}, name
        pretext = re.search(r"--backbone models/pretrain/(\w+)/backbone\.pt", log).group(1)
        assert pretext in {"exemplar", "autoencoder"}, log
    table = experiment_rows(json.loads(run(["dvc", "exp", "show", "--json"], repo, env)))
    # the README's `dvc exp show` fits a screen: a handful of columns, the ones that matter
    show = re.search(r"^(dvc exp show .+?)\s+#", (REPO / "README.md").read_text(), re.M).group(1)
    columns = run([*shlex.split(show), "--csv"], repo, env).splitlines()[0].split(",")
    assert len(columns) <= 12 and {"pretext", "finetune.seed", "test.accuracy"} <= set(columns), columns
    swept = table[table.seed > 0]
    assert sorted(swept.pretext) == ["autoencoder", "exemplar"] and set(swept.seed) == {1}
    assert swept.test_accuracy.between(0, 1).all()
    # run up to a stage only, an experiment keeps the later stages' metrics of the run before: it is not collected
    partial = run(["dvc", "exp", "run", "--temp", "-S", "pretext=rotation", "-S", "finetune.seed=2", "preprocess"],
                  repo, env)
    assert "finetune" not in stages_run(partial)
    # the README's command collects them into the committed table, every committed row kept
    collect = re.search(r"^(python -m selfsup\.report --experiments)\s", (REPO / "README.md").read_text(), re.M)
    before = pd.read_csv(repo / "metrics/comparison.tsv", sep="\t", dtype={"labels_per_class": str})
    said = run([sys.executable, *collect.group(1).split()[1:]], repo, env)
    left_out = re.search(r"left out 1 run .+: ([\w-]+) \(select, finetune, distill\)", said)
    assert left_out, said
    after = pd.read_csv(repo / "metrics/comparison.tsv", sep="\t", dtype={"labels_per_class": str})
    keys = EXPERIMENT_KEYS  # a row's key
    before, after = (table.fillna({"variant": ""}) for table in (before, after))
    assert (before.variant != "").any()  # rows of another setting (a pretext's views) among them, kept as well
    assert before[keys].merge(after, on=keys).test_accuracy.tolist() == before.test_accuracy.tolist()
    assert left_out.group(1) not in set(after.experiment) and not ((after.epochs == 2) & (after.seed == 2)).any()
    new = after[(after.epochs == 2) & (after.seed == 1)]
    assert sorted(new.pretext) == ["autoencoder", "exemplar"] and set(new.experiment) == set(names)
    assert new.worst_recall.between(0, 1).all() and new.worst_class.notna().all()  # from each one's per_class.csv

    # a sweep across machines (docs/gpus.md): another machine (the clone, on the same commit) runs its share and
    # pushes it, the git refs to a shared bare repository and the outputs to the DVC remote; this one pulls
    # every experiment of the commit from there, and the report collects both machines' runs
    hub = repo.parent / "hub.git"
    run(["git", "init", "-q", "--bare", str(hub)], repo.parent, env)
    for machine in (repo, clone):
        run(["git", "remote", "add", "hub", str(hub)], machine, env)
    run(["git", "push", "-q", "hub", "HEAD:refs/heads/main"], repo, env)
    out = run(["dvc", "exp", "run", "-S", "pretext=rotation", "-S", "finetune.seed=1"], clone, env)
    # the backbone is cached; `select` (a check of the name) may come from the run cache too
    assert stages_run(out) - {"select"} == {"finetune", "distill", "evaluate", "export"}
    assert torch.load(clone / "models/finetune/model.pt", weights_only=True)["pretext"] == "rotation"
    pushed = run(["dvc", "exp", "push", "hub"], clone, env)
    run(["dvc", "exp", "pull", "hub"], repo, env)
    run([sys.executable, *collect.group(1).split()[1:]], repo, env)
    both = pd.read_csv(repo / "metrics/comparison.tsv", sep="\t", dtype={"labels_per_class": str})
    swept = both[(both.epochs == 2) & (both.seed == 1)]
    assert sorted(swept.pretext) == ["autoencoder", "exemplar", "rotation"], pushed


@pytest.mark.e2e
def test_a_changed_param_reruns_only_the_stages_it_affects(tiny_repo):
    repo, env, _ = tiny_repo
    metrics = json.loads((repo / "metrics/evaluate/metrics.json").read_text())["test"]
    out = run(["dvc", "exp", "run", "-S", "pretext=none"], repo, env)
    assert stages_run(out) == set()

    out = run(["dvc", "exp", "run", "-S", "pretrain.rotation.epochs=2"], repo, env)
    assert stages_run(out) == {"pretrain@rotation", "probe@rotation"}  # tuning one pretext redoes only that one

    # compute.processes reaches the stages torchrun runs (pretrain, finetune) and no other; data.folder's image size
    # reaches preprocess alone (download lists the source and decodes nothing)
    params = repo / "params.yaml"
    before = params.read_text()
    config = yaml.safe_load(before)
    config["compute"]["processes"] = 2
    config["data"]["folder"]["image_size"] = 16
    params.write_text(yaml.safe_dump(config))
    try:
        status = json.loads(run(["dvc", "status", "--json"], repo, env))
    finally:
        params.write_text(before)
    changed = {stage for stage, entries in status.items() for entry in entries
               if isinstance(entry, dict) and "params.yaml" in entry.get("changed deps", {})}
    assert changed == {"preprocess", "finetune", *(f"pretrain@{p}" for p in config["pretexts"])}, status

    # a typo in the pretext stops at `select`, with the valid names, before DVC looks for its backbone
    typo = subprocess.run(["dvc", "exp", "run", "-S", "pretext=rotaton"], cwd=repo, env=env, capture_output=True, text=True)
    assert typo.returncode != 0
    assert "unknown pretext 'rotaton'; valid pretexts: autoencoder, exemplar, none, rotation" in typo.stderr

    out = run(["dvc", "exp", "run", "-S", "pretext=none", "-S", "finetune.epochs=1"], repo, env)
    assert stages_run(out) - {"select"} == {"finetune", "distill", "evaluate", "export"}

    diff = json.loads(run(["dvc", "metrics", "diff", "--all", "--json"], repo, env))
    accuracy = diff["metrics/evaluate/metrics.json"]["test.accuracy"]
    assert accuracy["old"] == metrics["accuracy"] and 0 < accuracy["new"] <= 1
    markdown = run(["dvc", "metrics", "diff", "--all", "--md"], repo, env)
    assert re.search(r"\| metrics/evaluate/metrics.json +\| test.accuracy +\|", markdown)
    # a typical change's diff for review fits one screen (DVC orders the files at random, by set iteration:
    # `selfsup.review` puts test accuracy first, tests/test_review.py checks it)
    rows = [line for line in run(["dvc", "metrics", "diff", "--md"], repo, env).splitlines()
            if line.startswith("| metrics/")]
    assert 0 < len(rows) <= 20 and any("| test.accuracy " in row for row in rows), rows
    declared = json.loads(run(["dvc", "metrics", "show", "--json"], repo, env))
    numbers = [v for f in next(iter(declared.values()))["data"].values() for v in flatten(f["data"])
               if isinstance(v, (int, float))]
    assert len(numbers) <= 45, len(numbers)  # headline metrics only; detail is plot data
    # the README's `dvc metrics show` lines, one kind of metrics file each, give narrow tables with few empty cells
    shows = re.findall(r"^(dvc metrics show \S+)\s+#", (REPO / "README.md").read_text(), re.M)
    assert len(shows) == 3, shows
    for show in shows:
        files = next(iter(json.loads(run(["bash", "-c", show + " --json"], repo, env)).values()))["data"]
        keys = [set(_leaves(f["data"])) for f in files.values()]
        columns = set().union(*keys)
        empty = sum(len(columns - k) for k in keys) / (len(columns) * len(keys))
        assert len(columns) <= 12 and empty <= 0.3, (show, sorted(columns), empty)

    plots = json.loads(run(["dvc", "plots", "show", "--json"], repo, env))["data"]
    run(["dvc", "plots", "show", "-o", str(repo.parent / "plots")], repo, env)  # every template renders
    page = (repo.parent / "plots/index.html").read_text()
    for title in ("finetune: loss and accuracy per epoch", "evaluate: test images by actual and predicted class",
                  "pretrain@rotation: pretext loss and accuracy per epoch", "Test accuracy against labels per class"):
        assert title in page, title
    run(["dvc", "plots", "show", "--html-template", ".dvc/plots/offline.html", "-o", str(repo.parent / "offline")],
        repo, env)
    offline = (repo.parent / "offline/index.html").read_text()
    assert 'src="vega/vega.min.js"' in offline and "cdn.jsdelivr" not in offline and "finetune: loss" in offline
    assert "metrics/evaluate/confusion.csv" in plots
    assert "metrics/finetune/curves.csv" in plots and "metrics/evaluate/per_class.csv" in plots
    assert "metrics/pretrain/rotation/curves.csv" in plots and "metrics/pretrain/none/curves.csv" in plots
    assert any(key.startswith("metrics/pretrain/autoencoder/plots/images/reconstructions/") for key in plots)
    assert "metrics/probe/exemplar/embedding.csv" in plots
    assert "metrics/pretrain/none/plots/images/filters.png" in plots
    probe = json.loads((repo / "metrics/probe/exemplar/metrics.json").read_text())
    detail = json.loads((repo / "metrics/probe/exemplar/detail.json").read_text())
    assert probe["layer"] == detail["draws"]["all"][0]["layer"] and set(probe["test"]) == set(detail["test"]) == {"2", "all"}

    # below every label, with distillation on (off by default), the student is distilled (and delivered); a distill
    # param reruns it, evaluate and export, no finetune (one round of one epoch: the rounds are tests/test_distill.py's)
    out = run(["dvc", "exp", "run", "-S", "pretext=none", "-S", "finetune.labels_per_class=5", "-S", "distill.when=auto",
               "-S", "distill.rounds=1", "-S", "distill.epochs=1"], repo, env)
    assert stages_run(out) - {"select"} == {"finetune", "distill", "evaluate", "export"}
    evaluated = json.loads((repo / "metrics/evaluate/metrics.json").read_text())
    assert evaluated["distilled"] and set(evaluated["finetuned"]) == set(evaluated["test"])
    out = run(["dvc", "exp", "run", "-S", "finetune.labels_per_class=5", "-S", "distill.epochs=2"], repo, env)
    assert stages_run(out) == {"distill", "evaluate", "export"}
    assert json.loads((repo / "models/export/model.json").read_text())["distilled"]  # the student is delivered


@pytest.mark.e2e
def test_a_new_pretext_is_a_module_a_params_section_and_its_name(tiny_repo):
    repo, env, _ = tiny_repo
    # a new pretext is a module, a params section and its name (docs/pipeline.md's recipe, FLIP_MODULE below):
    # it is pre-trained and probed, and the model fine-tuned on it, while no other pretext's stage reruns
    (repo / "selfsup/pretexts/flip.py").write_text(FLIP_MODULE)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.update(pretext="flip", pretexts=[*params["pretexts"], "flip"])
    params["pretrain"]["flip"] = {"epochs": 1}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], repo, env)
    assert stages_run(out) == {"pretrain@flip", "probe@flip", "select", "finetune", "distill", "evaluate", "export"}
    assert (repo / "dvc.yaml").read_text() == (REPO / "dvc.yaml").read_text()  # not edited, by the test or a stage
    assert torch.load(repo / "models/finetune/model.pt", weights_only=True)["pretext"] == "flip"
    summary = json.loads((repo / "metrics/pretrain/flip/metrics.json").read_text())
    assert summary["train"]["accuracy"] > 0.5  # mirror images are told apart better than by chance
    declared = next(iter(json.loads(run(["dvc", "metrics", "show", "--json"], repo, env)).values()))["data"]
    assert {"metrics/pretrain/flip/metrics.json", "metrics/probe/flip/metrics.json"} <= set(declared)
    assert "metrics/pretrain/flip/curves.csv" in json.loads(run(["dvc", "plots", "show", "--json"], repo, env))["data"]
    assert "| flip |" in render_probe(repo)
    assert stages_run(run(["dvc", "repro"], repo, env)) == set()


# The documented recipe for a new pretext (docs/pipeline.md), word for word: this module, its params section, its name in `pretexts`.
FLIP_MODULE = '''"""Flip prediction: is the image mirrored? (A two-way cousin of rotation prediction, Gidaris et al. 2018.)"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.evaluate import top1_accuracy
from selfsup.models import FEATURE_DIM
from selfsup.params import check, positive
from selfsup.pretexts import PretextSpec


@dataclass(frozen=True)
class FlipParams:
    epochs: int = field(default=1, metadata=check(positive, "a positive integer"))


def make_batch(cfg: FlipParams):
    def make(x, ids, gen):  # each image as it is (target 0) and mirrored (target 1)
        return torch.cat([x, x.flip(-1)]), torch.arange(2, device=x.device).repeat_interleave(len(x))

    return make


SPEC = PretextSpec(
    params=FlipParams,
    make_head=lambda cfg, channels, size: nn.Linear(FEATURE_DIM, 2),
    make_batch=make_batch,
    loss=F.cross_entropy,
    accuracy=top1_accuracy,
    views=lambda cfg: 2,
)
'''


def test_the_readme_recipe_for_a_new_pretext_is_the_one_tested():
    readme = (REPO / "docs/pipeline.md").read_text()
    indented = "".join(f"   {line}" if line.strip() else line for line in FLIP_MODULE.splitlines(keepends=True))
    assert indented in readme, "docs/pipeline.md's 'Adding a pretext' example differs from FLIP_MODULE"
    assert "pretrain: {flip: {epochs: 1}}" in readme and "pretexts: [none, rotation, exemplar, autoencoder, flip]" in readme


@pytest.mark.e2e
def test_your_own_image_folder_runs_through_every_stage(tmp_path):
    from tests.test_folders import make_folder

    root = make_folder(tmp_path / "imgs", per_class=24, unlabelled=40)
    for i in range(6):  # one class short of the fine-tuning budget
        (root / f"labelled/dress/{i}.png").unlink(missing_ok=True)
        (root / f"labelled/dress/{i}.jpg").unlink(missing_ok=True)

    def edit(params):
        params["data"].update(dataset="folder", folder={**params["data"]["folder"], "root": str(root), "image_size": 16})
        shrink_params(params, batch_size=16, val_images=16)
        params["finetune"].update(batch_size=16, labels_per_class=15, budget="at_most")
        params["distill"]["when"] = "auto"  # the unlabelled folder's images used twice
        # every pretext trains on RGB images in-process (tests/test_deepfashion.py) and runs under DVC in the tiny
        # run; here one beside `none`
        params["pretexts"] = ["none", "autoencoder"]

    repo, env = project_repo(tmp_path, edit, {AUDIT: str(tmp_path / "params-audit")})
    out = run(["dvc", "repro"], repo, env)
    pretexts = yaml.safe_load((repo / "params.yaml").read_text())["pretexts"]
    assert stages_run(out) == {"download", "preprocess", "select", "finetune", "distill", "evaluate", "export",
                               *(f"pretrain@{p}" for p in pretexts), *(f"probe@{p}" for p in pretexts)}
    # with distillation on and a folder of images, too, each stage read only the params dvc.yaml declares for it
    found = params_read(repo, tmp_path / "params-audit")
    assert not {stage: undeclared for stage, (_, undeclared) in found.items() if undeclared}
    assert any(key.startswith("distill.") for key in found["distill"][0]) and "data.folder.root" in found["download"][0]
    meta = json.loads((repo / "data/prepared/meta.json").read_text())
    assert meta["classes"] == ["boot", "dress", "shirt"] and meta["sizes"]["unlabelled"] == 40
    finetune = json.loads((repo / "metrics/finetune/metrics.json").read_text())
    # dress: 18 labelled images, 4 to test, 1 to val, 13 to train: used whole; the others give 15 of their 17
    assert finetune["short_classes"] == {"dress": 13} and finetune["labelled_images"] == 15 + 13 + 15
    # the unlabelled folder's 40 images are used twice: to pre-train, and with the unused labelled ones to distil
    distilled = json.loads((repo / "metrics/distill/metrics.json").read_text())
    assert distilled["distilled"] and distilled["images"] == meta["sizes"]["train"] + 40
    evaluated = json.loads((repo / "metrics/evaluate/metrics.json").read_text())["test"]
    per_class = pd.read_csv(repo / "metrics/evaluate/per_class.csv")
    assert per_class["class"].tolist() == ["boot", "dress", "shirt"] and evaluated["accuracy"] > 0.5  # colours: easy
    out = run([sys.executable, "-m", "selfsup.predict", "models/export/model.pt2", str(root / "labelled/boot/1.png")],
              repo, env)
    assert out.startswith(f"{root / 'labelled/boot/1.png'}\tboot ")
