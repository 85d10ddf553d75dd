"""docs/cli.md, generated: every command and option from the parser (itself generated from the parameter
models), every deployment's flat parameters from the flows, and every CHARFLOW_* variable from the settings
model. `python -m charflow.reference --write` rewrites the file; a test fails when it is stale."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path

from artifacts.settings import Settings, variable

PATH = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
WIDTH = "100"  # argparse wraps usage lines to $COLUMNS: fixed, so the file is the same on every terminal


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()}`"
    metavar = action.metavar
    if action.nargs == 0:
        shown = ""
    elif action.choices is not None and metavar is None:
        shown = " {" + ",".join(map(str, action.choices)) + "}"
    elif isinstance(metavar, tuple):
        shown = " " + " ".join(metavar)
    else:
        shown = " " + (metavar or action.dest.upper())
    return ", ".join(f"`{flag}{shown}`" for flag in action.option_strings)


def _command(title: str, help: str, parser: argparse.ArgumentParser, depth: int) -> list[str]:
    lines = [f"{'#' * depth} `{title}`", "", _cell(help), "", "```", parser.format_usage().strip(), "```", ""]
    rows = [
        f"| {_flags(action)} | {_cell(action.help or '')} |"
        for group in parser._action_groups
        for action in group._group_actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
    ]
    if rows:
        lines += ["| option | meaning |", "| --- | --- |", *rows, ""]
    for name, sub_help, sub in _subcommands(parser):
        lines += _command(f"{title} {name}", sub_help, sub, depth + 1)
    return lines


def _deployments() -> list[str]:
    from flows.batches import batches
    from flows.prepare import prepare
    from flows.reingest import reingest
    from flows.sweep import sweep
    from flows.train import train, train_batches

    lines = [
        "## Flow and deployment parameters",
        "",
        "Every flow takes flat parameters, each the option of the same name above "
        "(`prefect deployment run train/default --param epochs=20 --param sampler=consecutive`).",
        "",
        "| flow | parameters |",
        "| --- | --- |",
    ]
    for flow in (prepare, batches, train, train_batches, reingest, sweep):
        lines.append(f"| `{flow.name}` | {', '.join(f'`{p}`' for p in inspect.signature(flow.fn).parameters)} |")
    return [*lines, ""]


def _environment() -> list[str]:
    lines = ["## Environment", "", "| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "unset" if default in (None, ()) else f"`{default}`"
        lines.append(f"| `{variable(name)}` | {shown} | {_cell(field.description or '')} |")
    return [*lines, ""]


def render() -> str:
    from charflow.cli import build_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        lines = [
            "# Command-line reference",
            "",
            "Generated from the parameter models by `python -m charflow.reference --write`: do not edit by hand.",
            "",
        ]
        for name, help, sub in _subcommands(parser):
            lines += _command(f"charflow {name}", help, sub, 2)
        lines += _deployments() + _environment()
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        PATH.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
