"""`charflow inspect` on a real store made by the pipeline, the UI artifacts, and the Parquet readers' view."""

import json

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from artifacts import schemas
from charflow import settings
from flows.train import train
from tests.helpers import run_cli

PANDAS_STRING = str(pd.Series(["a"]).dtype)  # "object" before pandas 3, "str" since
TINY = {
    "batch_size": 4,
    "num_steps": 8,
    "epochs": 2,
    "model": "rnn",
    "hidden": 16,
    "optimizer": "adam",
    "lr": 0.01,
    "pred_period": 1,
    "pred_chars": 5,
}


@pytest.fixture(scope="module")
def store(lyrics_text, tmp_path_factory, prefect_harness):
    """Two versions of one corpus, each prepared, batched and trained."""
    import os

    home = tmp_path_factory.mktemp("inspect-home")
    old = os.environ.get("CHARFLOW_HOME")
    os.environ["CHARFLOW_HOME"] = str(home)
    corpus = tmp_path_factory.mktemp("corpora") / "songs"
    corpus.mkdir()
    (corpus / "a.txt").write_text(lyrics_text[:3000], encoding="utf-8")
    first = train(source=str(corpus), **TINY)
    (corpus / "a.txt").write_text(lyrics_text[:3000] + "☃☃☃ snow", encoding="utf-8")
    second = train(source=str(corpus), **TINY)
    yield {"home": home, "root": settings.store_root(), "first": first, "second": second}
    if old is None:
        os.environ.pop("CHARFLOW_HOME")
    else:
        os.environ["CHARFLOW_HOME"] = old


def inspect(store, *args):
    result = run_cli("inspect", *args, home=store["home"])
    return result


