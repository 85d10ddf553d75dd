"""Training on a GPU, against the book's loop and the card's own matrix-product peak.

    python -m benchmarks.gpu_train [--corpus PATH] [--skip-fidelity]

In one process (`scripts/gpu_check.sh` runs it on the device machine; it runs on the CPU too, slowly):
1. the card's bf16 matrix-product peak (8192³, the median of 10 after 3 warm-ups, CUDA events);
2. the book's size (batch 32, num_steps 35, hidden 256, vocabulary 1,027, consecutive sampling): the book's
   scratch loop beside ours, scratch and `rnn`, with the captured graph and eagerly;
3. large batch: `rnn`, batch 16,384, hidden 1,024, bf16, in TFLOP/s counting 3 × num_steps × 2 × batch ×
   (hidden² + hidden² + hidden × vocabulary) per step;
4. the book's three 250-epoch runs through the pipeline (no Prefect): final perplexity, the training part
   (epoch step time, graph capture and warm-up included) and the rest (samples, checkpoints) apart.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.train_throughput import DEFAULT_CORPUS, book_epochs
from tasks.batches import SamplerSpec, iter_batches
from tasks.clean import CleanParams, clean
from tasks.encode import encode
from tasks.train.loop import make_optimizer, train
from tasks.train.model import build_model
from tasks.train.params import TrainParams, resolve_device
from tasks.train.step import TrainStep
from tasks.vocab import VocabParams, build_vocab

LARGE = {"batch": 16_384, "hidden": 1_024, "num_steps": 35, "vocab": 1_027}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: str, n: int = 8192) -> float:
    """bf16 TFLOP/s of an n³ product on random data: the card's ceiling as measured here, not its datasheet."""
    if device != "cuda":
        return float("nan")
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * n**3 / statistics.median(times) / 1e12


def book_size(corpus: np.ndarray, vocab, device: str, epochs: int) -> None:
    """Tokens/s at the book's size: the first epoch (warm-up, capture) apart from the steady ones."""
    np.random.seed(0)
    torch.manual_seed(0)
    book, _ = book_epochs(corpus, len(vocab), 5, torch.device(device))
    print(f"book's scratch loop, 5 epochs      {book:>12,.0f} tokens/s")
    spec = SamplerSpec(sampler="consecutive")
    batches = [
        (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))
        for x, y in iter_batches(corpus, spec, 0)
    ]
    for label, model in (("scratch", {}), ("rnn", {"model": "rnn", "optimizer": "adam", "lr": 1e-3})):
        for cuda_graph in (True, False):
            params = TrainParams(device=device, prefixes=(), cuda_graph=cuda_graph, **model)
            _, _, state = train(lambda e: batches, epochs=epochs, carry_state=True, vocab=vocab, params=params)
            steady = state.metrics[1:]
            speed = sum(m["tokens_per_s"] * m["seconds"] for m in steady) / sum(m["seconds"] for m in steady)
            how = "graph" if cuda_graph and device == "cuda" else "eager"
            print(
                f"ours, {label:<7} {how:<5} {epochs:>3} epochs   {speed:>12,.0f} tokens/s  {speed / book:6.2f}x the "
                f"book's loop (first epoch {state.metrics[0]['seconds'] * 1e3:.0f} ms)"
            )


