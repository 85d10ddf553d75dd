"""Aliases: a name per corpus for one of its models (`champion`), moved by `charflow promote` and by the quality
gate, and accepted in references as `corpus@NAME/train`. Every move is an entry of the catalog (from, to, when,
why): the history is the entries, and the alias is where the last move left it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from artifacts.catalog import Catalog, Entry
from tasks.errors import ParameterError

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
# Names a version already: an alias named so would make `corpus@NAME` mean two things.
VERSION_LIKE = re.compile(r"latest|v?\d+")


class AliasError(ParameterError):
    """An alias name that cannot be one, or a move that cannot be made."""


class AliasMove(BaseModel):
    """One move of an alias: `model` None unsets it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: str
    name: str
    model: str | None
    previous: str | None
    why: str
    created: str


def check_name(name: str) -> str:
    if VERSION_LIKE.fullmatch(name):
        raise AliasError(
            f"{name!r} names a version (latest, a number or v<number>), so it cannot be an alias; choose a word "
            "such as champion"
        )
    if not NAME.fullmatch(name):
        raise AliasError(
            f"{name!r} is not an alias name: a letter, then letters, digits, '_', '.' or '-' (64 at most), "
            "e.g. champion"
        )
    return name


def is_alias(version: str) -> bool:
    """`corpus@version`'s part names an alias rather than a version."""
    return version not in ("", "latest") and not VERSION_LIKE.fullmatch(version)


def moves_of(entries: list[Entry], corpus: str | None = None, name: str | None = None) -> list[AliasMove]:
    """Every move (of `corpus`'s alias `name`), oldest first."""
    return [
        AliasMove.model_validate({k: v for k, v in e.items() if k != "event"})
        for e in entries
        if e.get("event") == "alias"
        and (corpus is None or e["corpus"] == corpus)
        and (name is None or e["name"] == name)
    ]


def aliases_of(entries: list[Entry], corpus: str | None = None) -> dict[tuple[str, str], str]:
    """(corpus, name) -> the model key each alias names now (unset ones left out)."""
    now: dict[tuple[str, str], str | None] = {}
    for move in moves_of(entries, corpus):
        now[(move.corpus, move.name)] = move.model
    return {where: model for where, model in now.items() if model is not None}


def move_entry(entries: list[Entry], corpus: str, name: str, model: str | None, why: str) -> Entry | None:
    """The entry moving `corpus`'s alias `name` to `model` (None: unset), from wherever it is now; none when it
    is there already. Decided under the catalog's writers' lock, so two moves at once leave no gap: the second
    one's `previous` is the first one's model."""
    now = aliases_of(entries, corpus)
    previous = now.get((corpus, check_name(name)))
    if model is None and previous is None:
        have = ", ".join(sorted(n for _, n in now)) or "none"
        raise AliasError(f"{corpus} has no alias {name!r} to unset; its aliases: {have}")
    if previous == model:
        return None
    move = AliasMove(
        corpus=corpus,
        name=name,
        model=model,
        previous=previous,
        why=why,
        created=datetime.now(UTC).isoformat(timespec="milliseconds"),
    )
    return {"event": "alias", **move.model_dump()}


def move(catalog: Catalog, corpus: str, name: str, model: str | None, why: str) -> AliasMove | None:
    """Move the alias (one write, whatever other machines do at once); the move made, or None when it named
    that model already."""
    entry = catalog.append(lambda entries: move_entry(entries, corpus, name, model, why))
    return None if entry is None else AliasMove.model_validate({k: v for k, v in entry.items() if k != "event"})
