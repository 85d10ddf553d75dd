"""The flows on a real Dask cluster (`dask scheduler` and two `dask worker` processes on 127.0.0.1), each worker
with its own CHARFLOW_HOME, all meeting in the shared object store (moto) and catalog (PostgreSQL): the same
artifacts, keys and bytes as the local runner; reingest's corpora at once; a worker killed mid-task."""

import json
import signal
import zipfile

import pytest

from artifacts.manifest import read_manifest
from artifacts.store import Store
from flows.pipeline import PrepareParams, plain_runner
from flows.pipeline import train as train_pipeline
from tasks.batches import BatchesParams
from tasks.fetch import Located
from tasks.train.params import TrainParams, resolve_device
from tests.helpers import free_port, run_cli, task_runs_of
from tests.services import KillOnFirstRun

pytestmark = pytest.mark.slow
STAGES = ["ingest", "clean", "vocab", "encode", "batches", "train"]


def files(ref) -> dict[str, str]:
    return {f["name"]: f["sha256"] for f in read_manifest(ref.path).model_dump()["files"]}


def worker_stores(cluster) -> list[Store]:
    return [Store(home / "store") for home in cluster["homes"]]


def split_lyrics(lyrics_zip, folder, parts: int, size: int, name: str = "part") -> None:
    text = zipfile.ZipFile(lyrics_zip).read("jaychou_lyrics.txt").decode()
    folder.mkdir()
    for n in range(parts):
        (folder / f"{name}{n}.txt").write_text(text[n * size : (n + 1) * size])


def test_the_train_flow_on_two_workers_gives_the_local_runners_artifacts(on_cluster, home, lyrics_zip, tmp_path):
    from flows.train import train

    training = TrainParams()
    local = train_pipeline(
        plain_runner(tmp_path / "local"),
        Located(source=str(lyrics_zip)),
        PrepareParams(),
        BatchesParams(epochs=3),
        resolve_device(training),
    )
    made = train(source=str(lyrics_zip), epochs=3)
    assert list(made.stages) == STAGES
    for stage in STAGES:
        here, there = made.stages[stage], local.stages[stage]
        assert here.key == there.key, stage
        if stage != "train":  # the model's files hold its training time; its numbers are compared below
            assert files(here) == files(there), stage
        # Built on a worker (the command's machine only fetched its copy): a worker's own home holds it.
        assert any(s.lookup(stage, here.key) for s in worker_stores(on_cluster)), stage
        assert here.path == home / "store" / stage / here.key  # and the reference names this machine's copy
    assert made.stages["train"].summary["perplexity"] == local.stages["train"].summary["perplexity"]
    assert made.corpus == "jaychou_lyrics"
    assert made.version == 1


def stages_done(runs, corpora: list[str], stages: list[str]) -> bool:
    """Whether the server has recorded every one of those stage task runs of each corpus as ended."""
    ended = [set(run.tags) for run in runs if run.end_time is not None]
    return all(any({f"corpus:{c}", f"stage:{s}"} <= tags for tags in ended) for c in corpora for s in stages)


def test_reingest_prepares_its_corpora_at_once_on_the_cluster(on_cluster, lyrics_zip, tmp_path):
    from flows.reingest import reingest

    split_lyrics(lyrics_zip, tmp_path / "corpora", parts=3, size=15000)
    state = reingest(sources=[str(tmp_path / "corpora")], return_state=True)
    rows = state.result()
    assert [(r["corpus"], r["status"], r["version"]) for r in rows] == [(f"part{n}", "new", 1) for n in range(3)]
    parts = [f"part{n}" for n in range(3)]
    task_runs = task_runs_of(state.state_details.flow_run_id, until=lambda runs: stages_done(runs, parts, STAGES[:4]))
    spans = {}
    for run in task_runs:
        for corpus in (tag.removeprefix("corpus:") for tag in run.tags if tag.startswith("corpus:")):
            first, last = spans.get(corpus, (run.start_time, run.end_time))
            spans[corpus] = (min(first, run.start_time), max(last, run.end_time))
    assert sorted(spans) == ["part0", "part1", "part2"]
    # At once: the corpora's stages overlap in time on the workers (their order is the scheduler's).
    ranges = sorted(spans.values())
    assert any(later[0] < earlier[1] for earlier, later in zip(ranges, ranges[1:], strict=False)), ranges
    again = reingest(sources=[str(tmp_path / "corpora")])
    assert [(r["status"], r["version"]) for r in again] == [("unchanged", 1)] * 3


