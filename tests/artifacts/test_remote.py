"""Shared state on real services: artifacts on an S3-compatible server (moto), versions in PostgreSQL.

Two homes stand for two machines: each its own CHARFLOW_HOME folder, both the same URLs.
"""

import concurrent.futures
import json

import pytest

from artifacts import backends, settings
from artifacts.catalog import CatalogError
from artifacts.catalog_pg import PostgresCatalog
from artifacts.manifest import MANIFEST_NAME
from artifacts.remote import RemoteError, RemoteStore, redact
from flows.pipeline import PlainRunner, PrepareParams, batches
from tasks.batches import BatchesParams
from tasks.fetch import resolve_source
from tasks.vocab import VocabParams


def machine(home):
    """A runner of one machine: its own home folder, the shared store and catalog."""
    root = home / "store"
    return PlainRunner(backends.open_store(root), backends.open_catalog(root), root / "downloads")


def test_what_one_machine_prepared_another_finds_as_cache_hits(shared_backends, tmp_path, lyrics_zip):
    source = resolve_source(str(lyrics_zip), "jaychou")
    first = batches(machine(tmp_path / "a"), source, sampler=BatchesParams(epochs=2))
    assert not any(ref.cache_hit for ref in first.stages.values())
    second_machine = machine(tmp_path / "b")
    second = batches(second_machine, source, sampler=BatchesParams(epochs=2))
    assert all(ref.cache_hit for ref in second.stages.values()), {s: r.cache_hit for s, r in second.stages.items()}
    assert {s: r.key for s, r in second.stages.items()} == {s: r.key for s, r in first.stages.items()}
    assert (second.corpus, second.version, second.new_version) == ("jaychou", 1, False)
    # B holds its own copy now, byte for byte A's, with A's manifest.
    for stage, ref in second.stages.items():
        assert ref.path.is_relative_to(tmp_path / "b")
        theirs = first.stages[stage].path
        assert (ref.path / MANIFEST_NAME).read_text() == (theirs / MANIFEST_NAME).read_text()
        for name in json.loads((theirs / MANIFEST_NAME).read_text())["files"]:
            assert (ref.path / name["name"]).read_bytes() == (theirs / name["name"]).read_bytes()
    # A third machine lists what is published without having fetched anything.
    listed = backends.open_store(tmp_path / "c" / "store").entries(["ingest", "vocab", "batches"])
    assert {e.key for e in listed} == {first.stages[s].key for s in ("ingest", "vocab", "batches")}
    assert second_machine.catalog.complete("jaychou") == [1]


def test_the_first_manifest_wins_and_the_second_writer_adopts_it(shared_backends, tmp_path, lyrics_zip):
    source = resolve_source(str(lyrics_zip), "jaychou")
    made = batches(machine(tmp_path / "a"), source).stages["vocab"]
    remote = backends.open_store(tmp_path / "a" / "store").remote
    ours = remote.manifest("vocab", made.key)
    later = ours.model_copy(update={"created": "2099-01-01T00:00:00.000+00:00"})
    assert remote.publish(made.path, later) == ours  # the conditional create refused the second manifest
    assert remote.manifest("vocab", made.key) == ours


def test_an_artifact_built_while_the_remote_was_away_is_shared_on_the_next_run(shared_backends, tmp_path, lyrics_zip):
    """A manifest that never reached the store (the upload was killed, the store was down) is published by the
    rerun's cache hit, so other machines find it."""
    source = resolve_source(str(lyrics_zip), "jaychou")
    a = machine(tmp_path / "a")
    made = batches(a, source).stages["clean"]
    remote = a.store.remote
    import obstore

    obstore.delete(remote.store, f"clean/{made.key}/{MANIFEST_NAME}")  # as if killed before the manifest
    assert remote.manifest("clean", made.key) is None
    again = batches(a, source).stages["clean"]
    assert again.cache_hit and remote.manifest("clean", made.key) is not None


