"""`charflow inspect`: tables for people (rich), JSON for scripts. One function per subcommand."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.table import Table

from artifacts import inspect, leaderboard, upkeep
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


def _figure(value: float | None, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+,.4f}" if signed else f"{value:,.4f}"


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


class AliasesParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    history: bool = Field(False, description="every move (from, to, when, why), not only where each alias is now")


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
    found = inspect.diff(a, b, catalog=ctx.catalog)
    if ctx.emit(found):
        return 0
    rows = [[k, _json(x), _json(y)] for k, (x, y) in found["params"].items()]
    ctx.console.print(_table("parameters", ["parameter", a.key[:12], b.key[:12]], rows))
    if metrics := found.get("metrics"):
        rows = [[k, _figure(m["a"]), _figure(m["b"]), _figure(m["delta"], signed=True)] for k, m in metrics.items()]
        ctx.console.print(_table("figures", ["figure", a.key[:12], b.key[:12], "b - a"], rows))
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
        if found["aliases"]:
            rows = [[x["corpus"], x["name"], x["model"][:12]] for x in found["aliases"]]
            # Gone from the store: `corpus@NAME` fails until another model is promoted.
            ctx.console.print(_table("aliases naming a lost model", ["corpus", "alias", "model"], rows))
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
            ctx.console.print(
                "every artifact matches its manifest, and every recorded output and aliased model is in the store"
            )
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


RUN_COLUMNS = ["corpus", "model", "aliases", "settings", "batches", "epochs", "train ppl", "val ppl"]
RUN_COLUMNS += ["best val (epoch)", "bits/char", "tokens/s", "seconds", "device", "created"]
# A leaderboard is wide: written to a file or a pipe, it is not folded to 80 columns.
WIDE = 200


def _number(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def runs(ctx: Context) -> int:
    params = options.build(ctx.args, leaderboard.RunsParams)
    rows = leaderboard.leaderboard(ctx.catalog.entries(), ctx.args.corpus, params)
    if ctx.emit(rows):
        return 0
    table = [
        [
            r["ref"],
            r["model"][:12],
            ", ".join(r["aliases"]),
            f"{r['kind']} {r['hidden']}x{r['layers']} {r['optimizer']} lr={r['lr']:g}",
            " ".join(str(v) for v in (r["sampler"], r["batch_size"], r["num_steps"]) if v is not None),
            r["epochs"],
            _number(r["perplexity"]),
            _number(r["val_perplexity"]),
            "" if r["best_epoch"] is None else f"{r['best_val_perplexity']:.3f} ({r['best_epoch']})",
            _number(r["bits_per_char"]),
            _number(r["tokens_per_s"], 0),
            _number(r["seconds"], 1),
            r["device"],
            r["created"][:19],
        ]
        for r in rows
    ]
    order = "largest" if params.reverse else "smallest"
    title = f"{len(rows)} runs{' of ' + ctx.args.corpus if ctx.args.corpus else ''}, {order} {params.sort} first"
    if not ctx.console.is_terminal:
        ctx.console.width = WIDE
    ctx.console.print(_table(title, RUN_COLUMNS, table))
    return 0


def aliases(ctx: Context) -> int:
    history = options.build(ctx.args, AliasesParams).history
    rows = leaderboard.aliases_table(ctx.catalog.entries(), ctx.args.corpus, history)
    if ctx.emit(rows):
        return 0
    if history:
        table = [
            [r["corpus"], r["name"], (r["from"] or "(none)")[:12], (r["to"] or "(unset)")[:12], r["when"], r["why"]]
            for r in rows
        ]
        ctx.console.print(
            _table("every alias move, oldest first", ["corpus", "alias", "from", "to", "when", "why"], table)
        )
    else:
        table = [[r["corpus"], r["name"], r["model"][:12], r["since"], r["why"]] for r in rows]
        ctx.console.print(_table("aliases", ["corpus", "alias", "model", "since", "why"], table))
    return 0


def compare(ctx: Context) -> int:
    params = options.build(ctx.args, leaderboard.CompareParams)
    models = [ctx.entry(ref) for ref in ctx.args.models]
    labels = [_label(ref, found) for ref, found in zip(ctx.args.models, models, strict=True)]
    metric, rows = leaderboard.comparison(models, labels, params.metric)
    link = None
    with tempfile.TemporaryDirectory(prefix="charflow-compare-") as scratch:
        if params.chart or params.publish:  # matplotlib loaded only to draw
            from artifacts.charts import comparison_chart

            chart = Path(params.chart) if params.chart else Path(scratch) / "comparison.png"
            comparison_chart(rows, metric, chart)
            link = _publish(chart, metric, rows) if params.publish else None
    found = {"metric": metric, "rows": rows, "chart": params.chart, "published": link}
    if ctx.emit(found):
        return 0
    epochs = sorted({r["epoch"] for r in rows})
    by = {(r["label"], r["epoch"]): r["perplexity"] for r in rows}
    table = [[label, *(_number(by.get((label, e))) for e in epochs)] for label in labels]
    which = "validation" if metric == "val" else "training"
    ctx.console.print(_table(f"{which} perplexity per epoch", ["model", *map(str, epochs)], table))
    if params.chart:
        ctx.console.print(f"chart: {params.chart}")
    if link:
        ctx.console.print(f"published: {link}")
    return 0


def _publish(chart: Path, metric: str, rows: list[dict[str, Any]]) -> str:
    """Published by a flow run on PREFECT_API_URL's server, else on this home's (started or reused as every
    command that runs a flow does)."""
    from charflow.cli import quiet_prefect_console
    from charflow.home_server import prefect_api

    home.check_home(home.charflow_home())
    with prefect_api():
        quiet_prefect_console()
        from flows.compare import publish_comparison

        return publish_comparison(chart, metric, rows)


def _label(ref: str, found: Entry) -> str:
    """A model as a legend names it: its key, and what the reference said when that was a name."""
    return found.key[:12] if found.key.startswith(ref) else f"{ref} ({found.key[:12]})"


SUBCOMMANDS: dict[str, tuple[Callable[[Context], int], str, list[str]]] = {
    "ls": (ls, "corpora, versions and artifacts, newest first", []),
    "show": (show, "an artifact's manifest, Parquet schemas and a decoded view", ["ref"]),
    "lineage": (lineage, "an artifact and every input behind it, down to the source", ["ref"]),
    "diff": (
        diff,
        "what differs between two artifacts (parameters, inputs, vocabulary, a model's figures)",
        ["a", "b"],
    ),
    "runs": (runs, "the leaderboard: every recorded run (of CORPUS), best first, with the aliases naming it", []),
    "compare": (
        compare,
        "models' perplexity per epoch: a table, a chart (--chart), a Prefect artifact (--publish)",
        [],
    ),
    "aliases": (aliases, "each alias and the model it names (--history: every move, from, to, when, why)", []),
    "verify": (verify, "re-hash every artifact, check the catalog's references, list leftovers", []),
    "gc": (gc, "delete what no kept version or model reaches, and abandoned leftovers (a dry run without --yes)", []),
}


# Each action's options, checked before the store is opened: bad input refused before any work.
CHECKED: dict[str, type[BaseModel]] = {
    "runs": leaderboard.RunsParams,
    "compare": leaderboard.CompareParams,
    "aliases": AliasesParams,
    "show": ShowParams,
    "gc": upkeep.GcParams,
}


def _checked(args: argparse.Namespace) -> argparse.Namespace:
    if model := CHECKED.get(args.action):
        options.build(args, model)
    return args


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
        if name in ("runs", "aliases"):
            action.add_argument("corpus", nargs="?", help="only this corpus's (default: every corpus's)")
        if name == "runs":
            options.add_model(action, leaderboard.RunsParams, "runs")
        if name == "aliases":
            options.add_model(action, AliasesParams, "aliases")
        if name == "compare":
            action.add_argument("models", nargs="+", metavar="MODEL", help=SYNTAX + " (jaychou@champion/train)")
            options.add_model(action, leaderboard.CompareParams, "compare")
        if name == "show":
            options.add_model(action, ShowParams, "show")
        if name == "gc":
            options.add_model(action, upkeep.GcParams, "gc")
        action.set_defaults(func=lambda args, run=run: run(Context(_checked(args))))
