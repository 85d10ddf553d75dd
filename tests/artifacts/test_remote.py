"""The shared object store on real storage: an S3-compatible server (moto, SeaweedFS) and a shared folder
(file:///PATH); each test that holds for both runs on both (`any_shared_backends`).

Two homes stand for two machines: each its own CHARFLOW_HOME folder, both the same URLs.
"""

import pytest

from artifacts import backends, settings
from artifacts.backends import remote_at
from artifacts.manifest import MANIFEST_NAME
from artifacts.remote import RemoteError, RemoteStore
from artifacts.remote_folder import FolderRemote
from artifacts.remote_s3 import S3Remote
from flows.pipeline import PrepareParams, batches
from tasks.fetch import resolve_source
from tasks.vocab import VocabParams
from tests.helpers import machine, prepare_jaychou


def tamper(remote: RemoteStore, path: str, data: bytes | None) -> None:
    """Replace the object at `path` behind the store's back (with None: remove it)."""
    if isinstance(remote, FolderRemote):
        (remote.root / path).unlink()
        if data is not None:
            (remote.root / path).write_bytes(data)
        return
    import obstore

    obstore.delete(remote.store, path)
    if data is not None:
        obstore.put(remote.store, path, data)


def test_the_first_manifest_wins_and_the_second_writer_adopts_it(any_shared_backends, tmp_path, lyrics_zip):
    source = resolve_source(str(lyrics_zip), "jaychou")
    made = batches(machine(tmp_path / "a"), source).stages["vocab"]
    remote = backends.open_store(tmp_path / "a" / "store").remote
    ours = remote.manifest("vocab", made.key)
    later = ours.model_copy(update={"created": "2099-01-01T00:00:00.000+00:00"})
    assert remote.publish(made.path, later) == ours  # the conditional create refused the second manifest
    assert remote.manifest("vocab", made.key) == ours


def test_an_artifact_built_while_the_remote_was_away_is_shared_on_the_next_run(
    any_shared_backends, tmp_path, lyrics_zip
):
    """A manifest that never reached the store (the upload was killed, the store was down) is published by the
    rerun's cache hit, so other machines find it."""
    source = resolve_source(str(lyrics_zip), "jaychou")
    a = machine(tmp_path / "a")
    made = batches(a, source).stages["clean"]
    remote = a.store.remote
    tamper(remote, f"clean/{made.key}/{MANIFEST_NAME}", None)  # as if killed before the manifest
    assert remote.manifest("clean", made.key) is None
    again = batches(a, source).stages["clean"]
    assert again.cache_hit
    assert remote.manifest("clean", made.key) is not None


def test_a_damaged_blob_is_refused_by_the_machine_that_fetches_it(any_shared_backends, tmp_path, lyrics_zip):
    source = resolve_source(str(lyrics_zip), "jaychou")
    made = batches(machine(tmp_path / "a"), source).stages["ingest"]
    remote = backends.open_store(tmp_path / "a" / "store").remote
    blob = remote.manifest("ingest", made.key).files[0].sha256
    tamper(remote, f"blobs/{blob}", b"not the text")
    with pytest.raises(RemoteError, match=r"does not match its digest.*remove it and publish again"):
        backends.open_store(tmp_path / "b" / "store").lookup("ingest", made.key)
    assert not (tmp_path / "b" / "store" / "ingest" / made.key).exists()  # nothing half-fetched is visible


def test_bad_urls_and_credentials_are_refused_before_any_work_naming_the_variable(shared_backends, monkeypatch):
    """(The catalog's half: tests/artifacts/test_catalog_pg.py.)"""
    with pytest.raises(RemoteError, match="is not s3://BUCKET/PREFIX; fix CHARFLOW_STORE_URL"):
        remote_at("s3:///prefix")  # no bucket
    with pytest.raises(RemoteError, match="bucket .* does not exist .*; create it or fix CHARFLOW_STORE_URL"):
        remote_at("s3://no-such-bucket/x").check()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(RemoteError, match=r"http://127.0.0.1:9 failed .*check that it is up.*AWS_ENDPOINT_URL"):
        remote_at(shared_backends["CHARFLOW_STORE_URL"]).check()


