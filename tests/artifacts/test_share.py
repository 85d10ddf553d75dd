"""`charflow share`: a home's local store and catalog copied into the shared backends, and checked."""

import json

from artifacts import backends
from flows.pipeline import plain_runner, prepare
from tasks.fetch import resolve_source
from tests.helpers import machine, run_cli


def test_a_local_home_moves_to_the_shared_backends(shared_backends, tmp_path, lyrics_zip, monkeypatch):
    home = tmp_path / "old-home"
    source = resolve_source(str(lyrics_zip), "jaychou")
    for variable in ("CHARFLOW_STORE_URL", "CHARFLOW_CATALOG_URL"):
        monkeypatch.delenv(variable)
    local = prepare(plain_runner(home / "store"), source)  # made before the shared backends existed
    for variable in ("CHARFLOW_STORE_URL", "CHARFLOW_CATALOG_URL"):
        monkeypatch.setenv(variable, shared_backends[variable])
    # Another machine registered other content of the corpus first: this home's v1 becomes v2 there.
    backends.open_catalog(tmp_path).register("jaychou", "f" * 64, 1, "elsewhere.txt", "e" * 64)

    shared = run_cli("share", "--json", home=home)
    assert shared.returncode == 0, shared.stderr[-3000:]
    report = json.loads(shared.stdout)
    assert sorted(report["published"]) == sorted(ref.key for ref in local.stages.values())
    assert report["verified"] == 4
    assert report["damaged"] == []
    assert report["versions"] == [{"corpus": "jaychou", "local": 1, "shared": 2}]

    again = json.loads(run_cli("share", "--json", home=home).stdout)  # idempotent
    assert again["published"] == []
    assert len(again["already_there"]) == 4
    assert again["versions"] == [{"corpus": "jaychou", "local": 1, "shared": 2}]

    elsewhere = prepare(machine(tmp_path / "new-machine"), source)
    assert all(ref.cache_hit for ref in elsewhere.stages.values())
    assert elsewhere.version == 2
    assert backends.open_catalog(tmp_path).complete("jaychou") == [2]


def test_share_without_shared_backends_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("CHARFLOW_STORE_URL", raising=False)
    monkeypatch.delenv("CHARFLOW_CATALOG_URL", raising=False)
    result = run_cli("share", home=tmp_path)
    assert result.returncode != 0
    assert "set CHARFLOW_STORE_URL and CHARFLOW_CATALOG_URL" in result.stderr


def test_share_carries_the_runs_and_aliases_over(shared_backends, tmp_path, lyrics_zip, monkeypatch):
    """A home's models stay runs of their versions (under the shared numbers), and its aliases go along where the
    shared catalog has none of that name; one it has is the other machines' choice and stays."""
    from artifacts import aliases, runs
    from flows.pipeline import PrepareParams, train
    from tasks.batches import BatchesParams
    from tasks.clean import CleanParams
    from tasks.train.params import TrainParams

    home = tmp_path / "old-home"
    for variable in ("CHARFLOW_STORE_URL", "CHARFLOW_CATALOG_URL"):
        monkeypatch.delenv(variable)
    runner = plain_runner(home / "store")
    tiny = (PrepareParams(clean=CleanParams(max_chars=2000)), BatchesParams(batch_size=4, num_steps=5, epochs=1))
    made = train(runner, resolve_source(str(lyrics_zip), "jaychou"), *tiny, TrainParams(model="rnn", hidden=8))
    model = made.stages["train"].key
    aliases.move(runner.catalog, "jaychou", "champion", model, "best so far")
    aliases.move(runner.catalog, "jaychou", "baseline", model, "")
    for variable in ("CHARFLOW_STORE_URL", "CHARFLOW_CATALOG_URL"):
        monkeypatch.setenv(variable, shared_backends[variable])
    shared_catalog = backends.open_catalog(tmp_path)
    shared_catalog.register("jaychou", "f" * 64, 1, "elsewhere.txt", "e" * 64)  # this home's v1 is v2 there
    aliases.move(shared_catalog, "jaychou", "baseline", "b" * 64, "another machine's")

    report = json.loads(run_cli("share", "--json", home=home).stdout)

    assert report["runs"] == 1
    assert report["aliases"] == [{"corpus": "jaychou", "alias": "champion", "model": model}]
    assert report["aliases_kept_there"] == [{"corpus": "jaychou", "alias": "baseline", "shared": "b" * 64}]
    [run] = runs.runs_of(shared_catalog.entries())
    assert (run.model, run.version) == (model, 2)
    assert aliases.aliases_of(shared_catalog.entries(), "jaychou") == {
        ("jaychou", "champion"): model,
        ("jaychou", "baseline"): "b" * 64,
    }
    assert json.loads(run_cli("share", "--json", home=home).stdout)["runs"] == 0  # once
