"""The home a run needs: writable, room on its disk, and its Prefect records reset when it was moved."""

import shutil

import pytest

from flows.home import HOME_MARKER, MIN_FREE_BYTES, HomeError, check_home


def test_a_moved_home_resets_only_prefects_records(tmp_path, capsys):
    home = tmp_path / "home"
    (home / "prefect" / "cache-keys").mkdir(parents=True)
    (home / "prefect" / "prefect.db").write_text("the server's database")
    (home / "store").mkdir()
    (home / HOME_MARKER).write_text(str(tmp_path / "elsewhere"))
    check_home(home)
    assert not (home / "prefect" / "cache-keys").exists()
    assert (home / "prefect" / "prefect.db").exists()
    assert (home / "store").is_dir()
    assert (home / HOME_MARKER).read_text() == str(home)
    assert f"CHARFLOW_HOME moved from {tmp_path / 'elsewhere'} to {home}" in capsys.readouterr().err
    (home / "prefect" / "cache-keys").mkdir()
    check_home(home)
    assert (home / "prefect" / "cache-keys").exists()
    assert capsys.readouterr().err == ""


def test_a_home_without_room_or_write_access_is_refused(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 2**25, 2**25))
    with pytest.raises(HomeError, match="only 32 MB free on the disk holding CHARFLOW_HOME .* at least 100 MB"):
        check_home(home)
    monkeypatch.undo()

    def read_only(self, data):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(type(home), "write_bytes", read_only)
    with pytest.raises(HomeError, match=r"is not writable \(Read-only file system\); set CHARFLOW_HOME"):
        check_home(home)
    assert MIN_FREE_BYTES == 100 * 2**20
