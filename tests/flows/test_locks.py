"""Locks that cannot outlive their holder: a killed holder's lock is broken, a lapsed lease too, a live
holder is waited for by name for a bounded time, and a held lock's lease is renewed."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from flows import locks
from flows.locks import LeaseLockManager, LockTimeout

HOLD = """
import sys, time
from pathlib import Path
from flows.locks import LeaseLockManager
LeaseLockManager(Path(sys.argv[1])).acquire_lock("k" * 64, "holder-a")
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    yield proc
    proc.kill()
    proc.wait()


def test_a_killed_holders_lock_is_broken_with_a_warning(tmp_path, holder, caplog):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    manager = LeaseLockManager(tmp_path)
    with caplog.at_level(logging.WARNING, logger="charflow.locks"):
        assert manager.acquire_lock("k" * 64, "holder-b")
    assert manager.is_lock_holder("k" * 64, "holder-b")
    assert f"its holder, process {holder.pid}, is gone" in caplog.text
    manager.release_lock("k" * 64, "holder-b")
    assert not manager.is_locked("k" * 64)


def test_a_live_holder_is_waited_for_by_name_then_refused(tmp_path, holder, monkeypatch, caplog):
    monkeypatch.setenv("CHARFLOW_LOCK_WAIT", "1")
    with caplog.at_level(logging.WARNING, logger="charflow.locks"), pytest.raises(LockTimeout) as err:
        LeaseLockManager(tmp_path).acquire_lock("k" * 64, "holder-b")
    assert f"still locked by process {holder.pid} on " in str(err.value) and "CHARFLOW_LOCK_WAIT" in str(err.value)
    assert f"waiting for kkkkkkkkkkkk: process {holder.pid}" in caplog.text
    assert LeaseLockManager(tmp_path).wait_for_lock("k" * 64, timeout=0.3) is False


def test_a_lapsed_lease_from_another_host_is_broken(tmp_path, caplog):
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    lock = tmp_path / f"{'k' * 64}.lock"
    lock.write_text(json.dumps({"holder": "x", "expiration": past, "host": "elsewhere", "pid": 1}))
    with caplog.at_level(logging.WARNING, logger="charflow.locks"):
        assert LeaseLockManager(tmp_path).acquire_lock("k" * 64, "holder-b")
    assert "its lease lapsed: process 1 on elsewhere stopped renewing it" in caplog.text


def test_a_held_lock_is_renewed_and_released(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "RENEW_EVERY", 0.1)
    manager = LeaseLockManager(tmp_path)
    assert manager.acquire_lock("k" * 64, "holder-a")
    lock = tmp_path / f"{'k' * 64}.lock"
    first = json.loads(lock.read_text())
    assert (first["holder"], first["pid"]) == ("holder-a", os.getpid())
    time.sleep(0.5)
    assert json.loads(lock.read_text())["expiration"] > first["expiration"]
    manager.release_lock("k" * 64, "holder-a")
    assert not lock.exists()


def test_an_ownerless_lock_older_than_a_lease_is_broken(tmp_path, caplog):
    lock = tmp_path / f"{'k' * 64}.lock"
    lock.write_text(json.dumps({"holder": "x", "expiration": None}))  # Prefect's own format, from a killed run
    old = time.time() - locks.LEASE_SECONDS - 5
    os.utime(lock, (old, old))
    with caplog.at_level(logging.WARNING, logger="charflow.locks"):
        assert LeaseLockManager(tmp_path).acquire_lock("k" * 64, "holder-b")
    assert "it names no owner and is older than a lease" in caplog.text
