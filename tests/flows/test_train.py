"""The train flows under Prefect: one flow run holds every stage's task; training on stored batches by any
reference `inspect` takes."""

import pytest

from flows.train import train, train_batches

pytestmark = pytest.mark.usefixtures("prefect_harness")
TINY = {"model": "rnn", "hidden": 8, "optimizer": "adam", "lr": 0.01, "pred_period": 1, "pred_chars": 3}


def test_train_then_train_batches_by_corpus_reference(home, lyrics_text, tmp_path):
    song = tmp_path / "tiny.txt"
    song.write_text(lyrics_text[:1500], encoding="utf-8")
    made = train(source=str(song), batch_size=4, num_steps=8, epochs=2, **TINY)
    assert list(made.stages) == ["ingest", "clean", "vocab", "encode", "batches", "train"]
    assert made.stages["train"].summary["epochs"] == 2
    refs = train_batches(batches="tiny@latest/batches", **TINY)
    assert refs["train"].key == made.stages["train"].key
    assert refs["train"].cache_hit
    other = train_batches(batches=made.stages["batches"].key[:8], **{**TINY, "lr": 0.02})
    assert not other["train"].cache_hit
    assert other["train"].key != made.stages["train"].key
