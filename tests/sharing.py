"""A service the pytest-xdist workers of one session share: the first worker that needs it starts it, under a
file lock, and writes where it listens to a file beside the workers' temporary folders; the others read that
file; the last worker to let go of it stops it. Without xdist, the session's own service, as before."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The processes this worker started: waited for as children when it is the one to stop them.
_CHILDREN: dict[int, subprocess.Popen] = {}


def remember(proc: subprocess.Popen) -> int:
    """Keep `proc` for stop_process(): its pid."""
    _CHILDREN[proc.pid] = proc
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited: only its parent (another worker, perhaps) has yet to reap it


def stop_process(pid: int, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after `timeout`: this worker's child or another worker's."""
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # let go of when the file closes
        yield


@contextmanager
def shared_service(
    name: str,
    tmp_path_factory,
    start: Callable[[Path], dict[str, Any]],
    stop: Callable[[dict[str, Any]], None],
) -> Iterator[dict[str, Any]]:
    """What `start(folder)` returned (JSON: a URL, a pid), started once for every worker of the session.
    `stop(info)` runs in whichever worker lets go of it last."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:  # a session of one process: the service is its own
        info = start(tmp_path_factory.mktemp(name))
        try:
            yield info
        finally:
            stop(info)
        return
    shared = tmp_path_factory.getbasetemp().parent  # the session's folder, above each worker's own
    state = shared / f"{name}.json"
    with _locked(shared / f"{name}.lock"):
        if state.exists():
            held = json.loads(state.read_text())
        else:
            held = {"info": start(Path(tempfile.mkdtemp(prefix=f"{name}-", dir=shared))), "users": []}
        held["users"].append(worker)
        state.write_text(json.dumps(held))
    try:
        yield held["info"]
    finally:
        with _locked(shared / f"{name}.lock"):
            held = json.loads(state.read_text())
            held["users"].remove(worker)
            if held["users"]:
                state.write_text(json.dumps(held))
            else:
                state.unlink()
                stop(held["info"])
