"""Data-parallel training on the CPU with the gloo backend and 2 processes, as torchrun runs it."""

import json
import os
import socket
import subprocess
import sys
import time
from functools import partial
from importlib import import_module
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from torch import nn

from selfsup import SelfSupError, distributed
from selfsup.launch import command
from selfsup.models import CifarNet, Classifier, load_checkpoint
from selfsup.pretexts.exemplar import Projection, multi_positive_loss
from selfsup.progress import Progress, Resume
from selfsup.train import Objective, Plan, fit
from tests.conftest import REPO
from tests.test_train import CFG, RT, keep_labels, toy_problem


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_views(x, ids, gen):
    return x.repeat_interleave(2, 0), ids.repeat_interleave(2)


def make_objective(kind: str) -> Objective:
    """A small model without batch norm or dropout (their per-rank statistics and draws would differ):
    a classifier, or exemplar's contrastive head and loss, whose negatives span every rank's views."""
    torch.manual_seed(0)
    backbone = CifarNet(1, 8, norm="none", dropout=0.0)
    if kind == "classifier":
        return Objective(Classifier(backbone, 2), keep_labels)
    return Objective(nn.Sequential(backbone, Projection(16, 0.2)), two_views, multi_positive_loss)


def join_gloo_group(rank: int, world: int, port: int) -> None:
    """Join a process group of `world` CPU processes as torchrun would set this one up."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.init(torch.device("cpu"))


def rank_main(rank: int, world: int, port: int, out: str, kind: str) -> None:
    join_gloo_group(rank, world, port)
    images, labels = toy_problem()
    validated = []
    objective = make_objective(kind)
    fit(objective, images, labels if kind == "classifier" else torch.arange(len(images)), Plan(CFG, 2), RT,
        lambda net: validated.append(1) or {"val/score": 1.0})
    torch.save({"state": objective.model.state_dict(), "validated": len(validated)}, f"{out}.{rank}")
    distributed.shutdown()


@pytest.mark.parametrize("kind", ["classifier", "exemplar"])
def test_two_processes_compute_what_one_process_computes(tmp_path, kind):
    """Each rank trains on its half of every batch; DDP averages the gradients (and exemplar's loss takes
    its negatives from both halves), so the weights after two epochs equal a single process's on the whole
    batches, up to float rounding."""
    mp.spawn(rank_main, args=(2, free_port(), str(tmp_path / "r"), kind), nprocs=2, join=True)
    images, labels = toy_problem()
    start = make_objective(kind)
    initial = {k: v.clone() for k, v in start.model.state_dict().items()}
    single = fit(start, images, labels if kind == "classifier" else torch.arange(len(images)), Plan(CFG, 2), RT)
    ranks = [torch.load(tmp_path / f"r.{r}", weights_only=True) for r in (0, 1)]
    assert [r["validated"] for r in ranks] == [2, 0]  # rank 0 alone validates (and logs, and writes)
    for key, value in single.best_state.items():
        assert torch.allclose(ranks[0]["state"][key], value, atol=1e-5), key
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key  # the replicas stay identical
    moved = max((single.best_state[k] - initial[k]).abs().max().item() for k in single.best_state)
    assert moved > 1e-2  # training really changed the weights the comparison is about


def thresholds_rank_main(rank: int, world: int, port: int, out: str) -> None:
    """FlexMatch's remembered guesses after one call on each rank, each with its own draw of a pool of 6 images."""
    from selfsup.consistency import Thresholds
    from selfsup.params import ConsistencyParams

    join_gloo_group(rank, world, port)
    thresholds = Thresholds(ConsistencyParams(thresholds="per_class", threshold=0.5), 6, 3, torch.device("cpu"))
    positions = torch.tensor([[0, 1], [2, 1]][rank])  # both draw image 1: rank 1's guess is the one kept
    thresholds(torch.tensor([0.9, 0.9]), torch.tensor([[2, 0], [1, 1]][rank]), positions)
    torch.save(thresholds.state["guess"], f"{out}.{rank}")
    distributed.shutdown()


def test_flexmatchs_ranks_share_one_memory_of_guesses(tmp_path):
    """Per-class thresholds count the guesses of the whole pool: each rank remembers every rank's, so the ranks'
    thresholds stay one (with each rank's own, they differed and warmed up `processes` times slower)."""
    mp.spawn(thresholds_rank_main, args=(2, free_port(), str(tmp_path / "g")), nprocs=2, join=True)
    guesses = [torch.load(tmp_path / f"g.{r}", weights_only=True).tolist() for r in (0, 1)]
    assert guesses[0] == guesses[1] == [2, 1, 1, -1, -1, -1]


def resume_rank_main(rank: int, world: int, port: int, out: str, state: str, kill: bool) -> None:
    """Three epochs of a classifier with dropout, resumable from `state`. With `kill`, rank 0 stops while
    validating epoch 2, once rank 1 has saved it: the ranks' states are then an epoch apart."""
    join_gloo_group(rank, world, port)
    images, labels = toy_problem()
    torch.manual_seed(0)
    model = Classifier(CifarNet(1, 8, norm="none", dropout=0.5), 2)
    masks = []
    # the random state dropout draws its first mask from (the masks themselves differ with the inputs anyway)
    model.backbone.dropout.register_forward_pre_hook(lambda m, i: masks.append(torch.get_rng_state()) if not masks else None)
    resume = Resume(Path(state), {"run": 1})

    def validate(net):
        if kill and len(validated) == 1:  # epoch 2
            rank1 = resume.path.with_name(f"{resume.path.stem}.rank1{resume.path.suffix}")
            for _ in range(600):
                if rank1.is_file() and torch.load(rank1, weights_only=True)["epoch"] == 2:
                    raise RuntimeError("killed")
                time.sleep(0.05)
        validated.append(1)
        return {}

    validated = []
    fit(Objective(model, keep_labels), images, labels, Plan(CFG, 3), RT, validate, Progress(resume=resume))
    torch.save({"state": model.state_dict(), "mask": masks[0], "validated": len(validated)}, f"{out}.{rank}")
    distributed.shutdown()


