"""`charflow inspect`: tables for people (rich), JSON for scripts. One function per subcommand."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.table import Table

from artifacts import inspect, upkeep
from artifacts.backends import describe, open_catalog, open_store
from artifacts.refs import SYNTAX, resolve
from artifacts.store import Entry
from charflow import options
from flows import home
from tasks.errors import CharflowError


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _table(title: str, columns: list[str], rows: list[list[object]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class InspectError(CharflowError):
    """An inspection asked of the wrong kind of artifact."""


class Output(BaseModel):
    """How every inspect action answers; given before the action or after it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_json: bool = Field(False, description="JSON instead of tables")
    yes: bool = Field(False, description="gc: really delete")


class ShowParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch: tuple[int, int] | None = Field(None, description="batches: decode this batch (the first when not given)")


class Context:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.store = open_store(home.store_root())
        self.catalog = open_catalog(home.store_root())
        self.console = Console()

    def entry(self, ref: str) -> Entry:
        # Verified: a damaged artifact is named as such (its decoding would fail with a raw traceback).
        return inspect.entry(resolve(self.store, self.catalog, ref, verify=True))

    def emit(self, value: Any) -> bool:
        """Print `value` as JSON when --json was given; say whether it was."""
        as_json = options.build(self.args, Output).as_json
        if as_json:
            print(inspect.dumps(value))
        return as_json


def ls(ctx: Context) -> int:
    found = {"backend": describe(), **inspect.listing(ctx.store, ctx.catalog)}
    if ctx.emit(found):
        return 0
    ctx.console.print(found["backend"])
    for corpus, versions in sorted(found["corpora"].items()):
        rows = [
            [f"v{v['version']}", v["sha256"][:12], _size(v["size"]), v["created"], v["source"]]
            for v in sorted(versions, key=lambda v: -v["version"])
        ]
        ctx.console.print(_table(f"corpus {corpus}", ["version", "sha256", "size", "created", "source"], rows))
    rows = [[a["stage"], a["key"][:12], a["created"], f"{a['rows']:,}", _size(a["size"])] for a in found["artifacts"]]
    ctx.console.print(_table("artifacts, newest first", ["stage", "key", "created", "rows", "size"], rows))
    return 0


def show(ctx: Context) -> int:
    entry = ctx.entry(ctx.args.ref)
    batch = options.build(ctx.args, ShowParams).batch
    if batch and entry.stage != "batches":
        raise InspectError(f"--batch shows a batch of a batches artifact; {entry.stage} {entry.key[:12]} is not one")
    shown = inspect.show(ctx.store, entry, batch)
    if ctx.emit(shown):
        return 0
    ctx.console.print(f"[bold]{entry.stage}[/bold] {entry.key}\n{shown['path']}")
    ctx.console.print_json(_json(shown["manifest"]))
    for name, schema in shown["schemas"].items():
        ctx.console.print(f"[bold]{name}[/bold]\n{schema}")
    ctx.console.print_json(_json(shown["view"]))
    return 0


def lineage(ctx: Context) -> int:
    chain = inspect.lineage(ctx.store, ctx.entry(ctx.args.ref))
    if ctx.emit(chain):
        return 0
    rows = [[c["stage"], c["key"][:12], json.dumps(c["params"], ensure_ascii=False)] for c in chain]
    ctx.console.print(_table("lineage", ["stage", "key", "params"], rows))
    return 0


def diff(ctx: Context) -> int:
    a, b = ctx.entry(ctx.args.a), ctx.entry(ctx.args.b)
    found = inspect.diff(a, b)
    if ctx.emit(found):
        return 0
    rows = [[k, _json(x), _json(y)] for k, (x, y) in found["params"].items()]
    ctx.console.print(_table("parameters", ["parameter", a.key[:12], b.key[:12]], rows))
    if vocab := found.get("vocab"):
        ctx.console.print(f"added: {''.join(vocab['added'])!r}\nremoved: {''.join(vocab['removed'])!r}")
        rows = [[c["token"], f"{c['change']:+,}"] for c in vocab["largest_count_changes"]]
        ctx.console.print(_table("largest count changes", ["token", "change"], rows))
    return 0


