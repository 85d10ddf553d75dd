"""The quality gate's decisions: a new version's model scored against the model an alias names (the champion)
on the same characters (`tasks.gate`'s fair comparison), and the alias moved only when the new one is not worse
by more than the tolerance. Each decision is one catalog entry ("decision"), appended under the writers' lock:
a version is decided once per alias (unless asked again), and a decision to promote whose move a kill cut off
is completed by the next run, never decided anew.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from artifacts import aliases, runs
from artifacts.aliases import AliasMove
from artifacts.batches import BatchesSummary
from artifacts.catalog import Catalog, Entry
from artifacts.model import TrainSummary, load_model
from artifacts.refs import resolve
from artifacts.store import ArtifactRef, Store
from artifacts.text import iter_text
from artifacts.vocab import read_vocab
from tasks.batches import BatchesParams
from tasks.encode import lookup_table
from tasks.errors import CharflowError, ParameterError
from tasks.evaluate import cut
from tasks.gate import (
    SAMPLE_TEMPERATURE,
    UNKNOWN_BITS,
    GateParams,
    Tally,
    Verdict,
    reading,
    tally,
    verdict,
    vocab_change,
)
from tasks.vocab import code_points

SHOWN = 10  # characters named of those a vocabulary gained or lost


class GateError(ParameterError):
    """Gate settings that cannot work: refused before any work."""


class GateFailure(CharflowError):
    """A decision that cannot be made: the champion's artifact is gone, the text is too short."""


def check_gate(gate: GateParams, train: bool, sampler: BatchesParams) -> None:
    """The gate's settings against the run's, before any work."""
    if gate.promote is None:
        if gate.eval_source is not None:
            raise GateError("--eval-source is the text the quality gate compares models on: add --promote NAME")
        return
    aliases.check_name(gate.promote)
    if not train:
        raise GateError(f"--promote {gate.promote} moves an alias to each new version's model: add --train")
    if sampler.val_fraction <= 0 and gate.eval_source is None:
        raise GateError(
            f"--promote {gate.promote} compares the new model and the champion on held-out text: keep the new "
            "version's tail with --val-fraction (e.g. 0.1), or give --eval-source FILE"
        )


class Scored(BaseModel):
    """One model on the compared characters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    version: int | None  # the corpus version it is a run of
    vocab: str  # its vocabulary's key
    vocab_size: int
    checkpoint: str  # the weights scored: the model's default
    charged: int  # characters charged the unknown charge (outside its vocabulary)
    bits: float  # summed over the compared characters
    bits_per_char: float
    perplexity: float  # 2 ** bits_per_char
    sample: str  # drawn from the decision's prefix and seed


class Decision(BaseModel):
    """Whether `corpus`@`version`'s model took the alias, and the evidence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: str
    version: int
    alias: str
    verdict: Verdict  # first: no champion yet; promoted; rejected (the champion stays)
    model: str  # the new model
    champion: str | None  # the model the alias named when deciding
    new: Scored
    held: Scored | None  # the champion's figures (None: no champion)
    tolerance: float
    text: str  # the text compared, in words
    text_key: str  # its clean artifact
    start: int  # [start, end): its characters compared
    end: int
    characters: int  # predictions compared: every character of [start, end) but the first
    unknown_bits: float  # the charge for a character a model cannot encode
    added: int  # characters the new model's vocabulary has and the champion's lacks
    removed: int  # the other way
    added_shown: list[str]
    removed_shown: list[str]
    prefix: str
    seed: int
    temperature: float
    message: str
    created: str

    @property
    def moves(self) -> bool:
        return self.verdict != "rejected"


def decisions_of(entries: list[Entry], corpus: str | None = None, alias: str | None = None) -> list[Decision]:
    """Every decision (of `corpus`, for `alias`), oldest first."""
    return [
        Decision.model_validate({k: v for k, v in e.items() if k != "event"})
        for e in entries
        if e.get("event") == "decision"
        and (corpus is None or e["corpus"] == corpus)
        and (alias is None or e["alias"] == alias)
    ]


def decided(entries: list[Entry], corpus: str, version: int, alias: str) -> Decision | None:
    """The last decision made for the version and alias, if any."""
    found = [d for d in decisions_of(entries, corpus, alias) if d.version == version]
    return found[-1] if found else None


