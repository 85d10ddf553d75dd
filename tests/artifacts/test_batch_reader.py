"""The batches stage's shards and the reader over them: ranks, resume, vocabulary checks."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from artifacts.batch_reader import BatchReader
from artifacts.batches import BatchesSummary, batches_schema
from artifacts.indices import EncodeSummary, write_indices
from artifacts.manifest import MANIFEST_NAME, read_manifest
from artifacts.parquet import read_metadata
from artifacts.stages import run_stage
from artifacts.store import Store
from artifacts.vocab import VocabMismatch
from tasks.batches import BatchesParams, iter_batches

VOCAB_KEY = "v" * 64


def indices_artifact(store: Store, corpus: np.ndarray):
    def build(folder: Path) -> EncodeSummary:
        write_indices(folder, [corpus.astype(np.int32)], {"vocab_key": VOCAB_KEY})
        return EncodeSummary(rows=len(corpus), vocab_key=VOCAB_KEY, vocab_size=int(corpus.max()) + 1)

    key = f"{len(corpus):064d}"
    return store.materialize(stage="encode", key=key, params={}, inputs={}, code="", libraries={}, build=build)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


@pytest.fixture(params=[False, True], ids=["stream", "materialized"])
def materialize(request):
    """Every reading test runs on both forms of the artifact: the token stream, and the rows written out."""
    return request.param


def make_batches(store, corpus, **params):
    return run_stage(store, "batches", BatchesParams(**params), indices=indices_artifact(store, corpus))


def expected(corpus, params: BatchesParams):
    """The sampler's own batches for every epoch: what the artifact must give back."""
    return [
        (epoch, k, x, y)
        for epoch in range(params.epochs)
        for k, (x, y) in enumerate(iter_batches(corpus, params, epoch))
    ]


@pytest.mark.parametrize("sampler", ["random", "consecutive"])
def test_stored_batches_read_back_exactly(store, sampler, materialize):
    corpus = np.random.default_rng(0).integers(0, 60, 2_000)
    params = BatchesParams(
        sampler=sampler, batch_size=4, num_steps=7, epochs=5, max_shard_rows=50, seed=3, materialize=materialize
    )
    ref = make_batches(store, corpus, **params.model_dump())
    got = list(BatchReader(ref.path, expected_vocab_key=VOCAB_KEY))
    want = expected(corpus, params)
    assert len(got) == len(want)
    for (x, y), (_, _, wx, wy) in zip(got, want, strict=True):
        assert x.dtype == torch.int32
        assert x.shape == (4, 7)
        assert np.array_equal(x.numpy(), wx)
        assert np.array_equal(y.numpy(), wy)
    summary = BatchesSummary.of(ref)
    assert summary.vocab_key == VOCAB_KEY
    assert summary.spec == params
    assert summary.epochs_stored == (1 if sampler == "consecutive" else 5)
    files = sorted(p.name for p in Path(ref.path).iterdir() if not p.name.startswith("_"))
    assert files == ([s.file for s in summary.shards] if materialize else ["tokens.npy"])
    assert summary.same_every_epoch is (sampler == "consecutive")


def test_shards_are_bounded_and_hold_one_batch_per_row_group(store):
    corpus = np.arange(3_000) % 97
    ref = make_batches(store, corpus, batch_size=5, num_steps=6, epochs=3, max_shard_rows=23, materialize=True)
    folder = Path(ref.path)
    manifest = read_manifest(folder)
    files = sorted(folder.glob("batches-*.parquet"))
    shards = BatchesSummary.of(ref).shards
    assert [f.name for f in files] == [s.file for s in shards]
    assert len(files) > 10
    for path, shard in zip(files, shards, strict=True):
        parquet = pq.ParquetFile(path)
        assert parquet.metadata.num_rows == shard.rows <= 23
        assert parquet.metadata.num_row_groups == shard.batches
        table = parquet.read()
        assert table.schema.remove_metadata() == batches_schema(6)
        groups = table.group_by(["epoch", "batch"]).aggregate([("row", "count")])
        assert all(count == 5 for count in groups.column("row_count").to_pylist())
        meta = read_metadata(path)
        assert meta["spec"]["batch_size"] == 5
        assert meta["vocab_key"] == VOCAB_KEY
        assert meta["shard"] == shard.model_dump()
    assert sum(s.rows for s in shards) == manifest.summary["rows"]
    x = pq.read_table(files[0]).column("x")
    assert x.type == pa.list_(pa.int32(), 6)


def test_partial_last_batch_kept_on_request(store, materialize):
    corpus = np.arange(100)
    ref = make_batches(
        store, corpus, batch_size=4, num_steps=7, epochs=2, drop_last=False, max_shard_rows=8, materialize=materialize
    )
    shapes = [x.shape[0] for x, _ in BatchReader(ref.path)]
    assert shapes == [4, 4, 4, 2] * 2  # 14 windows: 3 full batches and one of 2, per epoch


