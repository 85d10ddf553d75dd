import hashlib
import multiprocessing

from artifacts.catalog import Catalog


def test_versions_follow_content(tmp_path):
    catalog = Catalog(tmp_path)
    v1 = catalog.register("songs", "a" * 64, 10, "songs.txt", "k1")
    again = catalog.register("songs", "a" * 64, 10, "elsewhere/songs.txt", "k1")
    v2 = catalog.register("songs", "b" * 64, 11, "songs.txt", "k2")
    other = catalog.register("poems", "a" * 64, 10, "poems.txt", "k1")
    assert (v1.version, v1.new) == (1, True)
    assert (again.version, again.new) == (1, False)
    assert (v2.version, v2.new) == (2, True)
    assert (other.version, other.new) == (1, True)
    assert [(v.corpus, v.version) for v in catalog.versions()] == [("songs", 1), ("songs", 2), ("poems", 1)]


def _register_many(root: str, worker: int) -> list[int]:
    catalog = Catalog(root)
    return [
        catalog.register("c", hashlib.sha256(f"{worker}-{i}".encode()).hexdigest(), 1, "s", "k").version
        for i in range(25)
    ]


def test_two_processes_lose_no_line(tmp_path):
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.starmap(_register_many, [(str(tmp_path), 0), (str(tmp_path), 1)])
    versions = sorted(v for r in results for v in r)
    assert versions == list(range(1, 51))
    assert len(Catalog(tmp_path).versions("c")) == 50
