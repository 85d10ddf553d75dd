"""The models and the training loop: the seed's claims, exact loss, real clipping, state handling, resume."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from tasks import train as train_module
from tasks.model import BOOK_SCRATCH_PARAMETERS, ModelParams, ScratchRNN, build_model
from tasks.train import OutOfDeviceMemory, TrainingDiverged, TrainParams, clip_by_global_norm, evaluate, train

V, H = 1_027, 256


def test_the_two_forms_of_the_hidden_state_equation_agree():
    torch.manual_seed(0)
    X = F.one_hot(torch.randint(0, V, (4,)), V).float()  # (batch, vocab)
    H_prev = torch.randn(4, H)
    W_xh, W_hh, b_h = torch.randn(V, H) * 0.01, torch.randn(H, H) * 0.01, torch.randn(H)
    separate = torch.tanh(X @ W_xh + H_prev @ W_hh + b_h)
    stacked = torch.tanh(torch.cat([X, H_prev], dim=1) @ torch.cat([W_xh, W_hh], dim=0) + b_h)
    assert torch.allclose(separate, stacked, atol=1e-6)


@pytest.mark.parametrize("num_steps", [1, 5, 35, 100])
def test_parameter_count_does_not_depend_on_num_steps(num_steps):
    model = build_model(V, ModelParams())
    assert sum(p.numel() for p in model.parameters()) == BOOK_SCRATCH_PARAMETERS == 592_643
    logits, state = model(torch.randint(0, V, (2, num_steps)), model.init_state(2, torch.device("cpu")))
    assert logits.shape == (2, num_steps, V) and state.shape == (2, H)


def test_our_loss_is_the_books_loss():
    """The book: one-hot inputs, a list of per-step outputs, time-major concatenation, mean cross-entropy."""
    torch.manual_seed(1)
    model = ScratchRNN(V, H)
    x, y = torch.randint(0, V, (32, 35)), torch.randint(0, V, (32, 35))
    state = model.init_state(32, torch.device("cpu"))
    logits, _ = model(x, state)
    ours = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    h, outputs = state, []
    for t in range(35):
        h = torch.tanh(F.one_hot(x[:, t], V).float() @ model.W_xh + h @ model.W_hh + model.b_h)
        outputs.append(h @ model.W_hq + model.b_q)
    book = F.cross_entropy(torch.cat(outputs, dim=0), torch.transpose(y, 0, 1).reshape(-1))
    assert torch.allclose(ours, book, rtol=1e-5)


@pytest.mark.parametrize("name", ["scratch", "rnn", "gru", "lstm"])
def test_clipping_really_clips_every_model(name):
    torch.manual_seed(2)
    model = build_model(50, ModelParams(model=name, hidden=16))
    x = torch.randint(0, 50, (4, 6))
    logits, _ = model(x, model.init_state(4, torch.device("cpu")))
    (logits.square().sum() * 100).backward()
    weights = list(model.parameters())
    before = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in weights]))
    assert before > 1
    returned = clip_by_global_norm(weights, 0.01)
    after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in weights]))
    assert torch.isclose(returned, before) and after <= 0.01 * (1 + 1e-4)


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"model": "transformer"}, "'scratch', 'rnn', 'gru' or 'lstm'"),
        ({"optimizer": "rmsprop"}, "'sgd' or 'adam'"),
        ({"lr": 0}, "lr"),
        ({"device": "cuda"} if not torch.cuda.is_available() else {"device": "tpu"}, "device"),
        ({"prefixes": ("",)}, "at least one character"),
        ({"hidden_size": 3}, "hidden_size"),
    ],
)
def test_bad_training_params_are_refused(bad, message):
    with pytest.raises(ValidationError, match=message):
        TrainParams(**bad)


def toy_epochs(epochs=4, batches=3, batch=4, steps=5, vocab=12, seed=0):
    rng = np.random.default_rng(seed)
    data = [
        [
            (
                torch.from_numpy(rng.integers(0, vocab, (batch, steps)).astype(np.int32)),
                torch.from_numpy(rng.integers(0, vocab, (batch, steps)).astype(np.int32)),
            )
            for _ in range(batches)
        ]
        for _ in range(epochs)
    ]
    return lambda epoch: data[epoch]


def run(tmp_path=None, epochs=4, fail_at=None, carry=False, **params):
    batches = toy_epochs(epochs)

    def epoch_batches(epoch):
        if epoch == fail_at:
            raise KeyboardInterrupt("killed")
        return batches(epoch)

    defaults = {
        "model": "rnn",
        "hidden": 8,
        "optimizer": "adam",
        "lr": 0.01,
        "pred_period": 2,
        "pred_chars": 3,
        "prefixes": ("ab",),
        "checkpoint_every": 1,
        "dropout": 0.0,
    }
    return train(
        epoch_batches,
        epochs=epochs,
        carry_state=carry,
        vocab_size=12,
        encode=lambda text: [ord(c) - ord("a") for c in text],
        decode=lambda ids: "".join(chr(97 + i) for i in ids),
        params=TrainParams(**{**defaults, **params}),
        checkpoint=tmp_path / "checkpoint.pt" if tmp_path else None,
        log=lambda _: None,
    )


def deterministic(metrics):
    return [(m["epoch"], m["perplexity"], m["grad_norm"]) for m in metrics]


@pytest.mark.parametrize("model", ["scratch", "lstm"])
def test_a_killed_run_resumes_to_the_same_metrics(tmp_path, model):
    _, _, whole = run(model=model, layers=2 if model == "lstm" else 1, dropout=0.3 if model == "lstm" else 0.0)
    with pytest.raises(KeyboardInterrupt):
        run(
            tmp_path,
            fail_at=2,
            model=model,
            layers=2 if model == "lstm" else 1,
            dropout=0.3 if model == "lstm" else 0.0,
        )
    assert (tmp_path / "checkpoint.pt").exists()
    _, _, resumed = run(
        tmp_path, model=model, layers=2 if model == "lstm" else 1, dropout=0.3 if model == "lstm" else 0.0
    )
    assert deterministic(resumed.metrics) == deterministic(whole.metrics)
    assert resumed.samples == whole.samples and len(whole.samples) == 2


def test_checkpoints_load_without_pickle(tmp_path):
    run(tmp_path)
    data = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert data["epoch"] == 4 and len(data["metrics"]) == 4


def test_a_diverging_loss_stops_with_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"the loss became \S+ in epoch (\d).*lower the learning rate") as err:
        run(tmp_path, model="scratch", optimizer="sgd", lr=1e30, clip=None, epochs=4)
    failed = int(err.value.args[0].split(" in epoch ")[1].split()[0])
    if failed > 1:
        kept = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
        assert kept["epoch"] == failed - 1
        assert f"last good checkpoint (epoch {failed - 1})" in str(err.value)


class Spy(torch.nn.Module):
    """A model that records the state it is given."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def init_state(self, batch, device):
        return self.inner.init_state(batch, device)

    def forward(self, x, state):
        self.seen.append((bool(state.abs().sum() == 0), state.requires_grad, state.grad_fn is None))
        return self.inner(x, state)


