"""The model artifact past the book: the best checkpoint beside the last, which one loads by default, an early
stop in the summary, and the settings refused before any work."""

import pyarrow.parquet as pq
import pytest
import torch

from artifacts.model import (
    BEST_WEIGHTS_FILE,
    CURVE_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    NoBestCheckpoint,
    TrainSummary,
    load_model,
)
from artifacts.vocab import read_vocab
from flows import pipeline
from tasks.batches import BatchesParams
from tasks.fetch import resolve_source
from tasks.train.params import NoValidation, TrainParams, WarmupTooLong

FAST = TrainParams(model="rnn", hidden=32, optimizer="adam", lr=1e-2, pred_period=2, pred_chars=10, device="cpu")


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def test_the_best_checkpoint_is_kept_and_loaded_by_default(book_prepared):
    runner, prepared = book_prepared
    spec = BatchesParams(epochs=5, val_fraction=0.1)
    batches = runner.stage("batches", spec, indices=prepared.stages["encode"])
    params = FAST.model_copy(update={"eval_every": 2, "lr": 0.05})
    ref = runner.stage("train", params, batches=batches, vocab=prepared.stages["vocab"])
    metrics = pq.read_table(ref.file(METRICS_FILE)).to_pylist()
    val = [m["val_perplexity"] for m in metrics]
    assert [v is None for v in val] == [True, False, True, False, False]  # epochs 2, 4 and the last
    summary = TrainSummary.of(ref)
    best = min(v for v in val if v is not None)
    assert (summary.best_epoch, summary.best_val_perplexity, summary.checkpoint) == (1 + val.index(best), best, "best")
    assert summary.stopped_at is None
    assert summary.epochs == 5
    assert ref.file(CURVE_FILE).is_file()
    vocab = read_vocab(prepared.stages["vocab"].path)
    stored_best = torch.load(ref.file(BEST_WEIGHTS_FILE), weights_only=True)
    stored_last = torch.load(ref.file(WEIGHTS_FILE), weights_only=True)
    assert same_weights(load_model(ref.path, vocab, device="cpu")[0].state_dict(), stored_best)
    assert same_weights(load_model(ref.path, vocab, "cpu", checkpoint="last")[0].state_dict(), stored_last)
    # The best epoch's weights are those of a run of exactly that many epochs.
    short = runner.stage(
        "batches", spec.model_copy(update={"epochs": summary.best_epoch}), indices=prepared.stages["encode"]
    )
    again = runner.stage("train", params, batches=short, vocab=prepared.stages["vocab"])
    assert same_weights(torch.load(again.file(WEIGHTS_FILE), weights_only=True), stored_best)


def test_patience_stops_the_run_and_the_summary_says_so(book_prepared):
    runner, prepared = book_prepared
    batches = runner.stage("batches", BatchesParams(epochs=12, val_fraction=0.1), indices=prepared.stages["encode"])
    params = FAST.model_copy(update={"lr": 0.1, "patience": 1})
    ref = runner.stage("train", params, batches=batches, vocab=prepared.stages["vocab"])
    summary = TrainSummary.of(ref)
    metrics = pq.read_table(ref.file(METRICS_FILE)).to_pylist()
    assert summary.stopped_at == summary.epochs == len(metrics) == summary.best_epoch + 1 < 12
    assert [s.epoch for s in summary.samples] == [summary.epochs] * 2


def test_without_validation_the_last_checkpoint_is_the_only_one(book_prepared):
    runner, prepared = book_prepared
    batches = runner.stage("batches", BatchesParams(epochs=2), indices=prepared.stages["encode"])
    ref = runner.stage("train", FAST, batches=batches, vocab=prepared.stages["vocab"])
    summary = TrainSummary.of(ref)
    assert (summary.best_epoch, summary.best_val_perplexity, summary.checkpoint) == (None, None, "last")
    assert not ref.file(BEST_WEIGHTS_FILE).exists()
    vocab = read_vocab(prepared.stages["vocab"].path)
    with pytest.raises(NoBestCheckpoint, match=r"was trained without validation, so it has no best checkpoint; use"):
        load_model(ref.path, vocab, device="cpu", checkpoint="best")
    old = {k: v for k, v in ref.summary.items() if k not in ("best_epoch", "best_val_perplexity", "checkpoint")}
    assert TrainSummary.model_validate(old).checkpoint == "last"  # a manifest from before still reads


