"""Any corpus size: time, MB/s, peak RSS and disk of every stage at 4 MB, 100 MB and 1 GB, and a cached re-run.

    .venv/bin/python -m benchmarks.scale [--sizes 4 100 1000] [--with-10gb] [--work DIR]
    .venv/bin/python -m benchmarks.scale --sizes 1000 --prepare-only 5 [--work DIR]

Each corpus is synthetic lyrics-like text (seeded): 3,000 CJK characters drawn by a Zipf law, newlines
between lines, about 3 bytes a character. Each stage runs in a fresh process (the real stage: Parquet in
and out, manifests, checksums); its peak RSS is its anonymous memory, sampled: the token stream's
memory-mapped pages and the page cache are the files', not the process's; a child process's would be shown
beside it. The reader is timed over one epoch (at most 20 M tokens) at batch 256, num_steps
35, int32. Last, the four prepare stages again from nothing in one process, as `charflow prepare` runs them
(imports paid once, the source hashed afresh), and once more after touching and freeing 3 GB: this machine
is a VM whose host takes back memory the guest has not used for a while, and a page cache that must take
such pages costs 1-1.5 s more at 1 GB (measured); a machine of its own has no such cost. `--with-10gb` adds
a 10 GB corpus, after checking the free space.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.memory import PeakAnonymous

SIZES_MB = (4, 100, 1000)
# The measurements of the code before this work, for comparison (MB of input, 2 cores).
BEFORE = {
    "prepare peak RSS": "510 MiB + 1.7 MiB per MB (2.2 GiB at 1 GB)",
    "prepare MB/s at 1 GB": "50-57",
    "batches 1 epoch peak RSS": "5.7 MiB per MB (6.2 GiB at 1 GB)",
    "batches disk, random, 250 epochs": "2.55 bytes per input byte per epoch (638 GB at 1 GB)",
    "reader at 100 MB": "18-30 M tokens/s",
    "cached prepare": "re-hashes 3.75x the input",
}


def write_corpus(path: Path, megabytes: float, seed: int = 0) -> None:
    """Lyrics-like lines written in 8 MB pieces: memory stays small whatever the size."""
    rng = np.random.default_rng(seed)
    cjk = np.arange(0x4E00, 0x4E00 + 3_000, dtype=np.uint32)
    weights = 1.0 / np.arange(1, len(cjk) + 1)
    weights /= weights.sum()
    left = int(megabytes * 1e6)
    with path.open("wb") as out:
        while left > 0:
            chars = min(left, 8_000_000) // 3 + 1
            cps = rng.choice(cjk, size=chars, p=weights)
            cps[rng.random(chars) < 0.09] = ord("\n")
            data = cps.astype("<u4").tobytes().decode("utf-32-le").encode("utf-8")[:left]
            data = data[: len(data.decode("utf-8", errors="ignore").encode("utf-8"))]
            out.write(data)
            left -= len(data)


WORKER = """
import json, sys, time
from pathlib import Path
from artifacts.stages import run_stage
from artifacts.store import Store, ArtifactRef
from artifacts.batch_reader import BatchReader
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.encode import EncodeParams
from tasks.fetch import fetch
from tasks.ingest import IngestParams
from tasks.vocab import VocabParams

job = json.loads(sys.argv[1])
store = Store(job["store"])
refs = {k: ArtifactRef.model_validate(v) for k, v in job.get("refs", {}).items()}
if job.get("warm_gb"):  # memory touched and given back: the page cache then takes pages the VM's host backs
    import numpy
    numpy.ones(int(job["warm_gb"] * 1e9), dtype=numpy.uint8)
start = time.perf_counter()
if job["stage"] == "fetch":
    out = fetch(job["source"], Path(job["store"]) / "downloads")
elif job["stage"] == "prepare":  # as `charflow prepare` runs them: one process, the source not yet hashed
    text = run_stage(store, "ingest", IngestParams(), source=fetch(job["source"], Path(job["store"]) / "downloads"))
    text = run_stage(store, "clean", CleanParams(max_chars=None), text=text)
    vocab = run_stage(store, "vocab", VocabParams(), text=text)
    out = run_stage(store, "encode", EncodeParams(), text=text, vocab=vocab)
