"""The stage registry: one entry per stage, keys that move exactly with the output, resumable training, and
a word when library versions are why a key missed."""

import ast
import inspect
import logging
import textwrap
import types

import numpy as np
import pytest
from pydantic import BaseModel

from artifacts import stages
from artifacts.fingerprint import PROJECT_PACKAGES, module_closure
from artifacts.model import WEIGHTS_FILE
from artifacts.stages import STAGES, run_stage
from artifacts.train_run import run_job
from flows.pipeline import batches, plain_runner
from tasks.batches import BatchesParams
from tasks.errors import ParameterError
from tasks.fetch import resolve_source
from tasks.train.events import EpochEnd, Resumed
from tasks.train.params import TrainParams

TINY = TrainParams(model="rnn", hidden=8, optimizer="adam", lr=0.01, pred_period=2, pred_chars=3, device="cpu")


def test_every_stage_is_one_entry_whose_name_is_its_identity():
    assert list(STAGES) == ["ingest", "clean", "vocab", "encode", "batches", "train", "evaluate"]
    for name, stage in STAGES.items():
        assert stage.name == name
        assert issubclass(stage.params, BaseModel)
        assert f"artifacts.builds:{stage.build.__name__}" in stage.code
    assert "torch" in STAGES["train"].libraries_now
    assert "torch" not in STAGES["batches"].libraries_now
    assert "matplotlib" in STAGES["vocab"].libraries_now  # frequency.png is part of the artifact


def test_inputs_and_parameters_are_checked_against_the_entry(book_prepared):
    runner, prepared = book_prepared
    with pytest.raises(TypeError, match=r"stage batches takes inputs \('indices',\), got \('text',\)"):
        run_stage(runner.store, "batches", BatchesParams(), text=prepared.stages["clean"])
    with pytest.raises(TypeError, match="stage batches takes BatchesParams, got TrainParams"):
        run_stage(runner.store, "batches", TINY, indices=prepared.stages["encode"])


@pytest.fixture(scope="module")
def small(tmp_path_factory, lyrics_text):
    root = tmp_path_factory.mktemp("stages")
    song = root / "songs.txt"
    song.write_text(lyrics_text[:2000], encoding="utf-8")
    runner = plain_runner(root / "store")
    made = batches(runner, resolve_source(str(song)), sampler=BatchesParams(batch_size=4, num_steps=8, epochs=4))
    return runner, made.stages["batches"], made.stages["vocab"], made.stages["encode"]


def test_checkpoint_every_is_not_keyed_and_a_killed_run_resumes_under_other_settings(small):
    runner, made, vocab, _ = small
    inputs = {"batches": made, "vocab": vocab}
    keys = {STAGES["train"].key(inputs, TINY.model_copy(update={"checkpoint_every": n})) for n in (1, 3, 10)}
    assert len(keys) == 1
    assert STAGES["train"].key(inputs, TINY.model_copy(update={"lr": 0.02})) not in keys

    def kill_after_two(event):
        if isinstance(event, EpochEnd) and event.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(runner.store, "train", TINY.model_copy(update={"checkpoint_every": 1}), kill_after_two, **inputs)
    events = []
    resumed = run_stage(runner.store, "train", TINY.model_copy(update={"checkpoint_every": 5}), events.append, **inputs)
    assert isinstance(events[0], Resumed)
    assert events[0].epoch == 2
    assert [e.epoch for e in events[1:]] == [3, 4]
    assert resumed.key in keys
    assert not resumed.cache_hit
    whole = run_stage(runner.store, "train", TINY.model_copy(update={"seed": 0}), **inputs)
    assert whole.cache_hit
    assert whole.summary == resumed.summary


def test_training_on_several_processes_is_the_launch_its_caller_gives_and_none_without_one(small):
    runner, made, vocab, _ = small
    inputs = {"batches": made, "vocab": vocab}
    two = TINY.model_copy(update={"nproc": 2, "seed": 3})
    with pytest.raises(ParameterError, match="--nproc 2 needs a launcher of processes; this caller has none"):
        run_stage(runner.store, "train", two, **inputs)
    jobs = []

    def launch(job, work, on_event, should_stop):
        jobs.append((job, work))
        return run_job(job, on_event=on_event, should_stop=should_stop)  # one process stands in for torchrun

    ref = run_stage(runner.store, "train", two, launch=launch, **inputs)
    [(job, work)] = jobs
    assert job.params == two
    assert job.batches == made.path
    assert job.vocab_key == vocab.key
    assert job.held_out is None  # these batches keep no validation split
    assert job.checkpoint == work / "checkpoint.pt"
    assert job.metadata == {"stage": "train", "vocab_key": vocab.key, "batches_key": made.key}
    assert ref.summary["batches_key"] == made.key
    assert ref.summary["epochs"] == 4
    assert (ref.path / WEIGHTS_FILE).is_file()


