"""Params that note which keys are read: for the test that every stage reads only the params dvc.yaml declares
for it (a key read and not declared would leave a stage's outputs stale when it changes). load_params returns
them where $SELFSUP_PARAMS_AUDIT names a folder; unset, nothing here runs."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

AUDIT = "SELFSUP_PARAMS_AUDIT"
_AUDITED: dict[tuple[type, str], type] = {}  # (params class, key prefix) -> its recording subclass
_READ: set[str] = set()  # the keys this process read from audited params


def audit_log(folder: Path) -> None:
    """Have this process write the keys it read to `folder`/<pid>.json, with its command line, when it ends (DVC's
    stage commands tell which stage read what)."""
    if not getattr(audit_log, "registered", False):
        import atexit
        import json
        import sys

        def write():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{os.getpid()}.json").write_text(json.dumps({"argv": sys.argv, "read": sorted(_READ)}))

        atexit.register(write)
        audit_log.registered = True


def audited(params, prefix: str = ""):
    """`params` (a params dataclass whose keys start with `prefix`) as an equal instance of a subclass that notes
    the key of every value read from it ("finetune.lr", ...); a nested section read comes audited, and so does a
    pretext's `section`."""
    base = type(params)
    key = (base, prefix)
    if key not in _AUDITED:
        names = {f.name for f in dataclasses.fields(base)}

        def __getattribute__(self, name):
            value = base.__getattribute__(self, name)
            if name in names:
                where = f"{prefix}{name}"
                if dataclasses.is_dataclass(value):
                    return audited(value, f"{where}.")
                _READ.add(where)
            return value

        def section(self, name, params_cls):  # PretrainParams': a pretext's section, read through
            return audited(base.section(_retyped(self, base), name, params_cls), f"{prefix}{name}.")

        def values(obj):  # unrecorded
            return tuple(object.__getattribute__(obj, f.name) for f in dataclasses.fields(base))

        def __eq__(self, other):  # equal to the plain instance it copies (a dataclass's own __eq__ wants one class)
            return values(self) == values(other) if isinstance(other, base) else NotImplemented

        body = {"__getattribute__": __getattribute__, "__eq__": __eq__, "__hash__": lambda self: hash(values(self)),
                "__slots__": ()}
        if hasattr(base, "section"):
            body["section"] = section
        _AUDITED[key] = type(base.__name__, (base,), body)
    return _retyped(params, _AUDITED[key])


def _retyped(params, cls):
    """A copy of the params dataclass `params` as an instance of `cls` (its audited subclass, or back), unrecorded."""
    copy = object.__new__(cls)
    for f in dataclasses.fields(params):
        object.__setattr__(copy, f.name, object.__getattribute__(params, f.name))
    return copy
