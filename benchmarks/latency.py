"""How long a person waits for a command: each one cold and cached, beside `charflow inspect ls`, and where the
fixed cost goes (imports, the server's start, the flow and task runs).

    .venv/bin/python -m benchmarks.latency [--repeat 5] [--compare REV]

Whole processes, as a user runs them (`python -m charflow.cli ...`), on the book's lyrics (from ../shared/data
or CHARFLOW_DATA_PATH), each a median of `--repeat` runs. `--compare REV` runs the same commands with the code
of git revision REV (a worktree of it in the scratch folder), in the same sitting, and prints the ratios.
Wall seconds; CPU seconds of the command itself (a server it started lives on and is not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LYRICS = "jaychou_lyrics.txt.zip"
TASKS = 7  # of a prepare flow run


def lyrics() -> Path:
    for folder in [*os.environ.get("CHARFLOW_DATA_PATH", "").split(os.pathsep), str(REPO.parent / "shared" / "data")]:
        if folder and (Path(folder) / LYRICS).is_file():
            return Path(folder) / LYRICS
    sys.exit(f"the lyrics are missing: put {LYRICS} in ../shared/data or a folder on CHARFLOW_DATA_PATH")


class Code:
    """A checkout to run commands with: this one, or another revision's worktree."""

    def __init__(self, root: Path, scratch: Path):
        self.root, self.scratch = root, scratch

    def env(self, home: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(self.root), "CHARFLOW_HOME": str(home), **extra}
        for name in ("PREFECT_HOME", "PREFECT_API_URL", "CHARFLOW_SERVER_IDLE"):
            env.pop(name, None)
        if api_url:
            env["PREFECT_API_URL"] = api_url
        return env

    def run(self, args: list[str], env: dict[str, str], check: bool = True) -> tuple[float, float]:
        """(wall, CPU) seconds of one `python -m charflow.cli ARGS`."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "charflow.cli", *args], env=env, cwd=self.scratch, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if check and result.returncode != 0:
            sys.exit(f"charflow {' '.join(args)} failed ({self.root}):\n{result.stderr[-3000:]}")
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def python(self, code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(self.root)}, check=True)
        return time.perf_counter() - start


def median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def start_server(code: Code, home: Path) -> tuple[subprocess.Popen, str]:
    """A Prefect server of its own, as PREFECT_API_URL names one."""
    from tests.helpers import free_port

    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    home.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env=env,
        stdout=(home / "server.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    from charflow.serve import wait_healthy

    wait_healthy(url, server)
    return server, url


def measure(code: Code, repeat: int) -> dict[str, tuple[float, float]]:
    corpus, scratch = str(lyrics()), code.scratch
    (scratch / "empty.txt").write_bytes(b"")
    figures: dict[str, tuple[float, float]] = {}
    counter = iter(range(1, 10_000))

    def homes() -> Path:
        return scratch / f"home-{next(counter)}"

    def row(name: str, runs: Callable[[], list[tuple[float, float]]]) -> None:
        figures[name] = median(runs())
        print(f"  {name:<58} {figures[name][0]:6.2f} s wall {figures[name][1]:6.2f} s CPU", flush=True)

    warm = homes()
    code.run(["prepare", corpus], code.env(warm))  # the home's server (where there is one) and the store
    row("inspect ls (no Prefect)", lambda: [code.run(["inspect", "ls"], code.env(warm)) for _ in range(repeat)])
    row("prepare, every stage cached", lambda: [code.run(["prepare", corpus], code.env(warm)) for _ in range(repeat)])
    row(
        "prepare, a new corpus version (--max-chars N)",
        lambda: [code.run(["prepare", corpus, "--max-chars", str(9000 + i)], code.env(warm)) for i in range(repeat)],
    )

    def new_home() -> tuple[float, float]:
        home = homes()
        try:
            return code.run(["prepare", corpus], code.env(home))
        finally:
            stop_server(code, home)  # an idle server would take CPU from the next measures

    row("prepare, on a brand-new home", lambda: [new_home() for _ in range(3)])

    def server_stopped(i: int) -> tuple[float, float]:
        stop_server(code, warm)
        return code.run(["prepare", corpus, "--max-chars", str(6000 + i)], code.env(warm))

    row("prepare, a new corpus version, the home's server stopped", lambda: [server_stopped(i) for i in range(repeat)])
    row(
        "prepare of an empty file (refused)",
        lambda: [code.run(["prepare", str(scratch / "empty.txt")], code.env(warm), check=False) for _ in range(repeat)],
    )
    code.run(["run", corpus], code.env(warm))
    row(
        "run (the book's defaults), every stage cached",
        lambda: [code.run(["run", corpus], code.env(warm)) for _ in range(repeat)],
    )

    def concurrent() -> list[tuple[float, float]]:
        home, walls = homes(), []
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "charflow.cli", "prepare", corpus, "--max-chars", str(8000 + i)],
                env=code.env(home),
                cwd=scratch,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in range(4)
        ]
        failed = sum(p.wait() != 0 for p in procs)
        walls.append((time.perf_counter() - start, float(failed)))
        stop_server(code, home)
        return walls

    row("4 prepares at once on a new home (wall; 'CPU' = failures)", concurrent)
    server, url = start_server(code, scratch / "server-home")
    try:
        served = homes()
        code.run(["prepare", corpus], code.env(served, url))
        row(
            "prepare, every stage cached, PREFECT_API_URL set",
            lambda: [code.run(["prepare", corpus], code.env(served, url)) for _ in range(repeat)],
        )
        code.run(["run", corpus], code.env(served, url))
        row(
            "run, every stage cached, PREFECT_API_URL set",
            lambda: [code.run(["run", corpus], code.env(served, url)) for _ in range(repeat)],
        )
        row(
            "prepare, a new corpus version, PREFECT_API_URL set",
            lambda: [
                code.run(["prepare", corpus, "--max-chars", str(7000 + i)], code.env(served, url))
                for i in range(repeat)
            ],
        )
    finally:
        server.terminate()
        server.wait()
    stop_server(code, warm)
    return figures


def stop_server(code: Code, home: Path) -> None:
    """The home's server, where this revision has one."""
    if (home / "prefect" / "server.json").exists():
        code.run(["server", "stop"], code.env(home), check=False)


