import errno
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from artifacts.manifest import MANIFEST_NAME, Summary, read_manifest
from artifacts.store import DiskFull, Store, StoreError


class Rows(Summary):
    rows: int


def build_table(folder: Path, rows: int = 3) -> Rows:
    pq.write_table(pa.table({"x": list(range(rows))}), folder / "data.parquet")
    return Rows(rows=rows)


def materialize(store: Store, key: str = "k" * 64, build=build_table):
    return store.materialize(
        stage="demo", key=key, params={"a": 1}, inputs={"src": "abc"}, code="c0de", libraries={"lib": "1"}, build=build
    )


def test_manifest_records_everything(tmp_path):
    ref = materialize(Store(tmp_path))
    manifest = read_manifest(Path(ref.path))
    assert (manifest.stage, manifest.key, manifest.params, manifest.inputs) == (
        "demo",
        "k" * 64,
        {"a": 1},
        {"src": "abc"},
    )
    assert manifest.code == "c0de"
    assert manifest.libraries == {"lib": "1"}
    assert manifest.created
    [entry] = manifest.files
    assert (entry.name, entry.rows) == ("data.parquet", 3)
    assert entry.size == (Path(ref.path) / "data.parquet").stat().st_size
    assert not ref.cache_hit
    assert ref.summary == {"rows": 3}
    assert list((tmp_path / ".staging").iterdir()) == []


def test_second_call_is_a_hit_without_building(tmp_path):
    store = Store(tmp_path)
    materialize(store)

    def fail(folder):
        raise AssertionError("built twice")

    assert materialize(store, build=fail).cache_hit


@pytest.mark.parametrize("damage", ["corrupt", "delete", "manifest"])
def test_damaged_artifact_is_a_miss_and_is_rebuilt(tmp_path, damage, caplog):
    store = Store(tmp_path)
    ref = materialize(store)
    data = Path(ref.path) / "data.parquet"
    if damage == "corrupt":
        data.write_bytes(data.read_bytes()[:-1] + b"\0")
    elif damage == "delete":
        data.unlink()
    else:
        (Path(ref.path) / MANIFEST_NAME).write_text("{not json")
    rebuilt = materialize(store)
    assert not rebuilt.cache_hit
    assert pq.read_table(Path(rebuilt.path) / "data.parquet").num_rows == 3
    assert store.lookup("demo", "k" * 64) is not None
    assert "recomputing" in caplog.text
    assert len(list((tmp_path / ".damaged").iterdir())) == 1


def test_failed_build_leaves_nothing(tmp_path):
    store = Store(tmp_path)

    def broken(folder):
        (folder / "half.parquet").write_bytes(b"half")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        materialize(store, build=broken)
    assert not (tmp_path / "demo").exists() or list((tmp_path / "demo").iterdir()) == []
    assert list((tmp_path / ".staging").iterdir()) == []


def _race(root: str, barrier) -> str:
    def slow_build(folder):
        barrier.wait()
        return build_table(folder)

    return materialize(Store(root), build=slow_build).path


def test_concurrent_writers_leave_one_copy(tmp_path):
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(2)
        with ctx.Pool(2) as pool:
            paths = pool.starmap(_race, [(str(tmp_path), barrier)] * 2)
    assert paths[0] == paths[1]
    assert [p.name for p in (tmp_path / "demo").iterdir()] == ["k" * 64]
    assert Store(tmp_path).lookup("demo", "k" * 64) is not None


def test_entries_list_what_has_a_readable_manifest_newest_first(tmp_path):
    store = Store(tmp_path)
    first = materialize(store, key="a" * 64)
    second = materialize(store, key="b" * 64)
    (tmp_path / "demo" / "junk").mkdir()
    entries = store.entries(["demo", "absent"])
    assert [e.key for e in entries] == [second.key, first.key]
    assert entries[0].rows == 3
    assert entries[0].ref() == second.model_copy(update={"cache_hit": True})
    assert len(store.folders(["demo"])) == 3


