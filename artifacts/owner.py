"""Who owns a lock or a folder being built: this host, this process and its start time; and whether such an
owner still lives (a pid alone can be reused by a later process)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def me() -> tuple[str, int, str | None]:
    return socket.gethostname(), os.getpid(), start_time(os.getpid())


def gone(host: str, pid: int, started: str | None) -> bool:
    """Whether the owner is certainly dead: on this host, and its pid absent or now another process's."""
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return started is not None and start_time(pid) not in (None, started)
