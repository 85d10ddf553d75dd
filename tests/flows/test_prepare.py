"""The prepare flow under Prefect (test harness): numbers, caching, versions and failures."""

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from artifacts.catalog import JsonlCatalog
from artifacts.indices import INDICES_FILE, INDICES_SCHEMA, read_indices
from artifacts.parquet import read_metadata
from artifacts.text import TEXT_FILE, TEXT_SCHEMA, read_text
from artifacts.vocab import VOCAB_FILE, VOCAB_SCHEMA, read_vocab
from flows.home import store_root
from flows.prepare import prepare
from tasks.encode import decode
from tasks.sources import IngestError
from tests.helpers import snapshot

pytestmark = pytest.mark.usefixtures("prefect_harness")
STAGES = ["ingest", "clean", "vocab", "encode"]


def hits(prepared) -> dict[str, bool]:
    return {stage: ref.cache_hit for stage, ref in prepared.stages.items()}


def test_the_books_numbers(home, lyrics_zip):
    prepared = prepare(source=str(lyrics_zip), name="jaychou")
    assert (prepared.corpus, prepared.version, prepared.new_version) == ("jaychou", 1, True)
    refs = prepared.stages
    assert list(refs) == STAGES
    assert refs["ingest"].summary["chars"] == 63_282
    assert refs["clean"].summary["chars"] == 10_000
    assert refs["vocab"].summary["size"] == 1_027
    assert refs["encode"].summary["rows"] == 10_000
    cleaned = read_text(refs["clean"].path)
    assert cleaned[:20] == "想要有直升机 想要和你飞到宇宙去 想要和"
    indices = read_indices(refs["encode"].path)
    assert indices.dtype == np.int32
    assert indices.shape == (10_000,)
    assert decode(indices, read_vocab(refs["vocab"].path)) == cleaned
    metadata = read_metadata(refs["encode"].file(INDICES_FILE))
    assert metadata["vocab_key"] == refs["vocab"].key
    assert metadata["vocab_size"] == 1_027
    assert all(not hit for hit in hits(prepared).values())


def test_a_rerun_is_cached_in_prefect(home, lyrics_zip):
    first = prepare(source=str(lyrics_zip))
    again = prepare(source=str(lyrics_zip))
    assert hits(again) == dict.fromkeys(STAGES, True)
    assert {s: r.key for s, r in again.stages.items()} == {s: r.key for s, r in first.stages.items()}
    assert (again.version, again.new_version) == (1, False)


@pytest.mark.parametrize(
    ("change", "recomputed"),
    [
        ({"max_chars": 5_000}, ["clean", "vocab", "encode"]),
        ({"order": "frequency"}, ["vocab", "encode"]),
    ],
)
def test_a_parameter_change_reruns_exactly_downstream(home, lyrics_zip, change, recomputed):
    before = prepare(source=str(lyrics_zip))
    after = prepare(source=str(lyrics_zip), **change)
    assert hits(after) == {stage: stage not in recomputed for stage in STAGES}
    for stage in STAGES:
        assert (after.stages[stage].key == before.stages[stage].key) == (stage not in recomputed)


def test_a_corrupted_artifact_is_recomputed(home, lyrics_zip):
    before = prepare(source=str(lyrics_zip))
    text_file = before.stages["clean"].file(TEXT_FILE)
    text_file.write_bytes(text_file.read_bytes()[:100])
    after = prepare(source=str(lyrics_zip))
    assert hits(after) == {"ingest": True, "clean": False, "vocab": True, "encode": True}
    assert after.stages["clean"].key == before.stages["clean"].key
    assert read_text(text_file.parent)[:20] == "想要有直升机 想要和你飞到宇宙去 想要和"
    # Prefect's record alone is not trusted: a deleted artifact is rebuilt too.
    for path in before.stages["encode"].path.iterdir():
        path.unlink()
    assert hits(prepare(source=str(lyrics_zip)))["encode"] is False


def test_new_content_is_the_next_version(home, tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    (folder / "a.txt").write_text("one two three")
    v1 = prepare(source=str(folder))
    (folder / "b.txt").write_text("four")
    v2 = prepare(source=str(folder))
    again = prepare(source=str(folder))
    assert [(p.corpus, p.version, p.new_version) for p in (v1, v2, again)] == [
        ("songs", 1, True),
        ("songs", 2, True),
        ("songs", 2, False),
    ]
    assert v2.stages["ingest"].summary["chars"] == len("one two three\nfour")
    assert [v.version for v in JsonlCatalog(store_root()).versions("songs")] == [1, 2]
    outputs = [json.loads(line) for line in (store_root() / "catalog.jsonl").read_text().splitlines()]
    # The third run made nothing new: its outputs were already recorded.
    assert sum(1 for e in outputs if e["event"] == "outputs") == 2


def test_bad_inputs_fail_clearly_and_change_nothing(home, lyrics_zip, tmp_path):
    prepare(source=str(lyrics_zip))
    before = snapshot(store_root())
    bad_utf8 = tmp_path / "latin1.txt"
    bad_utf8.write_bytes("café".encode("latin-1"))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ({"source": str(tmp_path / "missing.txt")}, "no such file or directory"),
        ({"source": str(lyrics_zip), "sha256": "ab" * 32}, "sha256 mismatch: expected abab"),
        ({"source": str(bad_utf8)}, "latin1.txt: invalid UTF-8 at byte offset 3"),
        ({"source": str(empty)}, "no text file matching"),
    ]
    for kwargs, message in cases:
        with pytest.raises(IngestError, match=message):
            prepare(**kwargs)
    assert snapshot(store_root()) == before


def test_parquet_files_are_plain_parquet(home, lyrics_zip):
    refs = prepare(source=str(lyrics_zip)).stages
    assert pq.read_schema(refs["clean"].file(TEXT_FILE)).remove_metadata() == TEXT_SCHEMA
    vocab = pq.read_table(refs["vocab"].file(VOCAB_FILE))
    assert vocab.schema.remove_metadata() == VOCAB_SCHEMA
    assert vocab.column("index").to_pylist() == list(range(1_027))
    assert pq.read_schema(refs["encode"].file(INDICES_FILE)).remove_metadata() == INDICES_SCHEMA


def test_importing_the_prepare_flow_loads_neither_torch_nor_matplotlib():
    script = "import sys, flows.prepare; print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout == "[]\n"
