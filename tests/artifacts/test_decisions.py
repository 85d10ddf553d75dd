"""The quality gate's decisions in the catalog, without Prefect: the first model takes the alias, a later one is
scored against it on the same characters (a character its vocabulary lacks charged), a version is decided once,
a decision whose move a kill cut off is carried out by the next run, and a move made since stands."""

from __future__ import annotations

import pytest

from artifacts import aliases
from artifacts.catalog import JsonlCatalog
from artifacts.catalog_pg import PostgresCatalog
from artifacts.decisions import Compared, Decided, Decision, carried_out, decide, decided, decision_entry, decisions_of
from artifacts.text import TextSummary
from flows.pipeline import plain_runner, train
from tasks.batches import BatchesParams
from tasks.evaluate import EvaluateParams, evaluated_range
from tasks.fetch import resolve_source
from tasks.gate import UNKNOWN_BITS, GateParams
from tasks.train.params import TrainParams

SPEC = BatchesParams(batch_size=4, num_steps=8, epochs=5, val_fraction=0.2)
GOOD = TrainParams(hidden=32, device="cpu", pred_period=100, prefixes=("我",))
GATE = GateParams(promote="champion")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, lyrics_text):
    """songs v1, then v2 (a snowman more: a character v1's vocabulary lacks, in v2's tail), each with a model;
    v2's trained with a tiny learning rate too (a worse model)."""
    root = tmp_path_factory.mktemp("gate")
    runner = plain_runner(root / "store")
    song = root / "songs.txt"
    song.write_text(lyrics_text[:1000], encoding="utf-8")
    first = train(runner, resolve_source(str(song)), sampler=SPEC, training=GOOD)
    song.write_text(lyrics_text[:1000] + "☃", encoding="utf-8")
    second = train(runner, resolve_source(str(song)), sampler=SPEC, training=GOOD)
    worse = train(runner, resolve_source(str(song)), sampler=SPEC, training=GOOD.model_copy(update={"lr": 1e-4}))
    return root, runner, first, second, worse


def tail(made) -> Compared:
    clean = made.stages["clean"]
    start, end = evaluated_range(TextSummary.of(clean).chars, EvaluateParams(split="val"), SPEC.val_fraction)
    return Compared(clean, start, end, f"v{made.version}'s validation tail")


def decide_on(runner, made, gate: GateParams = GATE) -> Decided:
    return decide(
        runner.store, runner.catalog, made.corpus, made.version, made.stages["train"], tail(made), gate, "我", 0
    )


@pytest.mark.slow
def test_the_first_model_is_promoted_then_a_version_is_decided_once(trained, tmp_path):
    root, _, first, _, _ = trained
    runner = plain_runner(root / "store")
    runner.catalog = JsonlCatalog(tmp_path)  # a catalog of its own: the models' runs are not in it
    made = decide_on(runner, first)
    decision = made.decision
    assert made.made
    assert made.move is not None
    assert (decision.verdict, decision.champion, decision.held) == ("first", None, None)
    assert decision.characters == 199  # v1's tail: its last 200 characters, every one but the first predicted
    assert (decision.start, decision.end) == (800, 1000)
    assert decision.new.charged == 0
    assert decision.message.startswith("champion of songs: promoted, the first model (no champion yet): model ")
    assert aliases.aliases_of(runner.catalog.entries()) == {("songs", "champion"): first.stages["train"].key}
    again = decide_on(runner, first)
    assert (again.made, again.move, again.decision) == (False, None, decision)
    assert len(decisions_of(runner.catalog.entries())) == 1
    redone = decide_on(runner, first, GATE.model_copy(update={"redecide": True}))
    assert redone.made
    assert redone.decision.verdict == "promoted"
    assert len(decisions_of(runner.catalog.entries())) == 2


