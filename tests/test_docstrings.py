"""House habit: every public function and method documents its arguments and what it returns.

Google style: an `Args:` section when it takes arguments (besides self/cls), a `Returns:` (or `Yields:`) section
when it returns something. Private names, members of private classes, nested functions, properties and pydantic
validators are exempt.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runner", "workbench")
EXEMPT_DECORATORS = {"property", "cached_property", "setter", "overload", "field_validator", "model_validator"}


def decorator_names(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, ast.Attribute):
            names.add(target.attr)
    return names


def missing_sections(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    arguments = function.args
    names = [a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
    names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
    takes_arguments = any(name not in ("self", "cls") for name in names)
    returns = function.returns is not None and not (
        isinstance(function.returns, ast.Constant) and function.returns.value is None
    )
    doc = ast.get_docstring(function) or ""
    missing = []
    if takes_arguments and "Args:" not in doc:
        missing.append("Args")
    if returns and "Returns:" not in doc and "Yields:" not in doc:
        missing.append("Returns")
    return missing


def undocumented(path: Path) -> list[str]:
    found = []

    def visit(node: ast.AST, private_scope: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, private_scope or child.name.startswith("_"))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                public = not child.name.startswith("_") and not private_scope
                if public and not decorator_names(child) & EXEMPT_DECORATORS:
                    missing = missing_sections(child)
                    if missing:
                        found.append(f"{path.relative_to(ROOT)}:{child.lineno} {child.name}: {' and '.join(missing)}")

    visit(ast.parse(path.read_text(), filename=str(path)), private_scope=False)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_public_functions_document_args_and_returns(package: str):
    problems = [problem for path in sorted((ROOT / package).rglob("*.py")) for problem in undocumented(path)]
    assert not problems, f"{len(problems)} public functions without Args:/Returns: sections:\n" + "\n".join(problems)
