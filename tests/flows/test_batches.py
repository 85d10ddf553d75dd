"""The batches flow on the lyrics under Prefect: 8 batches per epoch, read back, cached, reseeded."""

import pytest

from artifacts.batch_reader import BatchReader
from artifacts.batches import BatchesSummary
from artifacts.manifest import read_manifest
from flows.batches import batches


@pytest.mark.usefixtures("prefect_harness")
def test_batches_flow_on_the_lyrics(home, lyrics_zip):
    made = batches(source=str(lyrics_zip), epochs=3)
    ref = made.stages["batches"]
    assert [BatchesSummary.of(ref).batches_in(epoch) for epoch in range(3)] == [8, 8, 8]
    assert ref.summary["rows"] == 3 * 8 * 32
    assert ref.summary["tokens"] == 3 * 8 * 32 * 35
    assert ref.summary["vocab_key"] == made.stages["vocab"].key
    reader = BatchReader(ref.path, expected_vocab_key=made.stages["vocab"].key)
    assert len(reader) == 24
    assert all(x.shape == (32, 35) for x, _ in reader)
    again = batches(source=str(lyrics_zip), epochs=3)
    assert all(r.cache_hit for r in again.stages.values())
    reseeded = batches(source=str(lyrics_zip), epochs=3, seed=1)
    assert {s: r.cache_hit for s, r in reseeded.stages.items()} == {
        "ingest": True,
        "clean": True,
        "vocab": True,
        "encode": True,
        "batches": False,
    }
    assert read_manifest(reseeded.stages["batches"].path).params["seed"] == 1
