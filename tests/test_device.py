"""benchmarks/device.py: the one command a GPU machine's short loan runs; here on the CPU."""

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks import device


def gone(pid: int) -> bool:
    """Whether process `pid` has ended, or is dead and waiting to be reaped (a zombie: state Z), within 5 s."""
    stat = Path(f"/proc/{pid}/stat")
    for _ in range(50):
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.1)
    return False


def test_a_timeout_kills_the_whole_process_group(tmp_path):
    """The command's children die with it (a `dvc repro` killed alone leaves its stage running)."""
    marker = tmp_path / "child.pid"
    started = time.monotonic()
    code, _ = device.timed_run(["bash", "-c", f"sleep 60 & echo $! > {marker}; wait"], tmp_path, dict(os.environ), 1.0,
                               tmp_path / "log")
    assert code == -9 and time.monotonic() - started < 30
    assert gone(int(marker.read_text())), "the child outlived the timeout"


def test_a_run_cut_short_keeps_the_seconds_of_the_stages_it_finished_and_its_log(tmp_path):
    script = "echo \"Running stage 'a':\"; sleep 0.5; echo \"Running stage 'b':\"; echo partial; sleep 60"
    tsv = tmp_path / "stages.tsv"
    code, starts = device.timed_run(["bash", "-c", script], tmp_path, dict(os.environ), 3.0, tmp_path / "log", tsv)
    assert code == -9 and [name for name, _ in starts] == ["a", "b", ""]
    rows = [line.split("\t") for line in tsv.read_text().splitlines()]
    assert [(name, finished) for name, _, finished in rows] == [("a", "yes"), ("b", "no")]  # b: cut at the kill
    assert 0.4 < float(rows[0][1]) < 3.0
    assert (tmp_path / "log").read_text().splitlines()[-1] == "partial"