def test_a_damaged_blob_is_refused_by_the_machine_that_fetches_it(shared_backends, tmp_path, lyrics_zip):
    import obstore

    source = resolve_source(str(lyrics_zip), "jaychou")
    made = batches(machine(tmp_path / "a"), source).stages["ingest"]
    remote = backends.open_store(tmp_path / "a" / "store").remote
    blob = remote.manifest("ingest", made.key).files[0].sha256
    obstore.delete(remote.store, f"blobs/{blob}")
    obstore.put(remote.store, f"blobs/{blob}", b"not the text")
    with pytest.raises(RemoteError, match=r"does not match its digest.*remove it and publish again"):
        backends.open_store(tmp_path / "b" / "store").lookup("ingest", made.key)
    assert not (tmp_path / "b" / "store" / "ingest" / made.key).exists()  # nothing half-fetched is visible


def test_two_machines_registering_at_once_make_one_version_per_content(shared_backends):
    url = shared_backends["CHARFLOW_CATALOG_URL"]
    contents = [f"{i:064x}" for i in range(6)]

    def register(sha):
        return PostgresCatalog(url).register("songs", sha, 1, "songs.txt", "k" * 64).version

    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # each its own connection: two machines' worth
        numbers = list(pool.map(register, contents * 3))
    by_content = {}
    for sha, number in zip(contents * 3, numbers, strict=True):
        by_content.setdefault(sha, set()).add(number)
    assert all(len(n) == 1 for n in by_content.values())  # never two numbers for one content
    assert sorted(n.pop() for n in by_content.values()) == [1, 2, 3, 4, 5, 6]  # never one number for two


def test_the_database_refuses_a_second_number_for_one_content_whatever_a_client_does(shared_backends):
    import psycopg

    catalog = PostgresCatalog(shared_backends["CHARFLOW_CATALOG_URL"])
    catalog.register("songs", "a" * 64, 1, "songs.txt", "k" * 64)
    row = {"event": "version", "corpus": "songs", "version": 2, "sha256": "a" * 64}
    with pytest.raises(psycopg.errors.UniqueViolation):
        catalog._append(row)


def test_a_catalog_without_a_shared_store_is_refused(monkeypatch, postgres_url):
    monkeypatch.delenv("CHARFLOW_STORE_URL", raising=False)
    monkeypatch.setenv("CHARFLOW_CATALOG_URL", postgres_url)
    with pytest.raises(backends.BackendError, match="CHARFLOW_CATALOG_URL is set but CHARFLOW_STORE_URL is not"):
        backends.urls()


def test_bad_urls_and_credentials_are_refused_before_any_work_naming_the_variable(shared_backends, monkeypatch):
    with pytest.raises(RemoteError, match="is not s3://BUCKET/PREFIX; fix CHARFLOW_STORE_URL"):
        RemoteStore.from_url("http://bucket/prefix")
    with pytest.raises(RemoteError, match="bucket .* does not exist .*; create it or fix CHARFLOW_STORE_URL"):
        RemoteStore.from_url("s3://no-such-bucket/x").check()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(RemoteError, match=r"http://127.0.0.1:9 failed .*check that it is up.*AWS_ENDPOINT_URL"):
        RemoteStore.from_url(shared_backends["CHARFLOW_STORE_URL"]).check()
    secret = "postgresql://charflow:hunter2@127.0.0.1:9/charflow"
    with pytest.raises(CatalogError, match="cannot reach the catalog database .*fix CHARFLOW_CATALOG_URL") as caught:
        PostgresCatalog(secret).check()
    assert "hunter2" not in str(caught.value) and "charflow:***@127.0.0.1:9" in str(caught.value)
    assert redact(secret) == "postgresql://charflow:***@127.0.0.1:9/charflow"