def split(code: Code, repeat: int, figures: dict[str, tuple[float, float]]) -> None:
    """Where the fixed cost of a command goes."""
    print("the fixed cost, split", flush=True)
    took = {}
    for what, snippet in [
        ("python itself", "pass"),
        ("import charflow.cli", "import charflow.cli"),
        ("import prefect", "import prefect"),
        ("import torch", "import torch"),
        ("import torch, prefect, pyarrow", "import torch, prefect, pyarrow"),
    ]:
        took[what] = statistics.median(code.python(snippet) for _ in range(repeat))
        print(f"  {what:<58} {took[what]:6.2f} s", flush=True)
    warm = figures["prepare, a new corpus version (--max-chars N)"][0]
    cold = figures["prepare, a new corpus version, the home's server stopped"][0]
    print(f"  {'starting the home server (an existing home)':<58} {cold - warm:6.2f} s", flush=True)
    served = figures["prepare, a new corpus version, PREFECT_API_URL set"][0]
    # The stages' own work on 9,000 characters is milliseconds: the rest is Prefect's.
    per_task = (served - took["import charflow.cli"] - took["import prefect"]) / TASKS
    print(f"  {f'a flow run, per task ({TASKS} tasks: fetch, 4 stages, register, record)':<58} {per_task:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compare", metavar="REV", help="also measure git revision REV, in the same sitting")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="charflow-latency-"))
    print(f"{os.cpu_count()} cores; median of {args.repeat} runs (3 for a brand-new home); scratch {scratch}")
    try:
        results = {}
        codes = {"this checkout": REPO}
        if args.compare:
            worktree = scratch / "compare"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.compare], check=True
            )
            codes[args.compare] = worktree
        for name, root in codes.items():
            print(f"{name} ({root})", flush=True)
            folder = scratch / name.replace(" ", "-")
            folder.mkdir()
            results[name] = measure(Code(root, folder), args.repeat)
        split(Code(REPO, scratch), args.repeat, results["this checkout"])
        if args.compare:
            ours, theirs = results["this checkout"], results[args.compare]
            print(f"wall, this checkout against {args.compare}")
            for name, (wall, _) in ours.items():
                print(f"  {name:<58} {wall:6.2f} s vs {theirs[name][0]:6.2f} s  ({theirs[name][0] / wall:.1f}x)")
        print(json.dumps({name: {row: fig[0] for row, fig in rows.items()} for name, rows in results.items()}))
    finally:
        if args.compare:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(scratch / "compare")], check=False
            )
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