@pytest.mark.slow
def test_a_better_model_is_promoted_a_worse_one_rejected_on_the_same_characters(trained, tmp_path):
    root, _, first, second, worse = trained
    runner = plain_runner(root / "store")
    runner.catalog = JsonlCatalog(tmp_path)
    decide_on(runner, first)
    rejected = decide_on(runner, worse).decision  # v2 with a tiny learning rate
    assert rejected.verdict == "rejected"
    assert rejected.champion == first.stages["train"].key
    assert rejected.held is not None
    assert rejected.held.model == first.stages["train"].key
    assert rejected.new.perplexity > rejected.held.perplexity * 1.02
    assert rejected.characters == 199  # v2's tail: its last 200 characters, the snowman last
    assert (rejected.new.charged, rejected.held.charged) == (0, 1)  # v1's vocabulary lacks the snowman
    assert (rejected.added, rejected.removed, rejected.added_shown) == (1, 0, ["☃"])
    assert rejected.unknown_bits == UNKNOWN_BITS
    assert ", 1 for champion)" in rejected.message
    assert "rejected, " in rejected.message
    assert aliases.aliases_of(runner.catalog.entries())[("songs", "champion")] == first.stages["train"].key
    # v2 is decided: its better model, trained since, is not decided again without --redecide
    assert decide_on(runner, second).decision == rejected
    promoted = decide_on(runner, second, GATE.model_copy(update={"redecide": True})).decision
    assert promoted.verdict == "promoted"
    assert promoted.new.perplexity <= promoted.held.perplexity * 1.02
    assert promoted.held.bits == rejected.held.bits  # the champion scored alike both times
    assert aliases.aliases_of(runner.catalog.entries())[("songs", "champion")] == second.stages["train"].key
    moves = aliases.moves_of(runner.catalog.entries(), "songs", "champion")
    assert [m.model for m in moves] == [first.stages["train"].key, second.stages["train"].key]
    assert moves[-1].why == promoted.message


@pytest.mark.slow
def test_a_decision_whose_move_a_kill_cut_off_is_carried_out_and_a_move_since_stands(trained, tmp_path):
    root, _, first, second, _ = trained
    runner = plain_runner(root / "store")
    runner.catalog = JsonlCatalog(tmp_path)
    decision = decide_on(runner, first).decision
    # As if killed between the decision's entry and the move: the second version's decision alone.
    cut = decision.model_copy(update={"version": 2, "model": second.stages["train"].key, "champion": decision.model})
    runner.catalog.append(lambda entries: decision_entry(entries, cut, again=False))
    made = decide_on(runner, second)
    assert (made.made, made.decision) == (False, cut)
    assert made.move is not None
    assert made.move.model == second.stages["train"].key
    assert len(decisions_of(runner.catalog.entries())) == 2
    # Moved by hand since: a decision carried out late does not undo it.
    aliases.move(runner.catalog, "songs", "champion", first.stages["train"].key, "by hand")
    assert carried_out(runner.catalog, cut) is None
    assert aliases.aliases_of(runner.catalog.entries())[("songs", "champion")] == first.stages["train"].key


@pytest.mark.parametrize("backend", ["jsonl", "postgres"])
def test_a_version_is_decided_once_on_either_catalog(request, tmp_path, backend):
    catalog = (
        JsonlCatalog(tmp_path) if backend == "jsonl" else PostgresCatalog(request.getfixturevalue("catalog_database"))
    )
    side = {"model": "m2", "version": 2, "vocab": "v", "vocab_size": 3, "checkpoint": "last", "charged": 0}
    side |= {"bits": 4.0, "bits_per_char": 2.0, "perplexity": 4.0, "sample": "ab"}
    decision = Decision.model_validate(
        {
            "corpus": "c", "version": 2, "alias": "champion", "verdict": "first", "model": "m2", "champion": None,
            "new": side, "held": None, "tolerance": 0.02, "text": "t", "text_key": "k", "start": 0, "end": 3,
            "characters": 2, "unknown_bits": UNKNOWN_BITS, "added": 0, "removed": 0, "added_shown": [],
            "removed_shown": [], "prefix": "a", "seed": 0, "temperature": 1.0, "message": "m", "created": "now",
        }
    )  # fmt: skip
    assert catalog.append(lambda entries: decision_entry(entries, decision, again=False)) is not None
    assert catalog.append(lambda entries: decision_entry(entries, decision, again=False)) is None
    assert decided(catalog.entries(), "c", 2, "champion") == decision
    assert catalog.append(lambda entries: decision_entry(entries, decision, again=True)) is not None
    assert len(decisions_of(catalog.entries(), "c", "champion")) == 2
