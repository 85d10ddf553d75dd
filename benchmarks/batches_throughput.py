"""Batches per second of our samplers against the book's iterators; shard writing and reading in tokens/s.

    .venv/bin/python -m benchmarks.batches_throughput [--seconds 1.0]

One process, the same corpora for every path: 10 k and 10 M tokens of a 1,027-symbol vocabulary (seeded),
num_steps 35, batch sizes 32 and 256. Both paths yield torch tensors; each is timed over whole epochs for
at least --seconds. Then one epoch of 10 M tokens at batch 256 is stored by the batches stage, as the token
stream and materialized as shards (tokens/s, bytes), and read back to int32 tensors by the reader (median
of 5 reads; the first, into fresh memory, is the slowest).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch

from artifacts.batch_reader import BatchReader
from artifacts.batches import BatchesSummary
from artifacts.indices import EncodeSummary, write_indices
from artifacts.stages import run_stage
from artifacts.store import Store
from tasks.batches import BatchesParams, SamplerSpec, iter_batches

NUM_STEPS = 35


def book_random(corpus_indices: list[int], batch_size: int, num_steps: int) -> Iterator:
    """The notebook's data_iter_random (Python lists to float32 tensors)."""
    num_examples = (len(corpus_indices) - 1) // num_steps
    epoch_size = num_examples // batch_size
    example_indices = list(range(num_examples))
    random.shuffle(example_indices)

    def _data(pos):
        return corpus_indices[pos : pos + num_steps]

    for i in range(epoch_size):
        i = i * batch_size
        batch_indices = example_indices[i : i + batch_size]
        X = [_data(j * num_steps) for j in batch_indices]
        Y = [_data(j * num_steps + 1) for j in batch_indices]
        yield torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)


def book_consecutive(corpus_indices: list[int], batch_size: int, num_steps: int) -> Iterator:
    """The book's data_iter_consecutive (the whole corpus to a tensor every epoch, then slices)."""
    corpus = torch.tensor(corpus_indices, dtype=torch.float32)
    batch_len = len(corpus) // batch_size
    indices = corpus[0 : batch_size * batch_len].view(batch_size, batch_len)
    epoch_size = (batch_len - 1) // num_steps
    for i in range(epoch_size):
        i = i * num_steps
        yield indices[:, i : i + num_steps], indices[:, i + 1 : i + num_steps + 1]


def book_epoch(book: Callable, corpus_indices: list[int], batch_size: int, _epoch: int) -> Iterator:
    return book(corpus_indices, batch_size, NUM_STEPS)


def ours(corpus: np.ndarray, spec: SamplerSpec, epoch: int) -> Iterator:
    """Our sampler, its batches handed over as tensors (no copy)."""
    for x, y in iter_batches(corpus, spec, epoch):
        yield torch.from_numpy(x), torch.from_numpy(y)


def batches_per_second(epoch_iter: Callable[[int], Iterator], seconds: float) -> float:
    count, epoch, start = 0, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or epoch == 0:
        for _ in epoch_iter(epoch):
            count += 1
        epoch += 1
    return count / (time.perf_counter() - start if elapsed else 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum time per measurement")
    args = parser.parse_args()
    random.seed(0)
    rng = np.random.default_rng(0)
    print(f"{'sampler':<12} {'tokens':>7} {'batch':>5} {'book b/s':>10} {'ours b/s':>10} {'ratio':>7}")
    for tokens, label in ((10_000, "10k"), (10_000_000, "10M")):
        corpus = rng.integers(0, 1_027, tokens).astype(np.int32)
        as_list = corpus.tolist()
        for sampler, book in (("random", book_random), ("consecutive", book_consecutive)):
            for batch in (32, 256):
                spec = SamplerSpec(sampler=sampler, batch_size=batch, num_steps=NUM_STEPS)
                theirs = batches_per_second(partial(book_epoch, book, as_list, batch), args.seconds)
                mine = batches_per_second(partial(ours, corpus, spec), args.seconds)
                print(f"{sampler:<12} {label:>7} {batch:>5} {theirs:>10,.0f} {mine:>10,.0f} {mine / theirs:>6.1f}x")

    work = Path(tempfile.mkdtemp(prefix="charflow-bench-"))
    try:
        store = Store(work)
        corpus = rng.integers(0, 1_027, 10_000_000).astype(np.int32)
        indices = store.materialize(
            stage="encode",
            key="0" * 64,
            params={},
            inputs={},
            code="",
            libraries={},
            build=lambda f: EncodeSummary(rows=write_indices(f, [corpus], {}), vocab_key="v" * 64, vocab_size=1_027),
        )
        for sampler, materialize in [(s, m) for m in (False, True) for s in ("random", "consecutive")]:
            params = BatchesParams(
                sampler=sampler, batch_size=256, num_steps=NUM_STEPS, epochs=1, materialize=materialize
            )
            start = time.perf_counter()
            ref = run_stage(store, "batches", params, indices=indices)
            written = time.perf_counter() - start
            size = sum(p.stat().st_size for p in ref.path.iterdir() if not p.name.startswith("_")) / 1e6
            tokens = BatchesSummary.of(ref).tokens
            times = []
            for _ in range(5):
                start = time.perf_counter()
                read = sum(x.numel() for x, _ in BatchReader(ref.path))
                times.append(time.perf_counter() - start)
                assert read == tokens
            reading = sorted(times)[2]
            form = "shards" if materialize else "stream"
            print(
                f"{sampler:<12} 10M tokens, batch 256, 1 epoch, {form}: stored "
                f"{tokens / written / 1e6:6.1f} M tokens/s ({size:.0f} MB), read to tensors "
                f"{tokens / reading / 1e6:6.1f} M tokens/s"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
