"""The cache policy: Prefect's key is the stage's content key, and a record whose artifact is gone is dropped."""

from artifacts.stages import STAGES
from flows.cache import ContentKeyPolicy
from flows.home import store_root
from flows.pipeline import plain_runner, prepare
from tasks.fetch import resolve_source
from tasks.vocab import VocabParams


def test_the_key_is_the_content_key_and_a_record_without_its_artifact_is_dropped(home, tmp_path):
    song = tmp_path / "song.txt"
    song.write_text("la la la", encoding="utf-8")
    prepared = prepare(plain_runner(store_root()), resolve_source(str(song)))
    records = tmp_path / "records"
    records.mkdir()
    policy = ContentKeyPolicy(stage="vocab", key_storage=records)
    inputs = {"inputs": {"text": prepared.stages["clean"]}, "params": VocabParams()}
    key = policy.compute_key(None, inputs, {})
    assert key == STAGES["vocab"].key(inputs["inputs"], inputs["params"]) == prepared.stages["vocab"].key
    (records / key).write_text("a record")
    assert policy.compute_key(None, inputs, {}) == key
    assert (records / key).exists()
    for path in prepared.stages["vocab"].path.iterdir():
        path.unlink()
    assert policy.compute_key(None, inputs, {}) == key
    assert not (records / key).exists()