@settings(max_examples=25, deadline=None)
@given(
    sampler=st.sampled_from(["random", "consecutive"]),
    world=st.sampled_from([1, 2, 4]),
    shard_rows=st.sampled_from([4, 9, 1000]),
    materialize=st.booleans(),
)
def test_ranks_together_see_each_batch_once(tmp_path_factory, sampler, world, shard_rows, materialize):
    store = Store(tmp_path_factory.mktemp("ranks"))
    corpus = np.random.default_rng(1).integers(0, 30, 700)
    params = BatchesParams(
        sampler=sampler, batch_size=4, num_steps=5, epochs=2, max_shard_rows=shard_rows, materialize=materialize
    )
    ref = make_batches(store, corpus, **params.model_dump())
    readers = [BatchReader(ref.path, rank=r, world_size=world) for r in range(world)]
    full = list(BatchReader(ref.path))
    if sampler == "random":
        seen = sorted(
            (pos, x.numpy().tobytes())
            for reader in readers
            for pos, (x, _) in zip(reader.positions(), reader, strict=True)
        )
        whole = sorted(
            (pos, x.numpy().tobytes()) for pos, (x, _) in zip(BatchReader(ref.path).positions(), full, strict=True)
        )
        assert seen == whole
    else:
        parts = [list(reader) for reader in readers]
        for k, (x, y) in enumerate(full):
            assert torch.equal(torch.cat([part[k][0] for part in parts]), x)
            assert torch.equal(torch.cat([part[k][1] for part in parts]), y)
        # Each rank's streams continue from batch to batch within an epoch, across shard boundaries too.
        per_epoch = len(full) // params.epochs
        for part in parts:
            for k in range(len(part) - 1):
                if (k + 1) % per_epoch:
                    assert torch.equal(part[k + 1][0][:, 0], part[k][1][:, -1])


@pytest.mark.parametrize("sampler", ["random", "consecutive"])
def test_resume_yields_exactly_the_rest(store, sampler, materialize):
    corpus = np.random.default_rng(2).integers(0, 40, 1_500)
    ref = make_batches(
        store, corpus, sampler=sampler, batch_size=4, num_steps=6, epochs=4, max_shard_rows=30, materialize=materialize
    )
    full = list(zip(BatchReader(ref.path).positions(), BatchReader(ref.path), strict=True))
    cut = 23
    resumed = BatchReader(ref.path, start=full[cut][0])
    rest = list(zip(resumed.positions(), resumed, strict=True))
    assert [p for p, _ in rest] == [p for p, _ in full[cut:]]
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for (_, a), (_, b) in zip(rest, full[cut:], strict=True)
    )
    assert len(resumed) == len(full) - cut


def test_reader_refuses_another_vocabulary_and_bad_splits(store):
    ref = make_batches(store, np.arange(500) % 20, sampler="consecutive", batch_size=4, num_steps=5, epochs=1)
    with pytest.raises(VocabMismatch, match="not the expected wwwwwwwwwwww"):
        BatchReader(ref.path, expected_vocab_key="w" * 64)
    with pytest.raises(ValueError, match="batch_size=4 does not divide among 3 processes"):
        BatchReader(ref.path, world_size=3)
    with pytest.raises(ValueError, match="rank must be in 0..world_size-1"):
        BatchReader(ref.path, rank=2, world_size=2)


def test_dtype_is_a_choice(store, materialize):
    ref = make_batches(store, np.arange(500) % 20, batch_size=4, num_steps=5, epochs=1, materialize=materialize)
    x, y = next(iter(BatchReader(ref.path, dtype=torch.long)))
    assert x.dtype == y.dtype == torch.long
    x[0, 0] = -1  # tensors own writable memory, not Arrow's read-only buffers
    assert next(iter(BatchReader(ref.path)))[0][0, 0] != -1


def test_dataloader_workers_split_random_batches(store, materialize):
    ref = make_batches(store, np.arange(2_000) % 50, batch_size=4, num_steps=5, epochs=2, materialize=materialize)
    loader = torch.utils.data.DataLoader(BatchReader(ref.path), batch_size=None, num_workers=2)
    got = sorted(x.numpy().tobytes() for x, _ in loader)
    assert got == sorted(x.numpy().tobytes() for x, _ in BatchReader(ref.path))


