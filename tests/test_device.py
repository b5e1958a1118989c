"""benchmarks/device.py: the one command a GPU machine's short loan runs; here on the CPU."""

import os
import time
from pathlib import Path

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
