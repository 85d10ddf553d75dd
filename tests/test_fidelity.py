"""The book's published perplexities, reproduced with its settings on the lyrics (slow: 250 epochs each, CPU)."""

import pyarrow.parquet as pq
import pytest

from artifacts import schemas
from artifacts.store import Store
from tasks.batches import BatchesParams
from tasks.ingest import fetch
from tasks.stages import (
    batches_stage,
    prepare_stages,
    train_stage,
)
from tasks.train import TrainParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def book_run(lyrics_zip, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("fidelity"))
    refs = prepare_stages(store, fetch(str(lyrics_zip), store.root / "downloads"))
    vocab, indices = refs["vocab"], refs["encode"]

    def run(sampler: str, **training) -> list[float]:
        batches = batches_stage(store, indices, BatchesParams(sampler=sampler))
        ref = train_stage(store, batches, vocab, TrainParams(device="cpu", **training))
        return pq.read_table(f"{ref.path}/{schemas.METRICS_FILE}").column("perplexity").to_pylist()

    return run


def test_scratch_rnn_in_the_books_bands(book_run):
    random = book_run("random")
    consecutive = book_run("consecutive")
    assert len(random) == len(consecutive) == 250
    assert 1.20 <= random[-1] <= 1.45, random[-1]
    assert 1.10 <= consecutive[-1] <= 1.30, consecutive[-1]
    # Consecutive sampling converges faster, as in every published pair.
    assert consecutive[99] < random[99] and consecutive[-1] < random[-1]


def test_torch_rnn_with_adam(book_run):
    perplexity = book_run("consecutive", model="rnn", optimizer="adam", lr=1e-3)
    assert perplexity[-1] < 1.06, perplexity[-1]