def decision_entry(entries: list[Entry], decision: Decision, again: bool) -> Entry | None:
    """The entry recording `decision`: none when the version is decided already for that alias (another run
    decided meanwhile) unless asked `again`."""
    if not again and decided(entries, decision.corpus, decision.version, decision.alias) is not None:
        return None
    return {"event": "decision", **decision.model_dump(mode="json")}


def carried_out(catalog: Catalog, decision: Decision) -> AliasMove | None:
    """The decision's move, made unless the alias has moved since the decision was recorded (its own move made
    already, or another by hand or by another run: that stands); None when there is nothing to move."""
    if not decision.moves:
        return None

    def rule(entries: list[Entry]) -> Entry | None:
        recorded = [
            n
            for n, e in enumerate(entries)
            if e.get("event") == "decision"
            and (e["corpus"], e["version"], e["alias"], e["created"])
            == (decision.corpus, decision.version, decision.alias, decision.created)
        ]
        if not recorded:
            return None
        later = entries[recorded[-1] + 1 :]
        if aliases.moves_of(later, decision.corpus, decision.alias):
            return None
        return aliases.move_entry(entries, decision.corpus, decision.alias, decision.model, decision.message)

    entry = catalog.append(rule)
    return None if entry is None else AliasMove.model_validate({k: v for k, v in entry.items() if k != "event"})


@dataclass(frozen=True)
class Decided:
    """A decision, whether this run made it (False: recorded before), and the alias move this run made."""

    decision: Decision
    made: bool
    move: AliasMove | None


@dataclass(frozen=True)
class Compared:
    """The text both models read: its clean artifact, and the range of its characters."""

    text: ArtifactRef
    start: int
    end: int
    described: str


def _characters(compared: Compared) -> np.ndarray:
    chunks = cut(iter_text(compared.text.path), compared.start, compared.end)
    parts = [code_points(chunk).astype(np.int64) for chunk in chunks]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)  # (chars,)


def _score(
    store: Store, catalog: Catalog, model: ArtifactRef, codes: np.ndarray, prefix: str, seed: int, chars: int
) -> tuple[Scored, Tally, list[str]]:
    """A model's tally over the characters, and its sample; with its vocabulary's characters."""
    import torch

    from tasks.encode import EncodeError
    from tasks.gate_scoring import row_bits
    from tasks.train.generate import sample_texts

    trained = TrainSummary.of(model)
    vocab = read_vocab(resolve(store, catalog, trained.vocab_key, "vocab", verify=True).path)
    batches = resolve(store, catalog, trained.batches_key, "batches", verify=True)
    num_steps = BatchesSummary.of(batches).spec.num_steps
    ids = np.take(lookup_table(vocab), codes, mode="wrap")  # (chars,) int32, -1 outside the vocabulary
    read = reading(ids, vocab.unk)
    net, device = load_model(model.path, vocab, "auto")
    counted = tally(read, row_bits(net, read.stream, num_steps=num_steps, device=device))
    try:
        drawn = {"temperature": SAMPLE_TEMPERATURE, "seed": seed}
        sample = sample_texts(net, vocab, prefix, chars, device, **drawn)[0]
    except EncodeError:
        sample = f"(its vocabulary cannot encode the prefix {prefix!r})"
    del net
    if device.type == "cuda":
        torch.cuda.empty_cache()
    scored = Scored(
        model=model.key,
        version=_version(catalog.entries(), model.key),
        vocab=trained.vocab_key,
        vocab_size=len(vocab),
        checkpoint=trained.checkpoint,
        charged=counted.charged,
        bits=counted.bits,
        bits_per_char=counted.bits_per_char,
        perplexity=counted.perplexity,
        sample=sample,
    )
    return scored, counted, vocab.tokens[vocab.reserved :]


def _version(entries: list[Entry], model: str) -> int | None:
    return next((run.version for run in runs.runs_of(entries) if run.model == model), None)


def _shown(chars: Iterable[str]) -> list[str]:
    return list(chars)[:SHOWN]


