"""Locks that cannot outlive their holder: a Prefect lock manager on the kernel's `flock`, which frees a lock
the moment its holder's process ends (exit, crash, kill -9) and never while it lives (a suspended run keeps
its lock). Each lock file names its holder's host and process, so a waiter can say what it waits for, for
`CHARFLOW_LOCK_WAIT` seconds at most (default 1800); then the run fails saying what holds the lock.

A releaser deletes the lock file while still holding it; an acquirer checks that the file it locked is
still the one at the path, so a lock taken on a file being deleted is retried, never shared.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect.context import FlowRunContext, TaskRunContext
from prefect.locking.protocol import LockManager
from prefect.logging import get_run_logger

from artifacts.owner import gone, me
from artifacts.settings import environment
from tasks.errors import CharflowError

POLL_SECONDS = 0.2

log = logging.getLogger("charflow.locks")


class LockTimeout(CharflowError):
    """A live holder kept the lock for longer than we wait."""


class LockError(CharflowError):
    """The lock service (the catalog's database) cannot be reached."""


def wait_limit() -> float:
    return environment().lock_wait


def _say(message: str) -> None:
    """Where a person running the flow sees it: the run's log in Prefect, else charflow's logger."""
    if TaskRunContext.get() or FlowRunContext.get():
        get_run_logger().warning(message)
    else:
        log.warning(message)


def _describe(record: dict) -> str:
    return f"process {record.get('pid', '?')} on {record.get('host', '?')} since {record.get('since', '?')}"


class _HeldLocks(LockManager):
    """What both lock managers share: the locks held here by key and holder, and the async forms."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[Any, str]] = {}  # key -> (what holds the lock, holder)
        self._guard = threading.Lock()

    def _free(self, key: str, handle: Any) -> None:
        raise NotImplementedError

    def release_lock(self, key: str, holder: str) -> None:
        with self._guard:
            if not self.is_lock_holder(key, holder):
                raise ValueError(f"No lock held by {holder} for transaction with key {key}")
            handle, _ = self._held.pop(key)
            self._free(key, handle)

    def is_lock_holder(self, key: str, holder: str) -> bool:
        held = self._held.get(key)
        return held is not None and held[1] == holder

    async def aacquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        import anyio

        return await anyio.to_thread.run_sync(self.acquire_lock, key, holder, acquire_timeout, hold_timeout)

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        import anyio

        return await anyio.to_thread.run_sync(self.wait_for_lock, key, timeout)


class FlockLockManager(_HeldLocks):
    def __init__(self, lock_files_directory: Path) -> None:
        super().__init__()
        self.directory = Path(lock_files_directory)  # held: the locked descriptor

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.lock"

    def _record(self, key: str) -> dict:
        try:
            return json.loads(self._path(key).read_text() or "{}")
        except (FileNotFoundError, ValueError):
            return {}  # released, or being written this instant

    def _try(self, key: str) -> int | None:
        """A descriptor holding the key's lock, or None while another holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            try:
                here = os.stat(path)
            except FileNotFoundError:
                here = None
            mine = os.fstat(fd)
            if here is not None and (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
                return fd
            os.close(fd)  # its releaser deleted it after we opened it: lock the file now at the path

    def _take(self, key: str, fd: int, holder: str) -> None:
        left = self._record(key)
        if left.get("pid") is not None and gone(left.get("host", ""), left["pid"], left.get("started")):
            _say(f"the lock on {key[:12]} was left by {_describe(left)}, which ended without releasing it; taken over")
        host, pid, started = me()
        record = {"holder": holder, "host": host, "pid": pid, "started": started}
        record["since"] = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._held[key] = (fd, holder)

    def acquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        while True:
            with self._guard:
                if self.is_lock_holder(key, holder):
                    return True
                if key not in self._held and (fd := self._try(key)) is not None:
                    self._take(key, fd, holder)
                    return True
            if not self.wait_for_lock(key, acquire_timeout):
                return False

    def _free(self, key: str, fd: int) -> None:
        self._path(key).unlink(missing_ok=True)  # while still locked: see the module's docstring
        os.close(fd)

    def is_locked(self, key: str) -> bool:
        if key in self._held:
            return True
        fd = self._try(key)
        if fd is None:
            return True
        self._path(key).unlink(missing_ok=True)
        os.close(fd)
        return False

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        limit = timeout if timeout is not None else wait_limit()
        deadline = time.monotonic() + limit
        announced = False
        while self.is_locked(key):
            holder = _describe(self._record(key))
            if not announced:
                _say(f"waiting for {key[:12]}: {holder} is building it (waiting up to {limit:.0f} s)")
                announced = True
            if time.monotonic() >= deadline:
                if timeout is not None:
                    return False
                raise LockTimeout(
                    f"{key[:12]} is still locked by {holder} after {limit:.0f} s ({self._path(key)}); "
                    "let that run finish, or stop it and run again (set CHARFLOW_LOCK_WAIT to wait longer)"
                )
            time.sleep(POLL_SECONDS)
        return True


class PostgresLockManager(_HeldLocks):
    """Locks across machines: PostgreSQL session advisory locks in the catalog's database. Each held lock has
    its own connection, and the server frees the lock when that connection ends, however its holder ended:
    no lock outlives its holder, on any machine. Waiters say which machine and process holds the lock."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url  # held: the connection holding the lock

    @staticmethod
    def _id(key: str) -> int:
        return int(key[:15], 16)  # 60 bits of the content key: a bigint

    def _connect(self) -> object:
        import psycopg

        from artifacts.secrets import redact

        host, pid, _ = me()
        try:
            return psycopg.connect(
                self.url, autocommit=True, connect_timeout=10, application_name=f"charflow {host} {pid}"
            )
        except psycopg.OperationalError as exc:
            raise LockError(
                f"cannot reach the catalog database {redact(self.url)} for a lock ({str(exc).strip()[:200]}); check "
                "that it is up (CHARFLOW_CATALOG_URL)"
            ) from None

    def _holder(self, key: str) -> str:
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT a.application_name, a.backend_start FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = (%s::bigint & 4294967295)::oid "
                "AND l.classid = (%s::bigint >> 32)::oid",
                (self._id(key), self._id(key)),
            ).fetchone()
        finally:
            conn.close()
        return f"{row[0]} since {row[1]:%Y-%m-%dT%H:%M:%S}" if row else "another run"

    def acquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        limit = acquire_timeout if acquire_timeout is not None else wait_limit()
        deadline, announced = time.monotonic() + limit, False
        while True:
            with self._guard:
                if self.is_lock_holder(key, holder):
                    return True
                if key not in self._held:
                    conn = self._connect()
                    if conn.execute("SELECT pg_try_advisory_lock(%s)", (self._id(key),)).fetchone()[0]:
                        self._held[key] = (conn, holder)
                        return True
                    conn.close()
            if not announced:
                _say(f"waiting for {key[:12]}: {self._holder(key)} is building it (waiting up to {limit:.0f} s)")
                announced = True
            if time.monotonic() >= deadline:
                if acquire_timeout is not None:
                    return False
                raise LockTimeout(
                    f"{key[:12]} is still locked by {self._holder(key)} after {limit:.0f} s; let that run finish, "
                    "or stop it and run again (set CHARFLOW_LOCK_WAIT to wait longer)"
                )
            time.sleep(POLL_SECONDS)

    def _free(self, key: str, conn: Any) -> None:
        conn.close()  # ends the session: the server frees its locks

    def is_locked(self, key: str) -> bool:
        if key in self._held:
            return True
        conn = self._connect()
        try:
            free = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._id(key),)).fetchone()[0]
        finally:
            conn.close()
        return not free

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        limit = timeout if timeout is not None else wait_limit()
        deadline = time.monotonic() + limit
        while self.is_locked(key):
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True