def test_refused_credentials_name_the_variables_to_fix(tmp_path, monkeypatch):
    from tests.services import S3_ENV, moto_server

    with moto_server(tmp_path / "moto.log", check_credentials=True) as endpoint:
        for variable, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(variable, value)
        with pytest.raises(
            RemoteError, match="refused the credentials .*fix AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ):
            remote_at("s3://any-bucket/x").check()


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
        assert proc.poll() is None, "the upload never started"
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    b = machine(tmp_path / "b")
    assert b.store.entries(["ingest"]) == []  # nothing half-published is seen
    assert b.catalog.versions() == []
    made = prepare_jaychou(b, lyrics_zip)
    assert not made.stages["ingest"].cache_hit
    assert made.version == 1
    again = prepare_jaychou(machine(tmp_path / "c"), lyrics_zip)
    assert all(ref.cache_hit for ref in again.stages.values())


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


def test_any_other_url_is_refused_naming_it_and_the_forms_accepted(tmp_path, monkeypatch):
    with pytest.raises(RemoteError) as caught:
        remote_at("http://bucket/prefix")
    assert str(caught.value) == (
        "CHARFLOW_STORE_URL='http://bucket/prefix' is not s3://BUCKET/PREFIX or file:///PATH; fix CHARFLOW_STORE_URL"
    )
    monkeypatch.setenv("CHARFLOW_STORE_URL", "ftp://user:hunter2@host/artifacts")
    settings.reset()
    with pytest.raises(RemoteError) as caught:
        backends.open_store(tmp_path / "store")
    assert str(caught.value) == (
        "CHARFLOW_STORE_URL='ftp://user:***@host/artifacts' is not s3://BUCKET/PREFIX or file:///PATH; fix "
        "CHARFLOW_STORE_URL"
    )
    assert not (tmp_path / "store").exists()  # refused before any work
    settings.reset()


def test_each_scheme_opens_its_store(tmp_path):
    assert isinstance(remote_at("s3://bucket/prefix"), S3Remote)
    folder = remote_at((tmp_path / "shared folder").as_uri())
    assert isinstance(folder, FolderRemote)
    assert folder.root == tmp_path / "shared folder"
    assert remote_at("file://localhost/mnt/artifacts").root.as_posix() == "/mnt/artifacts"


def test_a_malformed_or_missing_shared_folder_is_refused_naming_the_variable(tmp_path):
    for url in ("file://otherhost/mnt/artifacts", "file:artifacts"):
        with pytest.raises(RemoteError) as caught:
            remote_at(url)
        assert str(caught.value) == f"CHARFLOW_STORE_URL={url!r} is not file:///PATH; fix CHARFLOW_STORE_URL"
    missing = (tmp_path / "not-mounted").as_uri()
    with pytest.raises(RemoteError) as caught:
        remote_at(missing).check()
    assert str(caught.value) == (
        f"the folder of CHARFLOW_STORE_URL={missing} does not exist; mount or create it, or fix CHARFLOW_STORE_URL"
    )


def test_a_shared_folder_keeps_the_layout_and_leaves_no_partial_file(shared_folder_backends, tmp_path, lyrics_zip):
    made = prepare_jaychou(machine(tmp_path / "a"), lyrics_zip).stages["vocab"]
    shared = tmp_path / "shared-folder"
    manifest = shared / "vocab" / made.key / MANIFEST_NAME
    assert manifest.read_text() == (made.path / MANIFEST_NAME).read_text()
    for entry in backends.open_store(tmp_path / "a" / "store").remote.manifest("vocab", made.key).files:
        assert (shared / "blobs" / entry.sha256).read_bytes() == (made.path / entry.name).read_bytes()
    assert [p.name for p in shared.rglob(".*")] == []
