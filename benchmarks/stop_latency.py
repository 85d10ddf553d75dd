"""How long the first Ctrl-C takes to stop a command, in seconds from the signal to the process's exit: inside
a `--regex` match that backtracks without end (its time limit 60 s), and mid-training (the next batch).

    .venv/bin/python -m benchmarks.stop_latency [--repeat 3]

Each run is `charflow` in a new session on a fresh CHARFLOW_HOME (its own Prefect server, stopped with it); the
signal goes to the process group, as a terminal's Ctrl-C does.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.train_throughput import DEFAULT_CORPUS


def _stop_after(args: list[str], started: Callable[[Path], bool], home: Path) -> float:
    env = {**os.environ, "CHARFLOW_HOME": str(home), "CHARFLOW_SERVER_IDLE": "0"}
    env.pop("PREFECT_API_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "charflow.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    while not started(home):
        if process.poll() is not None:
            raise SystemExit(f"charflow {' '.join(args)} ended before it could be stopped: {process.stderr.read()}")
        time.sleep(0.02)
    sent = time.perf_counter()
    os.killpg(process.pid, signal.SIGINT)
    process.wait()
    took = time.perf_counter() - sent
    last = process.stderr.read().strip().splitlines()[-1]
    if process.returncode != 130:
        raise SystemExit(f"exit {process.returncode}, not 130: {last}")
    return took


def _staging(stage: str):
    def started(home: Path) -> bool:
        folder = home / "store" / ".staging"
        return folder.is_dir() and any(p.name.startswith(f"{stage}-") for p in folder.iterdir())

    return started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    scratch = Path(tempfile.mkdtemp(prefix="charflow-stop-"))
    text = scratch / "aaa.txt"
    text.write_text("a" * 30_000, encoding="utf-8")
    cases = {
        "inside a `(a+)+b` match (clean)": (
            ["prepare", str(text), "--regex", "(a+)+b", "x", "--regex-timeout", "60", "--max-chars", "none"],
            _staging("clean"),
        ),
        "mid-training (the book's run)": (["run", str(DEFAULT_CORPUS)], _staging("train")),
    }
    print("| where | seconds from SIGINT to exit (median, min–max) |\n| --- | --- |")
    for label, (args, started) in cases.items():
        times = [_stop_after(args, started, scratch / f"home-{label[:6]}-{n}") for n in range(repeat)]
        print(f"| {label} | {statistics.median(times):.2f} ({min(times):.2f}–{max(times):.2f}) |")


if __name__ == "__main__":
    main()
