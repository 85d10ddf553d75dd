"""Locks that cannot outlive their holder: Prefect's file-system lock manager, with the holder's host and
process written into each lock, a lease its holder renews while it lives, and a bounded, visible wait.

A lock is stale when its holder process is gone from this host, or when its lease lapsed (a holder on another
host stopped renewing): it is broken with a warning. A live holder is waited for, with a message naming it,
for `CHARFLOW_LOCK_WAIT` seconds at most (default 1800); then the run fails saying what holds the lock.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect.context import FlowRunContext, TaskRunContext
from prefect.locking.filesystem import FileSystemLockManager
from prefect.logging import get_run_logger

from artifacts.owner import gone, me
from tasks.errors import CharflowError

LEASE_SECONDS = 60.0
RENEW_EVERY = LEASE_SECONDS / 4
POLL_SECONDS = 0.2

log = logging.getLogger("charflow.locks")


class LockTimeout(CharflowError):
    """A live holder kept the lock for longer than we wait."""


def wait_limit() -> float:
    return float(os.environ.get("CHARFLOW_LOCK_WAIT", "1800"))


def _say(message: str) -> None:
    """Where a person running the flow sees it: the run's log in Prefect, else charflow's logger."""
    if TaskRunContext.get() or FlowRunContext.get():
        get_run_logger().warning(message)
    else:
        log.warning(message)


class LeaseLockManager(FileSystemLockManager):
    def __init__(self, lock_files_directory: Path) -> None:
        super().__init__(lock_files_directory)
        self._renewers: dict[str, threading.Event] = {}
        self._since: dict[str, str] = {}  # holder -> when it took the lock

    def _record(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._lock_path_for_key(key).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return {}  # being written this instant, or torn by a crash: judged by its age below

    def _write(self, path: Path, holder: str, create: bool) -> bool:
        """The lock's content in one step: created only if absent (`create`), else replaced."""
        expiration = datetime.now(UTC) + timedelta(seconds=LEASE_SECONDS)
        host, pid, started = me()
        record = {
            "holder": holder,
            "expiration": expiration.isoformat(),
            "host": host,
            "pid": pid,
            "started": started,
            "since": self._since.get(holder) or datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._since[holder] = record["since"]
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        partial.write_text(json.dumps(record))
        try:
            if create:
                os.link(partial, path)  # fails if the lock exists: no window with an empty lock file
            else:
                os.replace(partial, path)
            return True
        except FileExistsError:
            return False
        finally:
            partial.unlink(missing_ok=True)

    def _break_if_stale(self, key: str) -> None:
        record = self._record(key)
        path = self._lock_path_for_key(key)
        if record is None:
            return
        why = None
        if isinstance(record.get("pid"), int) and gone(record.get("host", ""), record["pid"], record.get("started")):
            why = f"its holder, process {record['pid']}, is gone"
        elif "pid" not in record:  # torn, or written by Prefect's own manager: no owner to ask, only an age
            age = time.time() - path.stat().st_mtime if path.exists() else 0
            if age > LEASE_SECONDS:
                why = "it names no owner and is older than a lease"
        elif record.get("expiration") and datetime.fromisoformat(record["expiration"]) < datetime.now(UTC):
            why = f"its lease lapsed: process {record.get('pid')} on {record.get('host')} stopped renewing it"
        if why is None:
            return
        path.unlink(missing_ok=True)
        self._locks.pop(key, None)
        _say(f"broke a stale lock on {key[:12]} ({path}): {why}")

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        limit = timeout if timeout is not None else wait_limit()
        deadline = time.monotonic() + limit
        announced = False
        while True:
            self._break_if_stale(key)
            if not self.is_locked(key, use_cache=False):
                return True
            record = self._record(key) or {}
            holder = f"process {record.get('pid', '?')} on {record.get('host', '?')} since {record.get('since', '?')}"
            if not announced:
                _say(f"waiting for {key[:12]}: {holder} is building it (waiting up to {limit:.0f} s)")
                announced = True
            if time.monotonic() >= deadline:
                if timeout is not None:
                    return False
                raise LockTimeout(
                    f"{key[:12]} is still locked by {holder} after {limit:.0f} s "
                    f"({self._lock_path_for_key(key)}); let that run finish, or stop it and run again "
                    "(set CHARFLOW_LOCK_WAIT to wait longer)"
                )
            time.sleep(POLL_SECONDS)

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        import anyio

        return await anyio.to_thread.run_sync(self.wait_for_lock, key, timeout)

    def acquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        self._ensure_lock_files_directory_exists()
        path = self._lock_path_for_key(key)
        while True:
            self._break_if_stale(key)
            if self.is_lock_holder(key, holder):
                return True
            if not self.wait_for_lock(key, acquire_timeout):
                return False
            if self._write(path, holder, create=True):
                break
        self._locks.pop(key, None)
        stop = threading.Event()
        self._renewers[key] = stop
        threading.Thread(target=self._renew, args=(key, holder, stop), daemon=True).start()
        return True

    async def aacquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        import anyio

        return await anyio.to_thread.run_sync(self.acquire_lock, key, holder, acquire_timeout, hold_timeout)

    def _renew(self, key: str, holder: str, stop: threading.Event) -> None:
        """Extend the lease while the lock is ours; a holder that dies stops renewing, and the lease lapses."""
        while not stop.wait(RENEW_EVERY):
            record = self._record(key)
            if not record or record.get("holder") != holder:
                return
            self._write(self._lock_path_for_key(key), holder, create=False)
            self._locks.pop(key, None)

    def release_lock(self, key: str, holder: str) -> None:
        if stop := self._renewers.pop(key, None):
            stop.set()
        self._since.pop(holder, None)
        super().release_lock(key, holder)