def test_an_artifact_the_disk_cannot_hold_is_refused_with_the_numbers(tmp_path, monkeypatch):
    store = Store(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 2**29, 2**29))
    store.ensure_free("batches", 100 * 2**20)  # 100 MB and the 64 MB margin fit in 512 MB
    with pytest.raises(DiskFull, match="the batches artifact needs about 500 MB and 512 MB are free on the disk"):
        store.ensure_free("batches", 500 * 2**20)


def test_a_disk_that_fills_mid_write_publishes_nothing(tmp_path):
    store = Store(tmp_path)

    def fills_up(folder):
        (folder / "data.parquet").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull, match="filled up while writing the demo artifact .No space left on device.; nothing"):
        materialize(store, build=fills_up)
    assert not (tmp_path / "demo").exists()
    assert list((tmp_path / ".staging").iterdir()) == []


def test_a_killed_builds_staging_is_recognised_and_cleared_by_the_next_build(tmp_path):
    store = Store(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = tmp_path / ".staging" / f"demo-0000@{socket.gethostname()}@{dead.pid}@@abcd1234"
    abandoned.mkdir(parents=True)
    assert store.staging_folders() == [(abandoned, True)]

    def build(folder):
        assert store.staging_folders() == [(folder, False)]  # ours, alive; the abandoned one is gone
        return build_table(folder)

    materialize(store, build=build)
    assert not abandoned.exists()


def test_a_hit_trusts_unchanged_files_without_reading_them_and_verify_still_reads(tmp_path, monkeypatch):
    from artifacts import manifest as manifest_module

    store = Store(tmp_path)
    ref = materialize(store)
    data = Path(ref.path) / "data.parquet"

    def no_reading(path, chunk=0):
        raise AssertionError(f"{path} was hashed")

    with monkeypatch.context() as patched:
        patched.setattr(manifest_module, "file_sha256", no_reading)
        assert store.lookup("demo", "k" * 64) is not None
    hashed = []
    with monkeypatch.context() as patched:
        patched.setattr(manifest_module, "file_sha256", lambda path, chunk=0: hashed.append(Path(path).name) or "0")
        assert store.lookup("demo", "k" * 64, thorough=True) is None  # read, and the digest did not match
    assert hashed == ["data.parquet"]
    # Bytes changed behind the artifact's back, size and mtime kept: the ctime still moved.
    stat = data.stat()
    data.write_bytes(data.read_bytes()[:-1] + b"\0")
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert store.lookup("demo", "k" * 64) is None


def _privileged(*command: str) -> None:
    """A mount or chattr, which need root (and a file system that has them): the test is skipped without."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a folder immutable or a read-only mount")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"{' '.join(command)} is not possible here: {done.stderr.strip()}")


@pytest.mark.parametrize("fault", ["immutable", "read-only mount", "mount inside the store"])
def test_a_store_folder_that_cannot_be_written_is_named_with_the_fix(tmp_path, fault):
    """Was a raw `Operation not permitted` / `Invalid cross-device link`, with no fix named; nothing published."""
    store = Store(tmp_path / "store")
    materialize(store, key="a" * 64)  # the stage's folder exists
    undo: list[tuple[str, ...]] = []
    if fault == "immutable":
        target, message = store.root / "demo", "cannot be written (Operation not permitted"
        _privileged("chattr", "+i", str(target))
        undo.append(("chattr", "-i", str(target)))
    elif fault == "read-only mount":
        target, message = store.root, "cannot be written (Read-only file system"
        _privileged("mount", "--bind", str(target), str(target))
        undo.append(("umount", str(target)))
        _privileged("mount", "-o", "remount,ro,bind", str(target))
    else:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        target, message = store.root / "demo", "are on different file systems (a mount inside the store"
        _privileged("mount", "--bind", str(elsewhere), str(target))
        undo.append(("umount", str(target)))
    try:
        with pytest.raises(StoreError, match=re.escape(message)) as refused:
            materialize(store, key="b" * 64)
        assert "CHARFLOW_HOME" in str(refused.value) or "mount the whole store folder" in str(refused.value)
        assert not store.folder("demo", "b" * 64).exists()
    finally:
        for command in reversed(undo):
            subprocess.run(command, check=True)
    assert store.lookup("demo", "a" * 64) is not None  # what was stored stays
