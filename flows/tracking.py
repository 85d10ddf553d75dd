"""MLflow, for teams that already use it: with MLFLOW_TRACKING_URI set, every model newly recorded as a run in
charflow's catalog is also an MLflow run (its parameters, its metrics per epoch, its keys as tags; its weights
with --mlflow-log-model), and `promote` sets an alias of the corpus's registered model.

MLflow is imported only here, inside functions, and only when MLFLOW_TRACKING_URI is set: unset, nothing imports
it. An MLflow server that cannot be reached (or refuses) costs one warning line: the training, and its run in
charflow's catalog, stand.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from artifacts.secrets import redact
from artifacts.settings import environment, variable
from tasks.errors import CharflowError

if TYPE_CHECKING:  # the command line imports this module for its flag: nothing slow at import
    from artifacts.runs import Run
    from artifacts.store import ArtifactRef, Store

TRACKING_URI = "MLFLOW_TRACKING_URI"
# Beside MLFLOW_TRACKING_URI, where MLflow is configured: read by whichever process records the run (a deployment's
# worker, a Dask worker), which a command-line flag alone would not reach.
LOG_MODEL = variable("mlflow_log_model")
# The per-epoch columns of metrics.parquet logged as MLflow metrics, the epoch as their step.
EPOCH_METRICS = ("perplexity", "val_perplexity", "tokens_per_s", "grad_norm")
# MLflow's limits for one log_batch request.
BATCH_METRICS, BATCH_PARAMS = 1000, 100
# MLflow's client retries an unreachable server for about four minutes by default (7 retries, backoff factor 2):
# a training that has finished would wait that long to say so. These apply where the user has set none.
CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
WEIGHTS_PATH = "model"  # where --mlflow-log-model puts the model's folder among the MLflow run's artifacts

log = logging.getLogger("charflow.tracking")
Warn = Callable[[str], None]


class TrackingParams(BaseModel):
    """How a training run is logged to MLflow: never part of a content key (it changes no byte of a model), so
    it is no field of TrainParams; the command line sets it for its own process through LOG_MODEL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mlflow_log_model: bool = Field(
        default=False,
        description=f"with {TRACKING_URI} set, also upload the model's folder (its weights) to its MLflow run "
        f"(or set {LOG_MODEL}=1)",
    )


def tracking_uri() -> str | None:
    return os.environ.get(TRACKING_URI) or None


class TrackingError(CharflowError):
    """An MLflow setting that cannot work."""


def apply(params: TrackingParams) -> None:
    """The command line's setting, for the runs this process records (its flow's tasks read the environment);
    refused before any work where it could do nothing."""
    if not params.mlflow_log_model:
        return
    if tracking_uri() is None:
        raise TrackingError(
            f"--mlflow-log-model uploads the model to MLflow, but {TRACKING_URI} is not set: set it to your "
            "tracking server, or leave --mlflow-log-model out"
        )
    os.environ[LOG_MODEL] = "1"


def logs_weights() -> bool:
    return environment().mlflow_log_model


def registered_name(corpus: str) -> str:
    """The registered model of a corpus's aliases."""
    return f"charflow-{corpus}"


def store_url(store: Store) -> str:
    """Where a store's artifacts are, as a URL another machine can read: the shared store's, else the folder's."""
    shared = environment().store_url
    return redact(shared) if shared else Path(store.root).resolve().as_uri()


def source_of(url: str, model_key: str) -> str:
    """A model version's source: the charflow artifact, its store's URL and key. MLflow's server refuses a local
    path as a source unless it lies inside one of its runs' artifacts, so a folder store's file: URL is written
    charflow-file: (not charflow+file: the server reads a + as a space); an object store's s3: URL stays as it is."""
    source = f"{url.rstrip('/')}/train/{model_key}"
    return "charflow-" + source if source.startswith("file:") else source


