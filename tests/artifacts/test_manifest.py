"""The manifest: what a file is (rows for Parquet, none otherwise) and what is wrong with a folder."""

import pyarrow as pa
import pyarrow.parquet as pq

from artifacts.manifest import describe_file, file_sha256, problems


def test_files_are_described_and_every_kind_of_damage_named(tmp_path):
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "a.parquet")
    (tmp_path / "b.pt").write_bytes(b"weights")
    (tmp_path / "c.png").write_bytes(b"picture")
    entries = [describe_file(tmp_path / name) for name in ("a.parquet", "b.pt", "c.png")]
    assert [(e.name, e.rows) for e in entries] == [("a.parquet", 3), ("b.pt", None), ("c.png", None)]
    assert entries[1].sha256 == file_sha256(tmp_path / "b.pt")
    assert entries[1].size == 7

    class Manifest:
        files = entries

    assert problems(tmp_path, Manifest) == []
    (tmp_path / "b.pt").write_bytes(b"weightz")
    (tmp_path / "c.png").write_bytes(b"pic")
    (tmp_path / "a.parquet").unlink()
    assert problems(tmp_path, Manifest) == [
        "a.parquet: missing",
        "b.pt: sha256 differs from the manifest",
        "c.png: size 3 != 7",
    ]