def inspect_json(store, *args):
    result = inspect(store, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ls_lists_versions_and_artifacts(store):
    listed = inspect_json(store, "ls")
    assert [v["version"] for v in listed["corpora"]["songs"]] == [1, 2]
    stages = [a["stage"] for a in listed["artifacts"]]
    assert {"ingest", "clean", "vocab", "encode", "batches", "train"} <= set(stages)
    created = [a["created"] for a in listed["artifacts"]]
    assert created == sorted(created, reverse=True)
    assert "songs" in inspect(store, "ls").stdout


def test_show_decodes_every_kind(store):
    second = store["second"].stages
    clean = inspect_json(store, "show", "songs@latest/clean")
    assert clean["view"]["first_characters"].startswith("想要有直升机 想要和你飞到宇宙去")
    assert "text: large_string" in clean["schemas"]["text.parquet"]
    vocab = inspect_json(store, "show", "songs@2/vocab")
    assert vocab["view"]["most_frequent"][0]["token"] == " " and vocab["manifest"]["key"] == second["vocab"].key
    encode = inspect_json(store, "show", second["encode"].key[:10])
    assert encode["view"]["decoded"].startswith("想要有直升机")
    batches = inspect_json(store, "show", "songs@latest/batches")
    row = batches["view"]["first_rows"][0]
    assert len(row["x"]) == len(row["y"]) == 8 and row["x"][1:] == row["y"][:-1]
    model = inspect_json(store, "show", "songs@latest/train")
    assert [m["epoch"] for m in model["view"]["metrics"]] == [1, 2]
    assert {s["prefix"] for s in model["view"]["samples"]} == {"分开", "不分开"}
    assert "not" not in inspect(store, "show", "songs@latest/train").stderr


def test_lineage_reaches_the_source(store):
    chain = inspect_json(store, "lineage", "songs@latest/train")
    assert [c["stage"] for c in chain] == ["train", "batches", "vocab", "encode", "clean", "ingest", "source"]
    assert chain[-1]["key"] == store["second"].sha256
    assert next(c for c in chain if c["stage"] == "clean")["params"]["max_chars"] == 10_000


def test_diff_of_two_vocabularies(store, lyrics_text):
    found = inspect_json(store, "diff", "songs@1/vocab", "songs@2/vocab")
    first = set(lyrics_text[:3000].replace("\n", " "))
    assert found["vocab"]["added"] == sorted(set("☃☃☃ snow") - first)
    assert found["vocab"]["removed"] == []
    assert found["vocab"]["largest_count_changes"][0] == {"token": "☃", "change": 3}
    assert found["params"] == {} and list(found["inputs"]) == ["text"]


@pytest.mark.parametrize(
    "ref,message",
    [
        ("ffffffff", "'ffffffff' names no artifact; candidates:"),
        ("", "names no artifact"),
        ("songs@9/vocab", "songs has no version 9; versions: v1, v2"),
        ("poems@latest/vocab", "no corpus 'poems' in the catalog; known corpora: songs"),
        ("songs@latest/embedding", "has no embedding artifact; it has: ingest, clean, vocab, encode, batches, train"),
    ],
)
def test_bad_references_list_the_candidates(store, ref, message):
    result = inspect(store, "show", ref)
    assert result.returncode == 1 and message in result.stderr


def test_an_ambiguous_prefix_is_refused(store):
    keys = [a["key"] for a in inspect_json(store, "ls")["artifacts"]]
    prefix = next(k[:1] for k in keys if sum(other.startswith(k[:1]) for other in keys) > 1)
    result = inspect(store, "show", prefix)
    assert result.returncode == 1 and "is ambiguous; candidates:" in result.stderr


def test_every_artifact_kind_reads_with_pandas_pyarrow_and_duckdb(store):
    stages = store["second"].stages
    path = {stage: ref.path for stage, ref in stages.items()}
    text = pd.read_parquet(f"{path['clean']}/{schemas.TEXT_FILE}")
    assert list(text.columns) == ["chunk", "text"] and text["text"].str.cat().startswith("想要有直升机")
    vocab = pq.read_table(f"{path['vocab']}/{schemas.VOCAB_FILE}")
    assert vocab.schema.remove_metadata() == schemas.VOCAB_SCHEMA
    assert pd.read_parquet(f"{path['vocab']}/{schemas.VOCAB_FILE}").dtypes.to_dict() == {
        "index": "int32",
        "token": "object",
        "count": "int64",
        "reserved": "bool",
    } or list(pd.read_parquet(f"{path['vocab']}/{schemas.VOCAB_FILE}").columns) == [
        "index",
        "token",
        "count",
        "reserved",
    ]
    indices = pd.read_parquet(f"{path['encode']}/{schemas.INDICES_FILE}")
    assert list(indices.columns) == ["index"] and str(indices["index"].dtype) == "int32"
    batches = pd.read_parquet(path["batches"])
    assert list(batches.columns) == ["epoch", "batch", "row", "start", "x", "y"]
    assert pq.read_table(path["batches"]).schema.field("x").type == pa.list_(pa.int32(), 8)
    metrics = pd.read_parquet(f"{path['train']}/{schemas.METRICS_FILE}")
    assert list(metrics.columns) == ["epoch", "perplexity", "val_perplexity", "tokens_per_s", "grad_norm", "seconds"]
    samples = pq.read_table(f"{path['train']}/{schemas.SAMPLES_FILE}")
    assert samples.schema.remove_metadata() == schemas.SAMPLES_SCHEMA
    count = duckdb.sql(f"select count(*) from '{path['encode']}/{schemas.INDICES_FILE}'").fetchall()[0][0]
    assert count == len(indices)
    rows = duckdb.sql(f"select epoch, batch, row, x[1] from '{path['batches']}/*.parquet' limit 1").fetchall()
    assert len(rows) == 1


def test_ui_artifacts_are_published(store):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    wanted = [
        "ingest-summary",
        "clean-summary",
        "vocab-summary",
        "encode-summary",
        "batches-summary",
        "train-summary",
        "vocab-top-symbols",
        "training-metrics",
        "training-samples",
    ]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=wanted)))
    keys = {a.key for a in found}
    assert set(wanted) <= keys
    top = next(a for a in found if a.key == "vocab-top-symbols")
    table = json.loads(top.data) if isinstance(top.data, str) else top.data
    assert table[0]["token"] == " "
    summary = next(a for a in found if a.key == "vocab-summary")
    assert "vocab.parquet" in summary.data and "| parameter | value |" in summary.data


def test_verify_finds_corruption_and_gc_keeps_latest_versions(store):
    assert inspect(store, "verify").returncode == 0
    first_vocab = store["first"].stages["vocab"]
    target = f"{first_vocab.path}/{schemas.VOCAB_FILE}"
    original = open(target, "rb").read()
    with open(target, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\0\0\0\0")
    bad = inspect(store, "verify", "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False and [d["key"] for d in report["damaged"]] == [first_vocab.key]
    assert "sha256 differs" in report["damaged"][0]["problems"][0]
    with open(target, "wb") as fh:
        fh.write(original)
    dry = inspect_json(store, "gc")
    doomed = {d["key"] for d in dry["artifacts"]}
    second_keys = {ref.key for ref in store["second"].stages.values()}
    assert dry["deleted"] is False and doomed and not doomed & second_keys
    assert first_vocab.key in doomed
    assert inspect_json(store, "gc", "--yes")["deleted"] is True
    left = {a["key"] for a in inspect_json(store, "ls")["artifacts"]}
    assert second_keys <= left and not doomed & left
    assert inspect(store, "verify").returncode == 0
    assert inspect_json(store, "show", "songs@latest/train")["view"]["metrics"]
