"""The batches flow on the lyrics under Prefect, and `charflow batches` as a user runs it."""

import json
from pathlib import Path

import pytest

from artifacts.manifest import read_manifest
from flows.batches import batches
from tasks.batch_reader import BatchReader
from tasks.batches import BatchesParams
from tests.helpers import run_cli, snapshot


@pytest.mark.usefixtures("prefect_harness")
def test_batches_flow_on_the_lyrics(home, lyrics_zip):
    made = batches(source=str(lyrics_zip), sampler=BatchesParams(epochs=3))
    ref = made.stages["batches"]
    assert ref.summary["batches_per_epoch"] == [8, 8, 8]
    assert ref.summary["rows"] == 3 * 8 * 32 and ref.summary["tokens"] == 3 * 8 * 32 * 35
    assert ref.summary["vocab_key"] == made.stages["vocab"].key
    reader = BatchReader(ref.path, expected_vocab_key=made.stages["vocab"].key)
    assert len(reader) == 24 and all(x.shape == (32, 35) for x, _ in reader)
    again = batches(source=str(lyrics_zip), sampler=BatchesParams(epochs=3))
    assert all(r.cache_hit for r in again.stages.values())
    reseeded = batches(source=str(lyrics_zip), sampler=BatchesParams(epochs=3, seed=1))
    assert {s: r.cache_hit for s, r in reseeded.stages.items()} == {
        "ingest": True,
        "clean": True,
        "vocab": True,
        "encode": True,
        "batches": False,
    }
    assert read_manifest(Path(reseeded.stages["batches"].path)).params["seed"] == 1


def test_cli_batches_json(tmp_path, lyrics_zip, prefect_server):
    result = run_cli(
        "batches", str(lyrics_zip), "--sampler", "consecutive", "--json", home=tmp_path, api_url=prefect_server
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert list(out["stages"]) == ["ingest", "clean", "vocab", "encode", "batches"]
    summary = out["stages"]["batches"]["summary"]
    assert summary["epochs"] == 250 and summary["epochs_stored"] == 1 and summary["same_every_epoch"] is True
    assert summary["batches_per_epoch"] == [8]
    before = snapshot(tmp_path / "store")
    for args, code, message in [
        (["--batch-size", "0"], 2, "batch_size must be a positive integer, got 0"),
        (["--batch-size", "400"], 1, "285 windows of num_steps=35 in 10000 indices are fewer than batch_size=400"),
        (["--sampler", "consecutive", "--keep-last"], 2, "always drops the remainder"),
        (["--max-shard-rows", "8"], 2, "max_shard_rows=8 cannot hold one batch of batch_size=32"),
    ]:
        bad = run_cli("batches", str(lyrics_zip), *args, home=tmp_path, api_url=prefect_server)
        assert bad.returncode == code, bad.stderr[-2000:]
        assert message in bad.stderr
    assert snapshot(tmp_path / "store") == before
