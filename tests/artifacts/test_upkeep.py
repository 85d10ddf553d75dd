"""verify and gc on a real store: damage, lost references, leftovers of killed runs; what gc keeps and why."""

import os
import socket
import subprocess
import sys

from artifacts import upkeep
from flows.pipeline import train_on
from tasks.fetch import resolve_source
from tasks.ingest import IngestParams
from tasks.train.params import TrainParams


def keys(made):
    return {ref.key for ref in made.stages.values()}


def test_verify_names_damage_lost_references_and_leftovers(store):
    runner, first, second = store
    assert upkeep.verify(runner.store, runner.catalog) == {
        "ok": True,
        "damaged": [],
        "missing": [],
        "aliases": [],
        "leftovers": [],
    }
    with first.stages["vocab"].file("vocab.parquet").open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\0\0\0\0")
    first.stages["clean"].file("_manifest.json").write_text("{torn")
    encode = second.stages["encode"]
    for path in encode.path.iterdir():
        path.unlink()
    encode.path.rmdir()
    (runner.store.root / ".work" / "train-abc").mkdir(parents=True)
    found = upkeep.verify(runner.store, runner.catalog)
    assert found["ok"] is False
    assert [(d["stage"], d["problems"]) for d in found["damaged"]] == [
        ("clean", ["_manifest.json: unreadable (JSONDecodeError)"]),
        ("vocab", ["vocab.parquet: sha256 differs from the manifest"]),
    ]
    assert found["missing"] == [{"corpus": "songs", "version": 2, "stage": "encode", "key": encode.key}]
    assert [(x["kind"], x["abandoned"]) for x in found["leftovers"]] == [("checkpoint", False)]


def test_gc_keeps_the_latest_complete_version_and_whatever_a_model_needs(store):
    runner, first, second = store
    dry = upkeep.gc(runner.store, runner.catalog, delete=False, grace=0)
    assert {a["key"] for a in dry["artifacts"]} == keys(first) - keys(second)
    assert upkeep.gc(runner.store, runner.catalog, delete=False)["artifacts"] == []  # all within the grace period
    # A model trained on v1's batches (train --batches, recorded nowhere) keeps them, and what they came from.
    model = train_on(runner, first.stages["batches"].key, TrainParams(model="rnn", hidden=8, prefixes=()))["train"]
    found = upkeep.gc(runner.store, runner.catalog, delete=True, grace=0)
    assert found["artifacts"] == []
    why = {k["key"]: k["why"] for k in found["kept"]}
    assert why[second.stages["vocab"].key] == "songs v2"
    assert why[model.key] == "a model"
    assert why[first.stages["batches"].key] == f"input of train {model.key[:12]}"
    assert upkeep.verify(runner.store, runner.catalog)["ok"]


def test_a_killed_newer_version_does_not_cost_the_last_complete_one(store, tmp_path):
    runner, first, second = store
    song = tmp_path / "songs.txt"
    song.write_text("a third text, whose prepare is killed after ingest", encoding="utf-8")
    fetched = runner.fetch(resolve_source(str(song)), ("*.txt",))
    ingested = runner.stage("ingest", IngestParams(), source=fetched)
    runner.register("songs", fetched, ingested)  # v3 exists; its outputs were never recorded
    found = upkeep.gc(runner.store, runner.catalog, delete=True, grace=0)
    assert {a["key"] for a in found["artifacts"]} == keys(first) - keys(second) | {ingested.key}
    assert keys(second) <= {k["key"] for k in found["kept"]}
    assert upkeep.verify(runner.store, runner.catalog)["ok"]


def test_gc_removes_abandoned_builds_and_checkpoints_only_when_asked(store):
    runner, _, _ = store
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    abandoned = runner.store.root / ".staging" / f"batches-0000@{host}@{dead.pid}@@abcd1234"
    live = runner.store.root / ".staging" / f"batches-0001@{host}@{os.getpid()}@@abcd1234"
    checkpoint = runner.store.root / ".work" / "train-0123"
    for folder in (abandoned, live, checkpoint):
        folder.mkdir(parents=True)
        (folder / "part").write_bytes(b"x" * 10)
    found = upkeep.gc(runner.store, runner.catalog, delete=True)
    assert [x["path"] for x in found["leftovers"]] == [str(abandoned)]
    assert not abandoned.exists()
    assert live.exists()
    assert checkpoint.exists()
    upkeep.gc(runner.store, runner.catalog, delete=True, checkpoints=True)
    assert not checkpoint.exists()
    assert live.exists()


def test_gc_deletes_nothing_while_a_build_runs_and_a_stage_whose_input_went_says_so(store):
    """Was: `inspect gc --yes --grace 0` deleted what a running prepare had just published, and the prepare
    failed with a raw FileNotFoundError."""
    import pytest

    from artifacts.stages import run_stage
    from artifacts.store import StoreError
    from tasks.clean import CleanParams

    runner, first, second = store
    building = runner.store._staging("clean", "c" * 64)  # this process's: a live build
    before = {e.key for e in runner.store.entries(upkeep.STAGES)}
    with pytest.raises(upkeep.GcRefused, match=r"1 build in progress in .* \(clean-cccccccccccccccc\): gc --yes would"):
        upkeep.gc(runner.store, runner.catalog, delete=True, grace=0)
    assert upkeep.gc(runner.store, runner.catalog, delete=False, grace=0)["artifacts"]  # a dry run says what would go
    assert {e.key for e in runner.store.entries(upkeep.STAGES)} == before
    building.rmdir()
    upkeep.gc(runner.store, runner.catalog, delete=True, grace=0)  # v1's artifacts go
    ingested = first.stages["ingest"]
    assert not ingested.path.exists()
    with pytest.raises(StoreError, match=f"the ingest artifact {ingested.key[:12]} that the clean stage reads is gone"):
        run_stage(runner.store, "clean", CleanParams(max_chars=99), text=ingested)
