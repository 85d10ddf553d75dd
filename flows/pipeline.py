"""The pipeline, wired once: prepare (fetch -> ingest -> register -> clean -> vocab -> encode), then batches,
then train, each output recorded against its corpus version.

The wiring runs on a `Runner`: `PlainRunner` calls the stages directly (tests, benchmarks, a machine without
Prefect); `flows.prefect_tasks.PrefectRunner` makes every step a Prefect task. No Prefect here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from artifacts import runs
from artifacts.batches import BatchesSummary
from artifacts.builds import OnEvent, ignore
from artifacts.catalog import Catalog, CorpusVersion, JsonlCatalog
from artifacts.manifest import read_manifest
from artifacts.model import TrainSummary
from artifacts.refs import RefError, resolve
from artifacts.stages import STAGES, run_stage
from artifacts.store import ArtifactRef, Store
from artifacts.text import TextSummary
from artifacts.vocab import read_vocab
from flows import tracking
from flows.ddp import check_processes, launch
from tasks.batches import BatchesParams, check_fits, split_validation
from tasks.clean import CleanParams
from tasks.encode import EncodeParams
from tasks.evaluate import EvaluateParams, TrainedWith
from tasks.evaluate import resolve as resolve_evaluation
from tasks.fetch import Located, fetch
from tasks.ingest import IngestParams
from tasks.samplers import SamplerError
from tasks.sources import Fetched
from tasks.train.device import no_gpu_here
from tasks.train.params import (
    TrainParams,
    check_prefixes,
    check_sampler,
    check_validation,
    check_warmup,
    cuda_available,
    resolve_device,
)
from tasks.train.schedule import total_steps
from tasks.vocab import VocabParams


def pick(model: type[BaseModel], settings: dict[str, Any]) -> dict[str, Any]:
    """The flat settings that are fields of `model`."""
    return {name: value for name, value in settings.items() if name in model.model_fields}


class PrepareParams(BaseModel):
    """How a corpus becomes indices: the book's ingest, cleaning and vocabulary by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ingest: IngestParams = IngestParams()
    clean: CleanParams = CleanParams()
    vocab: VocabParams = VocabParams()

    @classmethod
    def of(cls, settings: dict[str, Any]) -> PrepareParams:
        """From a flow's flat parameters: each model takes its own fields, and checks them."""
        return cls(
            ingest=IngestParams(**pick(IngestParams, settings)),
            clean=CleanParams(**pick(CleanParams, settings)),
            vocab=VocabParams(**pick(VocabParams, settings)),
        )

    def flat(self) -> dict[str, Any]:
        """The flat parameters, as a flow takes them."""
        return {
            name: value
            for part in (self.ingest, self.clean, self.vocab)
            for name, value in part.model_dump(mode="json").items()
        }


class Prepared(BaseModel):
    """A corpus version and every artifact made from it in this run, in pipeline order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: str
    version: int
    new_version: bool
    sha256: str
    stages: dict[str, ArtifactRef]

    def with_stage(self, ref: ArtifactRef) -> Prepared:
        return self.model_copy(update={"stages": {**self.stages, ref.stage: ref}})


def vocab_key(fetched: Fetched, params: PrepareParams) -> str:
    """The vocabulary's key before any stage runs: a key depends on its inputs' keys, not on their bytes."""
    ingest = STAGES["ingest"].key({"source": fetched}, params.ingest)
    clean = STAGES["clean"].key({"text": ArtifactRef(stage="ingest", key=ingest, path=Path())}, params.clean)
    return STAGES["vocab"].key({"text": ArtifactRef(stage="clean", key=clean, path=Path())}, params.vocab)


class Runner(Protocol):
    def fetch(self, located: Located, patterns: tuple[str, ...]) -> Fetched: ...

    def stage(
        self, name: str, params: BaseModel, hints: dict[str, Any] | None = None, **inputs: Any
    ) -> ArtifactRef: ...

    def count_members(self, fetched: Fetched, params: PrepareParams) -> Callable[[], Any]: ...

    def register(self, corpus: str, fetched: Fetched, ingested: ArtifactRef) -> CorpusVersion: ...

    def record(self, corpus: str, version: int, outputs: dict[str, ArtifactRef]) -> None: ...

    def find(self, ref: str, stage: str) -> ArtifactRef: ...

    def recorded_in(self, key: str) -> tuple[str, int] | None:
        """The corpus version an artifact was recorded against, if any."""
        ...


@dataclass(frozen=True)
class Needs:
    """What the later stages will need of the corpus, checked as soon as it can be: the batches' fit before
    any work when the cleaning caps the length (and exactly once it is cleaned), the prediction prefixes
    against the vocabulary as soon as it exists; a learning-rate warmup against the training's steps as the fit."""

    sampler: BatchesParams | None = None
    prefixes: tuple[str, ...] = ()
    training: TrainParams | None = None

    def fits(self, chars: int, bound: str = "") -> None:
        if self.sampler is not None:
            train_indices = split_validation(chars, self.sampler.val_fraction)
            check_fits(train_indices, self.sampler)
            if self.training is not None:
                check_warmup(self.training, total_steps(train_indices, self.sampler), bound)

    def before_any_work(self, params: PrepareParams) -> None:
        if params.clean.max_chars is None:
            return
        try:
            # cleaning never leaves more than max_chars: a bound
            self.fits(params.clean.max_chars, f" at most, with --max-chars={params.clean.max_chars}")
        except SamplerError as exc:
            raise SamplerError(f"{exc} (the cleaned corpus has --max-chars={params.clean.max_chars} at most)") from None

    def after_clean(self, cleaned: ArtifactRef) -> None:
        self.fits(TextSummary.of(cleaned).chars)

    def after_vocab(self, vocab: ArtifactRef) -> None:
        if self.prefixes:
            check_prefixes(read_vocab(vocab.path), self.prefixes)


