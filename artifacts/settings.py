"""Every CHARFLOW_* environment variable: its type, default, bounds and meaning, read and checked here only.

The environment is read on each call (a test or a worker may change it), and a bad value is refused with one
line naming the variable and the fix. `reset()` forgets what was opened under earlier settings (the shared
backends' connections), for tests and tools that change the environment within one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.errors import CharflowError

PREFIX = "CHARFLOW_"


class SettingsError(CharflowError):
    """A CHARFLOW_* variable holds a value charflow cannot use."""


class Settings(BaseModel):
    """charflow's environment: CHARFLOW_<FIELD> for each field (an empty value counts as unset)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(
        Path(".charflow"),
        validate_default=True,
        description="where this machine's state lives: the store, the catalog, downloads and Prefect's database",
    )
    data_path: tuple[Path, ...] = Field(
        (),
        description="folders (separated as PATH is) holding a local copy of the default corpus, used before "
        "downloading it; its checksum is verified either way",
    )
    store_url: str | None = Field(
        None,
        description="s3://BUCKET/PREFIX: the object store every machine shares (credentials from AWS_*); or "
        "file:///PATH: a folder every machine mounts",
    )
    catalog_url: str | None = Field(
        None, description="postgresql://USER@HOST:PORT/DB: the catalog and locks every machine shares"
    )
    dask_address: str | None = Field(
        None,
        description="tcp://HOST:PORT, or tls://HOST:PORT with the CHARFLOW_DASK_TLS_* certificates: run every "
        "flow's tasks on this Dask cluster",
    )
    dask_tls_ca: Path | None = Field(
        None,
        description="with a tls:// CHARFLOW_DASK_ADDRESS: the PEM certificate of the cluster's own authority "
        "(scripts/make_certs.sh); the scheduler must present a certificate it signed",
    )
    dask_tls_cert: Path | None = Field(
        None,
        description="with a tls:// CHARFLOW_DASK_ADDRESS: this client's PEM certificate, signed by "
        "CHARFLOW_DASK_TLS_CA (the scheduler refuses a client without one)",
    )
    dask_tls_key: Path | None = Field(
        None, description="the PEM private key of CHARFLOW_DASK_TLS_CERT (readable by its owner only)"
    )
    lock_wait: float = Field(1800.0, ge=0, description="seconds a run waits for a stage another run is building")
    cache_bytes: int = Field(
        20 * 2**30, ge=0, description="with a shared store, the most bytes this machine keeps copies of"
    )
    server_idle: float = Field(
        600.0,
        ge=0,
        description="seconds the home's Prefect server keeps running with no command and no `charflow serve` "
        "using it (0: it stops with the last command that used it)",
    )
    mlflow_log_model: bool = Field(
        False,
        description="1: with MLFLOW_TRACKING_URI set, each model's weights are uploaded to MLflow too (what "
        "`--mlflow-log-model` sets for a command and its flow's tasks)",
    )
    debug: bool = Field(False, description="1: show the traceback of a failure")

    @field_validator("data_path", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(Path(p).expanduser() for p in value.split(os.pathsep) if p)
        return value

    @field_validator("home")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("dask_tls_ca", "dask_tls_cert", "dask_tls_key")
    @classmethod
    def _expanded(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()


def variable(field: str) -> str:
    return PREFIX + field.upper()


def environment(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings the environment gives now."""
    environ = os.environ if environ is None else environ
    given = {name: environ[variable(name)] for name in Settings.model_fields if environ.get(variable(name))}
    try:
        return Settings(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = variable(str(error["loc"][0]))
        raise SettingsError(
            f"{name}={given[str(error['loc'][0])]!r} is not valid ({error['msg']}); fix or unset {name}"
        ) from None


_resets: list[Callable[[], None]] = []


def on_reset(forget: Callable[[], None]) -> Callable[[], None]:
    """Have `reset()` call `forget` (a module that caches what it opened under the settings registers here)."""
    _resets.append(forget)
    return forget


def reset() -> None:
    """Forget what was opened under earlier settings: the next use opens the backends the environment names."""
    for forget in _resets:
        forget()
