"""Runs, aliases and comparisons as a user meets them: `inspect runs`, `promote`, `inspect aliases`, `inspect diff`
and `compare`, and `corpus@NAME` in every command that takes a reference; a model recorded once as a run however
often the command that makes it runs (real processes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from flows.pipeline import PrepareParams, batches, plain_runner, train_on
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.fetch import resolve_source
from tasks.train.params import TrainParams

SMALL = TrainParams(model="rnn", hidden=8, prefixes=())
LARGER = TrainParams(model="rnn", hidden=16, optimizer="adam", lr=0.01, prefixes=())


@pytest.fixture
def two_models(home, lyrics_text):
    """songs v1 (a validation tail) with two models trained on its batches, in the test's CHARFLOW_HOME."""
    song = home / "songs.txt"
    song.write_text(lyrics_text[:1500], encoding="utf-8")
    runner = plain_runner(home / "store")
    made = batches(
        runner,
        resolve_source(str(song)),
        PrepareParams(clean=CleanParams(max_chars=None)),
        BatchesParams(batch_size=4, num_steps=8, epochs=2, val_fraction=0.2),
    )
    small = train_on(runner, made.stages["batches"].key, SMALL)["train"]
    larger = train_on(runner, made.stages["batches"].key, LARGER)["train"]
    return made, small, larger


def json_of(cli, *args):
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.usefixtures("prefect_harness")
def test_leaderboard_promote_and_every_command_through_an_alias(two_models, cli, tmp_path):
    made, small, larger = two_models
    rows = json_of(cli, "inspect", "runs")
    assert sorted(r["model"] for r in rows) == sorted([small.key, larger.key])
    assert [r["checkpoint_perplexity"] for r in rows] == sorted(r["checkpoint_perplexity"] for r in rows)
    assert {(r["ref"], r["kind"], r["hidden"], r["sampler"], r["epochs"], r["device"]) for r in rows} == {
        ("songs@v1", "rnn", 8, "random", 2, "cpu"),
        ("songs@v1", "rnn", 16, "random", 2, "cpu"),
    }
    code, out, err = cli("inspect", "runs", "--sort", "ppl")
    assert (code, out) == (2, "")
    assert err.startswith("charflow: invalid parameters: sort='ppl': Value error, no run field 'ppl'; choose one of")
    assert len(err.splitlines()) == 1
    # The version has two models: refused by version, named by an alias.
    code, _, err = cli("generate", "songs@latest/train", "--prefix", "想要")
    assert code == 1
    assert f"songs@v1 has 2 models ({small.key[:12]}, {larger.key[:12]})" in err
    for name in ("latest", "v2", "7", "two words"):
        code, out, err = cli("promote", larger.key[:10], "--as", name)
        assert (code, out) == (2, "")
        assert err.startswith(f"charflow: invalid parameters: alias={name!r}: Value error, {name!r} ")
    code, out, err = cli("promote", larger.key[:10], "--as", "champion", "--why", "larger")
    assert (code, err) == (0, "")
    assert out == f"songs@champion: (none) -> {larger.key[:12]} (larger)\n"
    code, out, _ = cli("promote", "songs@champion/train", "--as", "champion")
    assert out == f"songs@champion names {larger.key[:12]} already: nothing moved\n"
    assert [r["aliases"] for r in json_of(cli, "inspect", "runs", "songs") if r["model"] == larger.key] == [
        ["champion"]
    ]
    code, out, _ = cli("inspect", "runs")
    assert code == 0
    assert "champion" in out
    assert "rnn 16x1 adam lr=0.01" in out

    by_key = cli("generate", larger.key, "--prefix", "想要", "--chars", "6")
    by_alias = cli("generate", "songs@champion/train", "--prefix", "想要", "--chars", "6")
    assert by_alias == by_key
    assert by_alias[0] == 0
    assert json_of(cli, "inspect", "show", "songs@champion/train")["manifest"]["key"] == larger.key
    assert [c["key"] for c in json_of(cli, "inspect", "lineage", "songs@champion")][:2] == [
        larger.key,
        made.stages["batches"].key,
    ]
    evaluated = json_of(cli, "evaluate", "songs@champion/train", "songs@latest", "--split", "val")
    assert evaluated["model_key"] == larger.key
    trained = json_of(cli, "train", "--batches", "songs@champion/batches", "--model", "rnn", "--hidden", "8")
    assert trained["batches"]["key"] == made.stages["batches"].key

    found = json_of(cli, "inspect", "diff", small.key, "songs@champion/train")
    assert found["params"]["hidden"] == [8, 16]
    perplexity = found["metrics"]["val_perplexity"]
    assert perplexity["delta"] == perplexity["b"] - perplexity["a"]
    code, out, _ = cli("inspect", "diff", small.key, "songs@champion/train")
    assert "b - a" in out
    assert "val_perplexity" in out

    chart = tmp_path / "compare.png"
    compared = json_of(cli, "inspect", "compare", small.key[:12], "songs@champion/train", "--chart", chart)
    assert compared["metric"] == "val"  # both have a validation tail
    assert [(r["label"], r["epoch"]) for r in compared["rows"]] == [
        (small.key[:12], 1),
        (small.key[:12], 2),
        (f"songs@champion/train ({larger.key[:12]})", 1),
        (f"songs@champion/train ({larger.key[:12]})", 2),
    ]
    assert chart.read_bytes().startswith(b"\x89PNG")
    code, out, _ = cli("inspect", "compare", small.key[:12], "songs@champion/train", "--metric", "train", "--publish")
    assert code == 0
    assert "training perplexity per epoch" in out
    assert "published: " in out
    assert "/artifacts/artifact/" in out

    code, out, err = cli("promote", "songs@champion", "--unset", "--why", "retired")
    assert out == f"songs@champion: {larger.key[:12]} -> (unset) (retired)\n"
    code, out, err = cli("promote", "songs@champion", "--unset")
    assert (code, err) == (2, "charflow: error: songs has no alias 'champion' to unset; its aliases: none\n")
    history = json_of(cli, "inspect", "aliases", "songs", "--history")
    assert [(h["from"], h["to"], h["why"]) for h in history] == [
        (None, larger.key, "larger"),
        (larger.key, None, "retired"),
    ]
    assert json_of(cli, "inspect", "aliases") == []

    # gc keeps an aliased model, saying so; verify fails on an alias whose model is gone.
    assert cli("promote", small.key, "--as", "best")[0] == 0
    kept = {k["key"]: k["why"] for k in json_of(cli, "inspect", "gc", "--grace", "0")["kept"]}
    assert kept[small.key] == "alias songs@best"
    shutil.rmtree(small.path)
    code, out, _ = cli("inspect", "verify")
    assert code == 1
    assert "aliases naming a lost model" in out
    code, out, _ = cli("inspect", "verify", "--json")
    assert (code, json.loads(out)["aliases"]) == (1, [{"corpus": "songs", "name": "best", "model": small.key}])


