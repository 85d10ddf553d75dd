"""Where local state lives, and the Prefect settings that must be set before Prefect is imported."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # The embedded server migrates its database on first start: slow on two cores.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
}


def charflow_home() -> Path:
    return Path(os.environ.get("CHARFLOW_HOME") or ".charflow").expanduser().resolve()


def configure() -> Path:
    """Pin CHARFLOW_HOME to an absolute path and point Prefect's home inside it."""
    home = charflow_home()
    home.mkdir(parents=True, exist_ok=True)
    # Absolute, so flow runs started elsewhere (a worker's temporary directory) find the same state.
    os.environ["CHARFLOW_HOME"] = str(home)
    for name, value in {"PREFECT_HOME": str(home / "prefect"), **DEFAULTS}.items():
        if not os.environ.get(name):
            os.environ[name] = value
    return home


def store_root() -> Path:
    return charflow_home() / "store"


def downloads_dir() -> Path:
    return charflow_home() / "downloads"
