"""benchmarks/device.py: the one command a GPU machine's short loan runs; here on the CPU."""

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import device


def test_a_timeout_kills_the_whole_process_group(tmp_path):
    """The command's children die with it (a `dvc repro` killed alone leaves its stage running)."""
    marker = tmp_path / "child.pid"
    started = time.monotonic()
    code, _ = device.timed_run(["bash", "-c", f"sleep 60 & echo $! > {marker}; wait"], tmp_path, dict(os.environ), 1.0,
                               tmp_path / "log")
    assert code == -9 and time.monotonic() - started < 30
    stat = Path(f"/proc/{int(marker.read_text())}/stat")
    for _ in range(50):  # gone, or dead and waiting to be reaped (a zombie: state Z)
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the child outlived the timeout")


def test_help_writes_nothing_and_an_existing_folder_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as help_exit:
        device.main(["--help"])
    assert help_exit.value.code == 0 and list(tmp_path.iterdir()) == []
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit) as refused:
        device.main(["--out", str(tmp_path / "run"), "--device", "cpu"])
    assert refused.value.code == 2 and "exists; name a new folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        device.main(["--devices", "cpu"])  # an unknown flag is an error, not a guess


@pytest.mark.e2e
def test_the_device_run_measures_every_stage_on_the_cpu(tmp_path, fmnist_mirror, monkeypatch):
    if fmnist_mirror:
        monkeypatch.setenv("FASHION_MNIST_MIRROR", os.path.abspath(fmnist_mirror))
    out = tmp_path / "run"
    assert device.main(["--device", "cpu", "--fraction", "0.02", "--smoke", "--skip-tests", "--out", str(out)]) == 0
    env = json.loads((out / "env.json").read_text())
    assert env["device"] == "cpu" and env["torch"] and env["stage_python"]
    stages = pd.read_csv(out / "stages.tsv", sep="\t")
    assert {"download", "preprocess", "finetune", "evaluate", "pretrain@rotation", "probe@none"} <= set(stages.stage)
    assert (stages.seconds >= 0).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.3 < metrics["metrics/evaluate/metrics.json"]["test.accuracy"] <= 1
    assert metrics["metrics/finetune/metrics.json"]["compute"].startswith("cpu")
