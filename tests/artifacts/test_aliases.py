"""Aliases: the names they may have, their moves and history, references through them, what gc keeps and verify
reports for them, and two machines promoting at once on the PostgreSQL catalog."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from artifacts import promotion, upkeep
from artifacts.aliases import AliasError, aliases_of, check_name, is_alias, move, moves_of
from artifacts.catalog_pg import PostgresCatalog
from artifacts.refs import RefError, resolve
from flows.pipeline import train_on
from tasks.train.params import TrainParams

TINY = TrainParams(model="rnn", hidden=8, prefixes=())
OTHER = TrainParams(model="rnn", hidden=8, seed=1, prefixes=())


@pytest.mark.parametrize("name", ["champion", "Best-2026", "a", "prod.v2", "x_y"])
def test_a_word_is_an_alias_name(name):
    assert check_name(name) == name
    assert is_alias(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("latest", "'latest' names a version"),
        ("3", "'3' names a version"),
        ("v12", "'v12' names a version"),
        ("2nd", "'2nd' is not an alias name: a letter, then"),
        ("a b", "'a b' is not an alias name"),
        ("a/b", "'a/b' is not an alias name"),
        ("", "'' is not an alias name"),
        ("x" * 65, "is not an alias name"),
    ],
)
def test_version_like_and_malformed_names_are_refused(name, message):
    with pytest.raises(AliasError, match=message):
        check_name(name)
    with pytest.raises(ValidationError, match=message):  # the CLI's options: refused before any work
        promotion.PromoteParams(alias=name)


def test_moves_are_kept_with_their_previous_model_and_an_unset_ends_the_alias(tmp_path):
    from artifacts.catalog import JsonlCatalog

    catalog = JsonlCatalog(tmp_path)
    first = move(catalog, "songs", "champion", "a" * 64, "first")
    assert (first.model, first.previous, first.why) == ("a" * 64, None, "first")
    assert move(catalog, "songs", "champion", "a" * 64, "again") is None  # named it already: no entry
    second = move(catalog, "songs", "champion", "b" * 64, "better")
    move(catalog, "other", "champion", "c" * 64, "")
    assert aliases_of(catalog.entries()) == {("songs", "champion"): "b" * 64, ("other", "champion"): "c" * 64}
    gone = promotion.unset(catalog, "songs@champion", "retired")
    assert (gone.model, gone.previous) == (None, "b" * 64)
    assert aliases_of(catalog.entries(), "songs") == {}
    history = [(m.previous, m.model, m.why) for m in moves_of(catalog.entries(), "songs", "champion")]
    assert history == [(None, "a" * 64, "first"), ("a" * 64, "b" * 64, "better"), ("b" * 64, None, "retired")]
    assert second.created <= gone.created
    with pytest.raises(AliasError, match="songs has no alias 'champion' to unset; its aliases: none"):
        promotion.unset(catalog, "songs@champion", "")
    with pytest.raises(AliasError, match="--unset takes the alias as CORPUS@NAME"):
        promotion.unset(catalog, "songs", "")


def test_references_through_an_alias_and_the_refusal_of_a_version_with_several_models(store):
    runner, first, _ = store
    batches = first.stages["batches"].key
    a = train_on(runner, batches, TINY)["train"]
    b = train_on(runner, batches, OTHER)["train"]
    with pytest.raises(RefError) as refused:
        resolve(runner.store, runner.catalog, "songs@1/train")
    assert str(refused.value) == (
        f"songs@v1 has 2 models ({a.key[:12]}, {b.key[:12]}): name one by its key, or promote one (charflow "
        "promote KEY --as champion) and use songs@champion/train; charflow inspect runs songs compares them"
    )
    with pytest.raises(RefError, match=r"songs has no version or alias 'champion'; versions: v1, v2; aliases: none"):
        resolve(runner.store, runner.catalog, "songs@champion/train")
    moved, corpus, key = promotion.promote(runner.store, runner.catalog, b.key[:10], "champion", "seed 1")
    assert (moved.previous, moved.model, corpus, key) == (None, b.key, "songs", b.key)
    assert resolve(runner.store, runner.catalog, "songs@champion/train").key == b.key
    assert resolve(runner.store, runner.catalog, "songs@champion").key == b.key
    assert resolve(runner.store, runner.catalog, "songs@champion/batches").key == batches
    assert resolve(runner.store, runner.catalog, "songs@champion/vocab").key == first.stages["vocab"].key
    with pytest.raises(RefError, match="an alias names a model: songs@champion/train, /batches or /vocab, not /clean"):
        resolve(runner.store, runner.catalog, "songs@champion/clean")
    assert promotion.promote(runner.store, runner.catalog, "songs@champion/train", "champion", "")[0] is None


def test_gc_keeps_an_aliased_model_and_its_lineage_and_verify_reports_an_alias_whose_model_is_gone(store):
    runner, first, second = store
    model = train_on(runner, first.stages["batches"].key, TINY)["train"]
    promotion.promote(runner.store, runner.catalog, model.key, "champion", "")
    found = upkeep.gc(runner.store, runner.catalog, delete=True, grace=0)
    why = {k["key"]: k["why"] for k in found["kept"]}
    assert why[model.key] == "alias songs@champion"
    # v1 is not the latest complete version: only the alias keeps its model's lineage, down to the ingest.
    assert why[first.stages["batches"].key] == f"input of train {model.key[:12]}"
    for stage in ("vocab", "encode", "clean", "ingest"):
        assert why[first.stages[stage].key].startswith("input of ")
    assert found["artifacts"] == []
    assert upkeep.verify(runner.store, runner.catalog)["aliases"] == []
    shutil.rmtree(model.path)
    found = upkeep.verify(runner.store, runner.catalog)
    assert found["ok"] is False
    assert found["aliases"] == [{"corpus": "songs", "name": "champion", "model": model.key}]


PROMOTER = """
import sys
from artifacts.aliases import move
from artifacts.catalog_pg import PostgresCatalog

catalog = PostgresCatalog(sys.argv[1])
for i in range(10):
    move(catalog, "songs", "champion", f"{sys.argv[2]}{i}".ljust(64, "0"), f"machine {sys.argv[2]}, move {i}")
"""


def test_two_machines_promoting_at_once_leave_one_history_without_gaps(catalog_database):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    machines = [
        subprocess.Popen([sys.executable, "-c", PROMOTER, catalog_database, machine], env=env, stderr=subprocess.PIPE)
        for machine in ("a", "b")
    ]
    for proc in machines:
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()[-2000:]
    history = moves_of(PostgresCatalog(catalog_database).entries(), "songs", "champion")
    assert len(history) == 20  # every move a new model: none lost, none doubled
    assert history[0].previous is None
    assert all(m.previous == before.model for before, m in zip(history, history[1:], strict=False))
    assert sorted(m.why for m in history) == sorted(f"machine {x}, move {i}" for x in "ab" for i in range(10))
