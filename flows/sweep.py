"""The sweep flow: one corpus version prepared once, its batches cut once per distinct batches setting, a model
trained for every combination of the grid (`NAME=V1,V2,...` entries, tasks/sweep.py), a bounded number at once,
and a leaderboard artifact that links every run.

Every run is an ordinary keyed model, recorded as a run in the catalog: a repeated sweep is all cache hits. A
run that fails fails alone: the others finish, its row holds the error, and the flow run then ends Failed with a
message naming the failed runs (a scheduled sweep that lost a run shows as failed), after the leaderboard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass
from typing import Any, TypeVar

from prefect import get_run_logger, tags
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ProcessPoolTaskRunner

from artifacts import runs
from artifacts.backends import open_store
from artifacts.manifest import read_manifest
from artifacts.settings import environment
from artifacts.store import ArtifactRef
from flows import compute, home, interrupt, pipeline
from flows.compute import ConfiguredTaskRunner
from flows.ddp import check_processes
from flows.params import flat_flow
from flows.pipeline import Needs, PrepareParams, pick
from flows.prefect_tasks import STAGE_TASKS, PrefectRunner
from flows.progress import artifact_line
from flows.publish import publish
from flows.run_page import artifact_link, show_parameters
from flows.run_words import corpus_prefix, markdown_table, resolved_source, text
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.errors import CharflowError, Interrupted, ParameterError
from tasks.fetch import Located, resolve_source
from tasks.ingest import IngestParams
from tasks.sweep import GridError, SweepParams, shown
from tasks.sweep import runs as grid_runs
from tasks.train.params import TrainParams, check_sampler, check_validation, resolve_device
from tasks.vocab import VocabParams

LEADERBOARD_KEY = "sweep-leaderboard"  # after the corpus prefix
T = TypeVar("T")
R = TypeVar("R")


class SweepFailed(CharflowError):
    """Some of a sweep's runs failed (the others finished): the message names them; `rows` is the leaderboard."""

    def __init__(self, message: str, rows: list[dict[str, Any]]):
        super().__init__(message)
        self.rows = rows

    def __reduce__(self) -> tuple[Any, ...]:  # kept whole through Prefect's result of the failed flow run
        return SweepFailed, (str(self), self.rows)


@dataclass(frozen=True)
class PlannedRun:
    """One combination of the grid: its values (as the grid names them) and the settings it trains with."""

    number: int
    grid: dict[str, Any]
    sampler: BatchesParams
    training: TrainParams  # the device resolved


def plan(settings: dict[str, Any], grid: tuple[str, ...], params: PrepareParams) -> list[PlannedRun]:
    """Every run of the grid over the flat `settings`, each checked as `charflow run` checks one before any work
    (its models, its sampler, its device and processes, validation, its fit with --max-chars)."""
    planned = []
    for number, (combination, sampler, training) in enumerate(grid_runs(settings, grid), 1):
        try:
            check_sampler(training.model, sampler.sampler)
            training = resolve_device(training)
            if training.nproc > 1:
                check_processes(training.nproc, training.device, sampler.batch_size)
            check_validation(training, sampler.val_fraction)
            Needs(sampler, training.prefixes, training).before_any_work(params)
        except (ParameterError, ValueError) as exc:
            raise GridError(f"the grid's run {shown(combination)}: {exc}") from None
        planned.append(PlannedRun(number, combination, sampler, training))
    return planned


@dataclass(frozen=True)
class AllNeeds(Needs):
    """What every run will need of the corpus, checked once it is cleaned and once its vocabulary exists."""

    each: tuple[Needs, ...] = ()

    def after_clean(self, cleaned: ArtifactRef) -> None:
        for needs in self.each:
            needs.after_clean(cleaned)

    def after_vocab(self, vocab: ArtifactRef) -> None:
        for needs in self.each:
            needs.after_vocab(vocab)


def at_once(work: Callable[[T], R], items: Iterable[T], limit: int) -> list[R]:
    """`work` on every item, at most `limit` at a time, each in a thread carrying this flow run's context (a
    stage task then runs in that thread here, or is submitted from it to the Dask cluster); in order."""
    items = list(items)
    with ThreadPoolExecutor(max(1, min(limit, len(items))), thread_name_prefix="sweep-run") as pool:
        futures = [pool.submit(copy_context().run, work, item) for item in items]
        return [future.result() for future in futures]