def log_run(run: Run | None, model: ArtifactRef | None, store: Store, warn: Warn = log.warning) -> str | None:
    """Log a newly recorded run (of `model`, in `store`) to MLflow, where MLFLOW_TRACKING_URI is set: the MLflow
    run's id; None when tracking is off, the run was recorded already (`run` None), or MLflow did not take it
    (warned once)."""
    uri = tracking_uri()
    if run is None or model is None or uri is None:
        return None
    try:
        return _log(run, model, store_url(store), logs_weights())
    except Exception as exc:  # any failure of MLflow's (down, refusing, misconfigured) leaves the training be
        warn(
            f"MLflow at {redact(uri)} did not take model {run.model[:12]} ({reason(exc)}); the run is in charflow's "
            f"catalog all the same: start that server or fix {TRACKING_URI}, or unset it to stop logging to MLflow"
        )
        return None


def set_alias(
    corpus: str, name: str, model_key: str | None, store_url: str, why: str = "", warn: Warn = log.warning
) -> str | None:
    """Point alias NAME of registered model charflow-CORPUS at a model version whose source is the charflow
    artifact (made once per model), or remove it (`model_key` None), where MLFLOW_TRACKING_URI is set. The
    version the alias names now; None when tracking is off, the alias was removed, or MLflow did not take the
    move (warned once: charflow's own alias moved all the same)."""
    uri = tracking_uri()
    if uri is None:
        return None
    try:
        return _set_alias(corpus, name, model_key, store_url, why)
    except Exception as exc:
        what = f"@{name} -> {model_key[:12]}" if model_key else f"the removal of @{name}"
        warn(
            f"MLflow at {redact(uri)} did not take {what} of {registered_name(corpus)} ({reason(exc)}); charflow's "
            f"alias moved all the same: start that server or fix {TRACKING_URI}, then promote again"
        )
        return None


def reason(exc: BaseException) -> str:
    """The gist of a failure, on one line: the socket's error where there is one (MLflow wraps it in pages)."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    gist = found.group(0) if found else (text.strip().splitlines() or [type(exc).__name__])[0]
    return gist if len(gist) <= 200 else gist[:197] + "..."


def params_of(run: Run) -> dict[str, str]:
    """The training's and the batches' settings as MLflow parameters (strings): train.NAME, batches.NAME."""
    return {
        f"{part}.{name}": value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        for part, settings in (("train", run.params), ("batches", run.batches))
        for name, value in sorted(settings.items())
    }


def tags_of(run: Run, model: ArtifactRef, url: str) -> dict[str, str]:
    from artifacts.model import TrainSummary

    summary = TrainSummary.of(model)
    return {
        "charflow.corpus": run.corpus,
        "charflow.version": str(run.version),
        "charflow.model": run.model,
        "charflow.batches": summary.batches_key,
        "charflow.vocab": summary.vocab_key,
        "charflow.store": url,
        "charflow.device": run.device,
    }


def epoch_metrics(folder: Path, start_ms: int) -> list[tuple[str, float, int, int]]:
    """(name, value, timestamp in ms, step) for each epoch's figures in metrics.parquet, the epoch as the step;
    an epoch that was not validated has no val_perplexity."""
    import pyarrow.parquet as pq

    from artifacts.model import METRICS_FILE

    rows = pq.ParquetFile(folder / METRICS_FILE).read().to_pylist()
    found, at = [], start_ms
    for row in rows:
        at += round((row["seconds"] or 0.0) * 1000)
        for name in EPOCH_METRICS:
            value = row[name]
            if value is not None and not math.isnan(value):
                found.append((name, float(value), at, int(row["epoch"])))
    return found


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class QuietRetries(logging.Filter):
    """urllib3 warns at each retry of MLflow's requests: a server that is down would cost a warning a retry, not
    the one line that says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            str(record.msg).startswith("Retrying")
            and any(isinstance(arg, str) and arg.startswith(MLFLOW_PATHS) for arg in record.args or ())
        )


MLFLOW_PATHS = ("/api/2.0/mlflow", "/api/3.0/mlflow", "/ajax-api/", "/api/2.0/mlflow-artifacts")


