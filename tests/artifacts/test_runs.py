"""Runs on a real store: a tiny trained model's run, field by field; one run per model however often it is met;
the leaderboard's order and a model's figures beside another's."""

import json
import math

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from artifacts import inspect, runs
from artifacts.aliases import move
from artifacts.leaderboard import RunsParams, comparison, leaderboard
from artifacts.model import METRICS_FILE
from flows.pipeline import train_on
from tasks.train.params import TrainParams

TINY = TrainParams(model="rnn", hidden=8, prefixes=())
# The tiny model's training perplexity after its one epoch: seeded, the same on every run on a CPU.
PERPLEXITY = 64.7331425112915
OTHER = TrainParams(model="rnn", hidden=16, optimizer="adam", lr=0.01, prefixes=())


def without_run(catalog, key):
    """The catalog as a kill -9 between publishing a model and recording its run leaves it."""
    path = catalog.path
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not (json.loads(line).get("event") == "run" and json.loads(line)["model"] == key)]
    assert len(kept) == len(lines) - 1
    path.write_text("".join(kept), encoding="utf-8")


def test_a_tiny_model_is_one_run_with_exact_figures(store):
    runner, first, _ = store
    model = train_on(runner, first.stages["batches"].key, TINY)["train"]
    [run] = runs.runs_of(runner.catalog.entries())
    metrics = pq.read_table(model.path / METRICS_FILE).to_pylist()
    seconds = sum(m["seconds"] for m in metrics)
    assert run.model_dump(exclude={"params", "tokens_per_s", "seconds", "created", "recorded"}) == {
        "corpus": "songs",
        "version": 1,
        "model": model.key,
        "batches": {"sampler": "random", "batch_size": 4, "num_steps": 8, "epochs": 1, "seed": 0, "val_fraction": 0.0},
        "epochs": 1,
        "perplexity": pytest.approx(PERPLEXITY, rel=1e-9),
        "val_perplexity": None,
        "best_epoch": None,
        "best_val_perplexity": None,
        "checkpoint_perplexity": pytest.approx(PERPLEXITY, rel=1e-9),  # no validation: the last training figure
        "bits_per_char": pytest.approx(math.log2(PERPLEXITY), rel=1e-9),
        "device": "cpu",
    }
    assert run.params == {**model_params(model), "hidden": 8}
    assert run.seconds == round(seconds, 3)
    assert run.tokens_per_s == pytest.approx(sum(m["tokens_per_s"] * m["seconds"] for m in metrics) / seconds)
    assert run.created == inspect.entry(model).manifest.created
    assert run.recorded >= run.created


def model_params(model):
    return inspect.entry(model).manifest.params


def test_a_model_met_again_is_still_one_run_and_one_never_recorded_is_recorded_from_its_manifest(store):
    runner, first, _ = store
    model = train_on(runner, first.stages["batches"].key, TINY)["train"]
    [recorded] = runs.runs_of(runner.catalog.entries())
    again = train_on(runner, first.stages["batches"].key, TINY)["train"]
    assert again.cache_hit
    assert runs.runs_of(runner.catalog.entries()) == [recorded]
    without_run(runner.catalog, model.key)
    assert runs.runs_of(runner.catalog.entries()) == []
    assert train_on(runner, first.stages["batches"].key, TINY)["train"].cache_hit
    [remade] = runs.runs_of(runner.catalog.entries())
    assert remade.model_dump(exclude={"recorded"}) == recorded.model_dump(exclude={"recorded"})


def test_the_leaderboard_orders_runs_and_names_their_aliases(store):
    runner, first, second = store
    a = train_on(runner, first.stages["batches"].key, TINY)["train"]
    b = train_on(runner, second.stages["batches"].key, OTHER)["train"]
    move(runner.catalog, "songs", "champion", b.key, "bigger")
    entries = runner.catalog.entries()
    rows = leaderboard(entries, "songs")
    by_figure = sorted([a, b], key=lambda m: runs.run_of(m, "songs", 1, None).checkpoint_perplexity)
    assert [r["model"] for r in rows] == [m.key for m in by_figure]
    assert [(r["ref"], r["aliases"]) for r in sorted(rows, key=lambda r: r["version"])] == [
        ("songs@v1", []),
        ("songs@v2", ["champion"]),
    ]
    assert [r["model"] for r in leaderboard(entries, "songs", RunsParams(sort="version", reverse=True))] == [
        b.key,
        a.key,
    ]
    assert leaderboard(entries, "other") == []
    with pytest.raises(ValidationError, match="no run field 'ppl'; choose one of corpus, version, model, epochs"):
        RunsParams(sort="ppl")
    found = inspect.diff(inspect.entry(a), inspect.entry(b), catalog=runner.catalog)
    ra, rb = (runs.run_of(m, "songs", 1, None) for m in (a, b))
    assert found["metrics"]["perplexity"] == {
        "a": ra.perplexity,
        "b": rb.perplexity,
        "delta": rb.perplexity - ra.perplexity,
    }
    assert found["metrics"]["val_perplexity"] == {"a": None, "b": None, "delta": None}
    assert list(found["metrics"]) == [
        "perplexity",
        "val_perplexity",
        "best_val_perplexity",
        "bits_per_char",
        "tokens_per_s",
        "seconds",
    ]
    metric, curve = comparison([inspect.entry(a), inspect.entry(b)], ["a", "b"], None)
    assert metric == "train"  # neither has validation
    assert [(r["label"], r["epoch"], r["perplexity"]) for r in curve] == [
        ("a", 1, ra.perplexity),
        ("b", 1, rb.perplexity),
    ]
