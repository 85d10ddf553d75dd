"""Training speed: our step against the book's loop, tokens/s, on the lyrics at the book's settings.

    .venv/bin/python -m benchmarks.train_throughput [--epochs 5] [--device auto]

One process, the same batches (consecutive sampling, batch 32, 35 steps, vocabulary 1,027, hidden 256):
the book's scratch loop (one-hot inputs, a Python list of outputs, `.item()` syncs, manual clipping and
SGD) against our `tasks.train.loop.train` for the scratch model and for `rnn` (torch.nn, cuDNN on a GPU).
Runs without Prefect, so it runs as it is on a GPU machine.
"""

from __future__ import annotations

import argparse
import math
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tasks.batches import SamplerSpec, iter_batches
from tasks.clean import CleanParams, clean
from tasks.encode import encode
from tasks.train.loop import train
from tasks.train.params import TrainParams, resolve_device
from tasks.vocab import VocabParams, build_vocab

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "jaychou_lyrics.txt.zip"


def book_epochs(corpus, vocab_size, epochs, device, hidden=256, lr=100.0, theta=0.01):
    """The book's train_and_predict_rnn inner loop for the scratch RNN, consecutive sampling."""

    def param(*shape):
        return torch.nn.Parameter(
            torch.tensor(np.random.normal(0, 0.01, size=shape), device=device, dtype=torch.float32)
        )

    W_xh, W_hh, b_h = (
        param(vocab_size, hidden),
        param(hidden, hidden),
        torch.nn.Parameter(torch.zeros(hidden, device=device)),
    )
    W_hq, b_q = param(hidden, vocab_size), torch.nn.Parameter(torch.zeros(vocab_size, device=device))
    params = [W_xh, W_hh, b_h, W_hq, b_q]
    spec = SamplerSpec(sampler="consecutive")
    tokens = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        state = (torch.zeros((32, hidden), device=device),)
        l_sum, n = 0.0, 0
        for X, Y in iter_batches(corpus, spec, epoch):
            X = torch.tensor(X, dtype=torch.float32, device=device)
            Y = torch.tensor(Y, dtype=torch.float32, device=device)
            for s in state:
                s.detach_()
            inputs = [F.one_hot(X[:, i].long(), vocab_size).float() for i in range(X.shape[1])]
            (H,), outputs = state, []
            for x in inputs:
                H = torch.tanh(torch.matmul(x, W_xh) + torch.matmul(H, W_hh) + b_h)
                outputs.append(torch.matmul(H, W_hq) + b_q)
            state = (H,)
            outputs = torch.cat(outputs, dim=0)
            y = torch.transpose(Y, 0, 1).contiguous().view(-1)
            loss = F.cross_entropy(outputs, y.long())
            for p in params:
                if p.grad is not None:
                    p.grad.data.zero_()
            loss.backward()
            norm = torch.tensor([0.0], device=device)
            for p in params:
                norm += (p.grad.data**2).sum()
            norm = norm.sqrt().item()
            if norm > theta:
                for p in params:
                    p.grad.data *= theta / norm
            for p in params:
                p.data -= lr * p.grad
            l_sum += loss.item() * y.shape[0]
            n += y.shape[0]
        tokens += n
    return tokens / (time.perf_counter() - start), math.exp(l_sum / n)


def ours(corpus, vocab, epochs, device, **model):
    spec = SamplerSpec(sampler="consecutive")
    params = TrainParams(device=device, prefixes=(), **model)
    batches = [
        [
            (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))
            for x, y in iter_batches(corpus, spec, 0)
        ]
    ]
    _, _, state = train(lambda e: batches[0], epochs=epochs, carry_state=True, vocab=vocab, params=params)
    seconds = sum(m["seconds"] for m in state.metrics)
    tokens = sum(m["tokens_per_s"] * m["seconds"] for m in state.metrics)
    return tokens / seconds, state.metrics[-1]["perplexity"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    device = resolve_device(TrainParams(device=args.device)).device
    with zipfile.ZipFile(args.corpus) as archive:
        text = clean(archive.read("jaychou_lyrics.txt").decode("utf-8"), CleanParams())
    vocab = build_vocab(text, VocabParams())
    corpus = encode(text, vocab)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {args.epochs} epochs of 8 batches (32 x 35)")
    np.random.seed(0)
    torch.manual_seed(0)
    book, _ = book_epochs(corpus, len(vocab), args.epochs, torch.device(device))
    print(f"book's scratch loop        {book:>12,.0f} tokens/s")
    for label, model in (
        ("ours, scratch", {}),
        ("ours, rnn (torch.nn)", {"model": "rnn", "optimizer": "adam", "lr": 1e-3}),
    ):
        speed, _ = ours(corpus, vocab, args.epochs, device, **model)
        print(f"{label:<26} {speed:>12,.0f} tokens/s  {speed / book:5.2f}x the book's loop")


if __name__ == "__main__":
    main()
