import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from selfsup import SelfSupError
from selfsup.evaluate import top1_accuracy
from selfsup.models import CifarNet, Classifier
from selfsup.params import OptimParams, floor_lengthens
from selfsup.progress import Progress, Resume, write_curves
from selfsup.runtime import Compute, Runtime, predict
from selfsup.train import DivergedError, Objective, Plan, WeightAverage, _batch_plan, epoch_order, fit, param_groups, shard


def toy_problem(n=256, size=8):
    """Class 1 images are bright on the left half, class 0 on the right: easy to learn."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 60, (n, 1, size, size), generator=gen, dtype=torch.uint8)
    left = labels.bool()
    images[left, :, :, : size // 2] += 150
    images[~left, :, :, size // 2 :] += 150
    return images, labels


def keep_labels(x, y, gen):
    return x, y


def make_model(seed=0):
    torch.manual_seed(seed)
    return Classifier(CifarNet(1, 8, norm="batch", dropout=0.0), 2)


RT = Runtime.plain({"mean": [0.3], "std": [0.3]})
CFG = OptimParams(seed=0, batch_size=32, lr=0.05, momentum=0.9, weight_decay=0.0)
EPOCHS = 3


def accuracy_on(model, images, labels):
    return (predict(model, images, RT, 64).argmax(1) == labels).float().mean().item()


def test_fit_learns_a_separable_problem():
    images, labels = toy_problem()
    model = make_model()
    before = F.cross_entropy(predict(model, images, RT, 64), labels).item()
    result = fit(Objective(model, keep_labels), images, labels, Plan(CFG, EPOCHS), RT)
    model.load_state_dict(result.best_state)
    after = F.cross_entropy(predict(model, images, RT, 64), labels).item()
    assert after < before / 2
    assert accuracy_on(model, images, labels) > 0.95


def test_best_epoch_is_kept_as_a_real_copy():
    images, labels = toy_problem()
    model = make_model()
    scores = iter([0.5, 0.9, 0.1])
    seen = []

    def validate(net):
        seen.append({k: v.clone() for k, v in net.state_dict().items()})
        return {"val/accuracy": next(scores)}

    result = fit(Objective(model, keep_labels), images, labels, Plan(CFG, EPOCHS, select="val/accuracy"), RT, validate)
    assert result.best_epoch == 2 and result.best_score == 0.9
    for key, value in result.best_state.items():
        assert torch.equal(value, seen[1][key])
    assert not torch.equal(result.best_state["logits.weight"], model.state_dict()["logits.weight"])


def test_head_protocol_trains_only_the_final_layer():
    images, labels = toy_problem()
    model = make_model()
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    logits_before = model.logits.weight.clone()
    fit(Objective(model, keep_labels, frozen=[model.backbone]), images, labels, Plan(CFG, EPOCHS), RT)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, backbone_before[key]), key  # weights and batch-norm statistics
    assert not torch.equal(model.logits.weight, logits_before)


def test_same_seed_same_weights():
    images, labels = toy_problem()
    states = [fit(Objective(make_model(), keep_labels), images, labels, Plan(CFG, EPOCHS), RT).best_state for _ in range(2)]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_non_finite_loss_stops_and_says_where():
    images, labels = toy_problem()

    def nan_after_first_step(outputs, targets, calls=[0]):
        calls[0] += 1
        loss = F.cross_entropy(outputs, targets)
        return loss * float("nan") if calls[0] == 3 else loss

    with pytest.raises(DivergedError, match=r"loss became nan at epoch 1, step 3; lower the learning rate"):
        fit(Objective(make_model(), keep_labels, loss=nan_after_first_step), images, labels, Plan(CFG, EPOCHS), RT)


def test_bf16_training_is_deterministic_and_still_learns():
    images, labels = toy_problem()
    bf16 = Compute(torch.device("cpu"), torch.bfloat16)
    runs = [fit(Objective(make_model(), keep_labels), images, labels, Plan(CFG, EPOCHS), Runtime(bf16, RT.norm)) for _ in range(2)]
    for key in runs[0].best_state:
        assert torch.equal(runs[0].best_state[key], runs[1].best_state[key]), key
    model = make_model()
    model.load_state_dict(runs[0].best_state)
    assert accuracy_on(model, images, labels) > 0.95


def test_lr_scales_give_pretrained_layers_their_own_learning_rate():
    model = make_model()
    objective = Objective(model, keep_labels, frozen=[model.backbone.conv], lr_scales=[(model.backbone, 0.1)])
    groups = param_groups(objective, 0.5)
    assert [g["lr"] for g in groups] == [0.5, 0.05]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.logits.parameters()}
    fc = [*model.backbone.fc3.parameters(), *model.backbone.fc4.parameters()]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in fc}  # the frozen convs are in neither


@pytest.mark.parametrize("average", [0.0, 0.99])
def test_interrupted_training_resumes_to_the_same_weights_and_history(tmp_path, average):
    images, labels = toy_problem()
    dropout_model = lambda: Classifier(CifarNet(1, 8, norm="batch", dropout=0.5), 2)  # noqa: E731  global RNG too
    resume = Resume(tmp_path / "state.pt", {"run": 1})

    def run(interrupt_at=None, seed=0):
        torch.manual_seed(seed)  # initial weights and dropout; a resumed run restores both
        epochs_seen = []

        def validate(net):
            epochs_seen.append(len(epochs_seen) + 1)
            if epochs_seen[-1] == interrupt_at:
                raise KeyboardInterrupt
            return {"val/accuracy": accuracy_on(net, images, labels)}

        live = RecordingLive()
        result = fit(Objective(dropout_model(), keep_labels, accuracy=top1_accuracy), images, labels,
                     Plan(dataclasses.replace(CFG, lr=0.005), EPOCHS, average=average), RT, validate,
                     Progress(live=live, resume=resume))
        return result, live.logged

    expected, expected_log = run()
    resume.path.unlink()
    with pytest.raises(KeyboardInterrupt):
        run(interrupt_at=3)  # epochs 1 and 2 finished and saved
    assert torch.load(resume.path, weights_only=True)["best_epoch"] == 2
    resumed, resumed_log = run(seed=123)  # another random state at the start must not matter
    assert resumed.best_epoch == expected.best_epoch == EPOCHS
    for key, value in expected.best_state.items():
        assert torch.equal(resumed.best_state[key], value), key
    assert resumed_log == expected_log and len(expected_log) == 3 * EPOCHS  # train loss and accuracy, val accuracy


def test_state_saved_under_another_fingerprint_is_not_resumed(tmp_path, capsys):
    images, labels = toy_problem()
    # the state saved comes from another start than the runs below, so a state resumed would show in their weights
    fit(Objective(make_model(seed=1), keep_labels), images, labels, Plan(CFG, 1), RT,
        progress=Progress(resume=Resume(tmp_path / "s.pt", {"lr": 1})))
    fresh = fit(Objective(make_model(), keep_labels), images, labels, Plan(CFG, 1), RT)
    resumed = fit(Objective(make_model(), keep_labels), images, labels, Plan(CFG, 1), RT,
                  progress=Progress(resume=Resume(tmp_path / "s.pt", {"lr": 1})))  # the same key: resumed
    assert not all(torch.equal(resumed.best_state[k], v) for k, v in fresh.best_state.items())
    capsys.readouterr()
    other = fit(Objective(make_model(), keep_labels), images, labels, Plan(CFG, 1), RT,
                progress=Progress(resume=Resume(tmp_path / "s.pt", {"lr": 2})))
    assert "saved under other params, data or code; starting afresh" in capsys.readouterr().out
    for key, value in fresh.best_state.items():
        assert torch.equal(other.best_state[key], value), key
    (tmp_path / "s.pt").write_bytes(b"half a zip")  # e.g. a disk that filled up
    broken = fit(Objective(make_model(), keep_labels), images, labels, Plan(CFG, 1), RT,
                 progress=Progress(resume=Resume(tmp_path / "s.pt", {"lr": 2})))
    assert "s.pt cannot be read" in capsys.readouterr().out
    for key, value in fresh.best_state.items():
        assert torch.equal(broken.best_state[key], value), key


@pytest.mark.parametrize("batch_size, world", [(32, 1), (32, 2), (17, 2), (10, 3), (3, 3)])
def test_every_rank_gets_an_equal_disjoint_shard_of_the_batch(batch_size, world):
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    for step in range(2):
        shards = [shard(perm, step, batch_size, world, rank) for rank in range(world)]
        batch = perm[step * batch_size : (step + 1) * batch_size]
        assert len({len(s) for s in shards}) == 1 and len(shards[0]) == batch_size // world
        union = torch.cat(shards)
        assert len(union.unique()) == len(union) and set(union.tolist()) <= set(batch.tolist())
        assert len(batch) - len(union) == batch_size % world  # only the remainder is dropped


def test_a_batch_smaller_than_the_process_count_is_refused():
    images, labels = toy_problem(n=2)
    with pytest.raises(SelfSupError, match=r"a batch of 2 images cannot be shared by 3 processes"):
        _batch_plan(len(images), 32, 3, "finetune")


@pytest.mark.parametrize("n, batch_size, epochs, min_steps, expected", [
    (100, 128, 7, 0, (100, 1)),       # 10 labels per class: one step a pass
    (100, 128, 7, 1000, (100, 143)),  # the same, at least 1000 steps: ceil(1000 / 7) per epoch
    (54000, 128, 7, 1000, (128, 421)),  # every label: passes are long enough, min_steps changes nothing
    (1000, 128, 40, 500, (128, 13)),
])
def test_min_steps_lengthens_the_epochs_of_a_small_image_set_only(n, batch_size, epochs, min_steps, expected):
    assert _batch_plan(n, batch_size, 1, "finetune", min_steps, epochs) == expected


@pytest.mark.parametrize("n, batch_size, epochs, min_steps", [
    (100, 128, 7, 0), (100, 128, 7, 7), (100, 128, 7, 8), (54000, 128, 4, 1000), (54000, 128, 4, 1685),
    (1000, 64, 3, 46), (1000, 64, 3, 45), (342, 128, 4, 1000)])
def test_floor_lengthens_says_whether_min_steps_lengthened_the_plan(n, batch_size, epochs, min_steps):
    assert floor_lengthens(n, batch_size, epochs, min_steps) == (
        _batch_plan(n, batch_size, 1, "pretrain", min_steps, epochs) != _batch_plan(n, batch_size, 1, "pretrain"))


@pytest.mark.parametrize("n, steps, batch_size", [(10, 7, 4), (100, 143, 100), (50, 3, 16), (9, 1, 9)])
def test_an_epoch_of_many_passes_sees_every_image_equally_often(n, steps, batch_size):
    order = epoch_order(n, steps, batch_size, torch.Generator().manual_seed(0))
    used = order[: steps * batch_size]
    assert len(used) == steps * batch_size
    counts = torch.bincount(used, minlength=n)
    assert counts.max() - counts.min() <= 1
    # the passes are fresh permutations, not one repeated
    if len(order) >= 2 * n:
        assert not torch.equal(order[:n], order[n : 2 * n])


def test_an_epoch_of_one_pass_draws_the_permutation_it_always_drew():
    """A schedule min_steps does not lengthen trains exactly as before it existed (the committed runs stand)."""
    assert torch.equal(epoch_order(300, 2, 128, torch.Generator().manual_seed(3)),
                       torch.randperm(300, generator=torch.Generator().manual_seed(3)))


def test_fit_with_min_steps_runs_them_and_reports_them():
    images, labels = toy_problem(n=16)
    calls = []

    def counting(x, y, gen):
        calls.append(len(x))
        return x, y

    result = fit(Objective(make_model(), counting), images, labels, Plan(CFG, 2, min_steps=9), RT)
    assert result.steps == 10 == len(calls)  # 2 epochs of ceil(9 / 2) = 5 steps
    assert set(calls) == {16}
    plain = fit(Objective(make_model(), keep_labels), images, labels, Plan(CFG, 2), RT)
    assert plain.steps == 2


def test_a_saved_state_is_read_onto_the_cpu_whatever_the_device(tmp_path, monkeypatch):
    """Its history holds the logged images, which dvclive turns into arrays with .numpy(): read onto a GPU
    they would stop a resumed run there."""
    resume = Resume(tmp_path / "s.pt", {"run": 1})
    torch.save({"fingerprint": resume.key(), "epoch": 1}, resume.path)
    seen = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k.get("map_location")) or real(*a, **k))
    assert resume.load("t", torch.device("meta"))["epoch"] == 1 and seen == ["cpu"]


def test_a_step_does_not_wait_for_the_host(monkeypatch):
    """Losses and accuracies stay on the device during an epoch: no .item() per step (each would wait for
    a GPU to finish); the batch order is drawn on the CPU, so every rank draws the same one."""
    images, labels = toy_problem(n=512)  # 16 steps an epoch
    items, perms = [], []
    real_item, real_randperm = torch.Tensor.item, torch.randperm
    monkeypatch.setattr(torch.Tensor, "item", lambda self: items.append(1) or real_item(self))
    monkeypatch.setattr(torch, "randperm", lambda *a, **k: perms.append(k) or real_randperm(*a, **k))
    fit(Objective(make_model(), keep_labels, accuracy=top1_accuracy), images, labels, Plan(CFG, 2), RT)
    assert len(items) < 4  # not one per step
    assert all(k["generator"].device.type == "cpu" and "device" not in k for k in perms) and len(perms) == 2


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # the scaler skipped the step
def test_divergence_under_fp16_names_the_precision_too():
    images, labels = toy_problem()

    def nan_loss(outputs, targets):
        return F.cross_entropy(outputs, targets) * float("inf")

    fp16 = Compute(torch.device("cpu"), torch.float16)  # resolve refuses it on a CPU; fit runs it
    with pytest.raises(DivergedError, match=r"step 1; lower the learning rate \(lr\) or use precision bf16 or fp32"):
        fit(Objective(make_model(), keep_labels, loss=nan_loss), images, labels, Plan(CFG, 1), Runtime(fp16, RT.norm))


class RecordingLive:
    """The part of dvclive's Live that fit uses, recording (step, key, value)."""

    def __init__(self):
        self.step, self.logged = 0, []

    def log_metric(self, key, value, plot=True):
        self.logged.append((self.step, key, value))

    def log_image(self, key, value):
        self.logged.append((self.step, key, value.tobytes()))

    def next_step(self):
        self.step += 1


