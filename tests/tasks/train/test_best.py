"""Training past the book: validation every N epochs, the best weights kept, early stopping, learning-rate
schedules and AdamW, all resumable to the same numbers."""

import numpy as np
import pytest
import torch

from tasks.errors import Interrupted
from tasks.train import loop
from tasks.train.loop import Validation, make_optimizer, train
from tasks.train.model import build_model
from tasks.train.params import TrainParams, WarmupTooLong
from tests.tasks.train.test_loop import FAST, TOY_VOCAB, toy_epochs

HELD_OUT = Validation(np.random.default_rng(7).integers(0, 12, 400), num_steps=5, streams=4)


def run(tmp_path=None, epochs=6, validation=HELD_OUT, should_stop=lambda: False, total_steps=None, **params):
    return train(
        toy_epochs(8),  # the same batches for every length of run: the first epochs of a longer one
        epochs=epochs,
        carry_state=False,
        vocab=TOY_VOCAB,
        params=TrainParams(**{**FAST, **params}),
        checkpoint=tmp_path / "checkpoint.pt" if tmp_path else None,
        validation=validation,
        should_stop=should_stop,
        total_steps=total_steps,
    )


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def scripted(monkeypatch, perplexities):
    """Validation answers these perplexities in turn: a constructed case for early stopping."""
    answers = iter(perplexities)
    calls = []

    def evaluate(model, validation, device):
        calls.append(1)
        return next(answers)

    monkeypatch.setattr(loop, "evaluate", evaluate)
    return calls


def test_the_best_weights_are_those_of_a_run_stopped_at_the_best_epoch():
    trained = run(epochs=6, lr=0.05)
    whole = trained.state
    val = [row["val_perplexity"] for row in whole.metrics]
    assert whole.best_epoch == 1 + int(np.argmin(val)) == 4  # not the last: the held-out text is noise
    assert whole.best_val_perplexity == min(val)
    short = run(epochs=whole.best_epoch, lr=0.05)
    assert same_weights(whole.best_weights, short.model.state_dict())
    assert not same_weights(whole.best_weights, trained.model.state_dict())
    assert all(w.device.type == "cpu" for w in whole.best_weights.values())


def test_patience_stops_after_that_many_validations_without_a_better_one(monkeypatch):
    scripted(monkeypatch, [5.0, 4.0, 4.5, 4.0, 3.0, 2.0, 1.0, 0.5])  # 4.0 again is no improvement
    state = run(epochs=8, patience=2).state
    assert (state.epoch, state.stopped_early, state.best_epoch, state.best_val_perplexity) == (4, True, 2, 4.0)
    assert [row["epoch"] for row in state.metrics] == [1, 2, 3, 4]
    assert [s["epoch"] for s in state.samples] == [2, 4]  # samples of the epoch it stopped at too


def test_patience_reached_at_the_last_epoch_is_no_early_stop(monkeypatch):
    scripted(monkeypatch, [5.0, 6.0, 7.0])
    state = run(epochs=3, patience=2).state
    assert (state.epoch, state.stopped_early, state.best_epoch, state.stale) == (3, False, 1, 2)


def test_validation_every_second_epoch_and_always_the_last(monkeypatch):
    calls = scripted(monkeypatch, [3.0, 2.0, 1.0])
    state = run(epochs=5, eval_every=2).state
    assert [row["val_perplexity"] for row in state.metrics] == [None, 3.0, None, 2.0, 1.0]
    assert len(calls) == 3
    assert (state.best_epoch, state.best_val_perplexity) == (5, 1.0)


def test_patience_counts_validations_not_epochs(monkeypatch):
    scripted(monkeypatch, [3.0, 4.0, 5.0, 1.0])
    state = run(epochs=8, eval_every=2, patience=2).state
    assert (state.epoch, state.best_epoch) == (6, 2)  # validated at 2, 4, 6: two without improvement


def test_without_validation_there_is_no_best():
    state = run(epochs=2, validation=None).state
    assert (state.best_epoch, state.best_weights, state.stale, state.stopped_early) == (None, None, 0, False)
    assert state.steps == 6


