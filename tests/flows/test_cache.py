"""The cache policy: Prefect's key is the stage's content key, and a record whose artifact is gone, or whose
result this process's Prefect cannot read, is dropped."""

import json
from pathlib import Path

import pytest

from artifacts.stages import STAGES
from flows.cache import ContentKeyPolicy
from flows.home import store_root
from flows.pipeline import plain_runner, prepare
from tasks.fetch import resolve_source
from tasks.vocab import VocabParams


@pytest.fixture
def local_storage(tmp_path):
    """Prefect's result storage for this test alone (the session's holds other tests' real results)."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    storage = tmp_path / "results"
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}):
        yield storage


def test_the_key_is_the_content_key_and_a_record_without_its_artifact_is_dropped(home, tmp_path, local_storage):
    song = tmp_path / "song.txt"
    song.write_text("la la la", encoding="utf-8")
    prepared = prepare(plain_runner(store_root()), resolve_source(str(song)))
    records = tmp_path / "records"
    records.mkdir()
    policy = ContentKeyPolicy(stage="vocab", key_storage=records)
    inputs = {"inputs": {"text": prepared.stages["clean"]}, "params": VocabParams()}
    key = policy.compute_key(None, inputs, {})
    assert key == STAGES["vocab"].key(inputs["inputs"], inputs["params"]) == prepared.stages["vocab"].key
    write_record(records / key, local_storage / key)
    assert policy.compute_key(None, inputs, {}) == key
    assert (records / key).exists()
    # Written under another PREFECT_HOME (the user's own Prefect program on this home): Prefect here would raise
    # "Provided path ... is outside of the base path" instead of recomputing.
    write_record(records / key, tmp_path / "their-prefect" / "storage" / key)
    assert policy.compute_key(None, inputs, {}) == key
    assert not (records / key).exists()
    (records / key).write_text("torn")
    policy.compute_key(None, inputs, {})
    assert not (records / key).exists()
    write_record(records / key, local_storage / key)
    for path in prepared.stages["vocab"].path.iterdir():
        path.unlink()
    assert policy.compute_key(None, inputs, {}) == key
    assert not (records / key).exists()


def write_record(record: Path, result: Path) -> None:
    """A cache record as Prefect writes one (its metadata, the result beside it in `result`)."""
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_bytes(b"a result")
    serializer = {"type": "pickle", "picklelib": "cloudpickle", "picklelib_version": None}
    metadata = {"storage_key": str(result), "expiration": None, "serializer": serializer, "storage_block_id": None}
    record.write_text(json.dumps(metadata))
