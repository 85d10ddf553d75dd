"""The sweep flow under Prefect: one prepare, the batches once per batches setting, every combination of the grid
trained (a bounded number at once) and recorded as a run, a leaderboard artifact linking each; a repeat is all
cache hits; a run that fails fails alone. On the 2-worker Dask cluster: 4 runs, 2 at once."""

import pytest

from artifacts import runs
from artifacts.backends import open_catalog
from tests.helpers import task_runs_of

pytestmark = pytest.mark.usefixtures("prefect_harness")
# A run in a few seconds on a loaded 2-core machine: 2,000 characters, 2 epochs of 7 batches, 16 or 32 units.
SMALL = {
    "max_chars": 2000,
    "epochs": 2,
    "batch_size": 8,
    "num_steps": 16,
    "model": "rnn",
    "optimizer": "adam",
    "lr": 0.01,
    "pred_period": 1,
    "pred_chars": 5,
}


def flow_run_of(state, trains: int):
    """The sweep's flow run, its artifacts, and its task runs once its `trains` train task runs are recorded."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        artifacts = {a.key: a for a in client.read_artifacts() if a.flow_run_id == run.id}
    task_runs = task_runs_of(run.id, until=lambda runs: sum("stage:train" in t.tags for t in runs) >= trains)
    return run, artifacts, task_runs


def train_alone(source, folder, **grid):
    """The model of one run of the sweep, trained alone in this process without Prefect."""
    from flows.pipeline import PrepareParams, pick, plain_runner, train
    from tasks.batches import BatchesParams
    from tasks.clean import CleanParams
    from tasks.fetch import Located
    from tasks.train.params import TrainParams

    settings = {**SMALL, **grid}
    made = train(
        plain_runner(folder / "alone"),
        Located(source=str(source)),
        PrepareParams(clean=CleanParams(max_chars=settings["max_chars"])),
        BatchesParams(**pick(BatchesParams, settings)),
        TrainParams(**pick(TrainParams, settings)),
    )
    return made.stages["train"]


@pytest.mark.slow
def test_a_sweep_trains_each_combination_once_records_it_and_a_repeat_is_all_cache_hits(home, lyrics_zip, tmp_path):
    from flows.sweep import sweep

    grid = ["hidden=16,32", "seed=0,1"]
    state = sweep(source=str(lyrics_zip), grid=grid, max_parallel=2, return_state=True, **SMALL)
    rows = state.result()
    assert [(r["run"], r["hidden"], r["seed"], r["status"]) for r in rows] == [
        (1, 16, 0, "trained"),
        (2, 16, 1, "trained"),
        (3, 32, 0, "trained"),
        (4, 32, 1, "trained"),
    ]
    assert len({r["model"] for r in rows}) == 4
    # One batches artifact per distinct batches setting: the seed is one, the hidden size is not.
    assert rows[0]["batches"] == rows[2]["batches"] != rows[1]["batches"] == rows[3]["batches"]
    recorded = runs.runs_of(open_catalog(home / "store").entries(), "jaychou_lyrics")
    assert sorted(r.model for r in recorded) == sorted(r["model"] for r in rows)
    by_model = {r.model: r for r in recorded}
    for row in rows:
        assert by_model[row["model"]].perplexity == row["perplexity"]
        assert by_model[row["model"]].params["hidden"] == row["hidden"]
    run, artifacts, task_runs = flow_run_of(state, trains=4)
    assert run.name.startswith("sweep jaychou_lyrics v1")
    board = artifacts["jaychou-lyrics-sweep-leaderboard"].data
    assert board.startswith("## sweep jaychou_lyrics v1: 4 runs\n\n| run | hidden | seed | status | model |")
    best = min(rows, key=lambda r: r["checkpoint_perplexity"])
    assert board.index(best["model"][:12]) < min(board.index(r["model"][:12]) for r in rows if r is not best)
    for row in rows:  # each run's line links its own model's artifacts
        assert [a["key"] for a in row["artifacts"]][:2] == ["train-summary", "training-metrics"]
        assert row["artifacts"][0]["url"].split("/")[-1] in board
    trains = [t for t in task_runs if "stage:train" in t.tags]
    assert sorted(t.name for t in trains) == sorted(f"train {r['model'][:12]}" for r in rows)

    again = sweep(source=str(lyrics_zip), grid=grid, max_parallel=2, **SMALL)
    assert [(r["model"], r["status"]) for r in again] == [(r["model"], "cached") for r in rows]
    assert [r["perplexity"] for r in again] == [r["perplexity"] for r in rows]
    # Trained at once, each is the model `charflow run` trains alone: the same key, the same numbers.
    alone = [train_alone(lyrics_zip, tmp_path, hidden=r["hidden"], seed=r["seed"]) for r in rows]
    assert [(m.key, m.summary["perplexity"]) for m in alone] == [(r["model"], r["perplexity"]) for r in rows]
    assert len(runs.runs_of(open_catalog(home / "store").entries())) == 4  # each model one run, however met


def most_at_once(spans) -> int:
    """The most spans (start, end) that hold one moment in common."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


@pytest.mark.slow
def test_four_runs_two_at_once_on_the_two_worker_cluster_then_all_cache_hits(on_cluster, lyrics_zip):
    import os

    from distributed import Client

    from flows.sweep import sweep
    from tasks.sweep import threads_per_run

    grid = ["hidden=16,32", "lr=0.01,0.02"]
    state = sweep(source=str(lyrics_zip), grid=grid, max_parallel=2, return_state=True, **SMALL)
    rows = state.result()
    assert [(r["hidden"], r["lr"], r["status"]) for r in rows] == [
        (16, 0.01, "trained"),
        (16, 0.02, "trained"),
        (32, 0.01, "trained"),
        (32, 0.02, "trained"),
    ]
    _, artifacts, task_runs = flow_run_of(state, trains=4)
    trains = [t for t in task_runs if "stage:train" in t.tags]
    assert len(trains) == 4
    # Two at once, never more: the workers hold four task slots between them.
    assert most_at_once([(t.start_time, t.end_time) for t in trains]) == 2
    # Trained on the workers, each in its own home; the models met in the shared store and catalog.
    assert all(any(h.joinpath("store", "train", r["model"]).is_dir() for h in on_cluster["homes"]) for r in rows)
    # Each run set its process's torch threads to its share of the cores (a worker that trained none keeps its
    # own: OMP_NUM_THREADS, or the cores).
    with Client(on_cluster["address"], set_as_default=False) as client:
        threads = client.run(torch_threads)
    assert threads_per_run(2, len(os.sched_getaffinity(0))) in threads.values()
    assert "jaychou-lyrics-sweep-leaderboard" in artifacts

    again = sweep(source=str(lyrics_zip), grid=grid, max_parallel=2, **SMALL)
    assert [(r["model"], r["status"]) for r in again] == [(r["model"], "cached") for r in rows]