def runs_in(home):
    lines = (home / "store" / "catalog.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if json.loads(line).get("event") == "run"]


@pytest.mark.slow
def test_a_model_is_one_run_however_often_it_is_made_and_one_never_recorded_is_recorded(
    tmp_path, lyrics_text, prefect_server, cli_on
):
    song = tmp_path / "songs.txt"
    song.write_text(lyrics_text[:1500], encoding="utf-8")
    home = tmp_path / "home"
    args = ["run", str(song), "--epochs", "1", "--model", "rnn", "--hidden", "8", "--prefix", "想要", "--json"]
    code, out, err = cli_on(home, prefect_server, *args)
    assert code == 0, err[-3000:]
    model = json.loads(out)["model"]["key"]
    code, _, err = cli_on(home, prefect_server, *args)
    assert code == 0, err[-3000:]
    [run] = runs_in(home)
    assert (run["model"], run["corpus"], run["version"]) == (model, "songs", 1)
    # A kill -9 between publishing the model and recording its run, as the catalog then holds it.
    catalog = home / "store" / "catalog.jsonl"
    lines = catalog.read_text(encoding="utf-8").splitlines(keepends=True)
    catalog.write_text("".join(line for line in lines if json.loads(line).get("event") != "run"), encoding="utf-8")
    assert runs_in(home) == []
    code, out, err = cli_on(home, prefect_server, *args)
    assert code == 0, err[-3000:]
    assert json.loads(out)["model"]["cache_hit"] is True
    [remade] = runs_in(home)
    assert {k: v for k, v in remade.items() if k != "recorded"} == {k: v for k, v in run.items() if k != "recorded"}


@pytest.mark.slow
def test_promotes_killed_at_any_point_leave_whole_runs_and_moves(two_models, home):
    """kill -9 at a spread of moments over a promote's second or so (importing, resolving, recording the run,
    moving the alias): the catalog holds whole entries only, a model is one run at most, every move's `from` is
    the move before's model; promotes run to the end then record each model once."""
    from artifacts.aliases import moves_of
    from artifacts.catalog import JsonlCatalog

    _, small, larger = two_models
    catalog = JsonlCatalog(home / "store")
    lines = catalog.path.read_text(encoding="utf-8").splitlines(keepends=True)
    catalog.path.write_text("".join(line for line in lines if json.loads(line).get("event") != "run"))
    env = {**os.environ, "CHARFLOW_HOME": str(home)}

    def promote(model):
        command = [sys.executable, "-m", "charflow.cli", "promote", model.key, "--as", "champion"]
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def consistent():
        entries = catalog.entries()
        models = [e["model"] for e in entries if e.get("event") == "run"]
        assert len(models) == len(set(models))
        moves = moves_of(entries, "songs", "champion")
        assert all(m.previous == before.model for before, m in zip(moves, moves[1:], strict=False))
        assert not moves or moves[0].previous is None
        return moves

    for number, delay in enumerate([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.5]):
        proc = promote((small, larger)[number % 2])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        consistent()
    for model in (small, larger):
        finished = promote(model)
        assert finished.wait(timeout=120) == 0, finished.stderr.read().decode()
    moves = consistent()
    assert moves[-1].model == larger.key
    assert sorted(e["model"] for e in catalog.entries() if e.get("event") == "run") == sorted([small.key, larger.key])