def prepare(
    runner: Runner, located: Located, params: PrepareParams = PrepareParams(), needs: Needs = Needs()
) -> Prepared:
    """The corpus version is registered once its prepare outputs all exist: a killed run leaves no version."""
    needs.before_any_work(params)
    fetched = runner.fetch(located, params.ingest.patterns)
    # A many-file corpus's members, counted at once on a cluster while ingest and clean run: the vocabulary's
    # counts without a pass of its own (None where that does not apply).
    counted = runner.count_members(fetched, params)
    ingested = runner.stage("ingest", params.ingest, source=fetched)
    cleaned = runner.stage("clean", params.clean, text=ingested)
    needs.after_clean(cleaned)
    counts = counted()
    vocab = runner.stage("vocab", params.vocab, hints=None if counts is None else {"counts": counts}, text=cleaned)
    needs.after_vocab(vocab)
    encoded = runner.stage("encode", EncodeParams(), text=cleaned, vocab=vocab)
    version = runner.register(located.name or fetched.name, fetched, ingested)
    outputs = {"ingest": ingested, "clean": cleaned, "vocab": vocab, "encode": encoded}
    runner.record(version.corpus, version.version, outputs)
    return Prepared(
        corpus=version.corpus, version=version.version, new_version=version.new, sha256=fetched.sha256, stages=outputs
    )


def batches(
    runner: Runner,
    located: Located,
    params: PrepareParams = PrepareParams(),
    sampler: BatchesParams = BatchesParams(),
    needs: Needs | None = None,
) -> Prepared:
    prepared = prepare(runner, located, params, needs or Needs(sampler))
    made = runner.stage("batches", sampler, indices=prepared.stages["encode"])
    runner.record(prepared.corpus, prepared.version, {"batches": made})
    return prepared.with_stage(made)


def train(
    runner: Runner,
    located: Located,
    params: PrepareParams = PrepareParams(),
    sampler: BatchesParams = BatchesParams(),
    training: TrainParams = TrainParams(),
) -> Prepared:
    check_sampler(training.model, sampler.sampler)
    training = resolve_device(training)
    if training.nproc > 1:  # before any work: the global batch must split among the processes
        check_processes(training.nproc, training.device, sampler.batch_size)
    check_validation(training, sampler.val_fraction)
    made = batches(runner, located, params, sampler, Needs(sampler, training.prefixes, training))
    trained = runner.stage("train", training, batches=made.stages["batches"], vocab=made.stages["vocab"])
    runner.record(made.corpus, made.version, {"train": trained})
    return made.with_stage(trained)


def train_on(runner: Runner, batches_ref: str, training: TrainParams = TrainParams()) -> dict[str, ArtifactRef]:
    """Train on an existing batches artifact, named any way `charflow inspect` takes."""
    training = resolve_device(training)
    stored = runner.find(batches_ref, "batches")
    summary = BatchesSummary.of(stored)
    check_sampler(training.model, summary.spec.sampler)
    if training.nproc > 1:  # before training: the stored global batch must split among the processes
        check_processes(training.nproc, training.device, summary.spec.batch_size)
    check_validation(training, summary.spec.val_fraction)
    check_warmup(training, total_steps(summary.train_indices, summary.spec))
    vocab = runner.find(summary.vocab_key, "vocab")
    Needs(prefixes=training.prefixes).after_vocab(vocab)
    trained = runner.stage("train", training, batches=stored, vocab=vocab)
    if (version := runner.recorded_in(stored.key)) is not None:  # the model is a run of its batches' version
        runner.record(*version, {"train": trained})
    return {"batches": stored, "vocab": vocab, "train": trained}


