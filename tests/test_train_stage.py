"""The train stage's artifact, generation from it, and `charflow run` / `charflow generate` as a user runs them."""

import json
import struct
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from artifacts import schemas
from artifacts.store import Store
from tasks.batches import BatchesParams
from tasks.generate import generate, load_model
from tasks.ingest import fetch
from tasks.stages import (
    CURVE_FILE,
    WEIGHTS_FILE,
    VocabMismatch,
    batches_stage,
    prepare_stages,
    train_stage,
)
from tasks.train import TrainParams
from tests.helpers import run_cli

FAST = TrainParams(model="rnn", hidden=32, optimizer="adam", lr=1e-2, pred_period=2, pred_chars=10)


@pytest.fixture(scope="module")
def prepared(lyrics_zip, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("train-store"))
    refs = prepare_stages(store, fetch(str(lyrics_zip), store.root / "downloads"))
    vocab, indices = refs["vocab"], refs["encode"]
    batches = batches_stage(store, indices, BatchesParams(sampler="consecutive", epochs=3))
    return store, vocab, batches, indices


def test_the_model_artifact(prepared):
    store, vocab, batches, _ = prepared
    ref = train_stage(store, batches, vocab, FAST)
    folder = Path(ref.path)
    metrics = pq.read_table(folder / schemas.METRICS_FILE)
    assert metrics.schema.remove_metadata() == schemas.METRICS_SCHEMA and metrics.column("epoch").to_pylist() == [
        1,
        2,
        3,
    ]
    samples = pq.read_table(folder / schemas.SAMPLES_FILE).to_pylist()
    assert [(s["epoch"], s["prefix"]) for s in samples] == [(2, "分开"), (2, "不分开"), (3, "分开"), (3, "不分开")]
    assert all(len(s["text"]) == len(s["prefix"]) + 10 for s in samples)
    weights = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    assert set(weights) >= {"embedding.weight", "output.weight"}
    png = (folder / CURVE_FILE).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (600, 400)
    assert ref.summary["vocab_key"] == vocab.key and ref.summary["epochs"] == 3
    assert ref.summary["perplexity"] == pytest.approx(metrics.column("perplexity").to_pylist()[-1])
    assert train_stage(store, batches, vocab, FAST).cache_hit
    assert not list((store.root / ".work").iterdir())  # checkpoints go once the artifact is published


def test_held_out_validation(prepared):
    store, vocab, _, indices = prepared
    batches = batches_stage(store, indices, BatchesParams(sampler="consecutive", epochs=2, val_fraction=0.1))
    assert (batches.summary["train_indices"], batches.summary["val_indices"]) == (9_000, 1_000)
    starts = pq.read_table(f"{batches.path}/batches-00000.parquet", columns=["start"]).column("start").to_numpy()
    assert starts.max() + 35 + 1 <= 9_000  # no batch reads the held-out tail
    ref = train_stage(store, batches, vocab, FAST)
    metrics = pq.read_table(Path(ref.path) / schemas.METRICS_FILE).to_pylist()
    assert (
        all(m["val_perplexity"] > 1 for m in metrics) and ref.summary["val_perplexity"] == metrics[-1]["val_perplexity"]
    )
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1.0"):
        BatchesParams(val_fraction=1.0)


def test_generate_and_vocabulary_checks(prepared):
    store, vocab, batches, _ = prepared
    ref = train_stage(store, batches, vocab, FAST)
    text = generate(store, ref.key[:10], "分开", 20)
    assert text.startswith("分开") and len(text) == 22
    assert text == generate(store, ref.path, "分开", 20)  # greedy: the same every time
    with pytest.raises(VocabMismatch, match="not wwwwwwwwwwww"):
        load_model(store, ref.key, vocab_key="w" * 64)
    with pytest.raises(ValueError, match="characters this model never saw"):
        generate(store, ref.key, "☃", 5)
    with pytest.raises(LookupError, match="names 0 train artifacts"):
        generate(store, "ffff", "分开", 5)


def test_batches_of_another_vocabulary_are_refused(prepared):
    store, vocab, batches, _ = prepared
    other = store.materialize(
        stage="vocab",
        key="e" * 64,
        params={},
        inputs={},
        code="",
        libraries={},
        build=lambda f: (schemas.write_vocab(f, ["a"], [1], 0, {}), {"size": 1})[1],
    )
    with pytest.raises(VocabMismatch, match="train on batches and vocabulary from the same prepare run"):
        train_stage(store, batches, other, FAST)


def test_cli_run_and_generate(tmp_path, lyrics_zip, prefect_server):
    args = [
        "--epochs",
        "2",
        "--model",
        "rnn",
        "--hidden",
        "32",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--pred-period",
        "1",
        "--sampler",
        "consecutive",
    ]
    result = run_cli("run", str(lyrics_zip), *args, "--json", home=tmp_path, api_url=prefect_server)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert list(out["stages"]) == ["ingest", "clean", "vocab", "encode", "batches", "train"]
    assert out["model"]["key"] == out["stages"]["train"]["key"] and out["perplexity"] > 1
    again = run_cli(
        "train",
        "--batches",
        out["stages"]["batches"]["key"][:12],
        *args[2:],
        "--json",
        home=tmp_path,
        api_url=prefect_server,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["model"]["key"] == out["model"]["key"]
    assert json.loads(again.stdout)["model"]["cache_hit"] is True
    generated = run_cli("generate", out["model"]["key"][:12], "--prefix", "不分开", "--chars", "8", home=tmp_path)
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout.startswith("不分开") and len(generated.stdout.rstrip("\n")) == 11
    missing = run_cli("train", "--batches", "ffffff", home=tmp_path, api_url=prefect_server)
    assert missing.returncode == 1 and "'ffffff' names 0 batches artifacts" in missing.stderr
    for bad_args, code, message in [
        (["--model", "transformer"], 2, "'scratch', 'rnn', 'gru' or 'lstm'"),
        (["--optimizer", "rmsprop"], 2, "'sgd' or 'adam'"),
    ]:
        bad = run_cli("run", str(lyrics_zip), *bad_args, home=tmp_path, api_url=prefect_server)
        assert bad.returncode == code and message in bad.stderr, bad.stderr