def test_charflow_reingest_on_the_cluster(on_cluster, lyrics_zip, tmp_path, cli):
    """The command (in this process: its process boundary is not what is tested) takes the cluster from
    CHARFLOW_DASK_ADDRESS."""
    split_lyrics(lyrics_zip, tmp_path / "corpora", parts=2, size=12345, name="cli")
    code, out, err = cli("reingest", tmp_path / "corpora", "--train", "--max-chars", "2000", "--json")
    assert code == 0, err[-3000:]
    rows = json.loads(out)
    assert [(r["corpus"], r["status"], r["version"]) for r in rows] == [("cli0", "new", 1), ("cli1", "new", 1)]
    for row in rows:
        keys = dict(pair.split() for pair in row["keys"].split(", "))
        assert list(keys) == ["ingest", "clean", "vocab", "encode", "batches", "train"]
        # Built on the workers, each with its own home (the command's machine fetched its copies).
        assert any(e.key.startswith(keys["train"]) for s in worker_stores(on_cluster) for e in s.entries(["train"]))


def test_a_worker_killed_mid_task_is_retried_elsewhere_and_nothing_is_half_published(on_cluster, lyrics_zip, tmp_path):
    from distributed import Client

    from artifacts.backends import open_store
    from flows.train import train

    marker = tmp_path / "killed"
    with Client(on_cluster["address"], set_as_default=False) as client:
        client.register_plugin(KillOnFirstRun("train_stage", marker, delay=3.0), name="kill-train")
        try:
            made = train(source=str(lyrics_zip), epochs=40)
        finally:
            client.unregister_worker_plugin("kill-train")
        client.wait_for_workers(2, timeout=60)
    killed, *stopped = marker.read_text().splitlines()
    assert "train_stage" in killed  # the kill was armed as the train task started on that worker
    victim = killed.rsplit(" on ", 1)[1]
    # Mid-task: that worker never finished it; another run of it did.
    assert not any(line.endswith(f" on {victim}") for line in stopped), stopped
    assert any(line.startswith("left executing for memory") for line in stopped), stopped
    worker_logs = "".join((on_cluster["logs"] / f"worker-{n}.log").read_text() for n in range(2))
    assert f"signal {int(signal.SIGKILL)}" in worker_logs or "SIGKILL" in worker_logs, worker_logs[-3000:]
    model = made.stages["train"]
    assert model.summary["epochs"] == 40
    # From a home that holds nothing: the published model is whole, every file's digest checked.
    fresh = open_store(tmp_path / "fresh" / "store")
    assert fresh.lookup("train", model.key, thorough=True) is not None
    assert fresh.remote.manifest("train", model.key) is not None


def test_an_unreachable_scheduler_is_named_before_any_work(shared_backends, tmp_path, monkeypatch):
    address = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CHARFLOW_DASK_ADDRESS", address)
    made = run_cli("prepare", "--max-chars", "100", home=tmp_path / "home")
    assert made.returncode == 1
    assert (
        made.stderr.strip()
        .splitlines()[-1]
        .startswith(f"charflow: error: cannot reach the Dask scheduler at CHARFLOW_DASK_ADDRESS={address} (")
    ), made.stderr
    assert not (tmp_path / "home" / "store").exists()


def test_a_cluster_without_the_shared_backends_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARFLOW_DASK_ADDRESS", "tcp://127.0.0.1:8786")
    monkeypatch.delenv("CHARFLOW_STORE_URL", raising=False)
    made = run_cli("prepare", home=tmp_path / "home")
    assert made.returncode == 1
    assert made.stderr.strip() == (
        "charflow: error: CHARFLOW_DASK_ADDRESS is set but CHARFLOW_STORE_URL is not: Dask workers, each with its own "
        "CHARFLOW_HOME, see one another's artifacts only through the shared object store and catalog; set "
        "CHARFLOW_STORE_URL and CHARFLOW_CATALOG_URL here and on every worker, or unset CHARFLOW_DASK_ADDRESS"
    )


