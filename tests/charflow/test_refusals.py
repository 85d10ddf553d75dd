"""Every refusal of bad input comes before any server starts and before anything is written: one line, with
CHARFLOW_HOME never made. In this process (the checks import no Prefect); one real process proves the bound."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from charflow.cli import main

LYRICS = "{lyrics}"


@pytest.fixture
def sources(tmp_path, lyrics_zip):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "binary.txt").write_bytes(b"ELF\x7f\x00\x01\xff\xfe" * 100)
    (tmp_path / "torn.zip").write_bytes(lyrics_zip.read_bytes()[:1000])
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as archive:
        archive.writestr("cover.png", b"\x89PNG")
    (tmp_path / "no-text").mkdir()
    (tmp_path / "no-text" / "notes.md").write_text("not matched", encoding="utf-8")
    return {"tmp": tmp_path, "lyrics": lyrics_zip}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["prepare", "{tmp}/empty.txt"], 1, "empty.txt: no text at all (0 characters); pass a corpus with some text"),
        (["prepare", "{tmp}/binary.txt"], 1, "binary.txt: invalid UTF-8 at byte offset 6"),
        (["batches", "{tmp}/torn.zip"], 1, "torn.zip: not a readable zip archive"),
        (["prepare", "{tmp}/images.zip"], 1, "images.zip: the archive has no text member matching *.txt"),
        (["prepare", "{tmp}/no-text"], 1, "no-text: the folder holds no text file matching *.txt"),
        (["run", "{tmp}/missing"], 1, "missing: no such file or directory"),
        (["reingest", "{tmp}/missing"], 1, "missing: no such file, folder or matching path"),
        (["reingest", "{tmp}/empty.txt"], 1, "empty.txt: no text at all (0 characters)"),
        (["prepare", "http:///corpus.txt"], 1, "http:///corpus.txt: not a valid URL (no host)"),
        (["prepare", "https://example.org:port/a.txt"], 1, "not a valid URL (bad port)"),
        (["batches", LYRICS, "--seed", "-1"], 2, "seed=-1: Input should be greater than or equal to 0"),
        (["run", LYRICS, "--lr", "0"], 2, "lr=0.0: Input should be greater than 0"),
        (["prepare", "https://reader:s3cret@example.org/c.txt"], 2, "a source URL may not carry a password"),
        # Was accepted, and could never be named again ("no corpus 'a/b'").
        (["prepare", LYRICS, "--name", "a/b@1"], 2, "'a/b@1' cannot be a corpus name (1 to 128 characters, none of"),
        # inf was accepted (training then diverged), nan too: every parameter model takes finite numbers only.
        (["run", LYRICS, "--lr", "inf"], 2, "lr=inf: Input should be a finite number"),
        (["batches", LYRICS, "--val-fraction", "nan"], 2, "val_fraction=nan: Input should be a finite number"),
        # Planning was O(epochs) in memory (7.4 GB at 2.5 min, still growing): the bound is the model's.
        (
            ["batches", LYRICS, "--epochs", "1000000000000"],
            2,
            "epochs=1000000000000: Input should be less than or equal to 100000",
        ),
        (["batches", LYRICS, "--max-chars", "20"], 1, "too short for one window of num_steps=35"),
        (["run", LYRICS, "--nproc", "3", "--batch-size", "4"], 2, "--batch-size 4 does not split among --nproc 3"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_the_home_is_made(
    tmp_path, monkeypatch, capsys, sources, args, code, message
):
    home = tmp_path / "never-made"
    monkeypatch.setenv("CHARFLOW_HOME", str(home))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main([a.format(**sources) for a in args]) == code
    out, err = capsys.readouterr()
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""
    assert not home.exists()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CHARFLOW_STORE_URL", "ftp://host/x", "CHARFLOW_STORE_URL='ftp://host/x' is not s3://BUCKET/PREFIX"),
        ("CHARFLOW_CATALOG_URL", "mysql://db", "CHARFLOW_CATALOG_URL is set but CHARFLOW_STORE_URL is not"),
        ("CHARFLOW_LOCK_WAIT", "soon", "CHARFLOW_LOCK_WAIT='soon' is not valid"),
    ],
)
def test_a_malformed_backend_is_refused_before_the_home_is_made(
    tmp_path, monkeypatch, capsys, variable, value, message
):
    home = tmp_path / "never-made"
    monkeypatch.setenv("CHARFLOW_HOME", str(home))
    monkeypatch.setenv(variable, value)
    assert main(["prepare", str(tmp_path)]) == 1
    assert message in capsys.readouterr().err
    assert not home.exists()


def test_a_refusal_in_a_real_process_loads_no_prefect_and_no_torch(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    script = (
        "import sys; from charflow.cli import main; code = main(['run', sys.argv[1]]); "
        "print(code, sorted(m for m in ('prefect', 'torch', 'matplotlib') if m in sys.modules))"
    )
    env = {**os.environ, "CHARFLOW_HOME": str(tmp_path / "never-made")}
    env.pop("PREFECT_API_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "empty.txt")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout == "1 []\n"
    assert result.stderr.startswith("charflow: error: ")
    assert not (tmp_path / "never-made").exists()
