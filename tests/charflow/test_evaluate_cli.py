"""`charflow evaluate` as a user runs it: the result as JSON, a repeat from the cache, and bad input refused in
one line (before any server starts where the arguments and the store tell)."""

from __future__ import annotations

import json

import pytest

from artifacts.model import TrainSummary
from flows.pipeline import PrepareParams, plain_runner, train
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.fetch import resolve_source
from tasks.train.params import TrainParams


@pytest.mark.usefixtures("prefect_harness")
def test_evaluate_prints_json_repeats_from_the_cache_and_refuses_in_one_line(home, lyrics_text, cli):
    song = home / "tiny.txt"
    song.write_text(lyrics_text[:1500], encoding="utf-8")
    made = train(
        plain_runner(home / "store"),
        resolve_source(str(song), "tiny"),
        PrepareParams(clean=CleanParams(max_chars=None)),
        BatchesParams(batch_size=4, num_steps=8, epochs=1, val_fraction=0.2),
        TrainParams(model="rnn", hidden=32, optimizer="adam", lr=0.01, prefixes=(), device="cpu"),
    )
    model = made.stages["train"]
    code, out, err = cli("evaluate", model.key[:12], "tiny@latest", "--split", "val", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["perplexity"] == TrainSummary.of(model).val_perplexity
    assert (result["chars"], result["split"], result["checkpoint"]) == (
        300,
        "val",
        "best",
    )  # one epoch: the best is the last
    assert list(result["stages"]) == ["train", "vocab", "clean", "evaluate"]
    assert result["evaluation"]["cache_hit"] is False
    code, out, err = cli("evaluate", model.key[:12], "tiny@latest", "--split", "val", "--json")
    assert code == 0, err
    assert json.loads(out)["evaluation"] == {**result["evaluation"], "cache_hit": True}
    code, out, err = cli("evaluate", model.key[:12], str(song), "--max-chars", "200")
    assert code == 0, err
    # 3 streams of 66 (streams_for: at least 8 windows of num_steps each)
    assert "bits per character on 198 predictions (200 characters, all; model" in out
    for args, status, message in [
        (["ffffff", "tiny@latest"], 1, "'ffffff' names no train artifact; candidates: train/"),
        ([model.key, "tiny@latest", "--max-chars", "0"], 2, "max_chars=0: Input should be greater than 0"),
        ([model.key, "tiny@v2"], 1, "tiny has no version v2; versions: v1"),
        ([model.key, home / "missing.txt"], 1, "missing.txt: no such file or directory"),
    ]:
        code, out, err = cli("evaluate", *args)
        assert (code, out) == (status, "")
        assert len(err.strip().splitlines()) == 1
        assert message in err
    latin = home / "latin.txt"
    latin.write_text("Hello 分开", encoding="utf-8")
    code, out, err = cli("evaluate", model.key, latin)
    assert code == 1
    assert err.splitlines()[-1].startswith("charflow: error: the text has 5 characters the model's vocabulary lacks")
    assert err.splitlines()[-1].endswith(
        "pass --skip-unknown to drop them (they are counted), or evaluate a model whose vocabulary reserves '<unk>'"
    )
