"""Code fingerprints: a stage's module and the project modules it imports, by their syntax trees."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

PROJECT_PACKAGES = frozenset({"tasks", "artifacts", "flows", "charflow"})


def normalized_source(source: str) -> str:
    """The module's syntax tree without docstrings: comments and formatting do not count."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0] if body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _imported_modules(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            # `from pkg import mod` may name a submodule.
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def _module_file(name: str) -> Path | None:
    """The module's source file, found on disk from its top package: importing a module to find it would run
    it (`artifacts.charts` imports matplotlib), for every key."""
    top, *rest = name.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    if not rest:
        return Path(spec.origin)
    if not spec.submodule_search_locations:
        return None  # a name inside a plain module (`from tasks.vocab import Vocab`)
    base = Path(spec.origin).parent.joinpath(*rest)
    for path in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_closure(modules: Iterable[str], packages: frozenset[str] = PROJECT_PACKAGES) -> dict[str, Path]:
    """The given modules and every project module they import, transitively."""
    found: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in found or name.split(".")[0] not in packages:
            continue
        path = _module_file(name)
        if path is None:
            continue
        found[name] = path
        todo.extend(_imported_modules(_tree(path), name, path.name == "__init__.py"))
    return found


@cache
def _parsed(source: str) -> ast.Module:
    """Parsed once per distinct source text: the stages share most of their modules. Not to be mutated."""
    return ast.parse(source)


@cache
def _normalized(source: str) -> str:
    return normalized_source(source)


def _tree(path: Path) -> ast.Module:
    return _parsed(path.read_text(encoding="utf-8"))


def function_source(name: str) -> str:
    """`module:function`: that top-level function's (or class's) normalized syntax tree alone."""
    module, function = name.split(":")
    path = _module_file(module)
    if path is None:
        raise ValueError(f"no Python source for module {module!r}")
    for node in _tree(path).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == function:
            return normalized_source(ast.unparse(node))
    raise ValueError(f"{module} has no top-level {function!r}")


@cache
def code_fingerprint(modules: tuple[str, ...], packages: frozenset[str] = PROJECT_PACKAGES) -> str:
    """Whole modules with their project imports; `module:function` entries by that function alone.

    Remembered in the home (`code-fingerprints.json`) with the files it read, by their size, times and inode:
    parsing the stages' modules costs 0.4 s, on every command that keys a stage.
    """
    # Where the packages are found is part of the entry: two checkouts may share one home.
    entry = json.dumps([sorted(modules), sorted(packages), _package_origins(packages)])
    remembered = _remembered().get(entry)
    if remembered and all(_signature(Path(file[0])) == file for file in remembered["files"]):
        return remembered["fingerprint"]
    whole = module_closure([name for name in modules if ":" not in name], packages)
    parts = {name: _normalized(path.read_text(encoding="utf-8")) for name, path in whole.items()}
    parts.update({name: function_source(name) for name in modules if ":" in name})
    digest = hashlib.sha256()
    for name, source in sorted(parts.items()):
        digest.update(name.encode() + b"\0" + source.encode() + b"\0")
    files = [*whole.values(), *(_module_file(name.split(":")[0]) for name in modules if ":" in name)]
    read = sorted(_signature(file) for file in files if file is not None)
    _remember(entry, {"files": read, "fingerprint": digest.hexdigest()})
    return digest.hexdigest()


def _package_origins(packages: frozenset[str]) -> list[str | None]:
    origins = []
    for package in sorted(packages):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        origins.append(spec.origin if spec else None)
    return origins


def _signature(path: Path) -> list:
    try:
        stat = path.stat()
    except OSError:
        return [str(path)]
    return [str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def _cache_file() -> Path:
    from artifacts.settings import environment

    return environment().home / "code-fingerprints.json"


def _remembered() -> dict[str, dict]:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _remember(entry: str, value: dict) -> None:
    """Merged into what other processes remembered meanwhile; never creates the home (a cache: best effort)."""
    path = _cache_file()
    if not path.parent.is_dir():
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        partial.write_text(json.dumps({**_remembered(), entry: value}))
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
