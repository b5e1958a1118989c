"""Run a stage module in this process, or under torchrun when params.yaml asks for several processes.

    python -m selfsup.launch MODULE [ARGS...]
    python -m selfsup.launch stages.pretrain rotation --data ...   (what dvc.yaml's training stages run)

MODULE is a stage's module, run as `python -m MODULE ARGS...`; the ARGS are its own (`... stages.pretrain --help`
lists those of pretrain).

With `compute.processes: 1` (the default) this is `python -m stages.pretrain ...`. With N > 1 it becomes
`torchrun --standalone --nproc-per-node N -m stages.pretrain ...`: N data-parallel processes on this
machine, one GPU each on CUDA (gloo processes on the CPU, which is for testing: it is not faster).
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import sys

from selfsup import SelfSupError
from selfsup.cli import run_stage
from selfsup.params import load_params


def command(module: str, args: list[str], processes: int) -> list[str] | None:
    """The torchrun command line for `processes` > 1; None means: run the module in this process."""
    if processes == 1:
        return None
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", module, *args]


USAGE = "python -m selfsup.launch MODULE [ARGS...]"


def check_module(module: str) -> None:
    """A SelfSupError unless `module` names a module that `python -m` can run: not an option, and importable."""
    if module.startswith("-"):
        raise SelfSupError(f"unknown option {module}; usage: {USAGE} (--help says more)")
    try:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations is not None:  # a package runs its __main__
            spec = importlib.util.find_spec(f"{module}.__main__")
    except (ImportError, ValueError):  # a parent package that is missing, or a name that is no module's
        spec = None
    if spec is None:
        raise SelfSupError(f"no module named {module} to run; usage: {USAGE} (e.g. stages.pretrain)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0)
    if not argv:
        raise SelfSupError(f"no module to run; usage: {USAGE} (--help says more)")
    module, args = argv[0], argv[1:]
    check_module(module)
    compute = load_params().compute
    if compute.processes > 1:
        from selfsup.runtime import resolve_device  # late: imports torch, which a plain run does not need here

        device = resolve_device(compute.device)
        if device.type == "mps":
            raise SelfSupError(f"compute.processes is {compute.processes} but this machine trains on mps, which "
                               "PyTorch's distributed training does not support; set compute.processes: 1")
        if device.type == "cuda":
            import torch

            gpus = torch.cuda.device_count()
            if gpus < compute.processes:
                raise SelfSupError(f"compute.processes is {compute.processes} but this machine has {gpus} GPUs; "
                                   f"use at most {gpus}")
    cmd = command(module, args, compute.processes)
    if cmd is None:
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        print(" ".join(cmd[1:]), flush=True)
        os.execv(cmd[0], cmd)


if __name__ == "__main__":
    run_stage(main)  # a bad params.yaml: one line, as from any stage
