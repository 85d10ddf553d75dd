"""What the artifact tests share."""

import pytest

from flows.pipeline import batches, plain_runner
from tasks.batches import BatchesParams
from tasks.fetch import resolve_source

SPEC = BatchesParams(batch_size=4, num_steps=8, epochs=1)


@pytest.fixture
def store(tmp_path, lyrics_text):
    """songs v1 and v2 (one more character), each prepared and batched, without Prefect."""
    runner = plain_runner(tmp_path / "store")
    song = tmp_path / "songs.txt"
    song.write_text(lyrics_text[:1000], encoding="utf-8")
    first = batches(runner, resolve_source(str(song)), sampler=SPEC)
    song.write_text(lyrics_text[:1000] + "☃", encoding="utf-8")
    second = batches(runner, resolve_source(str(song)), sampler=SPEC)
    return runner, first, second