def test_other_library_versions_are_named_once(small, monkeypatch, caplog):
    runner, _, _, indices = small
    stage = STAGES["batches"]
    spec = BatchesParams(batch_size=4, num_steps=8, epochs=1, seed=7)
    monkeypatch.setitem(stage.__dict__, "libraries_now", {**stage.libraries_now, "numpy": "0.0.1"})
    old = run_stage(runner.store, "batches", spec, indices=indices)
    run_stage(runner.store, "batches", spec.model_copy(update={"seed": 8}), indices=indices)
    monkeypatch.undo()
    monkeypatch.setattr(stages, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="charflow.stages"):
        new = run_stage(runner.store, "batches", spec, indices=indices)
        run_stage(runner.store, "batches", spec.model_copy(update={"seed": 8}), indices=indices)
    assert new.key != old.key
    assert not new.cache_hit
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1  # two misses for the same reason, one word
    assert warned[0].startswith(f"numpy {np.__version__} is installed, but batches artifact {old.key[:12]} was made")
    events = []
    monkeypatch.setattr(stages, "_warned", set())
    run_stage(runner.store, "batches", spec.model_copy(update={"seed": 9}), events.append, indices=indices)
    assert not [e for e in events if isinstance(e, stages.OtherLibraries)]  # no such artifact: a plain miss


def project_modules_used_by(function) -> set[str]:
    """The project modules a build function reaches: the names its body uses from its module (but errors it
    raises, which shape no byte), and its own imports."""
    body = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0].body
    used: set[str] = set()
    for node in (n for statement in body for n in ast.walk(statement)):
        if isinstance(node, ast.ImportFrom) and node.module:
            used.add(node.module)
        elif isinstance(node, ast.Name) and node.id in vars(stages):
            value = vars(stages)[node.id]
            if isinstance(value, type) and issubclass(value, Exception):
                continue
            module = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if module:
                used.add(module)
    return {m for m in used if m.split(".")[0] in PROJECT_PACKAGES and m != "artifacts.stages"}


@pytest.mark.parametrize("name", list(STAGES))
def test_the_code_behind_each_build_is_in_its_key(name):
    stage = STAGES[name]
    closure = set(module_closure([m for m in stage.code if ":" not in m]))
    missing = project_modules_used_by(stage.build) - closure
    assert not missing, f"{name} builds with {sorted(missing)}, which its key does not cover"


def test_clean_vocab_and_encode_make_the_same_bytes_compiled_or_decoded(book_prepared, tmp_path, monkeypatch):
    """Large texts are mapped and decoded by numba's loops, small ones as Python bytes and strings: the same
    files either way."""
    import tasks.utf8
    from artifacts.manifest import read_manifest
    from artifacts.store import Store
    from tasks.clean import CleanParams
    from tasks.encode import EncodeParams
    from tasks.vocab import VocabParams

    _, prepared = book_prepared

    def files(store: Store) -> list[tuple[str, str]]:
        text = run_stage(store, "clean", CleanParams(max_chars=None), text=prepared.stages["ingest"])
        vocab = run_stage(store, "vocab", VocabParams(), text=text)
        encoded = run_stage(store, "encode", EncodeParams(), text=text, vocab=vocab)
        return [(f.name, f.sha256) for ref in (text, vocab, encoded) for f in read_manifest(ref.path).files]

    decoded = files(Store(tmp_path / "decoded"))
    calls = []
    for name in ("map_bytes", "count_utf8", "encode_utf8"):
        compiled = getattr(tasks.utf8, name)
        monkeypatch.setattr(tasks.utf8, name, lambda *a, f=compiled, n=name: calls.append(n) or f(*a))
    monkeypatch.setattr("artifacts.builds.COMPILED_MIN_BYTES", 0)
    monkeypatch.setattr("artifacts.text_counts.COMPILED_MIN_BYTES", 0)
    assert files(Store(tmp_path / "compiled")) == decoded
    assert sorted(set(calls)) == ["count_utf8", "encode_utf8", "map_bytes"]  # the compiled loops did run
    assert sorted(name for name, _ in decoded) == ["frequency.png", "indices.parquet", "text.parquet", "vocab.parquet"]
