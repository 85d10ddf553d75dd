"""Locks on flock: one holder at a time among many processes, freed when a holder is killed and never while
it lives (stopped included), a live holder waited for by name for a bounded time."""

import json
import logging
import os
import re
import signal
import subprocess
import sys

import pytest

from flows.locks import FlockLockManager, LockTimeout

KEY = "k" * 64

HOLD = """
import sys, time
from pathlib import Path
from flows.locks import FlockLockManager
FlockLockManager(Path(sys.argv[1])).acquire_lock("k" * 64, "holder-a")
print("held", flush=True)
time.sleep(600)
"""

# Each contender takes the lock, writes its entry and exit around a short critical section, and releases it.
CONTEND = """
import os, sys, time
from pathlib import Path
from flows.locks import FlockLockManager
manager, log = FlockLockManager(Path(sys.argv[1])), Path(sys.argv[2])
for turn in range(15):
    manager.acquire_lock("k" * 64, f"{os.getpid()}-{turn}")
    with log.open("a") as f:
        f.write(f"in {os.getpid()}\\n")
    time.sleep(0.002)
    with log.open("a") as f:
        f.write(f"out {os.getpid()}\\n")
    manager.release_lock("k" * 64, f"{os.getpid()}-{turn}")
"""


@pytest.fixture
def holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    yield proc
    proc.kill()
    proc.wait()


def test_a_killed_holders_lock_is_taken_over_with_a_warning(tmp_path, holder, caplog):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    manager = FlockLockManager(tmp_path)
    with caplog.at_level(logging.WARNING, logger="charflow.locks"):
        assert manager.acquire_lock(KEY, "holder-b", acquire_timeout=1)
    assert manager.is_lock_holder(KEY, "holder-b")
    assert not manager.is_lock_holder(KEY, "holder-a")
    assert f"left by process {holder.pid} on " in caplog.text
    assert "taken over" in caplog.text
    assert json.loads((tmp_path / f"{KEY}.lock").read_text())["pid"] == os.getpid()
    manager.release_lock(KEY, "holder-b")
    assert not manager.is_locked(KEY)
    assert not (tmp_path / f"{KEY}.lock").exists()


def test_a_live_holder_is_waited_for_by_name_then_refused(tmp_path, holder, monkeypatch, caplog):
    monkeypatch.setenv("CHARFLOW_LOCK_WAIT", "1")
    with caplog.at_level(logging.WARNING, logger="charflow.locks"), pytest.raises(LockTimeout) as err:
        FlockLockManager(tmp_path).acquire_lock(KEY, "holder-b")
    assert f"still locked by process {holder.pid} on " in str(err.value)
    assert "CHARFLOW_LOCK_WAIT" in str(err.value)
    assert f"waiting for kkkkkkkkkkkk: process {holder.pid}" in caplog.text
    assert FlockLockManager(tmp_path).wait_for_lock(KEY, timeout=0.3) is False


def test_a_stopped_holder_keeps_its_lock(tmp_path, holder):
    holder.send_signal(signal.SIGSTOP)
    try:
        assert FlockLockManager(tmp_path).acquire_lock(KEY, "holder-b", acquire_timeout=1.5) is False
    finally:
        holder.send_signal(signal.SIGCONT)
    holder.kill()
    holder.wait()
    assert FlockLockManager(tmp_path).acquire_lock(KEY, "holder-b", acquire_timeout=1)


def test_one_holder_at_a_time_among_processes_contending_for_a_dead_holders_lock(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    log = tmp_path.parent / f"{tmp_path.name}-turns.log"
    procs = [subprocess.Popen([sys.executable, "-c", CONTEND, str(tmp_path), str(log)]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    lines = log.read_text().splitlines()
    assert len(lines) == 4 * 15 * 2
    for entry, leave in zip(lines[::2], lines[1::2], strict=True):  # never two inside at once
        assert entry.startswith("in ")
        assert leave == "out " + entry[3:]


def test_a_lock_held_in_this_process_is_held_for_other_holders(tmp_path):
    manager = FlockLockManager(tmp_path)
    assert manager.acquire_lock(KEY, "holder-a")
    assert manager.is_locked(KEY)
    assert manager.acquire_lock(KEY, "holder-b", acquire_timeout=0.3) is False
    with pytest.raises(ValueError, match="No lock held by holder-b"):
        manager.release_lock(KEY, "holder-b")
    manager.release_lock(KEY, "holder-a")
    assert manager.acquire_lock(KEY, "holder-b", acquire_timeout=0.3)
    assert FlockLockManager(tmp_path).wait_for_lock(KEY, timeout=0.2) is False


PG_HOLDER = """
import sys, time
from flows.locks import PostgresLockManager
locks = PostgresLockManager(sys.argv[1])  # kept: its connection holds the lock
locks.acquire_lock(sys.argv[2], "other machine")
print("held", flush=True)
time.sleep(600)
"""


def test_a_lock_across_machines_is_freed_when_its_holder_is_killed(postgres_url, monkeypatch, caplog):
    """PostgreSQL advisory locks: a holder elsewhere (another process, its own connection) keeps the key
    locked, waiters name it, and kill -9 frees the lock at once."""
    from flows.locks import PostgresLockManager

    key = "ab" * 32
    holder = subprocess.Popen([sys.executable, "-c", PG_HOLDER, postgres_url, key], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        here = PostgresLockManager(postgres_url)
        assert here.is_locked(key)
        with caplog.at_level(logging.WARNING, logger="charflow.locks"):
            assert not here.acquire_lock(key, "this machine", acquire_timeout=0.5)
        assert re.search(rf"waiting for {key[:12]}: charflow \S+ {holder.pid} since", caplog.text), caplog.text
        monkeypatch.setenv("CHARFLOW_LOCK_WAIT", "0.3")
        with pytest.raises(LockTimeout, match=rf"still locked by charflow \S+ {holder.pid}"):
            here.acquire_lock(key, "this machine")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert here.acquire_lock(key, "this machine", acquire_timeout=10)  # the server freed it with the session
    assert here.is_lock_holder(key, "this machine")
    assert not here.is_lock_holder(key, "other")
    here.release_lock(key, "this machine")
    assert not here.is_locked(key)
