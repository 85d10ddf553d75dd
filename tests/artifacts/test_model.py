"""The model artifact: its files and summary, the held-out split, loading it back, and its perplexity curve."""

import struct

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from matplotlib.image import imread

from artifacts.model import (
    CURVE_FILE,
    METRICS_FILE,
    METRICS_SCHEMA,
    SAMPLES_FILE,
    WEIGHTS_FILE,
    TrainSummary,
    load_model,
    perplexity_curve,
)
from artifacts.vocab import VocabMismatch, VocabSummary, read_vocab, write_vocab
from tasks.batches import BatchesParams
from tasks.train.generate import continue_text
from tasks.train.params import TrainParams
from tasks.vocab import Vocab

FAST = TrainParams(model="rnn", hidden=32, optimizer="adam", lr=1e-2, pred_period=2, pred_chars=10, device="cpu")


@pytest.fixture(scope="module")
def trained(book_prepared):
    runner, prepared = book_prepared
    batches = runner.stage("batches", BatchesParams(sampler="consecutive", epochs=3), indices=prepared.stages["encode"])
    vocab = prepared.stages["vocab"]
    return runner, vocab, batches, runner.stage("train", FAST, batches=batches, vocab=vocab)


def test_the_model_artifact(trained):
    runner, vocab, batches, ref = trained
    metrics = pq.read_table(ref.file(METRICS_FILE))
    assert metrics.schema.remove_metadata() == METRICS_SCHEMA
    assert metrics.column("epoch").to_pylist() == [1, 2, 3]
    samples = pq.read_table(ref.file(SAMPLES_FILE)).to_pylist()
    assert [(s["epoch"], s["prefix"]) for s in samples] == [(2, "分开"), (2, "不分开"), (3, "分开"), (3, "不分开")]
    assert all(len(s["text"]) == len(s["prefix"]) + 10 for s in samples)
    weights = torch.load(ref.file(WEIGHTS_FILE), weights_only=True)
    assert set(weights) >= {"embedding.weight", "output.weight"}
    png = ref.file(CURVE_FILE).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (600, 400)
    summary = TrainSummary.of(ref)
    assert (summary.vocab_key, summary.batches_key, summary.epochs, summary.sampler) == (
        vocab.key,
        batches.key,
        3,
        "consecutive",
    )
    assert summary.perplexity == pytest.approx(metrics.column("perplexity").to_pylist()[-1])
    assert [s.model_dump() for s in summary.samples] == samples[-2:]
    assert runner.stage("train", FAST, batches=batches, vocab=vocab).cache_hit
    assert not list((runner.store.root / ".work").iterdir())  # checkpoints go once the artifact is published


def test_a_model_loads_back_on_the_cpu_and_continues_a_prefix(trained):
    _, vocab, _, ref = trained
    vocabulary = read_vocab(vocab.path)
    model, device = load_model(ref.path, vocabulary, device="cpu")
    assert device.type == "cpu"
    assert not model.training
    text = continue_text(model, vocabulary, "分开", 10, device)
    assert text == TrainSummary.of(ref).samples[0].text  # the sample taken after the last epoch, greedily


def test_held_out_validation(book_prepared):
    runner, prepared = book_prepared
    spec = BatchesParams(sampler="consecutive", epochs=2, val_fraction=0.1, materialize=True)
    batches = runner.stage("batches", spec, indices=prepared.stages["encode"])
    assert (batches.summary["train_indices"], batches.summary["val_indices"]) == (9_000, 1_000)
    starts = pq.read_table(batches.file("batches-00000.parquet"), columns=["start"]).column("start").to_numpy()
    assert starts.max() + 35 + 1 <= 9_000  # no batch reads the held-out tail
    ref = runner.stage("train", FAST, batches=batches, vocab=prepared.stages["vocab"])
    metrics = pq.read_table(ref.file(METRICS_FILE)).to_pylist()
    assert all(m["val_perplexity"] > 1 for m in metrics)
    assert TrainSummary.of(ref).val_perplexity == metrics[-1]["val_perplexity"]


def test_batches_of_another_vocabulary_are_refused(trained):
    runner, _, batches, _ = trained
    other = runner.store.materialize(
        stage="vocab",
        key="e" * 64,
        params={},
        inputs={},
        code="",
        libraries={},
        build=lambda f: (
            write_vocab(f, Vocab(["a"], np.ones(1, dtype=np.int64), 0), {}),
            VocabSummary(size=1, reserved=0, policy={}),
        )[1],
    )
    with pytest.raises(VocabMismatch, match="not the expected eeeeeeeeeeee; generate batches from the same prepare"):
        runner.stage("train", FAST, batches=batches, vocab=other)


def colour_pixels(path, rgb):
    image = imread(path)[..., :3]  # (height, width, rgb) floats
    return int(np.sum(np.all(np.abs(image - np.array(rgb) / 255) < 0.02, axis=-1)))


def test_perplexity_curve_draws_training_and_validation(tmp_path):
    blue, orange = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)  # matplotlib's first two line colours
    rows = [{"epoch": e, "perplexity": 100 / e, "val_perplexity": 120 / e} for e in range(1, 6)]
    perplexity_curve(rows, tmp_path / "both.png", title="rnn")
    perplexity_curve([{**r, "val_perplexity": None} for r in rows], tmp_path / "train.png", title="rnn")
    assert colour_pixels(tmp_path / "both.png", blue) > 100
    assert colour_pixels(tmp_path / "both.png", orange) > 100
    assert colour_pixels(tmp_path / "train.png", blue) > 100
    assert colour_pixels(tmp_path / "train.png", orange) == 0
    perplexity_curve(rows, tmp_path / "again.png", title="rnn")
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "both.png").read_bytes()
