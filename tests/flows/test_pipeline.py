"""The pipeline without Prefect: the book's numbers, caching by content, versions, recorded outputs."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from artifacts.indices import read_indices
from artifacts.text import read_text
from artifacts.vocab import read_vocab
from flows.pipeline import PrepareParams, prepare, train_on
from tasks.clean import CleanParams
from tasks.encode import decode
from tasks.fetch import resolve_source
from tasks.ingest import DEFAULT_CHARS
from tasks.train.params import TrainParams
from tasks.vocab import BOOK_VOCAB_SIZE

REPO = Path(__file__).resolve().parents[2]


def test_the_books_numbers(book_prepared):
    _, prepared = book_prepared
    refs = prepared.stages
    assert (prepared.corpus, prepared.version, prepared.new_version) == ("jaychou", 1, True)
    assert list(refs) == ["ingest", "clean", "vocab", "encode"]
    assert refs["ingest"].summary["chars"] == DEFAULT_CHARS == 63_282
    assert refs["clean"].summary["chars"] == 10_000
    assert refs["vocab"].summary["size"] == BOOK_VOCAB_SIZE == 1_027
    assert refs["encode"].summary["rows"] == 10_000
    indices = read_indices(refs["encode"].path)
    assert indices.dtype == np.int32
    assert decode(indices, read_vocab(refs["vocab"].path)) == read_text(refs["clean"].path)


def test_a_rerun_is_all_cache_hits_and_a_change_reruns_downstream(book_prepared, lyrics_zip):
    runner, first = book_prepared
    source = resolve_source(str(lyrics_zip), "jaychou")
    again = prepare(runner, source)
    assert all(ref.cache_hit for ref in again.stages.values())
    assert (again.version, again.new_version) == (1, False)
    shorter = prepare(runner, source, PrepareParams(clean=CleanParams(max_chars=5_000)))
    assert {s: r.cache_hit for s, r in shorter.stages.items()} == {
        "ingest": True,
        "clean": False,
        "vocab": False,
        "encode": False,
    }
    assert shorter.stages["ingest"].key == first.stages["ingest"].key
    runs = runner.catalog.outputs("jaychou", 1)
    assert runs.count({s: r.key for s, r in first.stages.items()}) == 1  # the same outputs are recorded once


def test_training_on_stored_batches_by_corpus_reference(book_prepared):
    from flows.pipeline import batches
    from tasks.batches import BatchesParams

    runner, prepared = book_prepared
    spec = BatchesParams(sampler="consecutive", epochs=1)
    made = batches(runner, resolve_source(prepared.stages["ingest"].summary["source"], "jaychou"), sampler=spec)
    tiny = TrainParams(model="rnn", hidden=8, optimizer="adam", lr=0.01, prefixes=(), device="auto")
    refs = train_on(runner, "jaychou@latest/batches", tiny)
    assert refs["batches"].key == made.stages["batches"].key
    assert refs["vocab"].key == prepared.stages["vocab"].key
    assert refs["train"].summary["epochs"] == 1
    assert refs["train"].summary["samples"] == []


def test_the_pipeline_and_everything_under_it_import_no_prefect():
    """`tasks/` and `artifacts/` never import Prefect, nor does the pipeline's wiring: it runs without it."""
    script = "import sys, flows.pipeline, artifacts.inspect, flows.progress; print('prefect' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout == "False\n"
    for package in ("tasks", "artifacts"):
        for path in (REPO / package).rglob("*.py"):
            assert not {m for m in imported(path) if m.split(".")[0] == "prefect"}, path


def imported(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


MEMORY = """
import json, sys
from pathlib import Path
from benchmarks.memory import PeakAnonymous
from benchmarks.scale import write_corpus
from flows.pipeline import PrepareParams, batches, plain_runner
from artifacts.batch_reader import BatchReader
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.fetch import resolve_source

work = Path(sys.argv[1])
write_corpus(work / "corpus.txt", float(sys.argv[2]))
with PeakAnonymous() as peak:
    made = batches(plain_runner(work / "store"), resolve_source(str(work / "corpus.txt")),
                   PrepareParams(clean=CleanParams(max_chars=None)), BatchesParams(batch_size=256, epochs=2))
    tokens = sum(x.numel() for x, _ in BatchReader(made.stages["batches"].path))
print(json.dumps({"mb": peak.mb, "tokens": tokens}))
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_the_corpus(tmp_path):
    """Prepare, batches and two epochs read, at 32 MB and at 128 MB: peak anonymous memory of a fresh process
    (below 32 MB, the writers' queues of 8 MB tables and Arrow's and Python's buffers are not yet full)."""
    peaks = []
    for megabytes in (32, 128):
        work = tmp_path / f"{megabytes}mb"
        work.mkdir()
        result = subprocess.run(
            [sys.executable, "-c", MEMORY, str(work), str(megabytes)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-3000:]
        peaks.append(json.loads(result.stdout.strip().splitlines()[-1]))
    assert peaks[1]["tokens"] > 3.5 * peaks[0]["tokens"]  # the larger corpus is read through
    assert peaks[1]["mb"] - peaks[0]["mb"] < 48, peaks  # 96 MB more text: not 96 MB more memory
