"""One command that measures a machine end to end, made for a first (and short) loan of a GPU machine: checks that
the interpreter DVC's stages will run is this one and that it sees the device, runs the fast tests, runs the
default pipeline afresh in a throwaway copy of the project (`dvc repro -f evaluate`, the delivered model's test
accuracy first, then `dvc repro` of the rest) under a timeout that kills the whole process group, and writes what
it found to a folder.

    python -m benchmarks.device [--device auto] [--fraction 1.0] [--tests-timeout 90] [--timeout 420]
        [--out device-run] [--skip-tests] [--smoke] [--keep DIR]

Before anything runs it checks what would fail later: DVC's `python` is this interpreter, `dvc` and `git` are on
its PATH, the device is there, and Fashion-MNIST can be had (FASHION_MNIST_MIRROR, made absolute, holding the four
files, or an official mirror that answers). The folder holds env.json (interpreter, torch, device, GPU and driver,
CPU count, threads), tests.txt (the fast tests' output and exit code, killed at --tests-timeout), stages.tsv (each
stage's wall seconds, as `dvc repro` started them, a line as each one ends, and whether it finished), repro.log
(line by line), and the run's metrics (every stage's metrics.json: evaluate's, finetune's, each probe's and
pre-training's, flattened into metrics.json): what a run cut short (by --timeout, or stopped by SIGTERM or SIGHUP
from whatever runs this) had done is on disk, and what it started is killed with it. On a CPU: `--device cpu
--fraction 0.02` (and `--smoke`: one epoch per pretext, small probes, as the tests run it). Not a test: its numbers
depend on the machine.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import yaml

from selfsup.download import FASHION_MNIST_FILES, MIRROR_ENV, OFFICIAL_MIRRORS, _is_url
from selfsup.report.experiments import flat

REPO = Path(__file__).resolve().parents[1]
# what a throwaway copy of the project needs to run its pipeline
PROJECT_FILES = ["dvc.yaml", "params.yaml", "pyproject.toml", ".gitignore", ".dvcignore", ".dvc/config",
                 ".dvc/.gitignore", ".dvc/plots", "metrics/comparison.tsv", "metrics/distilled.tsv", "stages",
                 "selfsup", "README.md", "docs/results.md"]


def smoke_params(params: dict, batch_size: int, val_images: int) -> dict:
    """params.yaml settings for a smoke run: one epoch per pretext, two of fine-tuning (neither with min_steps), small
    batches, probes with a few labels per class."""
    params["pretrain"]["common"].update(batch_size=batch_size, val_images=val_images, min_steps=0)
    for section in params["pretrain"].values():
        if "epochs" in (section or {}):
            section["epochs"] = 1
    params["finetune"].update(epochs=2, min_steps=0)  # two short epochs, however few the labelled images
    params["probe"].update(select_labels_per_class=5, labels_per_class=[2, "all"], seeds=2, steps=20)
    return params


def copy_project(dest: Path, edit_params) -> Path:
    """The project's pipeline and code copied to `dest` (a fresh git repository, one commit), with params.yaml
    edited by `edit_params(params)`."""
    for name in PROJECT_FILES:
        src, dst = REPO / name, dest / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    edit_params(params)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "GIT_AUTHOR_NAME": "device", "GIT_AUTHOR_EMAIL": "device@localhost",
           "GIT_COMMITTER_NAME": "device", "GIT_COMMITTER_EMAIL": "device@localhost"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "device run"]):
        subprocess.run(cmd, cwd=dest, env=env, check=True)
    return dest


def official_mirror_reachable(timeout: float = 5.0) -> bool:
    """Whether any official Fashion-MNIST mirror accepts a connection."""
    for mirror in OFFICIAL_MIRRORS:
        url = urlparse(mirror)
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
            socket.create_connection((url.hostname, port), timeout).close()
            return True
        except OSError:
            continue
    return False


def data_source(env: dict, reachable=official_mirror_reachable) -> str | None:
    """Where the run's download stage gets Fashion-MNIST: FASHION_MNIST_MIRROR as an absolute path (the stages run
    in a copy of the project elsewhere) or a URL, or None for the official mirrors where one answers. Neither: an
    error now, not a download stage that times out after the tests."""
    mirror = env.get(MIRROR_ENV)
    if mirror and _is_url(mirror):  # as the download stage tells them apart
        return mirror
    if mirror:
        folder = Path(mirror).expanduser().absolute()
        missing = [name for name in FASHION_MNIST_FILES if not (folder / name).is_file()]
        if missing:
            raise SystemExit(f"error: {MIRROR_ENV}={mirror} lacks {', '.join(missing)}; point it at the folder that "
                             "holds the four Fashion-MNIST .gz files")
        return str(folder)
    if not reachable():
        raise SystemExit(f"error: no Fashion-MNIST: {MIRROR_ENV} is not set and no official mirror answers; set it "
                         "to the folder that holds the four .gz files (docs/gpus.md)")
    return None


def gpus_listed(smi: str | None) -> bool:
    """Whether `nvidia-smi -L` (at `smi`) lists a GPU this process may use: not where CUDA_VISIBLE_DEVICES is set
    (GPUs hidden on purpose), nor where it fails (a driver without a GPU)."""
    if smi is None or "CUDA_VISIBLE_DEVICES" in os.environ:
        return False
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and any(line.startswith("GPU ") for line in listed.stdout.splitlines())


def environment(device: str, reachable=official_mirror_reachable) -> tuple[dict, dict]:
    """What this machine is (for env.json), and the environment for DVC: this interpreter's folder first on PATH,
    so that the `python` of every stage is the one that runs this (and has the project and its torch). Whatever
    would stop the run later (`dvc` or `git` missing, no data, no device) is an error now."""
    import torch

    folder = Path(sys.executable).parent
    beside = folder / "python"
    if not beside.exists() or beside.resolve() != Path(sys.executable).resolve():
        # e.g. /usr/bin/python3 alone, or beside another version's python: DVC's stages run `python`, so one links to
        # this interpreter (a venv's `python` is always its own, and a link elsewhere would lose the venv)
        folder = Path(tempfile.mkdtemp(prefix="device-python-"))
        (folder / "python").symlink_to(sys.executable)
        atexit.register(shutil.rmtree, folder, True)
    path = os.pathsep.join([str(folder), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}
    for tool in ("dvc", "git"):
        if shutil.which(tool, path=path) is None:
            raise SystemExit(f"error: no `{tool}` on this interpreter's PATH ({path}); install it "
                             f"({'pip install dvc dvclive, or from wheels: docs/gpus.md' if tool == 'dvc' else 'git'})")
    source = data_source(env, reachable)
    if source is not None:
        env[MIRROR_ENV] = source
    found = shutil.which("python", path=path)
    info = {"python": sys.executable, "stage_python": found, "torch": torch.__version__,
            "cuda": torch.version.cuda, "device": device, "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "machine": platform.machine(),
            "fashion_mnist_mirror": source}
    # the same folder, not the same file once links are resolved: a virtual environment's python links to the system's
    if found is None or Path(found).absolute().parent != folder.absolute():
        raise SystemExit(f"error: DVC's stages would run {found}, not {sys.executable}; run this with the "
                         "project's own interpreter (e.g. .venv/bin/python -m benchmarks.device)")
    smi = shutil.which("nvidia-smi")
    if device == "auto" and not torch.cuda.is_available() and gpus_listed(smi):  # else every stage runs on the CPU
        raise SystemExit(f"error: nvidia-smi lists a GPU, but this torch ({torch.__version__}, CUDA "
                         f"{torch.version.cuda}) sees none: a CPU-only torch, or a driver older than its CUDA; install "
                         "a torch that sees it, or give --device cpu to measure the CPU")
    if device in ("auto", "cuda") and torch.cuda.is_available():
        info["device"] = "cuda"  # what the stages are told to use: a GPU seen now is the one they must use
        info.update(gpu=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)))
        if smi:
            try:
                info["driver"] = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                                capture_output=True, text=True, timeout=30).stdout.strip()
            except subprocess.TimeoutExpired:
                info["driver"] = None
    elif device == "cuda":
        raise SystemExit(f"error: --device cuda, but this torch ({torch.__version__}) sees no CUDA GPU")
    elif device == "auto":
        info["device"] = "cpu"
    return info, env


def timed_run(cmd: list[str], cwd: Path, env: dict, timeout: float, log: Path,
              stages_tsv: Path | None = None) -> tuple[int, list[tuple[str, float]]]:
    """Run `cmd` in a process group of its own, its output to `log` line by line; after `timeout` seconds the whole
    group is killed (a stage's python included, not only DVC). Returns the exit code (-9: killed) and each stage's
    start (seconds from the beginning), as DVC announced them; with `stages_tsv`, each stage's seconds are added to
    it as the next one starts (and the last at the end), so a run cut short keeps what it finished."""
    started, stages = time.monotonic(), []

    def close_stage(finished: bool) -> None:
        if stages_tsv is not None and stages:
            name, start = stages[-1]
            with open(stages_tsv, "a") as tsv:
                tsv.write(f"{name}\t{time.monotonic() - started - start:.1f}\t{'yes' if finished else 'no'}\n")

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    watchdog = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    watchdog.start()
    try:
        with open(log, "a", buffering=1) as out:  # a second run adds to the first's log
            for line in proc.stdout:
                out.write(line)
                if line.startswith("Running stage '"):
                    close_stage(True)
                    stages.append((line.split("'")[1], time.monotonic() - started))
        code = proc.wait()
    except BaseException:  # an error, or this process stopped (SIGTERM: main's handler): the running stage's row too
        with contextlib.suppress(OSError):
            close_stage(False)
        raise
    finally:  # ... and the group goes down with it
        watchdog.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    close_stage(code == 0)
    stages.append(("", time.monotonic() - started))  # the end of the last stage
    return code, stages


def write_metrics(repo: Path, path: Path) -> None:
    """Every metrics.json of the run in `repo` (evaluate's, finetune's, each probe's and pre-training's ...),
    flattened, into one file at `path`; one the run was killed while writing is left out, and said so."""
    metrics = {}
    for found in sorted(repo.glob("metrics/*/**/metrics.json")):
        try:
            metrics[str(found.relative_to(repo))] = json.loads(found.read_text())
        except ValueError:  # written when the run was killed
            print(f"{found.relative_to(repo)}: unreadable, left out", flush=True)
    path.write_text(json.dumps({k: flat(v) for k, v in metrics.items()}, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--fraction", type=float, default=1.0, help="preprocess.fraction of the run")
    parser.add_argument("--tests-timeout", type=float, default=90, help="seconds before the fast tests are killed")
    parser.add_argument("--timeout", type=float, default=420,
                        help="seconds before the pipeline is killed (with the tests' and a minute to start, within a "
                             "10-minute limit per command)")
    parser.add_argument("--out", default="device-run", help="folder for what it finds (created; must not exist)")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="one epoch per pretext, small probes (a quick check)")
    parser.add_argument("--keep", metavar="DIR", help="keep the copy of the project the pipeline ran in at DIR "
                        "(created; must not exist): its models, metrics and dvc.lock, to look at or go on from")
    args = parser.parse_args(argv)
    out = Path(args.out)
    for folder in filter(None, [out, args.keep and Path(args.keep)]):
        if folder.exists():
            parser.error(f"{folder} exists; name a new folder (nothing of an earlier run is overwritten)")
    info, env = environment(args.device)
    out.mkdir(parents=True)
    (out / "env.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2), flush=True)
    for stop in (signal.SIGTERM, signal.SIGHUP):  # stopped from outside: timed_run's cleanup kills what it started
        signal.signal(stop, lambda number, _: sys.exit(128 + number))
    if not args.skip_tests:  # every fast test, not up to the first failure: one unrelated to the device hides none
        tests, _ = timed_run([sys.executable, "-m", "pytest", "-q", "-m", "not e2e", "-p", "no:cacheprovider"],
                             REPO, env, args.tests_timeout, out / "tests.txt")
        with open(out / "tests.txt", "a") as log:
            log.write(f"\nexit code {tests}{' (killed: --tests-timeout, or from outside)' if tests == -9 else ''}\n")
        print(f"fast tests: exit code {tests}", flush=True)

    def edit(params):
        params["compute"]["device"] = info["device"]
        params["preprocess"]["fraction"] = args.fraction
        if args.fraction < 1:  # budgets a small fraction cannot fill are used whole
            params["probe"]["budget"] = params["finetune"]["budget"] = "at_most"
        if args.smoke:
            smoke_params(params, batch_size=32, val_images=64)

    with tempfile.TemporaryDirectory(prefix="device-run-") as tmp:
        repo = copy_project(Path(args.keep) if args.keep else Path(tmp) / "repo", edit)
        (out / "stages.tsv").write_text("stage\tseconds\tfinished\n")
        try:  # the delivered model's test accuracy first, so that a timeout cuts the probes and the rest instead
            started, stages = time.monotonic(), 0
            for cmd in (["dvc", "repro", "-f", "evaluate"], ["dvc", "repro"]):  # together: every stage, once
                left = args.timeout - (time.monotonic() - started)
                code, starts = timed_run(cmd, repo, env, left, out / "repro.log", out / "stages.tsv")
                stages += len(starts) - 1
                if code:
                    break
        finally:  # also when stopped from outside, before the copy is removed
            write_metrics(repo, out / "metrics.json")
    print(f"dvc repro -f evaluate, then dvc repro: exit code {code} "
          f"({'killed at the timeout' if code == -9 else 'finished'}); {stages} stages in "
          f"{time.monotonic() - started:.0f} s; written to {out}/")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
