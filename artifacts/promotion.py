"""`charflow promote`: name one of a corpus's models (`champion`), or unset the name; every move is kept in the
catalog (artifacts/aliases.py). The model becomes a run first if it never was, so the leaderboard shows it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from artifacts import aliases, runs
from artifacts.aliases import AliasError, AliasMove
from artifacts.catalog import Catalog
from artifacts.refs import resolve
from artifacts.store import Store


class PromoteParams(BaseModel):
    """`charflow promote MODEL --as NAME` moves an alias to a model; `charflow promote CORPUS@NAME --unset`
    unsets it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alias: str | None = Field(
        None, description="the alias to move to MODEL: a word such as champion (not latest, a number or v<number>)"
    )
    unset: bool = Field(False, description="unset the alias CORPUS@NAME given instead of a model")
    why: str = Field("", description="why: kept with the move in the alias's history")

    @field_validator("alias")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else aliases.check_name(value)

    @model_validator(mode="after")
    def _one_way(self) -> PromoteParams:
        if self.unset == (self.alias is not None):
            raise AliasError(
                "promote takes MODEL --as NAME (move the alias to the model) or CORPUS@NAME --unset (unset it), "
                "one of the two"
            )
        return self


def unset_target(target: str) -> tuple[str, str]:
    """`corpus@NAME` of `promote --unset`: (corpus, name)."""
    corpus, at, name = target.partition("@")
    name = name.removesuffix("/train")
    if not (corpus and at and name):
        raise AliasError(f"--unset takes the alias as CORPUS@NAME (e.g. jaychou@champion), not {target!r}")
    return corpus, aliases.check_name(name)


def promote(store: Store, catalog: Catalog, model_ref: str, name: str, why: str) -> tuple[AliasMove | None, str, str]:
    """Move `name` of the model's corpus to the model `model_ref` names (recorded as a run first if it never
    was): (the move, or None when the alias named it already; the corpus; the model key)."""
    ref = resolve(store, catalog, model_ref, "train", verify=True)
    found = runs.version_of(catalog.entries(), ref.key)
    if found is None:
        raise AliasError(
            f"model {ref.key[:12]} is recorded against no corpus version (trained on batches no version records), "
            "so no corpus can name it; train it with charflow run or train --batches CORPUS@VERSION/batches"
        )
    corpus, version = found
    runs.record_run(catalog, store, corpus, version, ref)
    return aliases.move(catalog, corpus, name, ref.key, why), corpus, ref.key


def unset(catalog: Catalog, target: str, why: str) -> AliasMove:
    """Unset `corpus@NAME`; refused when it names no model."""
    corpus, name = unset_target(target)
    moved = aliases.move(catalog, corpus, name, None, why)  # an alias that names nothing is refused there
    assert moved is not None
    return moved


def describe(move: AliasMove) -> str:
    """A move as one line: where the alias was and where it is now."""
    before = move.previous[:12] if move.previous else "(none)"
    after = move.model[:12] if move.model else "(unset)"
    why = f" ({move.why})" if move.why else ""
    return f"{move.corpus}@{move.name}: {before} -> {after}{why}"
