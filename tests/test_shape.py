"""The shape a maintainer can live in: short modules and short signatures (what travels together is one object:
a Runtime, a Plan, a Progress, a Start)."""

import ast

import pytest

from tests.conftest import REPO

FILES = sorted([*REPO.joinpath("selfsup").rglob("*.py"), *REPO.joinpath("stages").glob("*.py")])
MAX_LINES, MAX_PARAMETERS = 400, 8


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_is_long_and_no_function_takes_many_parameters(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path.name}: split it (at most {MAX_LINES} lines)"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
            assert count <= MAX_PARAMETERS, f"{path.name}: {node.name} takes {count} parameters"
