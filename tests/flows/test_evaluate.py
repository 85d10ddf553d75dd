"""Evaluation wired without Prefect: the model's own held-out tail gives its validation perplexity exactly, a
repeat is a cache hit, a file is cleaned as the model's corpus was and registers no version, unknown characters
are mapped, refused or skipped, and bad references and settings are refused before any work."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from artifacts.evaluation import EVALUATION_FILE
from artifacts.manifest import read_manifest
from artifacts.model import TrainSummary
from artifacts.parquet import read_metadata
from artifacts.refs import RefError
from flows.answer import answer_evaluate
from flows.pipeline import PrepareParams, evaluate, plain_runner, train
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.evaluate import EvaluateParams, NoValidationSplit, UnknownCharacters
from tasks.fetch import resolve_source
from tasks.train.params import TrainParams
from tasks.vocab import VocabParams

TINY = TrainParams(model="rnn", hidden=32, optimizer="adam", lr=0.01, pred_period=1, pred_chars=3, device="cpu")
SAMPLER = BatchesParams(batch_size=4, num_steps=8, epochs=1)


@pytest.fixture(scope="module")
def trained(lyrics_text, tmp_path_factory):
    """Two tiny models of the lyrics' first 3,000 characters, not truncated further: `songs` validated on a fifth
    held out; `reserved` with '<unk>' reserved and no validation split."""
    root = tmp_path_factory.mktemp("evaluate-home")
    runner = plain_runner(root / "store")
    songs = root / "songs.txt"
    songs.write_text(lyrics_text[:3000], encoding="utf-8")
    whole = PrepareParams(clean=CleanParams(max_chars=None))
    model = train(
        runner, resolve_source(str(songs), "songs"), whole, SAMPLER.model_copy(update={"val_fraction": 0.2}), TINY
    )
    with_unk = whole.model_copy(update={"vocab": VocabParams(reserved=("<unk>",))})
    reserved = train(runner, resolve_source(str(songs), "reserved"), with_unk, SAMPLER, TINY)
    return {"root": root, "runner": runner, "songs": songs, "model": model, "reserved": reserved}


def key(made, name="model") -> str:
    return made[name].stages["train"].key


def test_the_models_held_out_tail_gives_its_last_validation_perplexity_exactly(trained):
    runner, model = trained["runner"], trained["model"]
    made = evaluate(runner, key(trained)[:10], "songs@latest", EvaluateParams(split="val", checkpoint="last"))
    summary = made["evaluate"].summary
    # The same scoring code on the same indices, read as validation read them (streams = the batch size).
    trained_summary = TrainSummary.of(model.stages["train"])
    assert summary["perplexity"] == trained_summary.val_perplexity
    # By default the best checkpoint, a model with validation's default: its best validation perplexity.
    best = evaluate(runner, key(trained)[:10], "songs@latest", EvaluateParams(split="val"))
    assert best["evaluate"].summary["perplexity"] == trained_summary.best_val_perplexity
    assert read_manifest(best["evaluate"].path).params["checkpoint"] == "best"
    assert made["clean"].key == model.stages["clean"].key
    assert (summary["chars"], summary["tokens"], summary["split"]) == (600, 596, "val")  # 3,000 x 0.2; 4 streams
    assert summary["perplexity"] == math.exp(summary["nll"] / summary["tokens"])
    assert summary["bits_per_char"] == summary["nll"] / summary["tokens"] / math.log(2)
    resolved = read_manifest(made["evaluate"].path).params
    assert resolved == {
        "checkpoint": "last",
        "device": "cpu",
        "max_chars": None,
        "num_steps": 8,
        "skip_unknown": False,
        "split": "val",
        "streams": 4,
    }
    table = read_metadata(made["evaluate"].path / EVALUATION_FILE)
    assert table["model_key"] == key(trained)


def test_a_repeat_is_a_cache_hit_and_another_setting_another_evaluation(trained):
    runner = trained["runner"]
    first = evaluate(runner, "songs@latest/train", "songs@v1/clean", EvaluateParams())
    written = (first["evaluate"].path / EVALUATION_FILE).stat().st_mtime_ns
    again = evaluate(runner, key(trained), "songs@1", EvaluateParams(checkpoint="best", streams=4))
    assert again["evaluate"].key == first["evaluate"].key
    assert again["evaluate"].cache_hit
    assert (again["evaluate"].path / EVALUATION_FILE).stat().st_mtime_ns == written
    other = evaluate(runner, key(trained), "songs@1", EvaluateParams(streams=2))
    assert other["evaluate"].key != first["evaluate"].key
    assert not other["evaluate"].cache_hit


def test_a_file_is_cleaned_as_the_models_corpus_was_and_registers_no_version(trained, lyrics_text, tmp_path):
    runner = trained["runner"]
    before = runner.catalog.entries()
    other = tmp_path / "more.txt"
    other.write_text(lyrics_text[3000:4000], encoding="utf-8")
    made = evaluate(runner, key(trained, "reserved"), str(other), EvaluateParams())
    assert runner.catalog.entries() == before
    assert list(made) == ["train", "vocab", "ingest", "clean", "evaluate"]
    cleaned = read_manifest(made["clean"].path)
    assert cleaned.params == read_manifest(trained["reserved"].stages["clean"].path).params  # newlines to spaces
    assert made["clean"].summary["chars"] == 1000
    assert made["evaluate"].summary["unknown_mapped"] == 312  # characters the first 3,000 never had
    # The model's own source: the very ingest and clean artifacts of its corpus, found again.
    own = evaluate(runner, key(trained), str(trained["songs"]), EvaluateParams())
    assert own["clean"].key == trained["model"].stages["clean"].key
    assert own["ingest"].cache_hit
    assert own["clean"].cache_hit
    assert runner.catalog.entries() == before


def test_max_chars_truncates_the_text_evaluated(trained):
    runner = trained["runner"]
    made = evaluate(runner, key(trained), str(trained["songs"]), EvaluateParams(max_chars=500))
    assert made["clean"].summary["chars"] == 500
    assert made["evaluate"].summary["chars"] == 500
    by_version = evaluate(runner, key(trained), "songs@latest", EvaluateParams(max_chars=500))
    assert by_version["evaluate"].summary["nll"] == made["evaluate"].summary["nll"]


def test_unknown_characters_are_mapped_to_unk_refused_or_skipped(trained, tmp_path):
    runner = trained["runner"]
    latin = tmp_path / "latin.txt"
    latin.write_text("分开 Hello 不分开 World", encoding="utf-8")
    mapped = evaluate(runner, key(trained, "reserved"), str(latin), EvaluateParams())["evaluate"].summary
    assert (mapped["chars"], mapped["unknown_mapped"], mapped["unknown_skipped"]) == (18, 10, 0)
    with pytest.raises(UnknownCharacters, match=r"has 10 characters .* \(7 distinct: 'H', 'e', 'l', 'o', 'W', …\)"):
        evaluate(runner, key(trained), str(latin), EvaluateParams())
    skipped = evaluate(runner, key(trained), str(latin), EvaluateParams(skip_unknown=True))["evaluate"].summary
    assert (skipped["chars"], skipped["unknown_mapped"], skipped["unknown_skipped"]) == (18, 0, 10)
    assert skipped["tokens"] == 7  # the 8 known characters: 7 predictions


def test_bad_references_and_settings_are_refused_before_any_work(trained):
    runner = trained["runner"]
    listed = sorted(Path(runner.store.root).glob("evaluate/*"))
    with pytest.raises(RefError, match="'ffffff' names no train artifact"):
        evaluate(runner, "ffffff", "songs@latest", EvaluateParams())
    with pytest.raises(RefError, match="songs has no version v9"):
        evaluate(runner, key(trained), "songs@v9", EvaluateParams())
    with pytest.raises(NoValidationSplit, match="trained without a validation split"):
        evaluate(runner, key(trained, "reserved"), "reserved@latest", EvaluateParams(split="val"))
    assert sorted(Path(runner.store.root).glob("evaluate/*")) == listed


def test_a_stored_evaluation_is_answered_without_prefect(trained, monkeypatch):
    monkeypatch.setenv("CHARFLOW_HOME", str(trained["root"]))
    made = evaluate(trained["runner"], key(trained), "songs@latest", EvaluateParams(split="val"))
    answered = answer_evaluate(key(trained), "songs@latest", EvaluateParams(split="val"))
    assert answered is not None
    assert answered["evaluate"].key == made["evaluate"].key
    assert answer_evaluate(key(trained), "songs@latest", EvaluateParams(split="val", streams=3)) is None
