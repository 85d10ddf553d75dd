"""The Transformer through the train stage: random-sampler batches, its context from the batches' num_steps,
validated by windows, and loaded back with the context read from its saved positions."""

import pyarrow.parquet as pq
import torch

from artifacts.model import METRICS_FILE, WEIGHTS_FILE, TrainSummary, load_model
from artifacts.vocab import read_vocab
from tasks.batches import BatchesParams
from tasks.train.generate import continue_text
from tasks.train.params import TrainParams
from tasks.train.transformer import Transformer


def test_a_transformer_trains_validates_and_loads_back(book_prepared):
    runner, prepared = book_prepared
    spec = BatchesParams(sampler="random", num_steps=16, epochs=2, val_fraction=0.1)
    batches = runner.stage("batches", spec, indices=prepared.stages["encode"])
    params = TrainParams(
        model="transformer", hidden=32, heads=4, optimizer="adam", lr=3e-3, pred_period=1, pred_chars=10, device="cpu"
    )
    ref = runner.stage("train", params, batches=batches, vocab=prepared.stages["vocab"])
    metrics = pq.read_table(ref.file(METRICS_FILE)).to_pylist()
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(1 < m["val_perplexity"] < 1_027 for m in metrics)
    assert torch.load(ref.file(WEIGHTS_FILE), weights_only=True)["position.weight"].shape == (16, 32)
    vocabulary = read_vocab(prepared.stages["vocab"].path)
    model, device = load_model(ref.path, vocabulary, device="cpu")
    assert isinstance(model, Transformer)
    assert model.context == 16
    assert continue_text(model, vocabulary, "分开", 10, device) == TrainSummary.of(ref).samples[0].text