def test_curves_hold_train_and_val_per_epoch_from_1_and_dvclive_steps_are_epochs(tmp_path):
    from dvclive import Live

    images, labels = toy_problem()
    model = make_model()
    validate = lambda m: {"val/loss": 0.5, "val/accuracy": top1_accuracy(predict(m, images, RT, 64), labels).item()}
    live = Live(str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False, report=None)
    fit(Objective(model, keep_labels, accuracy=top1_accuracy), images, labels, Plan(CFG, EPOCHS, select="val/accuracy"), RT,
        validate, Progress(live=live))
    live.end()
    lines = (tmp_path / "live/curves.csv").read_text().splitlines()
    assert lines[0] == "epoch,split,loss,accuracy"
    assert [line.split(",")[:2] for line in lines[1:]] == [[str(e), s] for e in (1, 2, 3) for s in ("train", "val")]
    assert all(float(line.split(",")[3]) > 0 for line in lines[1:])
    summary = json.loads((tmp_path / "live/metrics.json").read_text())
    assert summary["step"] == EPOCHS and summary["val"]["loss"] == 0.5
    assert not (tmp_path / "live/plots/metrics").exists()  # no second copy of the curves


def test_curves_leave_a_metric_a_split_lacks_empty(tmp_path):
    write_curves(tmp_path, [{"train/loss": 0.25, "val/loss": 0.5, "val/accuracy": 0.75, "grid.png": None}])
    assert (tmp_path / "curves.csv").read_text() == "epoch,split,loss,accuracy\n1,train,0.25,\n1,val,0.5,0.75\n"
    write_curves(tmp_path, [])
    assert (tmp_path / "curves.csv").read_text() == "epoch,split\n"


