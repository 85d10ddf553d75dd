"""`charflow inspect` on a real two-version store made by the train flow: tables, JSON, exit codes."""

import json

import pytest

from charflow.cli import main
from tests.helpers import run_cli


@pytest.fixture
def inspect(two_versions, monkeypatch, capsys):
    monkeypatch.setenv("CHARFLOW_HOME", str(two_versions["home"]))

    def run(*args):
        code = main(["inspect", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def inspect_json(inspect, *args):
    code, out, err = inspect(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_ls_lists_versions_and_artifacts(inspect):
    listed = inspect_json(inspect, "ls")
    assert listed["backend"] == "store: local folder; catalog: local catalog.jsonl"  # which backends it reads
    assert [v["version"] for v in listed["corpora"]["songs"]] == [1, 2]
    assert {a["stage"] for a in listed["artifacts"]} == {"ingest", "clean", "vocab", "encode", "batches", "train"}
    created = [a["created"] for a in listed["artifacts"]]
    assert created == sorted(created, reverse=True)
    code, out, _ = inspect("ls")
    assert code == 0
    assert "corpus songs" in out
    assert "artifacts, newest first" in out


def test_show_decodes_every_kind(inspect, two_versions):
    second = two_versions["second"].stages
    clean = inspect_json(inspect, "show", "songs@latest/clean")
    assert clean["view"]["first_characters"].startswith("想要有直升机 想要和你飞到宇宙去")
    assert "text: large_string" in clean["schemas"]["text.parquet"]
    vocab = inspect_json(inspect, "show", "songs@2/vocab")
    assert vocab["view"]["most_frequent"][0]["token"] == " "
    assert vocab["manifest"]["key"] == second["vocab"].key
    encode = inspect_json(inspect, "show", second["encode"].key[:10])
    assert encode["view"]["decoded"].startswith("想要有直升机")
    batches = inspect_json(inspect, "show", "songs@latest/batches")
    row = batches["view"]["first_rows"][0]
    assert len(row["x"]) == len(row["y"]) == 8
    assert row["x"][1:] == row["y"][:-1]
    model = inspect_json(inspect, "show", "songs@latest/train")
    assert [m["epoch"] for m in model["view"]["metrics"]] == [1, 2]
    assert {s["prefix"] for s in model["view"]["samples"]} == {"分开", "不分开"}
    code, out, err = inspect("show", str(second["train"].path))
    assert code == 0
    assert err == ""
    assert second["train"].key in out
    assert "metrics.parquet" in out


def test_lineage_reaches_the_source(inspect, two_versions):
    chain = inspect_json(inspect, "lineage", "songs@latest/train")
    assert [c["stage"] for c in chain] == ["train", "batches", "vocab", "encode", "clean", "ingest", "source"]
    assert chain[-1]["key"] == two_versions["second"].sha256
    assert next(c for c in chain if c["stage"] == "clean")["params"]["max_chars"] == 10_000
    code, out, _ = inspect("lineage", "songs@latest/train")
    assert code == 0
    assert "lineage" in out
    assert "max_chars" in out


def test_diff_of_two_vocabularies(inspect, lyrics_text):
    found = inspect_json(inspect, "diff", "songs@1/vocab", "songs@2/vocab")
    first = set(lyrics_text[:3000].replace("\n", " "))
    assert found["vocab"]["added"] == sorted(set("☃☃☃ snow") - first)
    assert found["vocab"]["removed"] == []
    assert found["vocab"]["largest_count_changes"][0] == {"token": "☃", "change": 3}
    assert found["params"] == {}
    assert list(found["inputs"]) == ["text"]
    code, out, _ = inspect("diff", "songs@1/vocab", "songs@2/vocab")
    assert code == 0
    assert "added: " in out
    assert "☃" in out
    assert "+3" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "ffffffff"], 1, "'ffffffff' names no artifact; candidates:"),
        (["show", ""], 1, "names no artifact"),
        (["show", "songs@9/vocab"], 1, "songs has no version 9; versions: v1, v2"),
        (["show", "poems@latest/vocab"], 1, "no corpus 'poems' in the catalog; known corpora: songs"),
        (["show", "songs@latest/embedding"], 1, "it has: ingest, clean, vocab, encode, batches, train"),
    ],
)
def test_bad_references_are_one_line_with_the_candidates(inspect, args, code, message):
    got, out, err = inspect(*args)
    assert got == code
    assert message in err
    assert err.startswith("charflow: error: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize("args", [["show"], ["diff", "songs@1/vocab"], ["lineage", "a", "b"], ["frobnicate"]])
def test_wrong_arguments_are_refused_by_the_parser(inspect, args):
    with pytest.raises(SystemExit) as exit:
        inspect(*args)
    assert exit.value.code == 2


def test_the_installed_command_runs_as_a_process(two_versions):
    result = run_cli("inspect", "verify", "--json", home=two_versions["home"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True, "damaged": [], "missing": [], "aliases": [], "leftovers": []}


@pytest.mark.parametrize("stage", ["ingest", "vocab"])
def test_show_of_a_damaged_artifact_names_the_damage(tmp_path, monkeypatch, capsys, lyrics_zip, stage):
    """Was a raw UnicodeDecodeError / ArrowInvalid traceback, where verify, generate and run name the damage."""
    from flows import home
    from flows.pipeline import plain_runner, prepare
    from tasks.fetch import resolve_source

    monkeypatch.setenv("CHARFLOW_HOME", str(tmp_path / "home"))
    made = prepare(plain_runner(home.store_root()), resolve_source(str(lyrics_zip), "songs"))
    ref = made.stages[stage]
    data = max((p for p in ref.path.iterdir() if not p.name.startswith("_")), key=lambda p: p.stat().st_size)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2] + b"\xff\xfe torn")
    assert main(["inspect", "show", f"songs@1/{stage}"]) == 1
    err = capsys.readouterr().err
    damaged = f"{stage} artifact {ref.key[:12]} is missing or damaged; run the pipeline again to rebuild it"
    assert err == f"charflow: error: {damaged}\n"
