from pathlib import Path

import pytest

from artifacts import settings
from artifacts.settings import Settings, SettingsError, environment, variable


def test_an_empty_environment_gives_every_default():
    assert environment({}) == Settings()
    assert environment({}).home == Path(".charflow").resolve()
    assert environment({}).lock_wait == 1800.0
    assert environment({}).cache_bytes == 20 * 2**30
    assert environment({}).server_idle == 600.0


def test_every_field_is_read_from_its_charflow_variable(tmp_path):
    given = {
        "CHARFLOW_HOME": str(tmp_path),
        "CHARFLOW_DATA_PATH": f"{tmp_path / 'a'}:{tmp_path / 'b'}",
        "CHARFLOW_STORE_URL": "s3://bucket/prefix",
        "CHARFLOW_CATALOG_URL": "postgresql://u@127.0.0.1:5432/db",
        "CHARFLOW_DASK_ADDRESS": "tcp://127.0.0.1:8786",
        "CHARFLOW_DASK_TLS_CA": f"{tmp_path / 'ca.pem'}",
        "CHARFLOW_DASK_TLS_CERT": f"{tmp_path / 'client.pem'}",
        "CHARFLOW_DASK_TLS_KEY": f"{tmp_path / 'client.key'}",
        "CHARFLOW_LOCK_WAIT": "2.5",
        "CHARFLOW_CACHE_BYTES": "1024",
        "CHARFLOW_SERVER_IDLE": "30",
        "CHARFLOW_MLFLOW_LOG_MODEL": "1",
        "CHARFLOW_DEBUG": "1",
    }
    assert sorted(given) == sorted(variable(name) for name in Settings.model_fields)
    read = environment(given)
    assert read.home == tmp_path
    assert read.data_path == (tmp_path / "a", tmp_path / "b")
    assert read.store_url == "s3://bucket/prefix"
    assert read.catalog_url == "postgresql://u@127.0.0.1:5432/db"
    assert read.dask_address == "tcp://127.0.0.1:8786"
    assert (read.dask_tls_ca, read.dask_tls_cert, read.dask_tls_key) == (
        tmp_path / "ca.pem",
        tmp_path / "client.pem",
        tmp_path / "client.key",
    )
    assert read.lock_wait == 2.5
    assert read.cache_bytes == 1024
    assert read.mlflow_log_model is True
    assert read.server_idle == 30.0
    assert read.debug is True


def test_an_empty_value_counts_as_unset():
    assert environment({"CHARFLOW_STORE_URL": "", "CHARFLOW_LOCK_WAIT": ""}) == Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHARFLOW_LOCK_WAIT", "soon"),
        ("CHARFLOW_LOCK_WAIT", "-1"),
        ("CHARFLOW_CACHE_BYTES", "1.5"),
        ("CHARFLOW_DEBUG", "maybe"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_and_the_fix(name, value):
    with pytest.raises(SettingsError) as caught:
        environment({name: value})
    assert str(caught.value).startswith(f"{name}={value!r} is not valid (")
    assert str(caught.value).endswith(f"; fix or unset {name}")
    assert "\n" not in str(caught.value)


def test_reset_forgets_what_was_opened_under_the_earlier_settings():
    forgotten = []
    settings.on_reset(lambda: forgotten.append(True))
    settings.reset()
    assert forgotten == [True]
