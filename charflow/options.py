"""Command-line options generated from the parameter models: each field's type, choices and default come
from its model (one default per setting); only flags, help and parsing of special values live here."""

from __future__ import annotations

import argparse
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    """\\n, \\r, \\t and \\\\ stand for a newline, a return, a tab and a backslash; every other character,
    non-ASCII ones included, stands for itself."""
    return re.sub(r"\\([nrt\\])", lambda m: ESCAPES[m.group(1)], text)


def replacement(spec: str) -> dict[str, str]:
    if "=" not in spec:
        raise argparse.ArgumentTypeError(f"expected OLD=NEW (escapes \\n \\r \\t \\\\ allowed), got {spec!r}")
    old, new = spec.split("=", 1)
    return {"old": unescape(old), "new": unescape(new)}


class AppendRegex(argparse.Action):
    """--regex PATTERN REPLACEMENT: a rule in the same ordered list as --replace, taken as Python `re` takes it."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        rules = list(getattr(namespace, self.dest, None) or [])
        rules.append({"old": values[0], "new": values[1], "regex": True})
        setattr(namespace, self.dest, rules)


def number_or_none(kind: type, what: str) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        if value.lower() in ("none", "all"):
            return None
        try:
            return kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} or 'none', got {value!r}") from None

    return parse


@dataclass(frozen=True)
class Option:
    """How one field is spelled on the command line, where it is not `--field-name VALUE` (its help is the
    field's description)."""

    flag: str | None = None
    metavar: str | tuple[str, ...] | None = None
    parse: Callable[[str], Any] | None = None
    # A fixed number of values in one option (--batch EPOCH BATCH).
    nargs: int | None = None
    # A True-by-default switch is turned off by this flag (drop_last: --keep-last).
    negated: str | None = None
    # A flag that empties a repeatable field, whatever else is given (--no-replace).
    clear: str | None = None
    clear_help: str = ""
    # More flags adding to the same field, with their argparse keywords (--regex beside --replace).
    also: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()


OPTIONS: dict[str, Option] = {
    # ingest
    "errors": Option(flag="--decode-errors"),
    "patterns": Option(flag="--pattern", metavar="GLOB"),
    # clean
    "replacements": Option(
        flag="--replace",
        metavar="OLD=NEW",
        parse=replacement,
        clear="--no-replace",
        clear_help="no replacements at all",
        also=(
            (
                "--regex",
                (
                    ("nargs", 2),
                    ("metavar", ("PATTERN", "REPLACEMENT")),
                    ("action", AppendRegex),
                    ("help", "a Python re rule (re.sub's \\1 in the replacement), repeatable, in order with --replace"),
                ),
            ),
        ),
    ),
    "max_chars": Option(metavar="N", parse=number_or_none(int, "a number of characters")),
    # vocab
    "reserved": Option(metavar="TOKEN"),
    # batches
    "drop_last": Option(negated="--keep-last"),
    # train
    "clip": Option(parse=number_or_none(float, "a number")),
    "cuda_graph": Option(negated="--no-cuda-graph"),
    "prefixes": Option(flag="--prefix"),
    # generate
    "vocab": Option(metavar="KEY"),
    # serve
    "database": Option(metavar="URL"),
    # inspect
    "as_json": Option(flag="--json"),
    "batch": Option(nargs=2, metavar=("EPOCH", "BATCH")),
    # promote, inspect compare
    "alias": Option(flag="--as", metavar="NAME"),
    "chart": Option(metavar="FILE"),
}


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(map(_shown, value)) or "none"
    if isinstance(value, BaseModel) and {"old", "new"} <= set(type(value).model_fields):
        return f"{value.old!r}={value.new!r}"  # a replacement rule, as --replace spells it
    return repr(value) if isinstance(value, str) else str(value)


def _choices(annotation: Any) -> list[Any] | None:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _choices(args[0])
    return None


def _scalar(annotation: Any) -> type:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def add_field(group: Any, name: str, info: FieldInfo) -> None:
    """One field as an option whose absence leaves the model's default in place."""
    option = OPTIONS.get(name, Option())
    help = info.description or ""
    default = info.get_default(call_default_factory=True)
    flag = option.flag or "--" + name.replace("_", "-")
    keywords: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
    if option.negated:
        group.add_argument(option.negated, action="store_false", help=f"turn off {name}: {help}", **keywords)
        return
    if info.annotation is bool:
        group.add_argument(flag, action="store_true", help=help, **keywords)
        return
    if option.nargs:
        keywords["nargs"] = option.nargs
        keywords["type"] = option.parse or _scalar(typing.get_args(_scalar(info.annotation))[0])
    elif typing.get_origin(info.annotation) is tuple:
        keywords["action"] = "append"
        keywords["type"] = option.parse or str
    elif choices := _choices(info.annotation):
        keywords["choices"] = choices
    else:
        keywords["type"] = option.parse or _scalar(info.annotation)
    if "choices" not in keywords:
        keywords["metavar"] = option.metavar or flag.lstrip("-").replace("-", "_").upper()
    shown = "" if default is None else f" (default: {_shown(default)})"  # None: the help says what happens
    group.add_argument(flag, help=f"{help}{shown}".lstrip(), **keywords)
    if option.clear:
        group.add_argument(option.clear, dest=_cleared(name), action="store_true", help=option.clear_help)
    for extra_flag, keywords_of_extra in option.also:
        group.add_argument(extra_flag, dest=name, default=argparse.SUPPRESS, **dict(keywords_of_extra))


def add_model(
    parser: argparse.ArgumentParser, model: type[BaseModel], title: str, skip: set[str] = frozenset()
) -> None:
    group = parser.add_argument_group(title)
    for name, info in model.model_fields.items():
        if name not in skip:
            add_field(group, name, info)


def _cleared(name: str) -> str:
    return f"{name}_cleared"


def given(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The options given for `model`'s fields (repeatable ones as tuples); the model fills in the rest."""
    values = {name: getattr(args, name) for name in model.model_fields if hasattr(args, name)}
    values.update({name: () for name in model.model_fields if getattr(args, _cleared(name), False)})
    return {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}


def build(args: argparse.Namespace, model: type[BaseModel]) -> Any:
    return model(**given(args, model))
