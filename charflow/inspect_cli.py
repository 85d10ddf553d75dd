"""`charflow inspect`: tables for people (rich), JSON for scripts."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from artifacts import inspect as store_inspect
from charflow import settings


def _size(n: int) -> str:
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


def run(args: argparse.Namespace) -> int:
    root = settings.store_root()
    console = Console()
    emit = (lambda value: print(store_inspect.dumps(value))) if args.json else None
    if args.action == "ls":
        found = store_inspect.listing(root)
        if emit:
            return emit(found) or 0
        for corpus, versions in sorted(found["corpora"].items()):
            console.print(
                _table(
                    f"corpus {corpus}",
                    ["version", "sha256", "size", "created", "source"],
                    [
                        [f"v{v['version']}", v["sha256"][:12], _size(v["size"]), v["created"], v["source"]]
                        for v in sorted(versions, key=lambda v: -v["version"])
                    ],
                )
            )
        console.print(
            _table(
                "artifacts, newest first",
                ["stage", "key", "created", "rows", "size"],
                [
                    [a["stage"], a["key"][:12], a["created"], f"{a['rows']:,}", _size(a["size"])]
                    for a in found["artifacts"]
                ],
            )
        )
        return 0
    if args.action == "verify":
        bad = store_inspect.verify(root)
        if emit:
            emit({"ok": not bad, "damaged": bad})
        elif bad:
            console.print(
                _table(
                    "damaged artifacts",
                    ["stage", "key", "problems"],
                    [[b["stage"], b["key"][:12], "; ".join(b["problems"])] for b in bad],
                )
            )
        else:
            console.print("every artifact matches its manifest")
        return 1 if bad else 0
    if args.action == "gc":
        doomed = store_inspect.gc(root, delete=args.yes)
        if emit:
            return emit({"deleted": args.yes, "artifacts": doomed}) or 0
        verb = "deleted" if args.yes else "would delete (dry run; --yes to delete)"
        console.print(
            _table(
                f"{len(doomed)} unreachable artifacts: {verb}",
                ["stage", "key", "size", "created"],
                [[d["stage"], d["key"][:12], _size(d["size"]), d["created"]] for d in doomed],
            )
        )
        return 0
    entries = [store_inspect.resolve(root, ref) for ref in args.refs]
    expected = {"show": 1, "lineage": 1, "diff": 2}[args.action]
    if len(entries) != expected:
        raise ValueError(f"inspect {args.action} takes {expected} reference(s), got {len(entries)}")
    if args.action == "show":
        shown = store_inspect.show(root, entries[0])
        if emit:
            return emit(shown) or 0
        console.print(f"[bold]{entries[0].stage}[/bold] {entries[0].key}\n{shown['path']}")
        console.print_json(json.dumps(shown["manifest"], ensure_ascii=False, default=str))
        for name, schema in shown["schemas"].items():
            console.print(f"[bold]{name}[/bold]\n{schema}")
        console.print_json(json.dumps(shown["view"], ensure_ascii=False, default=str))
        return 0
    if args.action == "lineage":
        chain = store_inspect.lineage(root, entries[0])
        if emit:
            return emit(chain) or 0
        console.print(
            _table(
                "lineage",
                ["stage", "key", "params"],
                [[c["stage"], c["key"][:12], json.dumps(c["params"], ensure_ascii=False)] for c in chain],
            )
        )
        return 0
    found = store_inspect.diff(root, *entries)
    if emit:
        return emit(found) or 0
    console.print(
        _table(
            "parameters",
            ["parameter", entries[0].key[:12], entries[1].key[:12]],
            [
                [k, json.dumps(a, ensure_ascii=False), json.dumps(b, ensure_ascii=False)]
                for k, (a, b) in found["params"].items()
            ],
        )
    )
    if "vocab" in found:
        vocab = found["vocab"]
        console.print(f"added: {''.join(vocab['added'])!r}\nremoved: {''.join(vocab['removed'])!r}")
        console.print(
            _table(
                "largest count changes",
                ["token", "change"],
                [[c["token"], f"{c['change']:+,}"] for c in vocab["largest_count_changes"]],
            )
        )
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("inspect", help="list, show, trace, compare, verify and clean the store")
    parser.add_argument("action", choices=["ls", "show", "lineage", "diff", "verify", "gc"])
    parser.add_argument(
        "refs", nargs="*", help="key, key prefix, folder, or corpus@version/stage (jaychou@latest/vocab)"
    )
    parser.add_argument("--yes", action="store_true", help="gc: really delete")
    parser.add_argument("--json", action="store_true", help="JSON instead of tables")
    parser.set_defaults(func=run)