elif job["stage"] == "ingest":
    out = run_stage(store, "ingest", IngestParams(), source=fetch(job["source"], Path(job["store"]) / "downloads"))
elif job["stage"] == "clean":
    out = run_stage(store, "clean", CleanParams(max_chars=None), text=refs["ingest"])
elif job["stage"] == "vocab":
    out = run_stage(store, "vocab", VocabParams(), text=refs["clean"])
elif job["stage"] == "encode":
    out = run_stage(store, "encode", EncodeParams(), text=refs["clean"], vocab=refs["vocab"])
elif job["stage"] == "batches":
    out = run_stage(store, "batches", BatchesParams(**job["spec"]), indices=refs["encode"])
elif job["stage"] == "reader":
    reader = BatchReader(refs["batches"].path)
    tokens = 0
    for x, y in reader.epoch_batches(0):
        tokens += x.numel()
        if tokens >= 20_000_000:
            break
    out = {"tokens": tokens}
seconds = time.perf_counter() - start
out = out.model_dump(mode="json") if hasattr(out, "model_dump") else out
print(json.dumps({"seconds": seconds, "out": out}))
"""


def run(job: dict) -> dict:
    """The job in a fresh process, its memory sampled from here."""
    command = [sys.executable, "-c", WORKER, json.dumps(job)]
    with (
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as worker,
        PeakAnonymous(every=0.02, pid=worker.pid) as peak,  # 20 ms: the sampler shares the 2 cores
    ):
        out, err = worker.communicate()
    if worker.returncode:
        raise SystemExit(f"{job['stage']} failed:\n{err[-3000:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "rss_mb": peak.mb, "helper_mb": peak.children_mb}


def disk(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())


def row(
    mb: float, what: str, seconds: float, rate: str, rss: float | None, size: str = "", helper: float = 0
) -> list[str]:
    memory = "" if rss is None else f"{rss:,.0f}" + (f" + {helper:,.0f} helper" if helper else "")
    return [f"{mb:,.0f} MB", what, f"{seconds:.2f} s", rate, memory, size]


def measure(work: Path, megabytes: float, full: bool = True) -> list[list[str]]:
    """Every stage on a corpus of `megabytes`; not `full` (10 GB): one batches spec and no cached re-run, each
    artifact removed once the next no longer needs it, so that the disk holds at most about 4x the corpus."""
    source = work / f"corpus-{megabytes:g}mb.txt"
    if not source.exists():
        write_corpus(source, megabytes)
    mb = source.stat().st_size / 1e6
    store = work / f"store-{megabytes:g}mb"
    shutil.rmtree(store, ignore_errors=True)
    rows, refs, prepare_seconds = [], {}, 0.0
    for stage in ("ingest", "clean", "vocab", "encode"):
        done = run({"stage": stage, "store": str(store), "source": str(source), "refs": refs})
        refs[stage] = done["out"]
        prepare_seconds += done["seconds"]
        size = f"{disk(done['out']['path']) / 1e6:,.1f} MB"
        rate = f"{mb / done['seconds']:,.0f}"
        rows.append(row(mb, stage, done["seconds"], rate, done["rss_mb"], size, done["helper_mb"]))
        if not full and stage == "clean":
            shutil.rmtree(refs["ingest"]["path"])
    rows.append(row(mb, "**prepare**", prepare_seconds, f"**{mb / prepare_seconds:,.0f}**", None))
    later = prepare_seconds - sum(float(r[2].split()[0]) for r in rows if r[1] == "ingest")
    rows.append(row(mb, "clean, vocab, encode", later, f"{mb / later:,.0f}", None))
    specs = [(s, e) for s in ("random", "consecutive") for e in (1, 250)] if full else [("random", 1)]
    for sampler, epochs in specs:
        spec = {"sampler": sampler, "batch_size": 256, "num_steps": 35, "epochs": epochs}
        done = run({"stage": "batches", "store": str(store), "spec": spec, "refs": refs})
        size = f"{disk(done['out']['path']) / 1e6:,.1f} MB"
        rate = f"{mb / done['seconds']:,.0f}"
        rows.append(row(mb, f"batches, {sampler}, {epochs} epochs", done["seconds"], rate, done["rss_mb"], size))
        if epochs == 1:
            read = run({"stage": "reader", "store": str(store), "refs": {"batches": done["out"]}})
            speed = f"{read['out']['tokens'] / read['seconds'] / 1e6:,.1f} M tok/s"
            rows.append(row(mb, f"reader, {sampler}", read["seconds"], speed, read["rss_mb"]))
        shutil.rmtree(done["out"]["path"])
    if full:
        cached = 0.0
        for stage in ("ingest", "clean", "vocab", "encode"):
            cached += run({"stage": stage, "store": str(store), "source": str(source), "refs": refs})["seconds"]
        rows.append(row(mb, "prepare, all cached", cached, "", None))
        shutil.rmtree(store, ignore_errors=True)
        done = run({"stage": "prepare", "store": str(store), "source": str(source)})
        rate = f"**{mb / done['seconds']:,.0f}**"
        rows.append(row(mb, "**prepare, one process**", done["seconds"], rate, done["rss_mb"], "", done["helper_mb"]))
        shutil.rmtree(store, ignore_errors=True)
        done = run({"stage": "prepare", "store": str(store), "source": str(source), "warm_gb": 3})
        rate = f"**{mb / done['seconds']:,.0f}**"
        rows.append(row(mb, "**prepare, one process, warm memory**", done["seconds"], rate, None))
    shutil.rmtree(store, ignore_errors=True)
    return rows


def repeat_prepare(work: Path, megabytes: float, times: int) -> None:
    """The one-process prepare `times` times, alternately on the memory as it is and after warming it."""
    source = work / f"corpus-{megabytes:g}mb.txt"
    if not source.exists():
        write_corpus(source, megabytes)
    mb, store = source.stat().st_size / 1e6, work / f"store-{megabytes:g}mb"
    seconds: dict[int, list[float]] = {0: [], 3: []}
    for _ in range(times):
        for warm, runs in seconds.items():
            shutil.rmtree(store, ignore_errors=True)
            job = {"stage": "prepare", "store": str(store), "source": str(source), "warm_gb": warm}
            runs.append(run(job)["seconds"])
    shutil.rmtree(store, ignore_errors=True)
    for warm, runs in seconds.items():
        median = statistics.median(runs)
        how = "after warming 3 GB" if warm else "memory as it is"
        listed = ", ".join(f"{s:.2f}" for s in sorted(runs))
        print(f"{mb:,.0f} MB prepare, one process, {how}: {listed} s; median {median:.2f} s = {mb / median:,.0f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=list(SIZES_MB), help="corpus sizes in MB")
    parser.add_argument("--with-10gb", action="store_true", help="also a 10 GB corpus (checks free space first)")
    parser.add_argument("--work", type=Path, help="where corpora and stores go (default: a temporary folder)")
    parser.add_argument(
        "--prepare-only", type=int, metavar="N", help="only the one-process prepare, N times each way, with medians"
    )
    args = parser.parse_args()
    if args.prepare_only:
        work = args.work or Path(tempfile.mkdtemp(prefix="charflow-scale-"))
        work.mkdir(parents=True, exist_ok=True)
        for size in args.sizes:
            repeat_prepare(work, size, args.prepare_only)
        return
    sizes = list(args.sizes) + ([10_000] if args.with_10gb else [])
    work = args.work or Path(tempfile.mkdtemp(prefix="charflow-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    if 10_000 in sizes:
        free = shutil.disk_usage(work).free
        if free < 35e9:  # the corpus, its text twice (ingest and clean), the indices, the token stream
            raise SystemExit(f"a 10 GB run needs about 35 GB free in {work}; {free / 1e9:.0f} GB are")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print("| corpus | stage | time | MB/s | peak anon. RSS (MB) | disk |\n| --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        for row in measure(work, size, full=size < 10_000):
            print("| " + " | ".join(row) + " |", flush=True)
        if size >= 10_000:
            (work / f"corpus-{size:g}mb.txt").unlink()
    print("\nBefore this work (the issue's measurements):")
    for what, figure in BEFORE.items():
        print(f"- {what}: {figure}")


if __name__ == "__main__":
    main()