def test_weight_average_warms_up_then_caps_at_its_decay_and_copies_counters():
    model = torch.nn.BatchNorm1d(1)
    average = WeightAverage(model, decay=0.5)
    expected = model.weight.detach().clone()
    for step in range(1, 4):
        with torch.no_grad():
            model.weight.fill_(float(step))
        model.num_batches_tracked.fill_(step)
        average.update(model)
        d = min(0.5, (1 + step) / (10 + step))  # 2/11, 3/12, then the cap
        expected = d * expected + (1 - d) * step
        assert torch.allclose(average.module.weight, expected)
        assert average.module.num_batches_tracked.item() == step
    assert not average.module.weight.requires_grad


def test_fit_with_an_average_keeps_the_averaged_weights_and_validates_them():
    images, labels = toy_problem()
    model = make_model()
    validated = []

    def validate(net):
        validated.append({k: v.clone() for k, v in net.state_dict().items()})
        return {"val/accuracy": accuracy_on(net, images, labels)}

    result = fit(Objective(model, keep_labels), images, labels, Plan(CFG, EPOCHS, average=0.9), RT, validate)
    last = model.state_dict()
    weight = next(iter(last))
    assert not torch.equal(result.best_state[weight], last[weight])  # the average, not the last step's weights
    assert all(torch.equal(result.best_state[k], v) for k, v in validated[-1].items())  # what was validated is kept
    model.load_state_dict(result.best_state)
    assert accuracy_on(model, images, labels) > 0.95


def test_a_kill_between_the_two_writes_of_a_save_resumes_from_the_previous_state(tmp_path, monkeypatch):
    """Several processes keep the state of the epoch before: a save moves the newest aside, then writes the next.
    Killed in between, only the `.previous` file is left, and it is the one to continue from."""
    import selfsup.train

    monkeypatch.setattr(selfsup.train.distributed, "world_size", lambda: 2)  # rank 0 of two, agreeing with itself
    resume = Resume(tmp_path / "state.pt", {"run": 1})
    resume.save({"fingerprint": resume.key(), "epoch": 1})

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(selfsup.train.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        resume.save({"fingerprint": resume.key(), "epoch": 2})
    assert not resume.local_path().exists() and resume.local_path(previous=True).is_file()
    state = resume.load("test", torch.device("cpu"))
    assert state is not None and state["epoch"] == 1
