"""Throughput of clean -> vocab -> encode -> Parquet against the book's per-character Python mapping.

    .venv/bin/python -m benchmarks.prepare_throughput [--mb 100] [--seed 0]

One synthetic corpus of mixed CJK and ASCII text (seeded), ingested by a child process so that this
process's peak memory is ours alone. Prints MB/s of UTF-8 input for our stages (the real stage
functions: Parquet in, Parquet out, manifests and checksums), for our in-memory core, and for the book's
path, the ratios, and our peak resident memory as a multiple of the input.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from artifacts.indices import EncodeSummary
from artifacts.stages import run_stage
from artifacts.store import ArtifactRef, Store
from artifacts.text import IngestSummary, read_text
from tasks.clean import CleanParams, clean
from tasks.encode import EncodeParams, encode
from tasks.ingest import IngestParams
from tasks.sources import Fetched
from tasks.vocab import VocabParams, build_vocab


def synthetic_corpus(megabytes: float, seed: int) -> str:
    """Lyrics-like lines: Zipf-weighted CJK characters, ASCII words and punctuation, newline-separated."""
    rng = np.random.default_rng(seed)
    cjk = np.arange(0x4E00, 0x4E00 + 2_500, dtype=np.uint32)
    ascii_ = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.!?'", np.uint8)
    pool = np.concatenate([cjk, ascii_.astype(np.uint32)])
    weights = np.concatenate([1.0 / np.arange(1, len(cjk) + 1), np.full(len(ascii_), 0.02)])
    chars = int(megabytes * 1e6 / 2.6)  # about 2.6 UTF-8 bytes per character at this mix
    cps = rng.choice(pool, size=chars, p=weights / weights.sum()).astype(np.uint32)
    cps[rng.random(chars) < 0.09] = ord("\n")
    return cps.astype("<u4").tobytes().decode("utf-32-le")


def book_path(text: str) -> list[int]:
    """The notebook's cleaning and mapping, on the whole text."""
    chars = text.replace("\n", " ").replace("\r", " ")
    idx_to_char = list(set(chars))
    char_to_idx = {char: i for i, char in enumerate(idx_to_char)}
    return [char_to_idx[char] for char in chars]


def _generate_and_ingest(work: Path, megabytes: float, seed: int, result: multiprocessing.Queue) -> None:
    source = work / "corpus.txt"
    source.write_text(synthetic_corpus(megabytes, seed), encoding="utf-8")
    data = source.read_bytes()
    fetched = Fetched(
        source=str(source),
        kind="file",
        path=str(source),
        size=len(data),
        name="bench",
        sha256=hashlib.sha256(data).hexdigest(),
    )
    result.put(run_stage(Store(work / "store"), "ingest", IngestParams(), source=fetched).model_dump())


def median_time(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def rss_mb(peak: bool) -> float:
    if peak:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=100.0, help="corpus size in MB of UTF-8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path; the median is reported")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="charflow-bench-"))
    try:
        ctx = multiprocessing.get_context("spawn")
        result = ctx.Queue()
        child = ctx.Process(target=_generate_and_ingest, args=(work, args.mb, args.seed, result))
        child.start()
        ingested = ArtifactRef.model_validate(result.get())
        child.join()
        mb = (work / "corpus.txt").stat().st_size / 1e6
        print(f"corpus: {mb:.1f} MB UTF-8, {IngestSummary.of(ingested).chars:,} characters, seed {args.seed}")

        before = rss_mb(peak=False)
        runs = []
        for run in range(args.repeat):
            store = Store(work / f"run{run}")
            start = time.perf_counter()
            cleaned = run_stage(store, "clean", CleanParams(max_chars=None), text=ingested)
            t_clean = time.perf_counter()
            vocab = run_stage(store, "vocab", VocabParams(), text=cleaned)
            t_vocab = time.perf_counter()
            encoded = run_stage(store, "encode", EncodeParams(), text=cleaned, vocab=vocab)
            t_encode = time.perf_counter()
            runs.append((t_encode - start, t_clean - start, t_vocab - t_clean, t_encode - t_vocab))
            shutil.rmtree(store.root)
        peak = rss_mb(peak=True) - before
        ours, *stages = sorted(runs)[len(runs) // 2]
        split = "clean {:.2f} s, vocab {:.2f} s, encode {:.2f} s".format(*stages)
        print(f"ours  (stages, Parquet written): {ours:6.2f} s  {mb / ours:7.1f} MB/s   [{split}]")
        print(f"      peak memory of the stages: {peak:.0f} MB = {peak / mb:.2f}x the input")

        text = read_text(ingested.path)
        core = median_time(
            args.repeat, lambda: encode(c := clean(text, CleanParams(max_chars=None)), build_vocab(c, VocabParams()))
        )
        print(f"ours  (in memory, no Parquet):    {core:6.2f} s  {mb / core:7.1f} MB/s")
        t_book = median_time(args.repeat, lambda: book_path(text))
        print(f"book  (set + dict + list comp):   {t_book:6.2f} s  {mb / t_book:7.1f} MB/s")
        print(f"ratio ours/book: end to end {t_book / ours:.1f}x, in memory {t_book / core:.1f}x")
        indices, book = (
            encode(clean(text, CleanParams(max_chars=None)), build_vocab(text, VocabParams())),
            book_path(text),
        )
        assert len(book) == len(indices) == EncodeSummary.of(encoded).rows, "both paths map every character"
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
