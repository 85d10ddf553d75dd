"""Faults done for real to real processes: kill -9 mid-stage, Ctrl-C and SIGTERM mid-training, a killed newer
version, a lost artifact, an empty corpus, a torn catalog, a read-only home, a full disk, a moved home, a
closed port, work that would fail late. Each ends in one clear line or a clean rerun with the same keys and
bytes as a run that was never disturbed, `verify` clean, and no process left behind. What only sets a fault up
runs in the test's process (`cli_on`) where the process is not what the fault is done to."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from artifacts.manifest import STAT_NAME
from artifacts.text import TEXT_FILE, write_text
from tests.helpers import free_port, snapshot

pytestmark = pytest.mark.slow

TINY_TRAIN = ["--model", "rnn", "--hidden", "32", "--optimizer", "adam", "--lr", "0.01", "--pred-period", "25"]
TIMING = {"seconds", "tokens_per_s"}
MATERIALIZED = ["batches", "--epochs", 1000, "--materialize"]  # big enough to be caught writing shards


def environment(home: Path, api_url: str | None) -> dict[str, str]:
    env = {**os.environ, "CHARFLOW_HOME": str(home), "PREFECT_LOGGING_LEVEL": "INFO"}  # what a user sees
    env.pop("PREFECT_HOME", None)
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def start(home: Path, *args: object, api_url: str | None = None, env: dict | None = None) -> subprocess.Popen:
    """`charflow ARGS` in its own session, as from a terminal; its output in files beside the home."""
    home.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "charflow.cli", *map(str, args)],
        env={**environment(home, api_url), **(env or {})},
        cwd=home.parent,
        stdout=(home.parent / f"{home.name}.out").open("w"),
        stderr=(home.parent / f"{home.name}.err").open("w"),
        start_new_session=True,
    )


def finish(process: subprocess.Popen, home: Path, timeout: float = 300) -> tuple[int, str, str]:
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"charflow {process.args[3:]} hung for {timeout:.0f} s")
    out = (home.parent / f"{home.name}.out").read_text()
    err = (home.parent / f"{home.name}.err").read_text()
    return code, out, err


def charflow(home: Path, *args: object, api_url: str | None = None, env: dict | None = None, timeout: float = 300):
    return finish(start(home, *args, api_url=api_url, env=env), home, timeout)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never saw {what}")
        time.sleep(0.02)


def processes_of(home: Path) -> list[str]:
    """Every live process started for this home (by its environment), but this test's own."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            if f"CHARFLOW_HOME={home}".encode() in environ:
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def one_clear_line(code: int, err: str, expected_code: int, message: str) -> None:
    last = err.strip().splitlines()[-1]
    assert code == expected_code, err[-3000:]
    assert last.startswith("charflow: error: "), last
    assert message in last, last
    assert "Traceback" not in err, err[-3000:]


def outputs(out: str) -> dict[str, dict]:
    return json.loads(out)["stages"]


def same_bytes(a: dict, b: dict) -> None:
    """The same keys, and the same bytes for every deterministic file (manifests hold a timestamp and
    _stat.json this disk's inodes and times; metrics hold timings: their other columns are compared)."""
    assert {s: r["key"] for s, r in a.items()} == {s: r["key"] for s, r in b.items()}
    for stage in a:
        left, right = Path(a[stage]["path"]), Path(b[stage]["path"])
        names = sorted(p.name for p in left.iterdir())
        assert names == sorted(p.name for p in right.iterdir()), stage
        for name in names:
            if name in ("_manifest.json", STAT_NAME):
                continue
            if name == "metrics.parquet":
                x, y = pq.read_table(left / name), pq.read_table(right / name)
                columns = [c for c in x.column_names if c not in TIMING]
                assert x.select(columns).equals(y.select(columns)), stage
                continue
            assert (left / name).read_bytes() == (right / name).read_bytes(), f"{stage}/{name}"


def verify_clean(home: Path, api_url: str | None = None) -> None:
    code, out, err = charflow(home, "inspect", "verify", "--json", api_url=api_url)
    assert code == 0, err
    assert json.loads(out) == {"ok": True, "damaged": [], "missing": [], "aliases": [], "leftovers": []}


@pytest.fixture(scope="module")
def clean_batches(tmp_path_factory, lyrics_zip, prefect_server):
    """An undisturbed `batches` run to compare against."""
    home = tmp_path_factory.mktemp("clean-batches") / "home"
    code, out, err = charflow(home, *MATERIALIZED, lyrics_zip, "--json", api_url=prefect_server)
    assert code == 0, err[-3000:]
    return outputs(out)