@pytest.mark.parametrize(
    "spec",
    [
        {"sampler": "random", "batch_size": 2, "num_steps": 6, "epochs": 3},
        {"sampler": "consecutive", "batch_size": 2, "num_steps": 6, "epochs": 3},
        {"sampler": "random", "batch_size": 3, "num_steps": 4, "epochs": 4, "random_offset": True},
        {"sampler": "random", "batch_size": 3, "num_steps": 4, "epochs": 2, "drop_last": False},
        {"sampler": "consecutive", "batch_size": 2, "num_steps": 4, "epochs": 4, "random_offset": True},
        {"sampler": "random", "batch_size": 32, "num_steps": 35, "epochs": 2, "val_fraction": 0.1},
    ],
)
def test_the_token_stream_yields_exactly_the_batches_a_materialized_artifact_holds(store, spec):
    """Golden equivalence over whole epochs, the book's test vector (0..29) first."""
    corpus = np.arange(30) if spec["batch_size"] == 2 else np.random.default_rng(5).integers(0, 1_027, 3_000)
    stream = make_batches(store, corpus, **spec)
    rows = make_batches(store, corpus, **spec, materialize=True)
    assert stream.key != rows.key
    got = list(zip(BatchReader(stream.path).positions(), BatchReader(stream.path), strict=True))
    want = list(zip(BatchReader(rows.path).positions(), BatchReader(rows.path), strict=True))
    assert [p for p, _ in got] == [p for p, _ in want]
    assert got
    for (_, (x, y)), (_, (wx, wy)) in zip(got, want, strict=True):
        assert torch.equal(x, wx)
        assert torch.equal(y, wy)
    if spec["sampler"] == "consecutive" and not spec.get("random_offset"):
        assert [x.tolist() for _, (x, _) in got[:2]] == [  # the book's vectors
            [[0, 1, 2, 3, 4, 5], [15, 16, 17, 18, 19, 20]],
            [[6, 7, 8, 9, 10, 11], [21, 22, 23, 24, 25, 26]],
        ]


def test_the_stream_costs_4_bytes_a_token_whatever_the_epochs(store):
    corpus = np.random.default_rng(6).integers(0, 1_027, 5_000)
    sizes = []
    for epochs in (1, 250):
        ref = make_batches(store, corpus, batch_size=8, num_steps=10, epochs=epochs)
        sizes.append(sum(f.stat().st_size for f in Path(ref.path).iterdir() if not f.name.startswith("_")))
    assert sizes[0] == sizes[1] <= 4 * 5_000 + 128  # the .npy header


@pytest.mark.parametrize("materialize", [False, True])
def test_random_batches_split_by_rows_give_every_rank_a_part_of_every_batch(store, materialize):
    """DDP's split: each rank the same number of steps, each its rows of the same global batch."""
    ref = make_batches(store, np.arange(900) % 20, batch_size=6, num_steps=5, epochs=2, materialize=materialize)
    whole = [(x.clone(), y.clone()) for x, y in BatchReader(ref.path)]
    parts = [list(BatchReader(ref.path, rank=r, world_size=3, split_rows=True)) for r in range(3)]
    assert len(whole) > 2
    assert all(len(p) == len(whole) for p in parts)
    for step, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([p[step][0] for p in parts]), x)
        assert torch.equal(torch.cat([p[step][1] for p in parts]), y)
    with pytest.raises(ValueError, match="batch_size=6 does not divide among 4 processes"):
        BatchReader(ref.path, world_size=4, split_rows=True)


def test_a_kept_partial_batch_that_does_not_split_is_refused_by_name(store):
    ref = make_batches(store, np.arange(200) % 20, batch_size=4, num_steps=5, epochs=1, drop_last=False)
    reader = BatchReader(ref.path, rank=0, world_size=2, split_rows=True)
    with pytest.raises(ValueError, match="a batch of 3 rows does not divide among 2 processes .*--keep-last"):
        list(reader)


# The peak of counting `epochs` epochs, measured in a process of its own (tracemalloc sees every thread's
# allocations, and a test worker has other threads).
PEAK = """
import sys, tracemalloc
from tasks.batches import BatchesParams, epochs_size
params = BatchesParams(batch_size=4, num_steps=5, epochs=int(sys.argv[1]), random_offset=sys.argv[2] == "1")
epochs_size(2_000, params, 1)  # imports and caches warmed
tracemalloc.start()
epochs_size(2_000, params, params.epochs)
print(tracemalloc.get_traced_memory()[1])
"""


@pytest.mark.parametrize("random_offset", [False, True], ids=["same-counts", "random-offsets"])
def test_the_plan_of_the_most_epochs_costs_what_one_epoch_costs(store, random_offset):
    """Manifests listed every epoch's batch count and the build held them all (a 10^12-epoch plan grew past
    7 GB): now a manifest is the same size whatever the epochs, and counting them holds no list."""
    import subprocess
    import sys

    from tasks.batches import MAX_EPOCHS, epochs_size

    corpus = np.random.default_rng(0).integers(0, 60, 2_000)
    sizes, peaks = [], []
    for epochs in (1, MAX_EPOCHS):
        params = BatchesParams(batch_size=4, num_steps=5, epochs=epochs, random_offset=random_offset)
        ref = make_batches(store, corpus, **params.model_dump())
        sizes.append(len((ref.path / MANIFEST_NAME).read_bytes()))
        measured = subprocess.run(
            [sys.executable, "-c", PEAK, str(epochs), str(int(random_offset))],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks.append(int(measured.stdout))
    assert sizes[1] - sizes[0] < 64, sizes  # a few numbers' digits (epochs, rows, tokens)
    assert peaks[1] < peaks[0] + 4096, peaks
    summary = BatchesSummary.of(ref)
    assert summary.batches_per_epoch == []
    n = summary.train_indices
    assert (
        summary.batches_in(MAX_EPOCHS - 1)
        == epochs_size(n, params, MAX_EPOCHS)[0] - epochs_size(n, params, MAX_EPOCHS - 1)[0]
    )