def test_settings_that_cannot_apply_are_refused_before_any_work(tmp_path, lyrics_zip):
    runner = pipeline.plain_runner(tmp_path / "store")
    located = resolve_source(str(lyrics_zip), "jaychou")
    prepare = pipeline.PrepareParams()
    with pytest.raises(NoValidation, match="add --val-fraction"):
        pipeline.train(runner, located, prepare, BatchesParams(epochs=2), FAST.model_copy(update={"patience": 2}))
    with pytest.raises(
        WarmupTooLong, match=r"longer than the whole training \(16 optimizer steps at most, with --max-chars=10000\)"
    ):
        pipeline.train(runner, located, prepare, BatchesParams(epochs=2), FAST.model_copy(update={"warmup_steps": 17}))
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("_manifest.json"))


def test_settings_are_refused_before_training_on_stored_batches(book_prepared):
    runner, prepared = book_prepared
    stored = runner.stage("batches", BatchesParams(epochs=2), indices=prepared.stages["encode"])
    with pytest.raises(NoValidation, match="add --val-fraction"):
        pipeline.train_on(runner, stored.key, FAST.model_copy(update={"patience": 3}))
    with pytest.raises(WarmupTooLong, match=r"\(16 optimizer steps\)"):
        pipeline.train_on(runner, stored.key, FAST.model_copy(update={"warmup_steps": 17}))


def test_a_run_stopped_and_resumed_publishes_the_same_model(tmp_path, lyrics_zip):
    """Stopped (should_stop) in epoch 4 with a schedule, validation every other epoch and patience, resumed from
    epoch 3's checkpoint: the same weights, best weights and metrics, timings aside, as a run never stopped."""
    from artifacts.stages import run_stage
    from tasks.errors import Interrupted
    from tasks.train.events import EpochEnd, Resumed

    spec = BatchesParams(epochs=8, val_fraction=0.1)
    params = FAST.model_copy(
        update={"lr": 0.05, "lr_schedule": "cosine", "warmup_steps": 5, "eval_every": 2, "patience": 2}
    )
    refs = []
    for name, interrupt in (("whole", False), ("resumed", True)):
        runner = pipeline.plain_runner(tmp_path / name)
        made = pipeline.batches(runner, resolve_source(str(lyrics_zip), "jaychou"), sampler=spec)
        inputs = {"batches": made.stages["batches"], "vocab": made.stages["vocab"]}
        if interrupt:
            seen = []
            stop = {"now": False}

            def note(event, seen=seen, stop=stop):
                seen.append(event)
                stop["now"] = isinstance(event, EpochEnd) and event.epoch == 3

            with pytest.raises(Interrupted, match="training stopped in epoch 4 of 8"):
                run_stage(
                    runner.store,
                    "train",
                    params.model_copy(update={"checkpoint_every": 1}),
                    note,
                    lambda stop=stop: stop["now"],
                    **inputs,
                )
            events = []
            refs.append(run_stage(runner.store, "train", params, events.append, **inputs))
            assert events[0] == Resumed(3, events[0].checkpoint)
        else:
            refs.append(run_stage(runner.store, "train", params, **inputs))
    whole, resumed = refs
    assert whole.key == resumed.key
    for file in (WEIGHTS_FILE, BEST_WEIGHTS_FILE, "samples.parquet"):
        assert whole.file(file).read_bytes() == resumed.file(file).read_bytes(), file

    def timeless(ref):
        return pq.read_table(ref.file(METRICS_FILE)).drop(["seconds", "tokens_per_s"]).to_pylist()

    assert timeless(whole) == timeless(resumed)
    assert whole.summary == resumed.summary
