"""The training step on a GPU: the captured graph against the eager step, bf16, resume, and CPU loading.

Skipped without CUDA (CI has none): `scripts/gpu_check.sh` runs these on a GPU machine.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tasks.train.loop import make_optimizer, train
from tasks.train.model import ScratchRNN, build_model
from tasks.train.params import TrainParams
from tasks.train.schedule import Schedule
from tasks.train.step import WARMUP_STEPS, TrainStep
from tests.tasks.train.test_loop import TOY_VOCAB, run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
V, H = 1027, 256  # the book's vocabulary and hidden size


def book_batches(count, batch=32, steps=35, seed=0):
    """Batches of the book's shape with something to learn: each target a fixed function of its input."""
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(0, V, (batch, steps)) for _ in range(count)]
    return [(torch.from_numpy(x.astype(np.int32)), torch.from_numpy((x * 7 + 3) % V)) for x in inputs]


def losses_per_step(model_name, cuda_graph, batches, carry=True, device="cuda", **params):
    """Each step's mean token loss and the parameters after the last, from one seed."""
    settings = TrainParams(model=model_name, device=device, cuda_graph=cuda_graph, prefixes=(), **params)
    torch.manual_seed(0)
    model = build_model(V, settings, context=35).to(device)  # the book_batches' num_steps
    step = TrainStep(model, make_optimizer(model, settings), settings, carry_state=carry)
    step.start_epoch()
    losses, before = [], 0.0
    for x, y in batches:
        step(x, y)
        total = step.loss_sum.item()
        losses.append((total - before) / y.numel())
        before = total
    assert (step.graph is not None) == (cuda_graph and device == "cuda")
    return losses, [p.detach().cpu() for p in model.parameters()]


@pytest.mark.parametrize(
    ("model_name", "params"),
    [
        ("scratch", {}),
        ("rnn", {"optimizer": "adam", "lr": 1e-3}),
        ("gru", {"optimizer": "adam", "lr": 1e-3}),
        ("lstm", {"optimizer": "adam", "lr": 1e-3, "layers": 2}),
        ("rnn", {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.1}),  # two groups, one fused kernel
        ("transformer", {"optimizer": "adam", "lr": 1e-3, "layers": 2, "clip": 1.0}),
    ],
)
def test_the_graph_step_gives_the_eager_steps_losses(model_name, params):
    batches = book_batches(10)
    eager, eager_weights = losses_per_step(model_name, False, batches, **params)
    graph, graph_weights = losses_per_step(model_name, True, batches, **params)
    assert len(graph) == 10
    assert WARMUP_STEPS < 10  # most steps are replays
    assert graph == pytest.approx(eager, rel=1e-6)
    for g, e in zip(graph_weights, eager_weights, strict=True):
        assert torch.allclose(g, e, rtol=1e-5, atol=1e-7)
    assert eager[-1] < eager[0]  # the steps really trained


def test_a_partial_last_batch_takes_the_eager_step_with_the_same_numbers():
    batches = book_batches(6) + book_batches(1, batch=20, seed=1) + book_batches(2, seed=2)
    eager, _ = losses_per_step("scratch", False, batches, carry=False)
    graph, _ = losses_per_step("scratch", True, batches, carry=False)
    assert graph == pytest.approx(eager, rel=1e-6)


def test_the_books_loss_on_one_batch_on_the_gpu():
    """The book's one-hot formulation, on the GPU, against our model's loss (as test_model does on the CPU)."""
    torch.manual_seed(1)
    model = ScratchRNN(V, H).cuda()
    x, y = (torch.randint(0, V, (32, 35), device="cuda") for _ in range(2))
    state = model.init_state(32, torch.device("cuda"))
    logits, _ = model(x, state)  # (batch, num_steps, vocab)
    ours = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    h, outputs = state, []
    for t in range(35):
        h = torch.tanh(F.one_hot(x[:, t], V).float() @ model.W_xh + h @ model.W_hh + model.b_h)  # (batch, hidden)
        outputs.append(h @ model.W_hq + model.b_q)  # (batch, vocab)
    book = F.cross_entropy(torch.cat(outputs, dim=0), torch.transpose(y, 0, 1).reshape(-1))
    assert torch.allclose(ours, book, rtol=1e-5)
    assert abs(ours.item() - np.log(V)) < 0.01  # an untrained model: about ln(1,027)