def test_a_machine_with_other_library_versions_says_which(shared_backends, tmp_path, lyrics_zip, monkeypatch):
    from artifacts import stages
    from flows.pipeline import prepare

    source = resolve_source(str(lyrics_zip), "jaychou")
    prepare(machine(tmp_path / "a"), source)
    vocab = stages.STAGES["vocab"]
    other = {**vocab.libraries_now, "numpy": "0.0.1"}
    monkeypatch.setitem(vocab.__dict__, "libraries_now", other)  # machine B's numpy
    monkeypatch.setattr(stages, "_warned", set())
    events = []
    b = machine(tmp_path / "b")
    b.on_event = events.append
    made = prepare(b, source)
    said = [str(e) for e in events if isinstance(e, stages.OtherLibraries)]
    assert not made.stages["vocab"].cache_hit and made.stages["ingest"].cache_hit
    assert any(s.startswith("numpy 0.0.1 is installed, but vocab artifact") for s in said), said


KILLED_MID_UPLOAD = """
import os, sys, time
from pathlib import Path
import obstore
real_put = obstore.put

def slow_put(store, path, *args, **kwargs):
    result = real_put(store, path, *args, **kwargs)
    if path.startswith("blobs/"):
        Path(sys.argv[2]).write_text(path)  # one blob is up: the test kills us now, before the manifest
        time.sleep(600)
    return result

obstore.put = slow_put
from artifacts import backends
from flows.pipeline import PlainRunner, prepare
from tasks.fetch import resolve_source
from tasks.vocab import VocabParams
root = Path(sys.argv[1]) / "store"
prepare(PlainRunner(backends.open_store(root), backends.open_catalog(root), root / "downloads"),
        resolve_source(sys.argv[3], "jaychou"))
"""


def test_kill_9_mid_upload_leaves_no_visible_artifact_and_the_rerun_completes(shared_backends, tmp_path, lyrics_zip):
    import os
    import signal
    import subprocess
    import sys
    import time

    marker = tmp_path / "uploading"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_UPLOAD, str(tmp_path / "a"), str(marker), str(lyrics_zip)]
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the upload never started"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    b = machine(tmp_path / "b")
    assert b.store.entries(["ingest"]) == [] and b.catalog.versions() == []  # nothing half-published is seen
    made = prepare_jaychou(b, lyrics_zip)
    assert not made.stages["ingest"].cache_hit and made.version == 1
    again = prepare_jaychou(machine(tmp_path / "c"), lyrics_zip)
    assert all(ref.cache_hit for ref in again.stages.values())


def prepare_jaychou(runner, lyrics_zip):
    from flows.pipeline import prepare

    return prepare(runner, resolve_source(str(lyrics_zip), "jaychou"))


def test_the_object_store_going_away_mid_run_names_its_url(shared_backends, tmp_path, lyrics_zip, monkeypatch):
    """A store that stops answering after the first stage: the run fails with one line naming the store, and
    what was published stays published."""
    from tests.services import create_bucket, moto_server

    with moto_server(tmp_path / "moto.log") as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        create_bucket(endpoint, "short-lived")
        monkeypatch.setenv("CHARFLOW_STORE_URL", "s3://short-lived/x")
        settings.reset()
        runner = machine(tmp_path / "a")
        ingested = prepare_jaychou(runner, lyrics_zip).stages["ingest"]
    # The server is gone now.
    from flows.pipeline import prepare

    gone = rf"object store at {endpoint} failed .*s3://short-lived/x.*check that it is up"
    with pytest.raises(RemoteError, match=gone):
        prepare(runner, resolve_source(str(lyrics_zip), "jaychou"), PrepareParams(vocab=VocabParams(order="frequency")))
    assert (runner.store.folder("ingest", ingested.key) / MANIFEST_NAME).is_file()  # this machine's copy is intact


def test_the_database_going_away_mid_run_names_its_url(shared_backends, tmp_path, lyrics_zip, monkeypatch):
    from tests.services import postgres_cluster

    with postgres_cluster() as url:
        monkeypatch.setenv("CHARFLOW_CATALOG_URL", url)
        settings.reset()
        runner = machine(tmp_path / "a")
        made = prepare_jaychou(runner, lyrics_zip)
    # The cluster is stopped now: registering another version cannot be done, and says where it failed.
    from flows.pipeline import prepare

    with pytest.raises(CatalogError, match=rf"catalog database {url} failed while .*check that it is up"):
        prepare(runner, resolve_source(str(lyrics_zip), "jaychou"), PrepareParams(vocab=VocabParams(order="frequency")))
    assert runner.store.remote.manifest("ingest", made.stages["ingest"].key) is not None  # published stays