def _client() -> Any:
    for name, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # MLflow's client prints each finished run's URL to stdout: charflow's answer (--json) is printed there.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    pool = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, QuietRetries) for f in pool.filters):
        pool.addFilter(QuietRetries())
    from mlflow import MlflowClient

    return MlflowClient()


def _error_code(exc: BaseException) -> str | None:
    return getattr(exc, "error_code", None)


def _experiment(client: Any, corpus: str, create: bool = True) -> str | None:
    """MLFLOW_EXPERIMENT_ID or MLFLOW_EXPERIMENT_NAME where set (as MLflow's own API), else charflow-CORPUS."""
    if chosen := os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return chosen
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or registered_name(corpus)
    if (found := client.get_experiment_by_name(name)) is not None:
        return found.experiment_id
    if not create:
        return None
    try:
        return client.create_experiment(name, tags={"charflow.corpus": corpus})
    except Exception as exc:  # another process made it first
        if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def _millis(stamp: str) -> int:
    return round(datetime.fromisoformat(stamp).timestamp() * 1000)


def _log(run: Run, model: ArtifactRef, url: str, weights: bool) -> str:
    from mlflow.entities import Metric, Param, RunTag

    client = _client()
    experiment = _experiment(client, run.corpus)
    end = _millis(run.created)  # when the model was made: its training ended then
    start = end - round(run.seconds * 1000)
    made = client.create_run(
        experiment, start_time=start, tags=tags_of(run, model, url), run_name=f"{run.corpus} v{run.version}"
    )
    run_id = made.info.run_id
    try:
        summary = {
            "bits_per_char": run.bits_per_char,
            "checkpoint_perplexity": run.checkpoint_perplexity,
            **({"best_val_perplexity": run.best_val_perplexity} if run.best_val_perplexity is not None else {}),
        }
        metrics = [Metric(name, value, at, step) for name, value, at, step in epoch_metrics(model.path, start)]
        metrics += [Metric(name, value, end, run.epochs) for name, value in summary.items() if not math.isnan(value)]
        params = [Param(name, value) for name, value in params_of(run).items()]
        for part in _chunks(params, BATCH_PARAMS):
            client.log_batch(run_id, params=part)
        for part in _chunks(metrics, BATCH_METRICS):
            client.log_batch(run_id, metrics=part)
        if weights:
            client.log_artifacts(run_id, str(model.path), WEIGHTS_PATH)
        client.log_batch(run_id, tags=[RunTag("charflow.logged", "complete")])
        client.set_terminated(run_id, "FINISHED", end_time=end)
    except BaseException:
        with contextlib.suppress(Exception):  # the failure that brought us here is the one to tell
            client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def _set_alias(corpus: str, name: str, model_key: str | None, url: str, why: str) -> str | None:
    client = _client()
    registered = registered_name(corpus)
    try:
        client.create_registered_model(
            registered, tags={"charflow.corpus": corpus}, description=f"charflow models of corpus {corpus}"
        )
    except Exception as exc:
        if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise
    if model_key is None:
        try:
            client.delete_registered_model_alias(registered, name)
        except Exception as exc:
            if _error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
        return None
    version = _version_of(client, corpus, registered, model_key, url, why)
    client.set_registered_model_alias(registered, name, version)
    return version


def _version_of(client: Any, corpus: str, registered: str, model_key: str, url: str, why: str) -> str:
    """The model version of a charflow model: the one made before, else a new one (linked to the model's MLflow
    run where there is one)."""
    for version in client.search_model_versions(f"name = '{registered}'"):
        if version.tags.get("charflow.model") == model_key:
            return str(version.version)
    run_id = None
    if (experiment := _experiment(client, corpus, create=False)) is not None:
        found = client.search_runs([experiment], f"tags.`charflow.model` = '{model_key}'", max_results=1)
        run_id = found[0].info.run_id if found else None
    made = client.create_model_version(
        registered,
        source_of(url, model_key),
        run_id=run_id,
        tags={"charflow.model": model_key, "charflow.store": url},
        description=why or None,
    )
    return str(made.version)
