"""Where this machine's state lives (CHARFLOW_HOME, read through artifacts.settings: the store, downloads,
Prefect's records), the Prefect settings that must be set before Prefect is imported, and the checks that a
home can hold a run (writable, room on its disk, not moved from under its Prefect records). No Prefect: the
command configures the home before it imports Prefect."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from artifacts.settings import environment
from tasks.errors import CharflowError

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # The embedded server migrates its database on first start: slow on two cores.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
}
# Prefect's database and logs need room before any artifact does: below this, nothing starts.
MIN_FREE_BYTES = 100 * 2**20
HOME_MARKER = ".charflow-home"


class HomeError(CharflowError):
    """CHARFLOW_HOME cannot hold a run."""


def charflow_home() -> Path:
    return environment().home


def configure() -> Path:
    """Pin CHARFLOW_HOME to an absolute path and point Prefect's home inside it."""
    home = charflow_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeError(
            f"cannot create CHARFLOW_HOME {home} ({exc.strerror}); set CHARFLOW_HOME to a writable folder"
        ) from None
    # Absolute, so flow runs started elsewhere (a worker's temporary directory) find the same state.
    os.environ["CHARFLOW_HOME"] = str(home)
    for name, value in {"PREFECT_HOME": str(home / "prefect"), **DEFAULTS}.items():
        if not os.environ.get(name):
            os.environ[name] = value
    return home


def check_home(home: Path) -> None:
    """Refuse a home a run cannot write to, or whose disk is all but full; reset Prefect's cache records if
    the home was moved or copied (they hold absolute paths; the artifacts are found again by their keys)."""
    probe = home / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HomeError(
            f"CHARFLOW_HOME {home} is not writable ({exc.strerror}); set CHARFLOW_HOME to a writable folder"
        ) from None
    free = shutil.disk_usage(home).free
    if free < MIN_FREE_BYTES:
        raise HomeError(
            f"only {free / 2**20:.0f} MB free on the disk holding CHARFLOW_HOME {home}; a run needs at least "
            f"{MIN_FREE_BYTES / 2**20:.0f} MB (Prefect's database and logs, then the artifacts): free some space "
            "or set CHARFLOW_HOME to a larger disk"
        )
    marker = home / HOME_MARKER
    before = marker.read_text().strip() if marker.is_file() else None
    if before != str(home):
        # Moved or copied (or from before the marker: its records may name another path): the records are
        # only a cache of the store, which stays the truth.
        for records in ("cache-keys", "storage"):  # not locks: a held lock stays held wherever the home is
            shutil.rmtree(home / "prefect" / records, ignore_errors=True)
        if before is not None:
            print(
                f"charflow: CHARFLOW_HOME moved from {before} to {home}: Prefect's cache records were reset "
                "(the artifacts are intact and found again by their keys)",
                file=sys.stderr,
            )
        marker.write_text(str(home))


def store_root() -> Path:
    return charflow_home() / "store"


def downloads_dir() -> Path:
    return charflow_home() / "downloads"