@pytest.fixture
def stop_in():
    """`stop_in(seconds)`: this process gets SIGTERM then, handled as benchmarks.device.main handles it."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    previous = signal.signal(signal.SIGTERM, lambda number, _: sys.exit(128 + number))
    timers = []

    def stop(seconds):
        timers.append(threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM)))
        timers[-1].start()
    yield stop
    for timer in timers:
        timer.cancel()
    signal.signal(signal.SIGTERM, previous)


def test_a_run_stopped_from_outside_keeps_the_row_of_the_stage_it_was_in_and_kills_the_group(tmp_path, stop_in):
    marker, tsv = tmp_path / "child.pid", tmp_path / "stages.tsv"
    script = f"echo \"Running stage 'a':\"; sleep 60 & echo $! > {marker}; wait"
    stop_in(1.0)
    with pytest.raises(SystemExit) as stopped:
        device.timed_run(["bash", "-c", script], tmp_path, dict(os.environ), 60.0, tmp_path / "log", tsv)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert [line.split("\t")[::2] for line in tsv.read_text().splitlines()] == [["a", "no"]]
    assert gone(int(marker.read_text())), "the stage outlived the stop"


def test_a_device_run_stopped_from_outside_still_writes_the_metrics_it_made(tmp_path, monkeypatch):
    """SIGTERM while `dvc repro` runs (main's handler exits): the copy's metrics so far reach metrics.json before
    the copy is removed."""
    def copy_project(dest, edit):
        (dest / "metrics/probe/none").mkdir(parents=True)
        (dest / "metrics/probe/none/metrics.json").write_text('{"layer": "fc4", "probe": {"10": 0.5}}')
        return dest

    def timed_run(cmd, *args):
        if cmd[:2] == ["dvc", "repro"]:
            raise SystemExit(128 + signal.SIGTERM)  # what main's handler raises
        raise AssertionError(cmd)

    monkeypatch.setattr(signal, "signal", lambda *args: None)  # main's handlers stay out of the test process
    monkeypatch.setattr(device, "environment", lambda device_name: ({"device": device_name}, dict(os.environ)))
    monkeypatch.setattr(device, "copy_project", copy_project)
    monkeypatch.setattr(device, "timed_run", timed_run)
    with pytest.raises(SystemExit):
        device.main(["--out", str(tmp_path / "run"), "--device", "cpu", "--skip-tests"])
    saved = json.loads((tmp_path / "run/metrics.json").read_text())
    assert saved == {"metrics/probe/none/metrics.json": {"layer": "fc4", "probe.10": 0.5}}


def test_what_it_started_dies_when_it_fails_and_odd_output_bytes_are_no_failure(tmp_path):
    marker = tmp_path / "child.pid"
    script = f"echo $$ > {marker}; echo \"Running stage 'a':\"; echo \"Running stage 'b':\"; exec sleep 60"
    with pytest.raises(FileNotFoundError):  # stages.tsv's folder is missing: an error once the second stage starts
        device.timed_run(["bash", "-c", script], tmp_path, dict(os.environ), 60.0, tmp_path / "log",
                         tmp_path / "missing" / "stages.tsv")
    assert gone(int(marker.read_text()))
    code, _ = device.timed_run(["bash", "-c", "printf 'ok\\n\\377\\n'"], tmp_path, dict(os.environ), 10.0,
                               tmp_path / "log")  # added to the log (a second run's follows the first's)
    assert code == 0 and (tmp_path / "log").read_text().endswith("'b':\nok\n\ufffd\n")


def test_the_data_is_found_before_anything_runs(tmp_path, monkeypatch):
    never = (lambda: False)
    assert device.data_source({"FASHION_MNIST_MIRROR": "https://example.org/fmnist/"}, never) == "https://example.org/fmnist/"
    assert device.data_source({"FASHION_MNIST_MIRROR": "file:///srv/fmnist"}, never) == "file:///srv/fmnist"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw").mkdir()
    with pytest.raises(SystemExit, match="FASHION_MNIST_MIRROR=raw lacks train-images-idx3-ubyte.gz, "):
        device.data_source({"FASHION_MNIST_MIRROR": "raw"}, never)  # an empty folder: no download could work
    for name in device.FASHION_MNIST_FILES:
        (tmp_path / "raw" / name).write_bytes(b"")
    assert device.data_source({"FASHION_MNIST_MIRROR": "raw"}, never) == str(tmp_path / "raw")  # the stages run elsewhere
    monkeypatch.setenv("HOME", str(tmp_path))
    assert device.data_source({"FASHION_MNIST_MIRROR": "~/raw"}, never) == str(tmp_path / "raw")
    with pytest.raises(SystemExit, match="FASHION_MNIST_MIRROR=missing lacks"):
        device.data_source({"FASHION_MNIST_MIRROR": "missing"}, never)
    with pytest.raises(SystemExit, match="no Fashion-MNIST: FASHION_MNIST_MIRROR is not set and no official mirror"):
        device.data_source({}, never)
    assert device.data_source({}, lambda: True) is None  # the official mirrors answer
    # no dvc on the interpreter's PATH: an error before the tests and the copy, not after them
    monkeypatch.setattr(device.shutil, "which", lambda tool, path=None: None if tool == "dvc" else f"/bin/{tool}")
    with pytest.raises(SystemExit, match="no `dvc` on this interpreter's PATH"):
        device.environment("cpu", never)


def test_a_gpu_this_torch_cannot_see_is_an_error_not_a_run_on_the_cpu(monkeypatch, tmp_path):
    """`--device auto` on a machine with an NVIDIA GPU (nvidia-smi) whose torch sees none (a CPU-only build, a driver
    too old) would run every stage on the CPU: refused before anything runs. Without a GPU, auto means the CPU."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("FASHION_MNIST_MIRROR", raising=False)
    answers = (lambda: True)  # an official mirror answers: no data needed here
    assert device.environment("auto", answers)[0]["device"] == "cpu"
    smi = tmp_path / "nvidia-smi"  # lists one GPU, as on a GPU machine
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    real_which = shutil.which
    monkeypatch.setattr(device.shutil, "which", lambda tool, path=None:
                        str(smi) if tool == "nvidia-smi" else real_which(tool, path=path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(SystemExit, match=r"nvidia-smi lists a GPU, but this torch .+ sees none"):
        device.environment("auto", answers)
    assert device.environment("cpu", answers)[0]["device"] == "cpu"  # asked for: measured there
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # hidden on purpose: the CPU it is
    assert device.environment("auto", answers)[0]["device"] == "cpu"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    smi.write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")  # a driver without a GPU
    assert device.environment("auto", answers)[0]["device"] == "cpu"
    # a GPU torch sees: the stages are told to use it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (9, 0))
    info = device.environment("auto", answers)[0]
    assert info["device"] == "cuda" and info["gpu"] == "NVIDIA H200"


def test_the_device_it_found_is_the_one_the_stages_are_told_to_use(tmp_path, monkeypatch):
    """--device auto on a GPU machine: the copy's params.yaml says `compute.device: cuda`, so a stage cannot fall
    back to the CPU unseen; and the pipeline runs as `dvc repro -f evaluate`, then `dvc repro` of the rest."""
    import yaml

    edited, ran = {}, []

    def copy_project(dest, edit):
        params = yaml.safe_load((device.REPO / "params.yaml").read_text())
        edit(params)
        edited.update(params)
        dest.mkdir(parents=True)
        return dest

    def timed_run(cmd, *args):
        ran.append(cmd)
        return 0, [("", 0.0)]

    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setattr(device, "environment", lambda asked: ({"device": "cuda"}, dict(os.environ)))
    monkeypatch.setattr(device, "copy_project", copy_project)
    monkeypatch.setattr(device, "timed_run", timed_run)
    assert device.main(["--out", str(tmp_path / "run"), "--skip-tests"]) == 0
    assert edited["compute"]["device"] == "cuda"
    assert ran == [["dvc", "repro", "-f", "evaluate"], ["dvc", "repro"]]


def test_an_interpreter_without_a_python_beside_it_gets_one_for_the_stages(tmp_path, monkeypatch):
    """/usr/bin/python3 with no /usr/bin/python: DVC's stages run `python`, so a folder first on their PATH holds
    one linked to this interpreter, instead of a refusal (or another interpreter) on a machine lent for minutes."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "python3").symlink_to(sys.executable)
    monkeypatch.setattr(device.sys, "executable", str(folder / "python3"))
    monkeypatch.delenv("FASHION_MNIST_MIRROR", raising=False)
    info, env = device.environment("cpu", lambda: True)
    first = Path(env["PATH"].split(os.pathsep)[0])
    assert first != folder and info["stage_python"] == str(first / "python")
    assert (first / "python").resolve() == Path(sys.executable).resolve()
    # ... and where the python beside it is another interpreter (another version), that one is not used
    (folder / "python").symlink_to("/bin/sh")
    info, env = device.environment("cpu", lambda: True)
    first = Path(env["PATH"].split(os.pathsep)[0])
    assert first != folder and (first / "python").resolve() == Path(sys.executable).resolve()


# The device run on the CPU (`--device cpu --fraction 0.02 --smoke`) is the end-to-end pipeline test's first step
# (tests/test_pipeline.py): its folder is checked there, and the copy it ran in is the repository that test goes on in.


def test_help_writes_nothing_and_an_existing_folder_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as help_exit:
        device.main(["--help"])
    assert help_exit.value.code == 0 and list(tmp_path.iterdir()) == []
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit) as refused:
        device.main(["--out", str(tmp_path / "run"), "--device", "cpu"])
    assert refused.value.code == 2 and "exists; name a new folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as kept:
        device.main(["--out", str(tmp_path / "new"), "--keep", str(tmp_path / "run"), "--device", "cpu"])
    assert kept.value.code == 2 and f"{tmp_path / 'run'} exists" in capsys.readouterr().err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["run"]  # nothing written by either
    # an abbreviated flag is an error, not a guess (the folder that exists stops a guessing parser before any run)
    with pytest.raises(SystemExit) as abbreviated:
        device.main(["--devic", "cpu", "--out", str(tmp_path / "run")])
    assert abbreviated.value.code == 2 and "unrecognized arguments: --devic cpu" in capsys.readouterr().err
