"""`charflow prepare` as a user runs it: separate processes, a real Prefect server, and the embedded one."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import run_cli, snapshot

STAGES = ["ingest", "clean", "vocab", "encode"]


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


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["{missing}"], 1, "no such file or directory"),
        (["{zip}", "--sha256", "0" * 64], 1, "sha256 mismatch"),
        (["{zip}", "--max-chars", "0"], 2, "max_chars=0: Input should be greater than 0"),
        (["{zip}", "--max-chars", "lots"], 2, "expected a number of characters or 'none'"),
        (["{zip}", "--min-count", "3"], 2, "add --reserved '<unk>'"),
        (["{zip}", "--replace", "nonsense"], 2, "expected OLD=NEW"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(tmp_path, lyrics_zip, prefect_server, args, code, message):
    home = tmp_path / "home"
    prepare_json(home, str(lyrics_zip), api_url=prefect_server)
    before = snapshot(home / "store")
    argv = [a.format(missing=tmp_path / "missing.txt", zip=lyrics_zip) for a in args]
    result = run_cli("prepare", *argv, home=home, api_url=prefect_server)
    assert result.returncode == code
    assert message in result.stderr
    assert snapshot(home / "store") == before


def test_options_reach_the_stages(tmp_path, lyrics_zip, prefect_server):
    result = prepare_json(
        tmp_path,
        str(lyrics_zip),
        "--max-chars",
        "none",
        "--order",
        "frequency",
        "--reserved",
        "<unk>",
        "--min-count",
        "2",
        api_url=prefect_server,
    )
    assert result["stages"]["clean"]["summary"]["chars"] == 63_282
    assert result["stages"]["vocab"]["summary"]["policy"] == {
        "order": "frequency",
        "reserved": ["<unk>"],
        "min_count": 2,
    }


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
    assert "size=1027" in result.stdout and "rows=10000" in result.stdout
    assert (env_home / ".charflow" / "store" / "catalog.jsonl").is_file()
    assert (env_home / ".charflow" / "prefect" / "prefect.db").is_file()
