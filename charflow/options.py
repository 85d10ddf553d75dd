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
    """How one field is spelled on the command line, where it is not `--field-name VALUE`."""

    help: str = ""
    flag: str | None = None
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    # A True-by-default switch is turned off by this flag (drop_last: --keep-last).
    negated: str | None = None
    # A flag that empties a repeatable field, whatever else is given (--no-replace).
    clear: str | None = None
    clear_help: str = ""
    # More flags adding to the same field, with their argparse keywords (--regex beside --replace).
    also: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()


OPTIONS: dict[str, Option] = {
    # ingest
    "errors": Option(
        "strict: invalid UTF-8 is an error naming the file and byte offset; replace: U+FFFD", flag="--decode-errors"
    ),
    "patterns": Option("text file / zip member pattern, repeatable", flag="--pattern", metavar="GLOB"),
    "max_uncompressed_bytes": Option("cap on a zip's expanded size"),
    # clean
    "replacements": Option(
        "replacement, repeatable, applied in order",
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
    "max_match": Option(
        "the most characters a rule's match may read from where it starts, lookahead included, and the "
        "longest run that normalising or lowercasing holds back (characters)"
    ),
    "max_chars": Option(
        "keep the first N characters, or 'none'", metavar="N", parse=number_or_none(int, "a number of characters")
    ),
    "normalize": Option("Unicode normalisation"),
    "lowercase": Option("lowercase the text"),
    # vocab
    "order": Option("vocabulary order: by code point, or by descending count"),
    "reserved": Option("reserved token such as '<unk>', repeatable", metavar="TOKEN"),
    "min_count": Option("rarer characters map to <unk>"),
    # batches
    "sampler": Option("the book's random or consecutive minibatches"),
    "batch_size": Option("rows per batch"),
    "num_steps": Option("time steps per row"),
    "seed": Option("the sampler's and the model's seed"),
    "epochs": Option("epochs of batches (and of training)"),
    "drop_last": Option(negated="--keep-last", help="keep a partial last batch (random sampling)"),
    "random_offset": Option("a seeded start offset per epoch"),
    "materialize": Option(
        "write every batch's rows as Parquet shards, not just the token stream (8 bytes a token an epoch)"
    ),
    "max_shard_rows": Option("rows per Parquet shard, at most (with --materialize)"),
    "val_fraction": Option("hold out the sequence's tail for validation"),
    # train
    "model": Option("scratch is the book's RNN written out; the others are torch.nn layers"),
    "hidden": Option("hidden units"),
    "layers": Option("recurrent layers"),
    "dropout": Option("dropout between layers"),
    "optimizer": Option("the optimizer"),
    "lr": Option("learning rate"),
    "clip": Option("global gradient-norm bound, or 'none'", parse=number_or_none(float, "a number")),
    "device": Option("auto: CUDA when present"),
    "nproc": Option("processes to train on together (torchrun, DDP: gloo on CPU, NCCL on GPUs)"),
    "precision": Option("bf16: autocast for large models on a GPU; fp32 reproduces the book"),
    "cuda_graph": Option(
        negated="--no-cuda-graph", help="on CUDA, step eagerly instead of replaying a captured graph (same numbers)"
    ),
    "pred_period": Option("sample every N epochs"),
    "prefixes": Option("prediction prefix, repeatable", flag="--prefix"),
    "pred_chars": Option("characters to predict after each prefix"),
    "checkpoint_every": Option("epochs between checkpoints"),
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
    default = info.get_default(call_default_factory=True)
    flag = option.flag or "--" + name.replace("_", "-")
    keywords: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
    if option.negated:
        group.add_argument(option.negated, action="store_false", help=option.help, **keywords)
        return
    if info.annotation is bool:
        group.add_argument(flag, action="store_true", help=option.help, **keywords)
        return
    if typing.get_origin(info.annotation) is tuple:
        keywords["action"] = "append"
        keywords["type"] = option.parse or str
    elif choices := _choices(info.annotation):
        keywords["choices"] = choices
    else:
        keywords["type"] = option.parse or _scalar(info.annotation)
    if "choices" not in keywords:
        keywords["metavar"] = option.metavar or flag.lstrip("-").replace("-", "_").upper()
    group.add_argument(flag, help=f"{option.help} (default: {_shown(default)})".lstrip(), **keywords)
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
