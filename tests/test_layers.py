"""The packages are layers, each importing only those below it: `tasks/` (pure stage work) under `artifacts/`
(storage) under `flows/` (Prefect) under `charflow/` (the command line). Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What each package must never import (its top-level name, at any depth of the module).
FORBIDDEN = {
    "tasks": {"artifacts", "flows", "charflow", "prefect"},
    "artifacts": {"flows", "charflow", "prefect"},
    "flows": {"charflow"},
}
# Within tasks/, the stages in pipeline order: each reads what the ones before it hand on (tasks.sources is what
# fetch hands ingest), never a later one's module.
STAGE_ORDER = ["fetch", "ingest", "clean", "vocab", "encode", "batches", "train"]


def imported(path: Path) -> set[str]:
    """The absolute names a module imports (relative imports stay within its own package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
    return names


def crossings(package: str) -> list[str]:
    """`module imports name` for each import of a forbidden layer."""
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        for name in sorted(imported(path)):
            if name.split(".")[0] in FORBIDDEN[package]:
                found.append(f"{path.relative_to(REPO)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_a_layer_above_it(package):
    assert crossings(package) == []


def test_no_stage_imports_a_later_stage():
    later_than = {stage: {f"tasks.{s}" for s in STAGE_ORDER[n + 1 :]} for n, stage in enumerate(STAGE_ORDER)}
    found = []
    for stage in STAGE_ORDER:
        package = REPO / "tasks" / stage
        paths = sorted(package.rglob("*.py")) if package.is_dir() else [package.with_suffix(".py")]
        for path in paths:
            for name in sorted(imported(path)):
                if any(name == later or name.startswith(later + ".") for later in later_than[stage]):
                    found.append(f"{path.relative_to(REPO)} imports {name}")
    assert found == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from charflow.cli import main\n    import flows.home\n")
    assert imported(module) == {"charflow.cli", "flows.home"}
