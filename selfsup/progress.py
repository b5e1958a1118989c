"""Where a training run shows and keeps its progress: the state an interrupted run resumes from (`Resume`), the
dvclive logger and the curves file of its epochs (`write_curves`), bundled for `fit` as `Progress`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from selfsup import distributed
from selfsup.io import atomic_path


@dataclass(frozen=True)
class Resume:
    """Where fit keeps its training state after every epoch, and what the state must match to be resumed.

    An interrupted run restarted with the same `fingerprint` (e.g. params, data, compute, a digest of the
    code: selfsup.io.loaded_sources) continues from the last finished epoch and ends exactly as an
    uninterrupted run would; a state saved under another fingerprint is ignored. The file is removed by
    the caller once its outputs are written.
    """

    path: Path
    fingerprint: dict

    def key(self) -> str:
        return json.dumps(self.fingerprint, sort_keys=True)

    def local_path(self, previous: bool = False) -> Path:
        """This process's state file: `path` itself, or a file beside it for rank r > 0 of several; with
        `previous`, the state of the epoch before (kept only by several processes)."""
        r = distributed.rank()
        path = self.path if r == 0 else self.path.with_name(f"{self.path.stem}.rank{r}{self.path.suffix}")
        return path.with_name(f"{path.name}.previous") if previous else path

    def _read(self, path: Path, desc: str) -> dict | None:
        if not path.is_file():
            return None
        try:
            # on the CPU whatever the device: the history's images must stay host tensors (dvclive reads them
            # with .numpy()); restore() moves what trains
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001  any unreadable state is only a lost head start
            tqdm.write(f"{desc}: {path} cannot be read ({type(err).__name__}); starting afresh")
            return None
        if state.get("fingerprint") != self.key():
            tqdm.write(f"{desc}: {path} was saved under other params, data or code; starting afresh")
            return None
        return state

    def load(self, desc: str, device: torch.device) -> dict | None:
        """The saved state to continue from; None when there is none, it is unreadable, or it was saved
        under another fingerprint.

        Several processes continue only from an epoch that every rank saved: ranks save one after another,
        so a kill between their saves leaves them one epoch apart, and a rank that is ahead goes back to its
        previous state. If the ranks cannot agree, all start afresh (never a rank alone: it would wait
        forever for the others in DDP). A kill between a save's two steps (the newest state moved aside,
        the next not yet written) leaves the previous state alone: it is the one to continue from."""
        state = self._read(self.local_path(), desc)
        if state is None and self.local_path(previous=True).is_file():
            state = self._read(self.local_path(previous=True), desc)
        if distributed.world_size() == 1:
            return state
        mine = state["epoch"] if state is not None else -1
        agreed = distributed.all_min(mine, device)
        if state is not None and mine > agreed:
            state = self._read(self.local_path(previous=True), desc)
        usable = state is not None and state["epoch"] == agreed
        return state if distributed.all_min(int(usable), device) == 1 else None

    def save(self, state: dict) -> None:
        """Write this process's state atomically; several processes keep their previous one beside it."""
        path = self.local_path()
        if distributed.world_size() > 1 and path.is_file():
            os.replace(path, self.local_path(previous=True))
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def clear(self) -> None:
        """Remove this process's state files (once the run's outputs are written)."""
        for previous in (False, True):
            self.local_path(previous).unlink(missing_ok=True)


@dataclass(frozen=True)
class Progress:
    """Where a run shows and keeps its progress: the name on its progress bars, the dvclive logger (None: none)
    and the training state an interrupted run resumes from (None: not saved)."""

    desc: str = "train"
    live: object = None
    resume: Resume | None = None


def rng_states(device: torch.device) -> dict:
    """The global random states a training step draws from (dropout uses the device's default generator)."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        states["mps"] = torch.mps.get_rng_state()
    return states


def set_rng_states(states: dict, device: torch.device) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)
    if "mps" in states:
        torch.mps.set_rng_state(states["mps"])


def is_image(key: str) -> bool:
    return key.endswith(".png")


CURVES = "curves.csv"  # beside dvclive's summary: one row per epoch and split (train, val), for one chart of both


def write_curves(directory: str | Path, history: list[dict]) -> None:
    """The per-epoch numbers of `history` as `directory`/curves.csv: epoch (from 1), split, then one column per
    metric (loss, accuracy; empty where a split has none). A run that trains nothing writes the header alone."""
    rows = []
    for epoch, metrics in enumerate(history, start=1):
        by_split: dict[str, dict] = {}
        for key, value in metrics.items():
            if not is_image(key) and "/" in key:
                split, name = key.split("/", 1)
                by_split.setdefault(split, {})[name] = value
        rows += [{"epoch": epoch, "split": split, **values} for split, values in by_split.items()]
    names = sorted({k for row in rows for k in row} - {"epoch", "split"}, key=lambda n: (n != "loss", n))
    lines = [",".join(["epoch", "split", *names])]
    lines += [",".join([str(row["epoch"]), row["split"], *(repr(float(row[n])) if n in row else "" for n in names)])
              for row in rows]
    with atomic_path(Path(directory) / CURVES) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def log_epoch(live, history: list[dict]) -> None:
    """Send the last epoch of `history` to dvclive (its numbers to the summary, at step = the epoch, from 1; its
    images as plots) and rewrite curves.csv from the whole history."""
    live.step = len(history)
    for key, value in history[-1].items():
        if is_image(key):
            live.log_image(key, value.numpy())
        else:
            live.log_metric(key, value, plot=False)  # the curves are curves.csv, train and val in one file
    directory = getattr(live, "dir", None)
    if isinstance(directory, (str, Path)):  # not on the ranks that do not log (distributed.NullLive)
        write_curves(directory, history)
    live.next_step()


def storable(metrics: dict) -> dict:
    """Epoch metrics with images as uint8 H×W×C tensors, so the training state loads with weights_only."""
    import numpy as np

    return {k: torch.from_numpy(np.array(v)) if is_image(k) else v for k, v in metrics.items()}