def test_two_processes_resume_from_the_epoch_both_saved_and_draw_their_own_dropout(tmp_path, capsys):
    spawn = lambda out, state, kill: mp.spawn(resume_rank_main, args=(2, free_port(), str(tmp_path / out),  # noqa: E731
                                                                      str(tmp_path / state), kill), nprocs=2, join=True)
    spawn("whole", "whole.pt", False)
    with pytest.raises(mp.ProcessRaisedException, match="RuntimeError: killed"):  # between the ranks' saves of epoch 2
        spawn("killed", "state.pt", True)
    assert torch.load(tmp_path / "state.pt", weights_only=True)["epoch"] == 1
    assert torch.load(tmp_path / "state.rank1.pt", weights_only=True)["epoch"] == 2
    spawn("resumed", "state.pt", False)  # rank 1 goes back to epoch 1, as rank 0 must
    whole = [torch.load(tmp_path / f"whole.{r}", weights_only=True) for r in (0, 1)]
    resumed = [torch.load(tmp_path / f"resumed.{r}", weights_only=True) for r in (0, 1)]
    assert resumed[0]["validated"] == 2  # it resumed after epoch 1 (starting afresh would validate 3 epochs)
    for key, value in whole[0]["state"].items():
        assert torch.equal(resumed[0]["state"][key], value) and torch.equal(resumed[1]["state"][key], value), key
    assert not torch.equal(whole[0]["mask"], whole[1]["mask"])  # each rank draws its own dropout masks


def test_launcher_runs_in_process_for_one_and_torchrun_for_more():
    assert command("stages.pretrain", ["rotation"], 1) is None
    assert command("stages.pretrain", ["rotation", "--data", "d"], 2)[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "stages.pretrain", "rotation", "--data", "d"]


def launch(workdir, *args):
    """`python -m selfsup.launch ARGS` in the workdir, as dvc.yaml's training stages run, with params.yaml's
    processes > 1: it must go under torchrun."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "selfsup.launch", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch.distributed.run" in proc.stdout, proc.stdout


def in_process(module, *args):
    """A stage module's main(ARGS), in this process."""
    import_module(module).main(list(args))


@pytest.mark.e2e
def test_training_stages_under_torchrun_with_two_processes(workdir):  # noqa: F811
    """pretrain and finetune unchanged under torchrun: one set of outputs, written and logged by rank 0,
    and a fine-tuned model as good as one process makes on the same tiny data."""
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["pretext"] = "rotation"
    params["pretrain"]["rotation"]["epochs"] = 2
    params["finetune"]["epochs"] = 5
    results = {}
    for processes in (1, 2):
        params["compute"]["processes"] = processes
        (workdir / "params.yaml").write_text(yaml.safe_dump(params))
        run = f"p{processes}"
        # one process: the stage in this one, as the launcher runs it (test_launcher_runs_in_process_for_one_...)
        stage = in_process if processes == 1 else partial(launch, workdir)
        stage("stages.pretrain", "rotation", "--data", "prepared", "--out", f"{run}/pre",
              "--metrics", f"{run}/m/pre", "--checkpoint", f"{run}/state.pt")
        stage("stages.finetune", "--backbone", f"{run}/pre/backbone.pt", "--data", "prepared",
              "--out", f"{run}/ft", "--metrics", f"{run}/m/ft")
        assert not list((workdir / run).glob("state*"))  # every rank removed its training state
        assert (workdir / f"{run}/m/pre/curves.csv").read_text().count(",val,") == 2  # logged once
        curves = pd.read_csv(workdir / f"{run}/m/ft/curves.csv")
        results[processes] = curves[curves.split == "val"].accuracy.max()
        load_checkpoint(workdir / f"{run}/ft/model.pt")
    pre = json.loads((workdir / "p2/m/pre/metrics.json").read_text())
    assert pre["compute"].endswith("x2 processes")
    # the best val accuracy of each run's epochs (32 val images: one image is 0.03)
    assert abs(results[2] - results[1]) <= 0.1


def test_several_processes_on_a_mac_are_one_clear_error(tmp_path, monkeypatch):
    """PyTorch's distributed training has no backend for mps: say so before torchrun starts."""
    from selfsup import launch as launcher

    (tmp_path / "params.yaml").write_text("compute:\n  processes: 2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with pytest.raises(SelfSupError, match=r"processes is 2 but this machine trains on mps, .* set compute.processes: 1"):
        launcher.main(["stages.pretrain", "none"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SelfSupError, match=r"processes is 2 but this machine has 1 GPUs; use at most 1"):
        launcher.main(["stages.pretrain", "none"])


def test_launcher_reports_bad_params_in_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("compute:\n  processes: 0\n")
    proc = subprocess.run([sys.executable, "-m", "selfsup.launch", "stages.pretrain", "none"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr == "error: params.yaml: compute.processes is 0; expected a positive integer (1: no torchrun)\n"
