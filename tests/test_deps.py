"""dvc.yaml's code deps are the import graph: every stage depends on exactly the project modules its
command loads, so a change to a module reruns the stages that run it and no other."""

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, modules_loaded

PACKAGES = ("selfsup", "stages")


def module_file(name: str) -> Path | None:
    """The source file of project module `name` (a package's __init__.py), None for other modules."""
    if name.split(".")[0] not in PACKAGES:
        return None
    path = REPO.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(path: Path) -> set[str]:
    """Every module name the file imports, at any depth of its code (late imports inside functions too);
    `from a import b` counts `a` and `a.b` (which is a module when b is one)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def calls(path: Path, function: str) -> bool:
    """Whether the file calls `function` (by name or as an attribute)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id == function) or (isinstance(f, ast.Attribute) and f.attr == function):
                return True
    return False


def closure(modules: list[str]) -> set[Path]:
    """The project files that importing `modules` executes: each module, its parent packages' __init__.py
    and, transitively, everything they import."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            path = module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(imported(path))
    return seen


def stage_code(cmd: str, pretext: str) -> set[str]:
    """The project files a stage's command runs: its `python -m` module (and the stage module
    selfsup.launch runs), their imports, and the module of the pretext it loads through the registry
    (get_pretext imports it by name at run time, which no import statement shows)."""
    words = cmd.split()
    modules = [words[words.index("-m") + 1]]
    if modules[0] == "selfsup.launch":
        modules.append(words[words.index("-m") + 2])
    files = closure(modules)
    registry = REPO / "selfsup/pretexts/__init__.py"
    if any(calls(f, "get_pretext") for f in files if f != registry):
        files |= closure([f"selfsup.pretexts.{pretext}"])
    return {f.relative_to(REPO).as_posix() for f in files}


def resolved_stages() -> dict:
    """Every stage of dvc.yaml as DVC resolves it (foreach expanded, ${...} filled in from params.yaml)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return {stage.addressing: stage for stage in repo.index.stages}


def test_the_import_graph_sees_late_imports_and_the_registry(tmp_path):
    files = stage_code("python -m selfsup.launch stages.pretrain exemplar", "exemplar")
    assert {"selfsup/launch.py", "stages/pretrain.py", "selfsup/pretexts/exemplar.py", "selfsup/train.py",
            "selfsup/augment.py"} <= files
    assert "selfsup/pretexts/rotation.py" not in files  # another pretext's module is never loaded
    assert "selfsup/train.py" not in stage_code("python -m stages.evaluate --model m", "none")


def test_every_stage_depends_on_exactly_the_code_it_runs():
    """Exactly, up to one thing DVC imposes: the stages of a foreach share one dep list (with the pretext's
    own module as selfsup/pretexts/${item}.py), so shared code that only some pretext modules import is a
    dep of all of them (e.g. augment.py, which the autoencoder does not use)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = resolved_stages()
    assert {f"pretrain@{p}" for p in params["pretexts"]} <= set(stages)
    code = {name: stage_code(stage.cmd, name.split("@")[1] if "@" in name else params["pretext"])
            for name, stage in stages.items()}
    for name, stage in stages.items():
        declared = {Path(d.def_path).as_posix() for d in stage.deps if d.def_path.endswith(".py")}
        group = name.split("@")[0]
        shared = {f for other, files in code.items() if other.split("@")[0] == group for f in files
                  if not f.startswith("selfsup/pretexts/") or f.endswith("__init__.py")}
        assert code[name] <= declared, f"{name}: missing deps {sorted(code[name] - declared)}"
        assert declared <= code[name] | shared, f"{name}: deps it never runs {sorted(declared - code[name] - shared)}"


@pytest.mark.parametrize("name", ["rotation", "exemplar"])
def test_a_pretrain_stage_does_not_depend_on_the_other_pretexts(name):
    stage = resolved_stages()[f"pretrain@{name}"]
    modules = {d.def_path for d in stage.deps if d.def_path.startswith("selfsup/pretexts/")}
    assert modules == {"selfsup/pretexts/__init__.py", f"selfsup/pretexts/{name}.py"}


def test_params_and_the_registry_load_no_model_code():
    """params.py is imported by every stage; it reads the registry's names without loading a pretext (and
    without torch; params_audit.py needs neither), so there is no import cycle params -> pretexts -> train -> params."""
    loaded = modules_loaded("import selfsup.params, selfsup.pretexts as p; p.names()")
    project = {m for m in loaded if m.startswith(("selfsup", "torch"))}
    assert project == {"selfsup", "selfsup.params", "selfsup.params_audit", "selfsup.pretexts"}