def large_batch(device: str, steps: int, peak: float, profile: bool = False) -> None:
    """bf16 `rnn` at batch 16,384: the captured step replayed `steps` times, timed with events."""
    batch, hidden, num_steps, vocab = LARGE["batch"], LARGE["hidden"], LARGE["num_steps"], LARGE["vocab"]
    if device != "cuda":
        batch = 256  # the CPU would take minutes a step at the real size
    for precision in ("bf16", "fp32"):
        params = TrainParams(model="rnn", hidden=hidden, optimizer="adam", lr=1e-3, device=device, precision=precision)
        torch.manual_seed(0)
        model = build_model(vocab, params).to(device)
        step = TrainStep(model, make_optimizer(model, params), params, carry_state=False)
        gen = torch.Generator().manual_seed(0)
        x, y = (torch.randint(0, vocab, (batch, num_steps), generator=gen).to(device) for _ in range(2))
        step.start_epoch()
        for _ in range(4):  # warm-up and capture
            step(x, y)
        synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            step(x, y)
        synchronize(device)
        seconds = (time.perf_counter() - started) / steps
        loss = step.loss_sum.item() / (batch * num_steps * (steps + 4))
        if profile and device == "cuda":
            where_the_time_goes(step, x, y)
        flops = 3 * num_steps * 2 * batch * (hidden * hidden + hidden * hidden + hidden * vocab)
        tflops = flops / seconds / 1e12
        memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        print(
            f"large batch rnn {precision}: batch {batch:,}, hidden {hidden:,}: {seconds * 1e3:.1f} ms a step, "
            f"{batch * num_steps / seconds / 1e6:.1f} M tokens/s, {tflops:.0f} TFLOP/s = {tflops / peak:.0%} of "
            f"the measured bf16 peak; loss {loss:.3f}; "
            f"peak memory {memory:.1f} GiB"
        )
        del model, step
        if device == "cuda":
            torch.cuda.empty_cache()


def where_the_time_goes(step: TrainStep, x: torch.Tensor, y: torch.Tensor, top: int = 12) -> None:
    """The GPU kernels of 3 replayed steps by total time: what the step spends its time on."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            step(x, y)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=top, max_name_column_width=70))


def fidelity(corpus_zip: Path, device: str) -> None:
    """The book's three runs, seed 0, through the pipeline: where they land, and where the time went."""
    import pyarrow.parquet as pq

    from artifacts.model import METRICS_FILE, TrainSummary
    from benchmarks.fidelity_seeds import RUNS
    from flows.pipeline import PrepareParams, batches, plain_runner
    from flows.pipeline import train as train_flow
    from tasks.batches import BatchesParams
    from tasks.fetch import resolve_source

    root = Path(tempfile.mkdtemp(prefix="charflow-gpu-fidelity-"))
    print("| run | perplexity at 50 / 100 / 250 | training part | samples, checkpoints, writing | last sample |")
    print("| --- | --- | --- | --- | --- |")
    for label, (sampler, model) in RUNS.items():
        runner = plain_runner(root)
        located = resolve_source(str(corpus_zip), "jaychou")
        batches(runner, located, PrepareParams(), BatchesParams(sampler=sampler))  # the train stage alone is timed
        started = time.perf_counter()
        made = train_flow(
            runner, located, PrepareParams(), BatchesParams(sampler=sampler), TrainParams(device=device, **model)
        )
        whole = time.perf_counter() - started
        stage = made.stages["train"]
        table = pq.read_table(stage.file(METRICS_FILE))
        curve, seconds = table.column("perplexity").to_pylist(), table.column("seconds").to_pylist()
        sample = TrainSummary.of(stage).samples[-1].text
        print(
            f"| {label} | {curve[49]:.3f} / {curve[99]:.3f} / {curve[-1]:.3f} | {sum(seconds):.2f} s | "
            f"{whole - sum(seconds):.2f} s | `{sample}` |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=30, help="epochs at the book's size, ours")
    parser.add_argument("--large-steps", type=int, default=10)
    parser.add_argument("--skip-fidelity", action="store_true")
    parser.add_argument("--only-large", action="store_true", help="the peak and the large batch alone")
    parser.add_argument("--profile", action="store_true", help="the large batch's kernels by time")
    args = parser.parse_args()
    device = resolve_device(TrainParams(device=args.device)).device
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}")
    peak = matmul_peak(device)
    print(f"bf16 matrix product 8192³: {peak:.0f} TFLOP/s")
    if args.only_large:
        large_batch(device, args.large_steps, peak, args.profile)
        return
    with zipfile.ZipFile(args.corpus) as archive:
        text = clean(archive.read("jaychou_lyrics.txt").decode("utf-8"), CleanParams())
    vocab = build_vocab(text, VocabParams())
    book_size(encode(text, vocab), vocab, device, args.epochs)
    large_batch(device, args.large_steps, peak, args.profile)
    if not args.skip_fidelity:
        fidelity(args.corpus, device)


if __name__ == "__main__":
    main()