def test_kill_9_mid_stage_then_the_same_command_completes(tmp_path, lyrics_zip, prefect_server, clean_batches):
    home = tmp_path / "home"
    process = start(home, *MATERIALIZED, lyrics_zip, "--json", api_url=prefect_server)
    staging = home / "store" / ".staging"
    wait_for(lambda: staging.is_dir() and any(p.name.startswith("batches-") for p in staging.iterdir()), "a shard")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert list((home / "prefect" / "locks").iterdir())  # the killed run's lock file, no longer locked
    code, out, err = charflow(home, *MATERIALIZED, lyrics_zip, "--json", api_url=prefect_server)
    assert code == 0, err[-3000:]
    assert "ended without releasing it; taken over" in err
    same_bytes(outputs(out), clean_batches)
    verify_clean(home)
    assert processes_of(home) == []


@pytest.fixture(scope="module")
def clean_training(tmp_path_factory, lyrics_zip, prefect_server):
    """An undisturbed training run to compare against (on the shared server: the runs it is compared with start
    their home's, which makes the same bytes)."""
    home = tmp_path_factory.mktemp("clean-training") / "home"
    args = ["run", lyrics_zip, "--epochs", 100, "--checkpoint-every", 5, *TINY_TRAIN, "--json"]
    code, out, err = charflow(home, *args, api_url=prefect_server)
    assert code == 0, err[-3000:]
    return args, outputs(out)


def interrupt_training(home: Path, args: list, sig: signal.Signals, after_epoch: int) -> int:
    """Start the run, send `sig` once a checkpoint past `after_epoch` is written; the epoch it stopped in."""
    process = start(home, *args)
    work = home / "store" / ".work"

    def checkpoint_past() -> bool:
        import torch

        for path in work.glob("*/checkpoint.pt") if work.is_dir() else ():
            try:
                if torch.load(path, weights_only=True)["epoch"] > after_epoch:
                    return True
            except (OSError, RuntimeError, EOFError, KeyError):
                continue  # being replaced
        return False

    wait_for(checkpoint_past, f"a checkpoint past epoch {after_epoch}")
    os.killpg(process.pid, sig)  # to the whole process group, as Ctrl-C in a terminal does
    code, _, err = finish(process, home, timeout=60)
    one_clear_line(code, err, 130, "training stopped in epoch")
    last = err.strip().splitlines()[-1]
    stopped = int(last.split("training stopped in epoch ")[1].split()[0])
    assert stopped < 100  # stopped, not run to the end
    assert "a rerun resumes from it" in last
    assert processes_of(home) == []  # the home's server went with it (CHARFLOW_SERVER_IDLE=0)
    return stopped


def test_signals_stop_training_at_a_batch_and_the_reruns_resume_to_the_same_numbers(tmp_path, clean_training):
    """Ctrl-C, then SIGTERM during the resumed run (as `kill` or a scheduler sends), then the run completes."""
    args, expected = clean_training
    home = tmp_path / "home"
    first = interrupt_training(home, args, signal.SIGINT, after_epoch=0)
    second = interrupt_training(home, args, signal.SIGTERM, after_epoch=first)
    assert second > first
    code, out, err = charflow(home, *args)
    assert code == 0, err[-3000:]
    assert "resuming after epoch" in err
    same_bytes(outputs(out), expected)
    verify_clean(home)


def test_kill_9_of_charflow_leaves_its_home_server_to_stop_once_unused(tmp_path, lyrics_zip):
    """CHARFLOW_SERVER_IDLE=0 (the tests'): the server stops as soon as no command holds it, kill -9 included."""
    home = tmp_path / "home"
    process = start(home, "run", lyrics_zip, "--epochs", 1000, *TINY_TRAIN)
    wait_for(lambda: (home / "store" / ".work").is_dir(), "training")
    assert any("charflow.home_server" in cmd for cmd in processes_of(home))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    wait_for(lambda: processes_of(home) == [], "the server stop", timeout=20)


def test_gc_after_a_killed_newer_version_keeps_the_last_complete_one(cli_on, tmp_path, lyrics_text, prefect_server):
    home, song = tmp_path / "home", tmp_path / "songs.txt"
    song.write_text(lyrics_text[:20_000], encoding="utf-8")
    code, first, err = cli_on(home, prefect_server, "prepare", song, "--max-chars", "none", "--json")
    assert code == 0, err
    song.write_text(lyrics_text[:20_000] + " and more", encoding="utf-8")
    process = start(home, "prepare", song, "--max-chars", "none", api_url=prefect_server)
    wait_for(lambda: len(list((home / "store" / "ingest").iterdir())) == 2, "the new version's ingest")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    code, out, err = charflow(home, "inspect", "gc", "--yes", "--grace", 0, "--json")
    assert code == 0, err
    kept = {k["key"] for k in json.loads(out)["kept"]}
    assert {r["key"] for r in outputs(first).values()} <= kept
    code, out, err = charflow(home, "inspect", "show", "songs@latest/encode", "--json")
    assert code == 0
    assert json.loads(out)["manifest"]["key"] == outputs(first)["encode"]["key"]
    verify_clean(home)


