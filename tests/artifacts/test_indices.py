"""The indices artifact: int32 rows in bounded row groups, byte-stream-split encoded, read back exactly."""

import numpy as np
import pyarrow.parquet as pq

from artifacts import indices
from artifacts.indices import INDICES_FILE, read_indices, read_indices_from, write_indices


def test_indices_round_trip_in_bounded_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(indices, "INDICES_ROW_GROUP", 1_000)
    monkeypatch.setattr(indices, "WRITE_ROWS", 1_500)
    data = np.random.default_rng(0).integers(0, 1_027, 4_500)
    assert write_indices(tmp_path, [data[:2_500], data[2_500:]], {"vocab_key": "v"}) == 4_500
    # However the indices come in chunks, the same row groups and the same bytes.
    for n, chunking in enumerate([[data], np.array_split(data, 15), [data[:999], data[999:1_001], data[1_001:]]]):
        (tmp_path / str(n)).mkdir()
        assert write_indices(tmp_path / str(n), chunking, {"vocab_key": "v"}) == 4_500
        assert (tmp_path / str(n) / INDICES_FILE).read_bytes() == (tmp_path / INDICES_FILE).read_bytes()
    got = read_indices(tmp_path)
    assert got.dtype == np.int32
    assert np.array_equal(got, data)
    meta = pq.ParquetFile(tmp_path / INDICES_FILE).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1_000, 1_000, 1_000, 1_000, 500]
    assert "BYTE_STREAM_SPLIT" in meta.row_group(0).column(0).encodings
    for start in (0, 999, 1_000, 2_600, 4_499, 4_500):
        tail = read_indices_from(tmp_path, start)
        assert tail.dtype == np.int32, start
        assert np.array_equal(tail, data[start:]), start
