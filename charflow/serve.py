"""`charflow serve`: a Prefect server on 127.0.0.1 (or PREFECT_API_URL's), the work pool, the deployments of
prefect.yaml and a worker in the foreground; Ctrl-C or SIGTERM stops the worker, then the server. It runs until
stopped; the server a one-shot command starts for itself, and stops when it ends, is charflow.temporary_server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from artifacts.remote import redact
from charflow.children import die_with_this_process
from tasks.errors import CharflowError

POOL = "charflow-local"
PREFECT = [sys.executable, "-m", "prefect"]


class ServeParams(BaseModel):
    """Where `charflow serve` listens and keeps Prefect's records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(4200, ge=1, le=65535, description="the server's port on 127.0.0.1")
    database: str | None = Field(
        None,
        description="Prefect's database: postgresql+asyncpg://USER@HOST:PORT/DB (default: "
        "PREFECT_SERVER_DATABASE_CONNECTION_URL, else SQLite under CHARFLOW_HOME)",
    )


class ServeError(CharflowError):
    """The server, the pool or the worker could not be started."""


def project_root() -> Path:
    root = Path(__file__).resolve().parents[1]
    if not (root / "prefect.yaml").is_file():
        raise ServeError(f"no prefect.yaml in {root}: run charflow serve from a checkout of charflow")
    return root


def wait_healthy(api_url: str, process: subprocess.Popen | None, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.read().strip() == b"true":
                    return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise ServeError(f"the Prefect server exited with status {process.returncode}")
        time.sleep(0.5)
    raise ServeError(f"the Prefect server at {api_url} was not healthy after {timeout:.0f} s")


def _stop(process: subprocess.Popen | None, name: str) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        print(f"charflow serve: {name} did not stop in 30 s; killing it", file=sys.stderr)
        process.kill()
        process.wait()


def check_database(url: str) -> None:
    """Refuse, before starting anything, a database URL Prefect cannot use or a database that does not answer."""
    import psycopg

    if not url.startswith("postgresql+asyncpg://"):
        raise ServeError(f"--database {redact(url)!r} is not postgresql+asyncpg://USER@HOST:PORT/DB; fix --database")
    try:
        psycopg.connect(url.replace("+asyncpg", "", 1), connect_timeout=10).close()
    except psycopg.OperationalError as exc:
        raise ServeError(
            f"cannot reach Prefect's database {redact(url)} ({str(exc).strip()[:200]}); check that it is up and fix "
            "--database"
        ) from None


def serve(port: int = 4200, database: str | None = None) -> int:
    root = project_root()
    env = {**os.environ, "PWD": str(root)}
    server = None
    api_url = os.environ.get("PREFECT_API_URL")
    database = database or os.environ.get("PREFECT_SERVER_DATABASE_CONNECTION_URL")
    if database and not api_url:
        check_database(database)
    if not api_url:
        api_url = f"http://127.0.0.1:{port}/api"
        # `--port` moves the API but not the URL the UI is told to call (/ui-settings): that comes from these,
        # or from a PREFECT_API_URL in the user's profile.
        server_env = {
            **env,
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_API_URL": api_url,
        }
        if database:  # PostgreSQL instead of SQLite: several workers, and no "database is locked"
            server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database
            print(f"charflow serve: Prefect's database is {redact(database)}", flush=True)
        server = subprocess.Popen(
            [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env,
            preexec_fn=die_with_this_process(),
        )
        env["PREFECT_API_URL"] = api_url
    worker = None
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        wait_healthy(api_url, server)
        print(f"charflow serve: Prefect API at {api_url}", flush=True)
        subprocess.run(
            [*PREFECT, "work-pool", "create", POOL, "--type", "process", "--overwrite"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run([*PREFECT, "--no-prompt", "deploy", "--all"], env=env, cwd=root, check=True)
        worker = subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", POOL], env=env, cwd=root, preexec_fn=die_with_this_process()
        )
        print(f"charflow serve: worker started on pool {POOL}; Ctrl-C stops it", flush=True)
        worker.wait()
        return 0 if stopping else worker.returncode
    except KeyboardInterrupt:
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # The worker first, so that it does not lose its server mid-run.
        _stop(worker, "the worker")
        _stop(server, "the server")