def test_a_bad_file_fails_on_a_worker_with_its_one_line(on_cluster, tmp_path):
    from flows.reingest import reingest
    from tasks.sources import IngestError

    corpora = tmp_path / "corpora"
    corpora.mkdir()
    (corpora / "broken.txt").write_bytes("好的".encode() + b"\xff\xfe" + b"tail")
    with pytest.raises(IngestError) as failed:
        reingest(sources=[str(corpora)])
    assert str(failed.value) == (
        f"{corpora / 'broken.txt'}: invalid UTF-8 at byte offset 6 (bytes b'\\xff\\xfeta': invalid start byte). "
        "Convert the file to UTF-8, or pass --decode-errors replace to substitute U+FFFD."
    )


@pytest.mark.parametrize("packed", ["folder", "zip"])
def test_a_many_file_corpus_is_counted_member_by_member_with_the_serial_bytes(on_cluster, lyrics_zip, tmp_path, packed):
    from flows.pipeline import prepare as prepare_pipeline
    from flows.prepare import prepare
    from tasks.clean import CleanParams

    split_lyrics(lyrics_zip, tmp_path / "corpus", parts=4, size=15000, name=f"{packed}-member")
    source = tmp_path / "corpus"
    if packed == "zip":
        source = tmp_path / "corpus.zip"
        with zipfile.ZipFile(source, "w") as archive:
            for member in sorted((tmp_path / "corpus").iterdir()):
                archive.write(member, f"lyrics/{member.name}")
    whole = CleanParams(max_chars=None)
    local = prepare_pipeline(plain_runner(tmp_path / "local"), Located(source=str(source)), PrepareParams(clean=whole))
    state = prepare(source=str(source), max_chars=None, return_state=True)
    made = state.result()
    for stage in ["ingest", "clean", "vocab", "encode"]:
        assert made.stages[stage].key == local.stages[stage].key, stage
        assert files(made.stages[stage]) == files(local.stages[stage]), stage
    assert made.stages["vocab"].summary["size"] == local.stages["vocab"].summary["size"] > 1_000
    prefix = "lyrics/" if packed == "zip" else ""
    counts = [f"count {prefix}{packed}-member{n}.txt" for n in range(4)]
    runs = task_runs_of(state.state_details.flow_run_id, until=lambda runs: set(counts) <= {r.name for r in runs})
    names = sorted(run.name for run in runs)
    assert [n for n in names if n.startswith("count ")] == counts
    # The vocabulary was built from those counts, not from a count of its own that replaced them.
    worker_logs = "".join((on_cluster["logs"] / f"worker-{n}.log").read_text() for n in range(2))
    assert "do not add up" not in worker_logs


def test_a_worker_without_the_shared_backends_names_itself(tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    from flows.cluster import ComputeError, check_worker

    monkeypatch.delenv("CHARFLOW_STORE_URL", raising=False)
    monkeypatch.delenv("CHARFLOW_CATALOG_URL", raising=False)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as local, Client(local) as client:
        address = next(iter(client.scheduler_info()["workers"]))
        with pytest.raises(ComputeError) as refused:
            client.submit(check_worker).result()
    assert str(refused.value) == (
        f"the Dask worker {address} has no CHARFLOW_STORE_URL: start every worker with CHARFLOW_STORE_URL and "
        "CHARFLOW_CATALOG_URL set to the same shared store and catalog"
    )


def test_the_quality_gate_decides_on_the_cluster(on_cluster, lyrics_zip, tmp_path):
    """The decision is a task on a worker: it reads the models and the text from the shared store, and records
    the decision and the alias move in the shared catalog."""
    from artifacts import aliases
    from artifacts.backends import open_catalog
    from artifacts.decisions import decisions_of
    from flows import home
    from flows.reingest import reingest

    split_lyrics(lyrics_zip, tmp_path / "corpora", parts=1, size=3000, name="gated")
    small = {"max_chars": 3000, "epochs": 2, "hidden": 16, "val_fraction": 0.1, "pred_period": 100}
    (row,) = reingest(sources=[str(tmp_path / "corpora")], train=True, promote="champion", **small)
    decision = row["decision"]
    assert (row["corpus"], row["status"], decision["verdict"], decision["moved"]) == ("gated0", "new", "first", True)
    entries = open_catalog(home.store_root()).entries()
    assert aliases.aliases_of(entries, "gated0") == {("gated0", "champion"): decision["model"]}
    assert [d.verdict for d in decisions_of(entries, "gated0")] == ["first"]
