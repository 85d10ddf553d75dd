"""Helpers shared by the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*args: str, home: Path, api_url: str | None = None, cwd: Path | None = None, timeout: int = 300):
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CHARFLOW_HOME": str(home)}
    env.pop("PREFECT_HOME", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "charflow.cli", *args],
        env=env,
        cwd=cwd or home,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_until(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 60.0, every: float = 0.2) -> T:
    """`read()` again until `done` holds of what it read, or `timeout` passes: the last read either way (the
    caller's assertions say what was missing). For what a server or another process stores a moment later."""
    deadline = time.monotonic() + timeout
    while not done(found := read()) and time.monotonic() < deadline:
        time.sleep(every)
    return found


def task_runs_of(flow_run_id, until=lambda runs: True, timeout: float = 60.0) -> list:
    """The flow run's task runs on the server (this process's Prefect settings), read until `until(runs)` holds:
    Prefect 3 records task runs from the events its client sends in the background, and the server's recorder
    consumes them a moment later, so a read right after the flow may miss some."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from charflow.home_server import drain_prefect

    drain_prefect()  # this process's events sent
    this_run = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        return read_until(lambda: client.read_task_runs(flow_run_filter=this_run), until, timeout)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: to check that a failure changed nothing."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def ingest_source(source, tmp_path: Path, params=None, sha256: str | None = None):
    """Fetch a source into `tmp_path` and ingest it: (Fetched, text)."""
    from tasks.fetch import fetch
    from tasks.ingest import IngestParams, ingest, read_members

    params = params or IngestParams()
    fetched = fetch(str(source), tmp_path / "downloads", sha256, params.patterns)
    return fetched, ingest(read_members(fetched, params), params)


@contextmanager
def charflow_serve(root: Path, env: dict[str, str], *args: str, timeout: float = 300) -> Iterator[dict]:
    """`charflow serve ARGS` in `root` until its worker has started; stopped by SIGTERM at the end. Yields the
    environment a `prefect` command needs to reach it ("env") and the process ("proc")."""
    import pytest

    port = free_port()
    env = {
        **env,
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log_path = root / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "charflow.cli", "serve", "--port", str(port), *args],
            env=env,
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while "worker started" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"charflow serve {' '.join(args)} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        try:
            yield {"env": {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}, "proc": proc}
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()


@contextmanager
def environment_of(monkeypatch, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """`env` set for the test (the shared backends' URLs, say), the backends reopened under it and after it."""
    from artifacts import settings

    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    settings.reset()
    try:
        yield env
    finally:
        settings.reset()


def machine(home: Path):
    """A runner of one machine: its own home folder, the backends the environment names (the shared ones,
    when set: then every machine of a test sees the same store and catalog)."""
    from artifacts import backends
    from flows.pipeline import PlainRunner

    root = home / "store"
    return PlainRunner(backends.open_store(root), backends.open_catalog(root), root / "downloads")


def prepare_jaychou(runner, lyrics_zip: Path):
    """The lyrics corpus prepared by `runner`."""
    from flows.pipeline import prepare
    from tasks.fetch import resolve_source

    return prepare(runner, resolve_source(str(lyrics_zip), "jaychou"))