def test_verify_sees_a_lost_artifact_and_leftovers(cli_on, tmp_path, lyrics_zip, prefect_server):
    home = tmp_path / "home"
    code, out, err = cli_on(home, prefect_server, "prepare", lyrics_zip, "--json")
    assert code == 0, err
    lost = outputs(out)["vocab"]
    for path in Path(lost["path"]).iterdir():
        path.unlink()
    Path(lost["path"]).rmdir()
    (home / "store" / ".work" / "train-0123").mkdir(parents=True)
    code, out, _ = charflow(home, "inspect", "verify", "--json")
    found = json.loads(out)
    assert code == 1
    assert [m["key"] for m in found["missing"]] == [lost["key"]]
    assert [x["kind"] for x in found["leftovers"]] == ["checkpoint"]
    code, out, err = cli_on(home, prefect_server, "prepare", lyrics_zip, "--json")
    assert code == 0, err
    assert outputs(out)["vocab"]["cache_hit"] is False
    code, out, _ = charflow(home, "inspect", "gc", "--yes", "--checkpoints", "--json")
    verify_clean(home)


def test_a_torn_catalog_line_is_survived_and_repaired(cli_on, tmp_path, lyrics_zip, prefect_server):
    home = tmp_path / "home"
    assert cli_on(home, prefect_server, "prepare", lyrics_zip)[0] == 0
    catalog = home / "store" / "catalog.jsonl"
    catalog.write_bytes(catalog.read_bytes() + b'{"corpus": "jaychou_lyrics", "event": "outp')
    code, out, err = charflow(home, "inspect", "ls", "--json")
    assert code == 0
    assert list(json.loads(out)["corpora"]) == ["jaychou_lyrics"]
    assert "line 3 was cut short by a crash: ignored" in err
    code, _, err = charflow(home, "prepare", lyrics_zip, "--max-chars", 5000, api_url=prefect_server)
    assert code == 0, err
    assert all(json.loads(line) for line in catalog.read_text().splitlines())
    verify_clean(home)


@pytest.fixture
def mounted(tmp_path):
    """A small tmpfs of our own: a disk that fills, or a read-only one."""
    mounts = []

    def mount(size_mb: int, read_only: bool = False) -> Path:
        folder = tmp_path / f"disk{len(mounts)}"
        folder.mkdir()
        options = f"size={size_mb}m" + (",ro" if read_only else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("empty corpus", 1, "no text at all (0 characters); pass a corpus with some text in it"),
        ("missing file", 1, "no such file or directory"),
        ("closed port", 1, "cannot reach the Prefect server at PREFECT_API_URL="),
        ("read-only home", 1, "is not writable (Read-only file system); set CHARFLOW_HOME to a writable folder"),
        ("nearly full disk", 1, "MB free on the disk holding CHARFLOW_HOME"),
        ("num_steps too large", 1, "too short for one window of num_steps=100000"),
        ("prefix outside the vocabulary", 2, "the prediction prefix '☃' has characters the vocabulary lacks"),
    ],
)
def test_bad_input_and_a_bad_machine_are_one_clear_line(
    case, code, message, tmp_path, lyrics_zip, prefect_server, mounted
):
    home, api_url, args = tmp_path / "home", prefect_server, ["prepare", lyrics_zip]
    if case == "empty corpus":
        (tmp_path / "empty.txt").write_text("")
        args = ["prepare", tmp_path / "empty.txt"]
    elif case == "missing file":
        args = ["prepare", tmp_path / "missing.txt"]
    elif case == "closed port":
        api_url = f"http://127.0.0.1:{free_port()}/api"
    elif case == "read-only home":
        home = mounted(4, read_only=True)
    elif case == "nearly full disk":
        home = mounted(40)
    elif case == "num_steps too large":
        args = ["batches", lyrics_zip, "--num-steps", 100_000]
    elif case == "prefix outside the vocabulary":
        args = ["run", lyrics_zip, "--prefix", "☃", "--epochs", 2]
    one_clear_line(*charflow(home, *args, api_url=api_url)[::2], code, message)
    if case in ("num_steps too large", "empty corpus"):
        assert snapshot(home / "store") == {}  # not an artifact, not a catalog line
    if case == "prefix outside the vocabulary":
        assert not (home / "store" / "batches").exists()
        assert not (home / "store" / "train").exists()
    assert processes_of(home) == []


def test_a_diverging_run_names_only_a_checkpoint_that_exists(tmp_path, lyrics_zip, prefect_server):
    home = tmp_path / "home"
    args = ["run", lyrics_zip, "--epochs", 30, "--lr", "1e4", "--clip", "none", "--checkpoint-every", 1]
    code, _, err = charflow(home, *args, api_url=prefect_server)
    last = err.strip().splitlines()[-1]
    one_clear_line(code, err, 1, "the loss became")
    if "no checkpoint was saved yet" not in last:
        named = Path(last.split(" is kept at ")[1].split(",")[0])
        assert named.is_file(), last


