"""One command that measures a machine end to end, made for a first (and short) loan of a GPU machine: checks that
the interpreter DVC's stages will run is this one and that it sees the device, runs the fast tests, runs `dvc
repro -f` of the default pipeline in a throwaway copy of the project under a timeout that kills the whole process
group, and writes what it found to a folder.

    python -m benchmarks.device [--device auto] [--fraction 1.0] [--timeout 480] [--out device-run]
        [--skip-tests] [--smoke] [--keep DIR]

The folder holds env.json (interpreter, torch, device, GPU and driver, CPU count, threads), tests.txt (the fast
tests' output and exit code), stages.tsv (each stage's wall seconds, as `dvc repro` started them), repro.log, and
the run's metrics (metrics/evaluate/metrics.json, metrics/finetune/metrics.json and each probe's, flattened into
metrics.json). The data comes from FASHION_MNIST_MIRROR where it is set (a machine without internet). On a CPU:
`--device cpu --fraction 0.02` (and `--smoke`: one epoch per pretext, small probes, as the tests run it).
Not a test: its numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# what a throwaway copy of the project needs to run its pipeline
PROJECT_FILES = ["dvc.yaml", "params.yaml", "pyproject.toml", ".gitignore", ".dvcignore", ".dvc/config",
                 ".dvc/.gitignore", ".dvc/plots", "metrics/comparison.tsv", "metrics/distilled.tsv", "stages",
                 "selfsup", "README.md", "docs/results.md"]


def smoke_params(params: dict, batch_size: int, val_images: int) -> dict:
    """params.yaml settings for a smoke run: one epoch per pretext, two of fine-tuning (no min_steps), small batches,
    probes with a few labels per class."""
    params["pretrain"]["common"].update(batch_size=batch_size, val_images=val_images)
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


def environment(device: str) -> tuple[dict, dict]:
    """What this machine is (for env.json), and the environment for DVC: this interpreter's folder first on PATH,
    so that the `python` of every stage is the one that runs this (and has the project and its torch)."""
    import torch

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}
    found = shutil.which("python", path=path)
    info = {"python": sys.executable, "stage_python": found, "torch": torch.__version__,
            "cuda": torch.version.cuda, "device": device, "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "machine": platform.machine(),
            "fashion_mnist_mirror": os.environ.get("FASHION_MNIST_MIRROR")}
    # the same folder, not the same file once links are resolved: a virtual environment's python links to the system's
    if found is None or Path(found).absolute().parent != Path(sys.executable).absolute().parent:
        raise SystemExit(f"error: DVC's stages would run {found}, not {sys.executable}; run this with the "
                         "project's own interpreter (e.g. .venv/bin/python -m benchmarks.device)")
    if device in ("auto", "cuda") and torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)))
        smi = shutil.which("nvidia-smi")
        if smi:
            info["driver"] = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True).stdout.strip()
    elif device == "cuda":
        raise SystemExit(f"error: --device cuda, but this torch ({torch.__version__}) sees no CUDA GPU")
    return info, env


def timed_run(cmd: list[str], cwd: Path, env: dict, timeout: float, log: Path) -> tuple[int, list[tuple[str, float]]]:
    """Run `cmd` in a process group of its own, its output to `log`; after `timeout` seconds the whole group is
    killed (a stage's python included, not only DVC). Returns the exit code (-9: killed) and each stage's start
    (seconds from the beginning), as DVC announced them."""
    started, stages = time.monotonic(), []
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    watchdog = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    watchdog.start()
    try:
        with open(log, "w") as out:
            for line in proc.stdout:
                out.write(line)
                if line.startswith("Running stage '"):
                    stages.append((line.split("'")[1], time.monotonic() - started))
        code = proc.wait()
    finally:
        watchdog.cancel()
    stages.append(("", time.monotonic() - started))  # the end of the last stage
    return code, stages


def flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--fraction", type=float, default=1.0, help="preprocess.fraction of the run")
    parser.add_argument("--timeout", type=float, default=480, help="seconds before `dvc repro` is killed")
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
    if not args.skip_tests:
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-m", "not e2e", "-p", "no:cacheprovider"],
                               cwd=REPO, env=env, capture_output=True, text=True)
        (out / "tests.txt").write_text(f"exit code {tests.returncode}\n{tests.stdout[-20000:]}{tests.stderr[-5000:]}")
        print(f"fast tests: exit code {tests.returncode}", flush=True)

    def edit(params):
        params["compute"]["device"] = args.device
        params["preprocess"]["fraction"] = args.fraction
        if args.fraction < 1:  # budgets a small fraction cannot fill are used whole
            params["probe"]["budget"] = params["finetune"]["budget"] = "at_most"
        if args.smoke:
            smoke_params(params, batch_size=32, val_images=64)

    with tempfile.TemporaryDirectory(prefix="device-run-") as tmp:
        repo = copy_project(Path(args.keep) if args.keep else Path(tmp) / "repo", edit)
        code, starts = timed_run(["dvc", "repro", "-f"], repo, env, args.timeout, out / "repro.log")
        seconds = {name: round(end - start, 1) for (name, start), (_, end) in zip(starts, starts[1:])}
        (out / "stages.tsv").write_text("stage\tseconds\n" + "".join(f"{k}\t{v}\n" for k, v in seconds.items()))
        metrics = {str(p.relative_to(repo)): json.loads(p.read_text())
                   for p in sorted(repo.glob("metrics/*/**/metrics.json"))}
        (out / "metrics.json").write_text(json.dumps({k: flat(v) for k, v in metrics.items()}, indent=2) + "\n")
    print(f"dvc repro -f: exit code {code} ({'killed at the timeout' if code == -9 else 'finished'}); "
          f"{len(seconds)} stages in {starts[-1][1]:.0f} s; written to {out}/")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
