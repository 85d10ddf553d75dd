"""The `charflow` command as a user runs it: in-process for argument and validation errors (milliseconds),
as separate processes against a real Prefect server for caching across processes and concurrency."""

import json
import os
import subprocess
import sys

import pytest

from artifacts.batches import BatchesSummary
from tasks.batches import BOOK_BATCHES_PER_EPOCH
from tests.helpers import run_cli, snapshot

STAGES = ["ingest", "clean", "vocab", "encode"]
TINY_RUN = ["--epochs", "2", "--model", "rnn", "--hidden", "32", "--optimizer", "adam", "--lr", "0.01"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "x", "--max-chars", "0"], "invalid parameters: max_chars=0: Input should be greater than 0"),
        (["prepare", "x", "--max-chars", "lots"], "expected a number of characters or 'none', got 'lots'"),
        (["prepare", "x", "--min-count", "3"], "add --reserved '<unk>'"),
        (["prepare", "x", "--replace", "nonsense"], "expected OLD=NEW"),
        (["prepare", "x", "--order", "random"], "invalid choice: 'random'"),
        (["batches", "x", "--batch-size", "0"], "batch_size must be a positive integer, got 0"),
        (["batches", "x", "--sampler", "consecutive", "--keep-last"], "always drops the remainder"),
        (["batches", "x", "--max-shard-rows", "8"], "max_shard_rows=8 cannot hold one batch of batch_size=32"),
        (["run", "x", "--model", "transformer", "--heads", "3"], "heads=3 does not divide hidden=256; choose --heads"),
        (["run", "x", "--model", "transformer", "--sampler", "consecutive"], "a Transformer does not have"),
        (["run", "x", "--model", "mamba"], "invalid choice: 'mamba'"),
        (["run", "x", "--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
        (["run", "x", "--lr", "0"], "lr=0.0: Input should be greater than 0"),
        (["run", "x", "--clip", "often"], "expected a number or 'none', got 'often'"),
        (["train", "--batches", "abc", "--checkpoint-every", "0"], "checkpoint_every=0: Input should be greater"),
        (["batches", "x", "--seed", "-1"], "invalid parameters: seed=-1: Input should be greater than or equal to 0"),
        (["run", "x", "--seed", "-1"], "invalid parameters: seed=-1: Input should be greater than or equal to 0"),
        (["serve", "--port", "0"], "invalid parameters: port=0: Input should be greater than or equal to 1"),
        (["serve", "--port", "70000"], "port=70000: Input should be less than or equal to 65535"),
        (["inspect", "gc", "--keep", "-1"], "invalid parameters: keep=-1: Input should be greater than or equal to 0"),
        (["inspect", "show", "x", "--batch", "0"], "expected 2 arguments"),
        (["generate", "x", "--temperature", "-1"], "temperature=-1.0: Input should be greater than or equal to 0"),
        (["generate", "x", "--top-p", "0"], "top_p=0.0: Input should be greater than 0"),
        (["generate", "x", "--top-p", "1.5"], "top_p=1.5: Input should be less than or equal to 1"),
        (["generate", "x", "--top-k", "0"], "top_k=0: Input should be greater than or equal to 1"),
        (["generate", "x", "--chars", "-5"], "chars=-5: Input should be greater than or equal to 0"),
        (["generate", "x", "--chars", "100001"], "chars=100001: Input should be less than or equal to 100000"),
        (["generate", "x", "--num-samples", "0"], "num_samples=0: Input should be greater than or equal to 1"),
        (["generate", "x", "--prefix", ""], "a prefix must have at least one character; give --prefix some text"),
        (["generate", "x", "--prefix-file", "missing.txt"], "cannot read --prefix-file missing.txt"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2_before_any_work(cli, home, args, message):
    code, out, err = cli(*args)
    assert code == 2
    assert message in err
    assert out == ""
    assert not (home / "store").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "{tmp}/missing.txt"], "missing.txt: no such file or directory. Pass an existing file"),
        (["batches", "--seed", "-1"], "invalid parameters: seed=-1: Input should be greater than or equal to 0"),
        (["run", "{tmp}/missing.txt", "--epochs", "2"], "missing.txt: no such file or directory"),
    ],
)
def test_a_refusal_comes_before_any_server_and_writes_nothing(tmp_path, args, message):
    """A real process with no Prefect server anywhere: the refusal is its one line, and CHARFLOW_HOME is never
    made (the temporary server and its database would live there)."""
    home = tmp_path / "never-made"
    env = {**os.environ, "CHARFLOW_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)
    argv = [a.format(tmp=tmp_path) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "charflow.cli", *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode in (1, 2)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not home.exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine_is_refused_at_the_edge(cli, home):
    code, _, err = cli("run", "x", "--device", "cuda")
    assert code == 2
    assert err == "charflow: error: device='cuda' but no CUDA device is visible; use --device cpu or auto\n"


def test_options_come_from_the_models_with_their_defaults(cli):
    code, out, _ = cli("run", "--help")
    assert code == 0
    text = " ".join(out.split())
    for expected in [
        "--model {scratch,rnn,gru,lstm,transformer}",
        "--optimizer {sgd,adam,adamw}",
        "--sampler {random,consecutive}",
        "--device {auto,cpu,cuda}",
        "(default: 10000)",
        "(default: 100.0)",
        "(default: 'scratch')",
        "(default: '分开', '不分开')",
        "--keep-last",
        "--no-replace",
    ]:
        assert expected in text, expected


def test_a_bad_charflow_variable_is_refused_by_any_command_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARFLOW_CACHE_BYTES", "lots")
    result = run_cli("inspect", "ls", home=tmp_path / "home")
    assert result.returncode == 1
    assert result.stderr.startswith("charflow: error: CHARFLOW_CACHE_BYTES='lots' is not valid (")
    assert result.stderr.rstrip().endswith("fix or unset CHARFLOW_CACHE_BYTES")


@pytest.mark.usefixtures("prefect_harness")
def test_failures_inside_the_flow_are_one_line_and_change_nothing(cli, home, lyrics_zip, tmp_path):
    code, out, err = cli("batches", lyrics_zip, "--sampler", "consecutive", "--json")
    assert code == 0, err
    made = json.loads(out)
    assert list(made["stages"]) == [*STAGES, "batches"]
    summary = made["stages"]["batches"]["summary"]
    assert (summary["epochs"], summary["epochs_stored"], summary["batches_per_epoch"]) == (250, 1, [])
    assert BatchesSummary.model_validate(summary).batches_in(0) == BOOK_BATCHES_PER_EPOCH
    before = snapshot(home / "store")
    for args, message in [
        ([tmp_path / "missing.txt"], "no such file or directory"),
        ([lyrics_zip, "--sha256", "0" * 64], "sha256 mismatch"),
        (
            [lyrics_zip, "--batch-size", "400"],
            "285 windows of num_steps=35 in 10000 indices are fewer than batch_size=400",
        ),
    ]:
        code, _, err = cli("batches", *args)
        assert code == 1
        assert err.splitlines()[-1].startswith("charflow: error: ")
        assert message in err.splitlines()[-1]
    assert snapshot(home / "store") == before


@pytest.mark.usefixtures("prefect_harness")
def test_options_reach_the_stages(cli, home, lyrics_zip):
    code, out, err = cli(
        "prepare",
        lyrics_zip,
        "--max-chars",
        "none",
        "--order",
        "frequency",
        "--reserved",
        "<unk>",
        "--min-count",
        "2",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["stages"]["clean"]["summary"]["chars"] == 63_282
    assert result["stages"]["vocab"]["summary"]["policy"] == {
        "order": "frequency",
        "reserved": ["<unk>"],
        "min_count": 2,
    }


def prepare_json(home, *args, api_url=None):
    result = run_cli("prepare", *args, "--json", home=home, api_url=api_url)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_a_second_process_hits_the_cache(tmp_path, lyrics_zip, prefect_server):
    first = prepare_json(tmp_path, str(lyrics_zip), "--name", "jaychou", api_url=prefect_server)
    assert (first["corpus"], first["version"]) == ("jaychou", 1)
    assert [first["stages"][s]["cache_hit"] for s in STAGES] == [False] * 4
    assert first["stages"]["vocab"]["summary"]["size"] == 1_027
    second = prepare_json(tmp_path, str(lyrics_zip), "--name", "jaychou", api_url=prefect_server)
    assert [second["stages"][s]["cache_hit"] for s in STAGES] == [True] * 4
    assert {s: second["stages"][s]["key"] for s in STAGES} == {s: first["stages"][s]["key"] for s in STAGES}


def test_two_concurrent_runs_leave_one_copy(tmp_path, lyrics_zip, prefect_server):
    env_args = [sys.executable, "-m", "charflow.cli", "prepare", str(lyrics_zip), "--json"]
    env = {**os.environ, "CHARFLOW_HOME": str(tmp_path), "PREFECT_API_URL": prefect_server}
    env.pop("PREFECT_HOME", None)
    procs = [
        subprocess.Popen(env_args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    assert results[0]["stages"] == {
        s: {**ref, "cache_hit": results[0]["stages"][s]["cache_hit"]} for s, ref in results[1]["stages"].items()
    }
    store = tmp_path / "store"
    for stage in STAGES:
        assert len(list((store / stage).iterdir())) == 1
    versions = [json.loads(line) for line in (store / "catalog.jsonl").read_text().splitlines()]
    assert [e["version"] for e in versions if e["event"] == "version"] == [1]


def test_run_then_train_and_generate_by_any_reference(tmp_path, lyrics_zip, prefect_server, cli, cli_on, monkeypatch):
    args = [*TINY_RUN, "--pred-period", "1", "--sampler", "consecutive"]
    code, printed, err = cli_on(tmp_path, prefect_server, "run", lyrics_zip, "--name", "songs", *args, "--json")
    assert code == 0, err[-3000:]
    out = json.loads(printed)
    assert list(out["stages"]) == [*STAGES, "batches", "train"]
    assert out["model"]["key"] == out["stages"]["train"]["key"]
    assert out["perplexity"] > 1
    # Every reference `inspect` takes: here corpus@version/stage.
    code, printed, err = cli_on(
        tmp_path, prefect_server, "train", "--batches", "songs@latest/batches", *args[2:], "--json"
    )
    assert code == 0, err[-3000:]
    assert json.loads(printed)["model"]["key"] == out["model"]["key"]
    assert json.loads(printed)["model"]["cache_hit"] is True
    monkeypatch.setenv("CHARFLOW_HOME", str(tmp_path))
    for ref in (out["model"]["key"][:12], "songs@latest/train"):
        code, generated, err = cli("generate", ref, "--prefix", "不分开", "--chars", "8")
        assert code == 0, err
        assert generated.startswith("不分开")
        assert len(generated.rstrip("\n")) == 11
    # Sampled: two texts drawn together, the same again with the same seed; temperature 0 is the greedy text.
    sampled = [
        cli("generate", "songs@latest/train", "--prefix", "不分开", "--chars", "8", *draw, "--json")
        for draw in (["--temperature", "1.5", "--seed", "3", "--num-samples", "2"],) * 2 + (["--temperature", "0"],)
    ]
    assert [code for code, _, _ in sampled] == [0, 0, 0], sampled[0][2]
    rows, again, greedy = (json.loads(printed) for _, printed, _ in sampled)
    assert [(row["prefix"], row["sample"]) for row in rows] == [("不分开", 0), ("不分开", 1)]
    assert all(row["text"].startswith("不分开") and len(row["text"]) == 11 for row in rows)
    assert again == rows
    assert greedy == [{"prefix": "不分开", "sample": 0, "text": generated.rstrip("\n")}]
    code, _, err = cli_on(tmp_path, prefect_server, "train", "--batches", "ffffff")
    last = err.splitlines()[-1]
    assert code == 1
    assert last.startswith("charflow: error: 'ffffff' names no batches artifact; candidates:")


@pytest.mark.slow
def test_default_corpus_on_the_embedded_server(tmp_path, lyrics_zip):
    """The README's main job: no source, no server: the pinned lyrics from CHARFLOW_DATA_PATH."""
    env_home = tmp_path / "work"
    env_home.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "charflow.cli", "prepare"],
        env={
            **os.environ,
            "CHARFLOW_DATA_PATH": str(lyrics_zip.parent),
            "CHARFLOW_HOME": "",
            "PREFECT_API_URL": "",
            "PREFECT_HOME": "",
        },
        cwd=env_home,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "corpus jaychou v1 (new version" in result.stdout
    assert "size=1027" in result.stdout
    assert "rows=10000" in result.stdout
    assert (env_home / ".charflow" / "store" / "catalog.jsonl").is_file()
    assert (env_home / ".charflow" / "prefect" / "prefect.db").is_file()


def test_reingest_prepares_what_is_new_and_then_nothing(tmp_path, lyrics_text, prefect_server, cli_on):
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    (corpora / "first.txt").write_text(lyrics_text[:5000])
    (corpora / "second.txt").write_text(lyrics_text[5000:9000])
    home = tmp_path / "home"
    code, printed, err = cli_on(home, prefect_server, "reingest", corpora, "--max-chars", "2000")
    assert code == 0, err[-3000:]
    lines = printed.splitlines()
    assert lines[0].split() == ["first", "new", "v1", str(corpora / "first.txt")]
    assert lines[1].startswith("  ingest ")
    assert lines[1].count(",") == 3  # ingest, clean, vocab, encode keys
    assert lines[2].split() == ["second", "new", "v1", str(corpora / "second.txt")]
    assert lines[-1] == "2 corpora looked at"
    (corpora / "second.txt").write_text(lyrics_text[5000:9001])
    code, printed, err = cli_on(home, prefect_server, "reingest", corpora, "--max-chars", "2000", "--json")
    assert code == 0, err[-3000:]
    rows = json.loads(printed)
    assert [(r["corpus"], r["status"], r["version"]) for r in rows] == [
        ("first", "unchanged", 1),
        ("second", "changed", 2),
    ]