class PlainRunner:
    """Every step called directly, in this process: no Prefect, no cache records beyond the store's own."""

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        downloads: Path,
        on_event: OnEvent = ignore,
        should_stop: Callable[[], bool] = lambda: False,
    ):
        self.store, self.catalog, self.downloads, self.on_event = store, catalog, downloads, on_event
        self.should_stop = should_stop

    def fetch(self, located: Located, patterns: tuple[str, ...]) -> Fetched:
        return fetch(located.source, self.downloads, located.sha256, patterns)

    def stage(self, name: str, params: BaseModel, hints: dict[str, Any] | None = None, **inputs: Any) -> ArtifactRef:
        return run_stage(self.store, name, params, self.on_event, self.should_stop, hints, launch, **inputs)

    def count_members(self, fetched: Fetched, params: PrepareParams) -> Callable[[], Any]:
        return lambda: None  # one process: the vocab stage counts its text with all its threads

    def register(self, corpus: str, fetched: Fetched, ingested: ArtifactRef) -> CorpusVersion:
        return self.catalog.register(corpus, fetched.sha256, fetched.size, fetched.source, ingested.key)

    def record(self, corpus: str, version: int, outputs: dict[str, ArtifactRef]) -> None:
        run = runs.record(self.catalog, self.store, corpus, version, outputs)
        tracking.log_run(run, outputs.get("train"), self.store)  # MLflow's copy: once, as the run is recorded

    def find(self, ref: str, stage: str) -> ArtifactRef:
        return resolve(self.store, self.catalog, ref, stage, verify=True)

    def recorded_in(self, key: str) -> tuple[str, int] | None:
        return runs.version_of(self.catalog.entries(), key)


def plain_runner(root: Path, on_event: OnEvent = ignore) -> PlainRunner:
    """A runner over a store folder, its catalog and downloads inside it."""
    return PlainRunner(Store(root), JsonlCatalog(root), root / "downloads", on_event)


def is_corpus_text(text: str) -> bool:
    """`corpus@version` (that version's clean text), as opposed to a source: a URL or a path that exists."""
    return "@" in text and not text.startswith(("http://", "https://")) and not Path(text).expanduser().exists()


@dataclass(frozen=True)
class SourceText:
    """A source to evaluate on, with the ingest and clean settings of the model's corpus (its --max-chars
    aside: the evaluation's)."""

    located: Located
    ingest: IngestParams
    clean: CleanParams


@dataclass(frozen=True)
class EvaluationPlan:
    """What an evaluation reads, found before any work: the model, its vocabulary, the settings resolved, and
    the text: a corpus version's clean artifact, or a source."""

    model: ArtifactRef
    vocab: ArtifactRef
    params: EvaluateParams  # resolved: what is keyed is what is used
    text: ArtifactRef | SourceText


def plan_evaluation(
    find: Callable[[str, str], ArtifactRef], model_ref: str, text: str, params: EvaluateParams
) -> EvaluationPlan:
    """The model and its vocabulary by reference, its batches' defaults and split, the text's clean artifact or
    the source's settings read from the model's lineage (model -> vocab -> clean -> ingest); a reference that
    names nothing and a setting the model cannot honour are refused here."""
    model = find(model_ref, "train")
    trained = TrainSummary.of(model)
    vocab = find(trained.vocab_key, "vocab")
    spec = BatchesSummary.of(find(trained.batches_key, "batches")).spec
    with_ = TrainedWith(
        batch_size=spec.batch_size,
        num_steps=spec.num_steps,
        val_fraction=spec.val_fraction,
        device=str(read_manifest(model.path).params.get("device", "cpu")),
        checkpoints=("best", "last") if trained.checkpoint == "best" else ("last",),  # the model's default first
        model=model.key[:12],
    )
    resolved = resolve_evaluation(params, with_, lambda: not no_gpu_here() and cuda_available())
    if is_corpus_text(text):
        corpus, _, stage = text.partition("/")
        if stage not in ("", "clean"):
            raise RefError(f"{text!r}: an evaluation reads a corpus version's clean text; pass {corpus} instead")
        return EvaluationPlan(model, vocab, resolved, find(f"{corpus}/clean", "clean"))
    clean = read_manifest(find(read_manifest(vocab.path).inputs["text"], "clean").path)
    ingest = read_manifest(find(clean.inputs["text"], "ingest").path)
    source = SourceText(
        Located(source=text),
        IngestParams.model_validate(ingest.params),
        CleanParams.model_validate({**clean.params, "max_chars": params.max_chars}),
    )
    return EvaluationPlan(model, vocab, resolved, source)


def evaluate(runner: Runner, model_ref: str, text: str, params: EvaluateParams) -> dict[str, ArtifactRef]:
    """A model's evaluation on a text: a corpus version's clean text as it is, or a source ingested and cleaned
    as the model's corpus was (cached stages; no corpus version registered). The model, its vocabulary, the
    text's artifacts and the evaluation, by stage."""
    plan = plan_evaluation(runner.find, model_ref, text, params)
    made = {"train": plan.model, "vocab": plan.vocab}
    if isinstance(plan.text, SourceText):
        fetched = runner.fetch(plan.text.located, plan.text.ingest.patterns)
        made["ingest"] = runner.stage("ingest", plan.text.ingest, source=fetched)
        made["clean"] = runner.stage("clean", plan.text.clean, text=made["ingest"])
    else:
        made["clean"] = plan.text
    made["evaluate"] = runner.stage("evaluate", plan.params, model=plan.model, vocab=plan.vocab, text=made["clean"])
    return made