def error_line(exc: BaseException) -> str:
    """A failure in one line: charflow's own message, or the exception's type and first line."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return first if isinstance(exc, CharflowError) else f"{type(exc).__name__}: {first}".rstrip(": ")


def run_row(run: PlannedRun, status: str) -> dict[str, Any]:
    return {"run": run.number, **run.grid, "status": status}


def trained_row(run: PlannedRun, model: ArtifactRef, batches: ArtifactRef, made: runs.Run, links: list) -> dict:
    return {
        **run_row(run, "cached" if model.cache_hit else "trained"),
        "model": model.key,
        "batches": batches.key,
        "perplexity": made.perplexity,
        "val_perplexity": made.val_perplexity,
        "best_val_perplexity": made.best_val_perplexity,
        "checkpoint_perplexity": made.checkpoint_perplexity,
        "bits_per_char": made.bits_per_char,
        "seconds": made.seconds,
        "artifacts": [{"key": key, "url": url} for key, url in links],
        "error": "",
    }


def failed_row(run: PlannedRun, exc: BaseException) -> dict[str, Any]:
    return {**run_row(run, "failed"), "model": "", "batches": "", "error": error_line(exc)}


def leaderboard(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first by the default checkpoint's perplexity (validation where held out), failed runs last."""
    return sorted(rows, key=lambda r: (r["status"] == "failed", r.get("checkpoint_perplexity") or 0.0, r["run"]))


def leaderboard_markdown(title: str, rows: list[dict[str, Any]], names: list[str]) -> str:
    def number(value: Any) -> str:
        return "" if value is None else f"{value:.4f}"

    table = [
        {
            "run": row["run"],
            **{name: text(row[name]) for name in names},
            "status": row["status"],
            "model": f"`{row['model'][:12]}`" if row["model"] else "",
            "perplexity": number(row.get("perplexity")),
            "validation": number(row.get("val_perplexity")),
            "bits/char": number(row.get("bits_per_char")),
            "seconds": number(row.get("seconds")),
            "artifacts": ", ".join(f"[{a['key']}]({a['url']})" for a in row.get("artifacts", [])) or text(row["error"]),
        }
        for row in leaderboard(rows)
    ]
    return f"## {text(title)}\n\n{markdown_table(table)}"


def sweep_runs(
    runner: PrefectRunner, located: Located, params: PrepareParams, planned: list[PlannedRun], limit: int
) -> tuple[pipeline.Prepared, list[dict[str, Any]]]:
    """Prepare once, cut each distinct batches setting once, train every run (at most `limit` at once); a run
    whose batches or training fails is a failed row, the others go on."""
    needs = [Needs(run.sampler, run.training.prefixes, run.training) for run in planned]
    prepared = pipeline.prepare(runner, located, params, AllNeeds(each=tuple(needs)))
    samplers = list(dict.fromkeys(run.sampler for run in planned))

    def cut(sampler: BatchesParams) -> ArtifactRef | BaseException:
        try:
            made = runner.stage("batches", sampler, indices=prepared.stages["encode"])
        except Interrupted:
            raise
        except Exception as exc:  # its runs fail, with this error; the other settings' go on
            return exc
        runner.record(prepared.corpus, prepared.version, {"batches": made})
        return made

    cut_batches = dict(zip(samplers, at_once(cut, samplers, limit), strict=True))
    # Several at once share the cores (and train one at a time in any one process); one at a time, as `run` does.
    hints = {"runs_at_once": min(limit, len(planned))} if min(limit, len(planned)) > 1 else None

    def train(run: PlannedRun, pool: ProcessPoolTaskRunner | None) -> dict[str, Any]:
        batches = cut_batches[run.sampler]
        if isinstance(batches, BaseException):
            return failed_row(run, batches)
        # A runner of its own: its published artifacts are this run's, whatever the others publish meanwhile.
        own = PrefectRunner(names_run=False)
        own.corpus, own.version = prepared.corpus, prepared.version
        inputs = {"batches": batches, "vocab": prepared.stages["vocab"]}
        try:
            if pool is None:  # one at a time here, or submitted from this thread to the Dask cluster
                model = own.stage("train", run.training, hints=hints, **inputs)
            else:
                model = in_process(pool, own, run.training, hints, inputs)
            own.record(prepared.corpus, prepared.version, {"train": model})
        except Interrupted:
            raise
        except Exception as exc:
            get_run_logger().error(f"sweep run {run.number} ({shown(run.grid)}) failed: {error_line(exc)}")
            return failed_row(run, exc)
        made = runs.run_of(model, prepared.corpus, prepared.version, read_manifest(batches.path))
        links = [(key, artifact_link(id_)) for key, id_ in own.published.get("train", [])]
        return trained_row(run, model, batches, made, links)

    if compute.on_cluster() or limit == 1 or len(planned) == 1:
        return prepared, at_once(lambda run: train(run, None), planned, limit)
    # Here, at once: each run in a process of its own (torch's random generator and matplotlib are a process's).
    with ProcessPoolTaskRunner(max_workers=min(limit, len(planned))) as pool:
        return prepared, at_once(lambda run: train(run, pool), planned, limit)


