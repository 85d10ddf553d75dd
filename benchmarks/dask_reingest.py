"""Reingest of several corpora, or the prepare of one corpus of many files: one process against a Dask
cluster of 2 workers.

    .venv/bin/python -m benchmarks.dask_reingest [--corpora 4] [--mb 20] [--workers 2] [--seed 0] [--one-corpus]

Generates `corpora` synthetic files of `mb` MB each (seeded), then runs the reingest flow on them (each file a
corpus), or with --one-corpus the prepare flow on their folder (one corpus whose members are counted at once
on a cluster); whole corpora (--max-chars none), three ways, each from an empty home and an empty shared store:
  local          Prefect's thread pool, the local folder store and catalog (the embedded default);
  local+shared   the same process, with the object store (moto) and PostgreSQL;
  dask           `dask scheduler` + `workers` x `dask worker` on 127.0.0.1, each worker with its own home,
                 the same object store and PostgreSQL.
A small reingest first loads this process's libraries. Prints the wall time of each, MB/s of input, and the
ratios. On a 2-core machine the workers share the cores the single process already uses: any gain there is
overlap. More cores pay where the workers are other machines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks.prepare_throughput import synthetic_corpus


def run_flow(sources: Path, home: Path, env: dict[str, str], one_corpus: bool = False) -> float:
    from artifacts import settings
    from flows.prepare import prepare
    from flows.reingest import reingest

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({**env, "CHARFLOW_HOME": str(home)})
    settings.reset()
    try:
        started = time.perf_counter()
        if one_corpus:
            made = prepare(source=str(sources), max_chars=None)
            new = [made.new_version and not any(ref.cache_hit for ref in made.stages.values())]
        else:
            new = [row["status"] == "new" for row in reingest(sources=[str(sources)], max_chars=None)]
        elapsed = time.perf_counter() - started
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert all(new), "every run starts from an empty home and store"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", type=int, default=4)
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one-corpus", action="store_true", help="prepare the folder as one corpus")
    args = parser.parse_args()

    from tests.services import S3_ENV, create_bucket, create_database, dask_cluster, moto_server, postgres_cluster

    root = Path(tempfile.mkdtemp(prefix="charflow-dask-bench-"))
    sources = root / "corpora"
    sources.mkdir()
    for n in range(args.corpora):
        (sources / f"corpus{n}.txt").write_text(synthetic_corpus(args.mb, args.seed + n), encoding="utf-8")
    total_mb = sum(p.stat().st_size for p in sources.iterdir()) / 1e6
    what = f"one corpus of {args.corpora} files" if args.one_corpus else f"{args.corpora} corpora"
    print(f"{what}, {total_mb:.1f} MB in all; {os.cpu_count()} cores", flush=True)
    os.environ["CHARFLOW_HOME"] = str(root / "harness")
    from flows import home

    home.configure()
    results: dict[str, float] = {}
    with ExitStack() as stack:
        from charflow.home_server import attached

        s3 = stack.enter_context(moto_server(root / "moto.log"))
        postgres = stack.enter_context(postgres_cluster())
        # The Prefect server a `charflow` command starts, before Prefect is imported.
        os.environ["PREFECT_API_URL"] = stack.enter_context(attached()).url

        def shared(name: str) -> dict[str, str]:
            create_bucket(s3, name)
            return {
                **S3_ENV,
                "AWS_ENDPOINT_URL": s3,
                "CHARFLOW_STORE_URL": f"s3://{name}/charflow",
                "CHARFLOW_CATALOG_URL": create_database(postgres, name.replace("-", "_")),
            }

        # Imports (torch, numba, matplotlib) and numba's first loads, outside every timing.
        warm = root / "warm"
        warm.mkdir()
        (warm / "warm.txt").write_text(synthetic_corpus(0.1, args.seed), encoding="utf-8")
        run_flow(warm, root / "home-warm", {})
        results["local"] = run_flow(sources, root / "home-local", {}, args.one_corpus)
        print(f"local         {results['local']:7.2f} s", flush=True)
        results["local+shared"] = run_flow(sources, root / "home-shared", shared("bench-shared"), args.one_corpus)
        print(f"local+shared  {results['local+shared']:7.2f} s", flush=True)
        env = shared("bench-dask")
        cluster = stack.enter_context(dask_cluster(root / "cluster", env, workers=args.workers))
        address = {**env, "CHARFLOW_DASK_ADDRESS": cluster["address"]}
        results["dask"] = run_flow(sources, root / "home-dask", address, args.one_corpus)
        print(f"dask ({args.workers} workers) {results['dask']:7.2f} s", flush=True)
    print()
    print(f"{'run':<14} {'seconds':>8} {'MB/s':>7} {'vs local':>9}")
    for name, seconds in results.items():
        print(f"{name:<14} {seconds:8.2f} {total_mb / seconds:7.1f} {results['local'] / seconds:8.2f}x")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