def test_gc_with_a_shared_store_clears_this_machines_copies_beyond_the_bound(
    shared_backends, tmp_path, lyrics_zip, monkeypatch
):
    from artifacts import upkeep

    a = machine(tmp_path / "a")
    made = prepare_jaychou(a, lyrics_zip)
    sizes = {stage: sum(f.stat().st_size for f in ref.path.iterdir()) for stage, ref in made.stages.items()}
    monkeypatch.setenv("CHARFLOW_CACHE_BYTES", str(sizes["encode"] + sizes["vocab"] + 10_000))
    a.store.lookup("vocab", made.stages["vocab"].key)  # used last: kept
    a.store.lookup("encode", made.stages["encode"].key)
    report = upkeep.gc(a.store, a.catalog, delete=True)
    evicted = {d["stage"] for d in report["artifacts"]}
    assert evicted == {"ingest", "clean"}, report["artifacts"]
    assert not made.stages["ingest"].path.exists() and made.stages["encode"].path.exists()
    assert a.catalog.collected() == set()  # nothing was removed from the shared store
    assert upkeep.verify(a.store, a.catalog)["missing"] == []  # the shared store still holds them
    again = prepare_jaychou(a, lyrics_zip)  # fetched back as cache hits
    assert all(ref.cache_hit for ref in again.stages.values()) and made.stages["ingest"].path.exists()


def test_refused_credentials_name_the_variables_to_fix(tmp_path, monkeypatch):
    from tests.services import S3_ENV, moto_server

    with moto_server(tmp_path / "moto.log", check_credentials=True) as endpoint:
        for variable, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(variable, value)
        with pytest.raises(
            RemoteError, match="refused the credentials .*fix AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ):
            RemoteStore.from_url("s3://any-bucket/x").check()


@pytest.mark.slow
def test_a_crashed_object_store_loses_nothing_published(shared_backends, tmp_path, lyrics_zip, monkeypatch):
    """On SeaweedFS, a real server that keeps its objects on disk: kill -9 the server between two runs, the
    second run fails with one line naming it; restarted, it still holds every artifact, and another machine
    finds them all as cache hits."""
    import os
    import signal

    from flows.pipeline import prepare
    from tests.services import create_bucket, seaweed_server

    other_vocab = PrepareParams(vocab=VocabParams(order="frequency"))
    with seaweed_server(tmp_path / "seaweed") as (endpoint, server, ports):
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        create_bucket(endpoint, "durable")
        monkeypatch.setenv("CHARFLOW_STORE_URL", "s3://durable/charflow")
        settings.reset()
        a = machine(tmp_path / "a")
        first = prepare_jaychou(a, lyrics_zip)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        with pytest.raises(RemoteError, match=rf"object store at {endpoint} failed .*s3://durable/charflow"):
            prepare(a, resolve_source(str(lyrics_zip), "jaychou"), other_vocab)
    with seaweed_server(tmp_path / "seaweed", ports):  # the same folder and ports: the server restarted
        settings.reset()
        b = machine(tmp_path / "b")
        again = prepare_jaychou(b, lyrics_zip)
        assert all(ref.cache_hit for ref in again.stages.values())
        assert {s: r.key for s, r in again.stages.items()} == {s: r.key for s, r in first.stages.items()}
        assert prepare(a, resolve_source(str(lyrics_zip), "jaychou"), other_vocab).stages["vocab"].key


def test_a_damaged_local_copy_is_fetched_again_from_the_shared_store(shared_backends, tmp_path, lyrics_zip):
    a = machine(tmp_path / "a")
    made = prepare_jaychou(a, lyrics_zip).stages["encode"]
    (made.path / "indices.parquet").write_bytes(b"torn")
    again = prepare_jaychou(a, lyrics_zip).stages["encode"]
    assert again.cache_hit and again.key == made.key
    assert a.store.lookup("encode", made.key, thorough=True) is not None  # intact again, not recomputed