def test_a_moved_home_keeps_its_store(tmp_path, lyrics_zip, prefect_server):
    """Both commands in processes of their own: the first leaves Prefect's records (absolute paths) in the home."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    code, out, err = charflow(first, "prepare", lyrics_zip, "--json", api_url=prefect_server)
    assert code == 0, err
    first.rename(moved)
    code, again, err = charflow(moved, "prepare", lyrics_zip, "--json", api_url=prefect_server)
    assert code == 0, err[-3000:]
    assert f"CHARFLOW_HOME moved from {first} to {moved}" in err
    assert "Traceback" not in err
    assert {s: r["key"] for s, r in outputs(again).items()} == {s: r["key"] for s, r in outputs(out).items()}
    assert all(r["cache_hit"] for r in outputs(again).values())


def test_a_full_disk_is_refused_up_front_or_stopped_cleanly(tmp_path, lyrics_zip, prefect_server, mounted):
    disk = mounted(160)
    home = disk / "home"
    env = {"PREFECT_HOME": str(tmp_path / "prefect")}  # Prefect's own files elsewhere: the store alone fills up
    code, _, err = charflow(
        home, "batches", lyrics_zip, "--epochs", 4000, "--materialize", api_url=prefect_server, env=env
    )
    one_clear_line(code, err, 1, "the batches artifact needs about")
    assert "free space or set CHARFLOW_HOME to a larger disk" in err.splitlines()[-1]
    assert not (home / "store" / "batches").exists()
    # Another writer fills the disk while a shard is being written: the stage stops, nothing is published.
    process = start(home, "batches", lyrics_zip, "--epochs", 400, "--materialize", api_url=prefect_server, env=env)
    staging = home / "store" / ".staging"
    wait_for(lambda: staging.is_dir() and any(p.name.startswith("batches-") for p in staging.iterdir()), "a shard")
    filler = disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)
    code, _, err = finish(process, home)
    one_clear_line(code, err, 1, "filled up while writing the batches artifact")
    assert not (home / "store" / "batches").exists()
    assert not list(staging.iterdir())
    filler.unlink()
    code, _, err = charflow(
        home, "batches", lyrics_zip, "--epochs", 400, "--materialize", api_url=prefect_server, env=env
    )
    assert code == 0, err[-3000:]
    verify_clean(home)
    assert processes_of(home) == []


def test_a_writer_that_fills_the_disk_lets_go_of_its_file(mounted):
    """The thread hashing a file while it is written must close it too, or a deleted file keeps its space."""
    disk = mounted(8)
    rng = np.random.default_rng(0)
    chunks = ["".join(map(chr, 0x4E00 + rng.integers(0, 20_000, 1_000_000))) for _ in range(4)]  # 12 MB
    with pytest.raises(OSError, match="No space left"):
        write_text(disk, chunks, {})
    (disk / TEXT_FILE).unlink()
    assert not [fd for fd in Path("/proc/self/fd").iterdir() if str(disk) in str(fd.resolve(strict=False))]
    assert shutil.disk_usage(disk).used < 2**20


def test_kill_9_of_charflow_serve_takes_its_server_and_worker_along(tmp_path):
    home = tmp_path / "home"
    env = {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    process = start(home, "serve", "--port", free_port(), env=env)
    wait_for(lambda: "worker started" in (tmp_path / "home.out").read_text(), "the worker", timeout=240)
    assert len(processes_of(home)) >= 3  # serve, the server, the worker
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    wait_for(lambda: processes_of(home) == [], "the server and worker stop", timeout=60)


@pytest.mark.slow
def test_the_first_ctrl_c_stops_a_stage_inside_a_long_regex_match(tmp_path):
    """Was: the first SIGINT was ignored until the stage ended, and a match of `(a+)+b` never ends. Now the scan
    is heard within a tenth of a second (its time limit here is far off: 60 s)."""
    home = tmp_path / "home"
    text = tmp_path / "aaa.txt"
    text.write_text("a" * 30_000, encoding="utf-8")
    args = ["prepare", text, "--regex", "(a+)+b", "x", "--regex-timeout", "60", "--max-chars", "none"]
    process = start(home, *args)
    staging = home / "store" / ".staging"
    wait_for(lambda: staging.is_dir() and any(p.name.startswith("clean-") for p in staging.iterdir()), "clean start")
    os.killpg(process.pid, signal.SIGINT)
    code, _, err = finish(process, home, timeout=60)
    one_clear_line(code, err, 130, "stopped in a scan of regex '(a+)+b'; nothing was published")
    assert not (home / "store" / "clean").exists()
    assert processes_of(home) == []
