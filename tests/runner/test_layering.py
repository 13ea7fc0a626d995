"""The runner's packages import one way only, and `runner` never imports `workbench`, ipywidgets or Voilà.

Layers, lowest first (a package may import its own modules and any lower layer, never a higher one or a
sibling of its own layer):

    core ← config ← {sources, inference, tracking, cues, register} ← {rules, outputs} ← pipeline ← service ← tools
    ← cli
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "runner"

LAYERS: dict[str, int] = {
    "core": 0,
    "config": 1,
    "sources": 2,
    "inference": 2,
    "tracking": 2,
    "cues": 2,
    "register": 2,
    "rules": 3,
    "outputs": 3,  # the outbox's dispatcher (MQTT, webhooks): reads the register, started by the service
    "pipeline": 4,
    "service": 5,
    "tools": 6,
    "cli": 7,
}


def runner_modules() -> list[Path]:
    return sorted(path for path in RUNNER.rglob("*.py") if path.name != "__main__.py")


def package_of(module: str) -> str | None:
    """`runner.rules.fire` -> `rules`; `runner` itself (its __init__) -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_runner_modules(path: Path) -> list[tuple[int, str]]:
    """Every `runner.*` module that `path` imports, wherever the import sits (TYPE_CHECKING and functions too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("runner.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "runner":
                found += [(node.lineno, f"runner.{alias.name}") for alias in node.names]
            elif node.module.startswith("runner."):
                found.append((node.lineno, node.module))
    return found


def test_every_runner_package_has_a_layer():
    packages = {path.name for path in RUNNER.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    packages |= {path.stem for path in RUNNER.glob("*.py") if path.stem != "__init__"}
    assert packages == set(LAYERS), "give every runner package a layer in LAYERS"


@pytest.mark.parametrize("path", runner_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path: Path):
    own = package_of(module_name(path))
    violations = []
    for lineno, target in imported_runner_modules(path):
        other = package_of(target)
        if other in (None, "__version__") or other == own:
            continue
        assert other in LAYERS, f"{path.name}:{lineno} imports {target}, which has no layer"
        own_rank = -1 if own is None else LAYERS[own]
        if own is None and other != "core" or own is not None and LAYERS[other] >= own_rank:
            violations.append(f"{path.relative_to(ROOT)}:{lineno} ({own or 'runner'}) imports {target} ({other})")
    assert not violations, "imports against the layers:\n" + "\n".join(violations)


def test_importing_every_runner_module_pulls_no_ui_package():
    modules = sorted(module_name(path) for path in runner_modules())
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'workbench', 'ipywidgets', 'voila', 'anywidget'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(modules) > 30
    assert result.stdout.strip() == ""


def test_the_register_loads_no_rule():
    """Persistence needs no rule implementation: `import runner.register` must not pull `runner.rules`."""
    script = (
        "import sys, runner.register.register\nprint(sorted(m for m in sys.modules if m.startswith('runner.rules')))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
