"""`python -m selfsup.launch` itself: its usage on --help, and one clear line for a command it cannot run."""

import os
import subprocess
import sys

import pytest

from selfsup import SelfSupError
from selfsup.launch import main
from tests.conftest import REPO


def launch(cwd, *args):
    return subprocess.run([sys.executable, "-m", "selfsup.launch", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage_and_exits_0(tmp_path, flag):
    proc = launch(tmp_path, flag)  # no params.yaml here: the usage needs none
    assert proc.returncode == 0, proc.stderr
    assert "python -m selfsup.launch MODULE [ARGS...]" in proc.stdout and proc.stderr == ""


def test_an_unknown_option_or_module_is_one_line(tmp_path):
    proc = launch(tmp_path, "--bogus")
    assert proc.returncode == 1
    assert proc.stderr == ("error: unknown option --bogus; usage: python -m selfsup.launch MODULE [ARGS...] "
                           "(--help says more)\n")


@pytest.mark.parametrize("argv, message", [
    ([], r"^no module to run; usage: python -m selfsup.launch MODULE"),
    (["--processes=2", "stages.pretrain"], r"^unknown option --processes=2; "),
    (["nosuch.module"], r"^no module named nosuch.module to run; "),
    (["stages.nosuch", "rotation"], r"^no module named stages.nosuch to run; "),
    (["stages"], r"^no module named stages to run; "),  # a package without __main__
])
def test_what_cannot_run_is_a_selfsup_error(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # found before params.yaml is read: there is none here
    with pytest.raises(SelfSupError, match=message):
        main(argv)


def test_a_stage_still_gets_its_own_help(tmp_path):
    """Only the launcher's first argument is its own: `--help` after the module is the stage's."""
    (tmp_path / "params.yaml").write_text("compute:\n  processes: 1\n")
    proc = launch(tmp_path, "stages.pretrain", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--checkpoint" in proc.stdout