def message_of(
    corpus: str, version: int, alias: str, verdict_: Verdict, new: Scored, held: Scored | None, **how: Any
) -> str:
    """The decision in one line: the numbers, the characters and the charge."""
    on = (
        f"on the same {how['characters']:,} characters of {how['text']} (a character outside a vocabulary costs "
        f"{UNKNOWN_BITS:.3f} bits: {new.charged:,} for the new model"
        + ("" if held is None else f", {held.charged:,} for {alias}")
        + ")"
    )
    mine = f"model {new.model[:12]} of v{version}: perplexity {new.perplexity:.4f} ({new.bits_per_char:.4f} bits/char)"
    if held is None:
        return f"{alias} of {corpus}: promoted, the first model (no {alias} yet): {mine} {on}"
    bound = held.perplexity * (1 + how["tolerance"])
    theirs = f"{alias} {held.model[:12]}" + (f" of v{held.version}" if held.version is not None else "")
    theirs += f": perplexity {held.perplexity:.4f} ({held.bits_per_char:.4f} bits/char)"
    if verdict_ == "promoted":
        return f"{alias} of {corpus}: promoted: {mine} <= {bound:.4f} ({theirs}, tolerance {how['tolerance']:g}) {on}"
    return (
        f"{alias} of {corpus}: rejected, {held.model[:12]} stays {alias}: {mine} > {bound:.4f} ({theirs}, "
        f"tolerance {how['tolerance']:g}) {on}"
    )


def decide(
    store: Store,
    catalog: Catalog,
    corpus: str,
    version: int,
    model: ArtifactRef,
    compared: Compared,
    gate: GateParams,
    prefix: str,
    seed: int,
) -> Decided:
    """Decide once per (corpus, version, alias): score the new model and the champion on the compared
    characters, record the decision (one entry), then move the alias where it says so. A decision recorded
    already is carried out (its move, if a kill cut it off) and returned, unless `gate.redecide`."""
    alias = gate.promote
    if alias is None:
        raise ValueError("decide needs gate.promote: the alias to move")
    entries = catalog.entries()
    if not gate.redecide and (before := decided(entries, corpus, version, alias)) is not None:
        return Decided(before, made=False, move=carried_out(catalog, before))
    champion_key = aliases.aliases_of(entries, corpus).get((corpus, alias))
    codes = _characters(compared)
    if len(codes) < 2:
        raise GateFailure(
            f"the text compared ({compared.described}) has {len(codes)} character(s): at least 2 are needed; "
            "give a larger --val-fraction or a longer --eval-source"
        )
    new, new_tally, new_chars = _score(store, catalog, model, codes, prefix, seed, gate.sample_chars)
    held = held_tally = None
    added: list[str] = []
    removed: list[str] = []
    if champion_key is not None:
        try:
            champion = resolve(store, catalog, champion_key, "train", verify=True)
        except CharflowError as exc:
            raise GateFailure(
                f"{alias} of {corpus} names model {champion_key[:12]}, which cannot be read ({exc}); move {alias} "
                f"to a model that exists (charflow promote) or unset it, then run again"
            ) from None
        if champion.key == model.key:
            held, held_tally, old_chars = new, new_tally, new_chars
        else:
            held, held_tally, old_chars = _score(store, catalog, champion, codes, prefix, seed, gate.sample_chars)
        change = vocab_change(old_chars, new_chars)
        added, removed = list(change.added), list(change.removed)
    said = verdict(new_tally, held_tally, gate.tolerance)
    how = {"characters": new_tally.characters, "text": compared.described, "tolerance": gate.tolerance}
    decision = Decision(
        corpus=corpus,
        version=version,
        alias=alias,
        verdict=said,
        model=model.key,
        champion=champion_key,
        new=new,
        held=held,
        tolerance=gate.tolerance,
        text=compared.described,
        text_key=compared.text.key,
        start=compared.start,
        end=compared.end,
        characters=new_tally.characters,
        unknown_bits=UNKNOWN_BITS,
        added=len(added),
        removed=len(removed),
        added_shown=_shown(added),
        removed_shown=_shown(removed),
        prefix=prefix,
        seed=seed,
        temperature=SAMPLE_TEMPERATURE,
        message=message_of(corpus, version, alias, said, new, held, **how),
        created=datetime.now(UTC).isoformat(timespec="milliseconds"),
    )
    entry = catalog.append(lambda entries: decision_entry(entries, decision, gate.redecide))
    if entry is None:  # another run decided this version meanwhile: its decision stands
        other = decided(catalog.entries(), corpus, version, alias)
        assert other is not None
        return Decided(other, made=False, move=carried_out(catalog, other))
    return Decided(decision, made=True, move=carried_out(catalog, decision))