def in_process(
    pool: ProcessPoolTaskRunner, own: PrefectRunner, training: TrainParams, hints: dict, inputs: dict
) -> ArtifactRef:
    """The train stage's task run in one of `pool`'s processes, as `PrefectRunner.stage` runs it here: tagged,
    its artifact shown and published from this flow run."""
    if interrupt.requested():
        raise Interrupted("stopped before the train stage; run the same command again to go on")
    labels = ["stage:train", f"corpus:{own.corpus}", f"model:{training.model}"]
    with tags(*labels):
        future = pool.submit(STAGE_TASKS["train"], {"inputs": inputs, "params": training, "hints": hints})
    future.wait()
    state = future.state
    ref: ArtifactRef = state.result()  # the task's own exception, where it failed
    if state.name == "Cached":
        ref = ref.model_copy(update={"cache_hit": True})
    get_run_logger().info(artifact_line("train", ref))
    own.stages["train"] = ref
    own.published["train"] = publish(open_store(home.store_root()), ref, own.corpus)
    return ref


@flat_flow(
    "sweep",
    SweepParams,
    IngestParams,
    CleanParams,
    VocabParams,
    BatchesParams,
    TrainParams,
    task_runner=ConfiguredTaskRunner(),
)
def sweep(
    source: str | None = None, name: str | None = None, sha256: str | None = None, **settings: Any
) -> list[dict[str, Any]]:
    """Prepare a corpus once, cut its batches once per batches setting, and train a model for every combination
    of the grid (`["hidden=128,256", "lr=1,10"]`); the other settings as `train` takes them. Returns the
    leaderboard's rows, in run order."""
    swept = SweepParams(**pick(SweepParams, settings))
    params = PrepareParams.of(settings)
    planned = plan(settings, swept.grid, params)
    located = resolve_source(source, name, sha256, environment().data_path)
    every_run = {k: v for k, v in settings.items() if k in BatchesParams.model_fields or k in TrainParams.model_fields}
    show_parameters({**resolved_source(located), **swept.model_dump(mode="json"), **params.flat(), **every_run})
    runner = PrefectRunner()
    prepared, rows = sweep_runs(runner, located, params, planned, swept.max_parallel)
    runner.finish()
    names = list(planned[0].grid)
    failed = [row for row in rows if row["status"] == "failed"]
    title = f"sweep {prepared.corpus} v{prepared.version}: {len(rows)} runs"
    title += f", {len(failed)} failed" if failed else ""
    create_markdown_artifact(
        key=corpus_prefix(prepared.corpus) + LEADERBOARD_KEY,
        markdown=leaderboard_markdown(title, rows, names),
        description="every run of the sweep, best first, with its model's artifacts",
    )
    if failed:
        named = "; ".join(f"run {row['run']} ({shown({n: row[n] for n in names})}): {row['error']}" for row in failed)
        raise SweepFailed(f"{len(failed)} of {len(rows)} runs failed: {named}", rows)
    return rows