SCHEDULED = {"lr": 0.05, "lr_schedule": "cosine", "warmup_steps": 4, "patience": 2, "eval_every": 1}


def stop_after(calls):
    count = iter(range(calls, -1, -1))
    return lambda: next(count, 0) == 0


def comparable(state):
    rows = [{k: v for k, v in row.items() if k not in ("seconds", "tokens_per_s")} for row in state.metrics]
    return rows, state.samples, state.epoch, state.steps, state.best_epoch, state.stale, state.stopped_early


@pytest.mark.parametrize("stop_at_batch", [8, 14])
def test_an_interrupted_run_resumes_to_the_same_weights_best_weights_and_patience(tmp_path, stop_at_batch):
    """Stopped by should_stop partway (the 8th or 14th time it is asked), resumed from the last checkpoint: the
    same run."""
    whole = run(epochs=8, **SCHEDULED)
    with pytest.raises(Interrupted, match="training stopped in epoch"):
        run(tmp_path, epochs=8, should_stop=stop_after(stop_at_batch), **SCHEDULED)
    resumed = run(tmp_path, epochs=8, **SCHEDULED)
    assert comparable(resumed.state) == comparable(whole.state)
    assert same_weights(resumed.model.state_dict(), whole.model.state_dict())
    assert same_weights(resumed.state.best_weights, whole.state.best_weights)
    assert whole.state.stale > 0  # the patience count was carried over, not restarted
    again = run(tmp_path, epochs=8, **SCHEDULED)  # a finished (or early-stopped) run has nothing left to train
    assert comparable(again.state) == comparable(whole.state)


def test_a_schedule_changes_the_numbers_and_a_constant_one_does_not():
    book = run(epochs=2, validation=None)
    assert same_weights(run(epochs=2, validation=None, warmup_steps=0).model.state_dict(), book.model.state_dict())
    warm = run(epochs=2, validation=None, warmup_steps=3)
    assert not same_weights(warm.model.state_dict(), book.model.state_dict())
    assert warm.optimizer.param_groups[0]["lr"] == 0.01  # the last step's rate: the full one, after the warmup


def test_a_warmup_longer_than_the_training_is_refused_before_any_step(tmp_path):
    with pytest.raises(WarmupTooLong, match=r"--warmup-steps 7 is longer than the whole training \(6 optimizer"):
        run(tmp_path, epochs=2, warmup_steps=7)
    assert not (tmp_path / "checkpoint.pt").exists()
    with pytest.raises(WarmupTooLong, match=r"\(5 optimizer steps\)"):
        run(epochs=2, warmup_steps=7, total_steps=5)


def test_adamw_decays_the_matrices_only():
    params = TrainParams(**{**FAST, "optimizer": "adamw", "lr": 0.1, "weight_decay": 0.5})
    torch.manual_seed(0)
    model = build_model(12, params)
    optimizer = make_optimizer(model, params)
    decayed, kept = optimizer.param_groups
    assert decayed["weight_decay"] == 0.5
    assert kept["weight_decay"] == 0.0
    assert all(w.dim() == 2 for w in decayed["params"])
    assert all(w.dim() == 1 for w in kept["params"])
    assert len(kept["params"]) > 0  # the RNN's biases
    before = {name: w.detach().clone() for name, w in model.named_parameters()}
    for w in model.parameters():
        w.grad = torch.zeros_like(w)  # Adam's own update is zero: only the decay moves the weights
    optimizer.step()
    for name, w in model.named_parameters():
        expected = before[name] * (1 - 0.1 * 0.5) if w.dim() == 2 else before[name]
        assert torch.equal(w.detach(), expected), name


def test_adamw_with_weight_decay_trains_other_weights_than_adam():
    adam = run(epochs=2, validation=None, optimizer="adam").model.state_dict()
    adamw = run(epochs=2, validation=None, optimizer="adamw", weight_decay=0.1).model.state_dict()
    assert not same_weights(adam, adamw)
    plain = run(epochs=2, validation=None, optimizer="adamw").model.state_dict()  # AdamW without decay is Adam
    assert all(torch.allclose(adam[name], plain[name], atol=1e-6) for name in adam)
