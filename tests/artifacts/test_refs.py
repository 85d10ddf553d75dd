"""One resolver for every reference syntax: key, prefix, folder, corpus@version/stage; clear errors."""

import pytest

from artifacts.manifest import Summary
from artifacts.refs import RefError, resolve
from flows.pipeline import plain_runner, prepare
from tasks.fetch import resolve_source


class Empty(Summary):
    pass


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One corpus in two versions, prepared without Prefect."""
    root = tmp_path_factory.mktemp("refs")
    runner = plain_runner(root / "store")
    song = root / "songs.txt"
    song.write_text("one two three", encoding="utf-8")
    first = prepare(runner, resolve_source(str(song)))
    song.write_text("one two three four", encoding="utf-8")
    second = prepare(runner, resolve_source(str(song)))
    return runner, first, second


def find(runner, ref, stage=None, verify=False):
    return resolve(runner.store, runner.catalog, ref, stage, verify)


def test_every_syntax_names_the_same_artifact(store):
    runner, first, second = store
    vocab = second.stages["vocab"]
    for ref in [vocab.key, vocab.key[:10], str(vocab.path), "songs@latest/vocab", "songs@2/vocab", "songs@v2/vocab"]:
        found = find(runner, ref)
        assert (found.stage, found.key, found.path) == ("vocab", vocab.key, vocab.path), ref
        assert found.summary == vocab.summary
    assert find(runner, "songs@1/vocab").key == first.stages["vocab"].key
    assert find(runner, "songs@latest/clean", stage="clean").key == second.stages["clean"].key


@pytest.mark.parametrize(
    ("ref", "stage", "message"),
    [
        ("ffffffff", None, "'ffffffff' names no artifact; candidates:"),
        ("", None, "names no artifact"),
        ("songs@9/vocab", None, "songs has no version 9; versions: v1, v2"),
        ("songs@one/vocab", None, "songs has no version or alias 'one'; versions: v1, v2; aliases: none"),
        ("poems@latest/vocab", None, "no corpus 'poems' in the catalog; known corpora: songs"),
        ("songs@latest/embedding", None, "songs@v2 has no embedding artifact; it has: ingest, clean, vocab, encode"),
        ("songs@latest/vocab", "train", "names no train artifact"),
    ],
)
def test_bad_references_list_the_candidates(store, ref, stage, message):
    with pytest.raises(RefError, match=message.replace("(", r"\(")):
        find(store[0], ref, stage)


def test_an_ambiguous_prefix_is_refused(tmp_path):
    runner = plain_runner(tmp_path / "store")
    for key in ("ab" + "0" * 62, "ab" + "1" * 62):
        runner.store.materialize(
            stage="vocab", key=key, params={}, inputs={}, code="", libraries={}, build=lambda f: Empty()
        )
    with pytest.raises(RefError, match="'ab' is ambiguous; candidates: ") as err:
        find(runner, "ab")
    assert "vocab/ab0000000000" in str(err.value)
    assert "vocab/ab1111111111" in str(err.value)
    assert find(runner, "ab1").key == "ab" + "1" * 62


def test_verify_refuses_a_damaged_artifact(tmp_path):
    runner = plain_runner(tmp_path / "store")
    song = tmp_path / "songs.txt"
    song.write_text("abc", encoding="utf-8")
    vocab = prepare(runner, resolve_source(str(song))).stages["vocab"]
    with vocab.file("vocab.parquet").open("r+b") as fh:
        fh.seek(10)
        fh.write(b"\0\0\0\0")
    assert find(runner, vocab.key).key == vocab.key  # inspection still shows it
    with pytest.raises(RefError, match=f"vocab artifact {vocab.key[:12]} is missing or damaged"):
        find(runner, vocab.key, "vocab", verify=True)
    assert find(runner, "songs@latest/encode", "encode", verify=True).stage == "encode"
