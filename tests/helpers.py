"""Helpers shared by the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


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