@pytest.mark.parametrize("model_name", ["scratch", "rnn"])
def test_bf16_trains_close_to_fp32(model_name):
    batches = book_batches(10)
    params = {"optimizer": "adam", "lr": 1e-3} if model_name == "rnn" else {}
    fp32, _ = losses_per_step(model_name, True, batches, **params)
    bf16, _ = losses_per_step(model_name, True, batches, precision="bf16", **params)
    assert bf16 != fp32  # really another precision
    assert bf16 == pytest.approx(fp32, rel=2e-2)


@pytest.mark.parametrize("model", ["scratch", "lstm", "transformer"])
def test_a_killed_gpu_run_resumes_to_the_same_metrics(tmp_path, model):
    """The CUDA generators are saved and restored too. Not dropout between cuDNN layers: cuDNN draws its masks
    from a generator of its own that PyTorch keeps per process and does not expose, so a resumed run with
    dropout trains on, but with other masks than an uninterrupted one."""
    settings = {"device": "cuda", "model": model, "layers": 2 if model in ("lstm", "transformer") else 1}
    whole = run(**settings).state
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, fail_at=2, **settings)
    resumed = run(tmp_path, **settings).state
    # Replays after a resume start later than in the whole run: equal to rounding, as graph and eager are.
    curve = [m["perplexity"] for m in whole.metrics]
    assert [m["perplexity"] for m in resumed.metrics] == pytest.approx(curve, rel=1e-6)
    assert resumed.samples == whole.samples
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert len(saved["cuda_rng"]) == torch.cuda.device_count()


def test_a_model_trained_on_the_gpu_generates_on_the_cpu():
    from tasks.train.generate import continue_text

    trained = run(device="cuda", model="gru").model
    on_cpu = build_model(len(TOY_VOCAB), TrainParams(model="gru", hidden=8))
    on_cpu.load_state_dict({k: v.cpu() for k, v in trained.state_dict().items()})
    cpu_text = continue_text(on_cpu.eval(), TOY_VOCAB, "ab", 8, torch.device("cpu"))
    gpu_text = continue_text(trained.eval(), TOY_VOCAB, "ab", 8, torch.device("cuda"))
    assert cpu_text == gpu_text
    assert len(cpu_text) == 10


def test_a_whole_run_with_graphs_matches_eager_runs_epoch_by_epoch():
    with_graph = train_toy(cuda_graph=True)
    eager = train_toy(cuda_graph=False)
    assert [m["perplexity"] for m in with_graph] == pytest.approx([m["perplexity"] for m in eager], rel=1e-6)


def train_toy(**params):
    batches = [book_batches(4, seed=epoch) for epoch in range(3)]
    vocab = TOY_VOCAB.__class__(tokens=[chr(0x4E00 + i) for i in range(V)], counts=np.ones(V, np.int64), reserved=0)
    settings = TrainParams(device="cuda", prefixes=(), **params)
    return train(lambda e: batches[e], epochs=3, carry_state=True, vocab=vocab, params=settings).state.metrics


def test_a_changing_learning_rate_takes_the_eager_step():
    """A captured step would replay the rate it was captured with: a schedule steps eagerly, its rate each step."""
    settings = TrainParams(model="rnn", device="cuda", optimizer="adam", lr=1e-3, warmup_steps=4, prefixes=())
    torch.manual_seed(0)
    model = build_model(V, settings).to("cuda")
    optimizer = make_optimizer(model, settings)
    assert not optimizer.param_groups[0]["capturable"]
    step = TrainStep(model, optimizer, settings, carry_state=False, schedule=Schedule.of(settings, 10))
    step.start_epoch()
    rates = []
    for x, y in book_batches(6):
        step(x, y)
        rates.append(optimizer.param_groups[0]["lr"])
    assert step.graph is None
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