def verify(ctx: Context) -> int:
    found = upkeep.verify(ctx.store, ctx.catalog)
    if not ctx.emit(found):
        ctx.console.print(describe())
        if found["damaged"]:
            rows = [[b["stage"], b["key"][:12], "; ".join(b["problems"])] for b in found["damaged"]]
            ctx.console.print(_table("damaged artifacts", ["stage", "key", "problems"], rows))
        if found["missing"]:
            rows = [[m["corpus"], f"v{m['version']}", m["stage"], m["key"][:12]] for m in found["missing"]]
            ctx.console.print(
                _table("recorded in the catalog, gone from the store", ["corpus", "version", "stage", "key"], rows)
            )
        if found["leftovers"]:
            rows = [
                [x["kind"], x["path"], _size(x["size"]), "yes" if x["abandoned"] else "no"] for x in found["leftovers"]
            ]
            ctx.console.print(
                _table(
                    "leftovers (charflow inspect gc --yes removes the abandoned ones)",
                    ["kind", "path", "size", "abandoned"],
                    rows,
                )
            )
        if found["ok"]:
            ctx.console.print("every artifact matches its manifest, and every recorded output is in the store")
    return 0 if found["ok"] else 1


def gc(ctx: Context) -> int:
    delete = options.build(ctx.args, Output).yes
    params = options.build(ctx.args, upkeep.GcParams)
    found = upkeep.gc(ctx.store, ctx.catalog, delete, **params.model_dump())
    if ctx.emit(found):
        return 0
    verb = "deleted" if delete else "would delete (dry run; --yes to delete)"
    rows = [[d["stage"], d["key"][:12], _size(d["size"]), d["created"]] for d in found["artifacts"]]
    ctx.console.print(_table(f"{len(rows)} unreachable artifacts: {verb}", ["stage", "key", "size", "created"], rows))
    if found["leftovers"]:
        rows = [[x["kind"], x["path"], _size(x["size"])] for x in found["leftovers"]]
        ctx.console.print(_table(f"{len(rows)} leftovers: {verb}", ["kind", "path", "size"], rows))
    rows = [[k["stage"], k["key"][:12], k["why"]] for k in found["kept"]]
    ctx.console.print(_table(f"{len(rows)} artifacts kept", ["stage", "key", "why"], rows))
    return 0


SUBCOMMANDS: dict[str, tuple[Callable[[Context], int], str, list[str]]] = {
    "ls": (ls, "corpora, versions and artifacts, newest first", []),
    "show": (show, "an artifact's manifest, Parquet schemas and a decoded view", ["ref"]),
    "lineage": (lineage, "an artifact and every input behind it, down to the source", ["ref"]),
    "diff": (diff, "what differs between two artifacts (parameters, inputs, vocabulary)", ["a", "b"]),
    "verify": (verify, "re-hash every artifact, check the catalog's references, list leftovers", []),
    "gc": (gc, "delete what no kept version or model reaches, and abandoned leftovers (a dry run without --yes)", []),
}


def add_parser(commands: argparse._SubParsersAction) -> None:
    # Before the action or after it: `inspect --json ls` and `inspect ls --json` alike.
    shared = argparse.ArgumentParser(add_help=False)
    options.add_model(shared, Output, "output")
    parser = commands.add_parser(
        "inspect", parents=[shared], help="list, show, trace, compare, verify and clean the store"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    for name, (run, help, refs) in SUBCOMMANDS.items():
        action = actions.add_parser(name, parents=[shared], help=help)
        for ref in refs:
            action.add_argument(ref, help=SYNTAX + " (jaychou@latest/vocab)")
        if name == "show":
            options.add_model(action, ShowParams, "show")
        if name == "gc":
            options.add_model(action, upkeep.GcParams, "gc")
        action.set_defaults(func=lambda args, run=run: run(Context(args)))