@pytest.mark.parametrize("carry", [False, True])
def test_hidden_state_per_sampler(monkeypatch, carry):
    spies = []

    def spy_model(vocab_size, params):
        spies.append(Spy(ScratchRNN(vocab_size, params.hidden)))
        return spies[-1]

    monkeypatch.setattr(train_module, "build_model", spy_model)
    run(epochs=2, carry=carry, model="scratch", pred_period=100)
    training_calls = spies[0].seen[:6]  # 2 epochs x 3 batches, before any prediction
    zeros = [zero for zero, _, _ in training_calls]
    if carry:
        assert zeros == [True, False, False, True, False, False]  # from zero at each epoch, then carried
        assert all(detached for _, _, detached in training_calls)  # carried state is cut from the graph
    else:
        assert zeros == [True] * 6


def test_perplexity_is_token_weighted(tmp_path):
    _, _, state = run(epochs=1)
    assert math.isfinite(state.metrics[0]["perplexity"]) and state.metrics[0]["perplexity"] > 1


def test_out_of_memory_names_the_batch_size(monkeypatch):
    class Greedy(torch.nn.Module):
        def __init__(self, *args):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def init_state(self, batch, device):
            return torch.zeros(batch, 1)

        def forward(self, x, state):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(train_module, "build_model", lambda vocab, params: Greedy())
    with pytest.raises(OutOfDeviceMemory, match="out of memory at batch size 4, num_steps 5.*lower --batch-size"):
        run(model="scratch")


def test_validation_perplexity():
    torch.manual_seed(0)
    model = build_model(12, ModelParams(model="rnn", hidden=8))
    held_out = np.random.default_rng(0).integers(0, 12, 500)
    value = evaluate(model, held_out, steps=5, max_streams=4, device=torch.device("cpu"))
    assert 6 < value < 24  # an untrained model is about as unsure as the 12 symbols
    _, _, state = run(epochs=2)
    assert all(m["val_perplexity"] is None for m in state.metrics)


def test_the_train_flow_takes_every_parameter_flat_with_the_same_defaults():
    import inspect

    from flows.train import train as train_flow
    from tasks.batches import BatchesParams

    flow_defaults = {name: p.default for name, p in inspect.signature(train_flow.fn).parameters.items()}
    expected = {**BatchesParams().model_dump(), **TrainParams(device="auto").model_dump()}
    expected["device"] = "auto"
    for name, default in expected.items():
        assert name in flow_defaults, name
        assert flow_defaults[name] == default, name


def test_the_same_seed_gives_the_same_metrics(book_text):
    """Run to run on the CPU: a thread-order-dependent backward (plain indexing) once broke this."""
    from tasks.batches import SamplerSpec, iter_batches
    from tasks.encode import encode as encode_text
    from tasks.vocab import VocabParams, build_vocab

    vocab = build_vocab(book_text, VocabParams())
    corpus = encode_text(book_text, vocab)

    def epoch_batches(epoch):
        return [
            (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))
            for x, y in iter_batches(corpus, SamplerSpec(), epoch)
        ]

    runs = [
        train(
            epoch_batches,
            epochs=4,
            carry_state=False,
            vocab_size=len(vocab),
            encode=list,
            decode=str,
            params=TrainParams(prefixes=()),
            log=lambda _: None,
        )[2].metrics
        for _ in range(3)
    ]
    assert deterministic(runs[0]) == deterministic(runs[1]) == deterministic(runs[2])
