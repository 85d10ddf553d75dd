"""The Prefect API server a one-shot command (prepare, run, ...) uses: the one at PREFECT_API_URL (checked to
answer), or a temporary one that lives as long as the command (the long-lived one of `charflow serve` is
charflow.serve).

The temporary server is Prefect's own ephemeral app (what Prefect starts when no URL is set), started by
charflow in its own session, so that Ctrl-C in the terminal reaches charflow alone and charflow can stop
cleanly, and tied to charflow's life: it gets SIGTERM when charflow exits, even by kill -9.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from charflow.children import die_with_this_process
from charflow.serve import ServeError, wait_healthy
from flows import home


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_reachable(api_url: str, timeout: float = 5.0) -> None:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout):
            return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServeError(
            f"cannot reach the Prefect server at PREFECT_API_URL={api_url} ({reason}); start it (charflow serve) "
            "or unset PREFECT_API_URL to use a temporary one"
        ) from None


@contextmanager
def temporary_server() -> Iterator[str]:
    """Start Prefect's ephemeral server for this command; its API URL while it runs."""
    prefect = importlib.util.find_spec("prefect")
    if prefect is None or prefect.origin is None:
        raise ServeError("Prefect is not installed; run scripts/setup.sh")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log_path = home.charflow_home() / "prefect" / "temporary-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(Path(prefect.origin).parent.parent),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_this_process(),
        )
    try:
        timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))
        try:
            wait_healthy(url, process, timeout)
        except ServeError as exc:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise ServeError(f"{exc}; its last words: {tail[0]} (full log: {log_path})") from None
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def prefect_api() -> Iterator[None]:
    """PREFECT_API_URL for the command: the given server, checked, or a temporary one set before Prefect loads.

    When Prefect is already imported (charflow called inside another Prefect program or a test harness),
    that program's settings stand.
    """
    if "prefect" in sys.modules:
        yield
        return
    if api_url := os.environ.get("PREFECT_API_URL"):
        check_reachable(api_url)
        yield
        return
    with temporary_server() as url:
        os.environ["PREFECT_API_URL"] = url
        try:
            yield
        finally:
            drain_prefect()  # while the server still answers
            os.environ.pop("PREFECT_API_URL", None)


def drain_prefect(timeout: float = 10.0) -> None:
    """Send Prefect's pending logs and events while the server still answers (at exit it would be gone)."""
    if "prefect.logging.handlers" in sys.modules:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=timeout)
    if "prefect.events.worker" in sys.modules:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=timeout)
