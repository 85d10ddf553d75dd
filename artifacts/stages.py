"""The stage registry: each stage's name, parameters, inputs, the code and libraries behind its bytes, the
function that builds its artifact (`artifacts/builds.py`) and the view `inspect show` decodes; and `run_stage`,
which keys a stage, finds it in the store or builds and publishes it. Everything else (the Prefect tasks, the
pipeline, inspection, the command line) is generated from or looks things up here. No Prefect.

Adding a stage: one entry below, its build function in `artifacts/builds.py`, its pure module in `tasks/`, its
artifact kind (file names, schema, summary) in `artifacts/`, and its tests.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from artifacts import batches as batches_kind
from artifacts import evaluation as evaluation_kind
from artifacts import indices as indices_kind
from artifacts import text as text_kind
from artifacts import views
from artifacts import vocab as vocab_kind
from artifacts.builds import (
    Build,
    Launch,
    OnEvent,
    build_batches,
    build_clean,
    build_encode,
    build_evaluate,
    build_ingest,
    build_train,
    build_vocab_artifact,
    ignore,
)
from artifacts.fingerprint import code_fingerprint
from artifacts.keys import content_key, keyed_params, library_versions
from artifacts.manifest import MANIFEST_NAME, Summary
from artifacts.model import TrainSummary
from artifacts.store import ArtifactRef, Store, StoreError
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.encode import EncodeParams
from tasks.evaluate import EvaluateParams
from tasks.ingest import IngestParams
from tasks.sources import Fetched
from tasks.train.params import TrainParams
from tasks.vocab import VocabParams

log = logging.getLogger("charflow.stages")


@dataclass(frozen=True)
class Stage:
    name: str  # its identity: hashed into every key, the store's folder, the Prefect task's name
    params: type[BaseModel]
    inputs: tuple[str, ...]  # artifacts (ArtifactRef) by name; the source (Fetched) for ingest
    summary: type[Summary]
    code: tuple[str, ...]  # modules (with the project modules they import) and `module:function`s
    libraries: tuple[str, ...]  # distributions whose versions change the bytes
    build: Callable[..., Summary] = field(repr=False)  # build(Build, **inputs, params=...) -> summary
    view: Callable[..., dict[str, Any]] = field(repr=False)  # what `inspect show` decodes (not keyed)

    @cached_property
    def fingerprint(self) -> str:
        return code_fingerprint(self.code)

    @cached_property
    def libraries_now(self) -> dict[str, str]:
        return library_versions(self.libraries)

    def digests(self, inputs: Mapping[str, Any]) -> dict[str, str]:
        """An input artifact counts by its key, a source by its bytes' digest."""
        if set(inputs) != set(self.inputs):
            raise TypeError(f"stage {self.name} takes inputs {self.inputs}, got {tuple(inputs)}")
        return {name: value.sha256 if isinstance(value, Fetched) else value.key for name, value in inputs.items()}

    def key(self, inputs: Mapping[str, Any], params: BaseModel) -> str:
        if not isinstance(params, self.params):
            raise TypeError(f"stage {self.name} takes {self.params.__name__}, got {type(params).__name__}")
        return content_key(self.name, keyed_params(params), self.digests(inputs), self.fingerprint, self.libraries_now)


def _stages(*stages: Stage) -> dict[str, Stage]:
    return {stage.name: stage for stage in stages}


_ARRAYS = ("numpy", "pyarrow")
# Each stage's bytes come from its pure module, its artifact kind's writer and its build function (artifacts.builds).
STAGES = _stages(
    Stage(
        name="ingest",
        params=IngestParams,
        inputs=("source",),
        summary=text_kind.IngestSummary,
        code=("tasks.ingest", "artifacts.text", "artifacts.builds:build_ingest"),
        libraries=_ARRAYS,
        build=build_ingest,
        view=views.text,
    ),
    Stage(
        name="clean",
        params=CleanParams,
        inputs=("text",),
        summary=text_kind.TextSummary,
        code=(
            "tasks.clean",
            "tasks.utf8",
            "artifacts.text",
            "artifacts.text_counts",
            "artifacts.builds:text_reader",
            "artifacts.builds:build_clean",
        ),
        libraries=(*_ARRAYS, "numba", "regex"),
        build=build_clean,
        view=views.text,
    ),
    Stage(
        name="vocab",
        params=VocabParams,
        inputs=("text",),
        summary=vocab_kind.VocabSummary,
        code=(
            "tasks.vocab",
            "tasks.utf8",
            "artifacts.text_counts",
            "artifacts.vocab",
            "artifacts.vocab_chart",
            "artifacts.builds:build_vocab_artifact",
        ),
        libraries=(*_ARRAYS, "numba", "matplotlib", "mplfonts"),
        build=build_vocab_artifact,
        view=views.vocab,
    ),
    Stage(
        name="encode",
        params=EncodeParams,
        inputs=("text", "vocab"),
        summary=indices_kind.EncodeSummary,
        code=(
            "tasks.encode",
            "tasks.utf8",
            "artifacts.text",
            "artifacts.text_counts",
            "artifacts.vocab",
            "artifacts.indices",
            "artifacts.builds:text_reader",
            "artifacts.builds:build_encode",
        ),
        libraries=(*_ARRAYS, "numba"),
        build=build_encode,
        view=views.indices,
    ),
    Stage(
        name="batches",
        params=BatchesParams,
        inputs=("indices",),
        summary=batches_kind.BatchesSummary,
        code=("tasks.batches", "artifacts.indices", "artifacts.batches", "artifacts.builds:build_batches"),
        libraries=_ARRAYS,
        build=build_batches,
        view=views.batches,
    ),
    Stage(
        name="train",
        params=TrainParams,
        inputs=("batches", "vocab"),
        summary=TrainSummary,
        code=(
            "tasks.train.loop",
            "tasks.train.job",
            "artifacts.batch_reader",
            "artifacts.indices",
            "artifacts.model",
            "artifacts.train_run",  # the run of a job: the one process's, every torchrun rank's
            "flows.ddp",  # the multi-process path: its launcher and what each rank runs
            "flows.ddp_rank",
            "artifacts.builds:build_train",
        ),
        libraries=(*_ARRAYS, "torch", "matplotlib"),
        build=build_train,
        view=views.model,
    ),
    Stage(
        name="evaluate",
        params=EvaluateParams,
        inputs=("model", "vocab", "text"),
        summary=evaluation_kind.EvaluationSummary,
        code=(
            "tasks.evaluate",
            "tasks.train.scoring",  # validation's scoring, and the models it loads
            "tasks.train.model",
            "artifacts.text",
            "artifacts.vocab",
            "artifacts.batches",  # the model's batches: their validation split
            "artifacts.model",
            "artifacts.evaluation",
            "artifacts.builds:build_evaluate",
        ),
        libraries=(*_ARRAYS, "torch"),
        build=build_evaluate,
        view=views.evaluation,
    ),
)


@dataclass(frozen=True)
class OtherLibraries:
    """An artifact of the very same work (parameters, inputs, code) exists, made with another version of
    `library`: the miss comes from the environment, not from the data or the code."""

    stage: str
    key: str  # the existing artifact's
    library: str
    here: str
    there: str

    def __str__(self) -> str:
        return (
            f"{self.library} {self.here} is installed, but {self.stage} artifact {self.key[:12]} was made with "
            f"{self.library} {self.there}: it is rebuilt, as library versions are part of the content key. "
            "Install the pinned versions (scripts/setup.sh) to reuse the store."
        )


_warned: set[str] = set()


def explain_miss(store: Store, stage: Stage, params: dict[str, Any], inputs: dict[str, str], on_event: OnEvent) -> None:
    """Say so once per library and process when a miss comes from other library versions (another machine's,
    with a shared store)."""
    for entry in store.entries([stage.name]):  # with a shared store, other machines' artifacts too
        manifest = entry.manifest
        if (manifest.params, manifest.inputs, manifest.code) != (params, inputs, stage.fingerprint):
            continue
        for library, there in manifest.libraries.items():
            here = stage.libraries_now.get(library)
            if here != there and library not in _warned:
                _warned.add(library)
                event = OtherLibraries(stage.name, manifest.key, library, str(here), there)
                if on_event is ignore:
                    log.warning("%s", event)
                on_event(event)


def run_stage(
    store: Store,
    name: str,
    params: BaseModel,
    on_event: OnEvent = ignore,
    should_stop: Callable[[], bool] = lambda: False,
    hints: Mapping[str, Any] | None = None,
    launch: Launch | None = None,
    **inputs: Any,
) -> ArtifactRef:
    """The stored artifact of stage `name` on these inputs and parameters, built now if it is not there
    (`hints`, `launch`: see `Build`)."""
    stage = STAGES[name]
    key = stage.key(inputs, params)
    keyed, digests = keyed_params(params), stage.digests(inputs)

    def build(folder: Path) -> Summary:
        for value in inputs.values():
            if isinstance(value, ArtifactRef) and not (value.path / MANIFEST_NAME).is_file():
                raise StoreError(
                    f"the {value.stage} artifact {value.key[:12]} that the {name} stage reads is gone (removed by "
                    "inspect gc --yes while this run used it?); run the same command again: it is made anew"
                )
        explain_miss(store, stage, keyed, digests, on_event)
        summary = stage.build(
            Build(folder, store, name, key, on_event, should_stop, hints or {}, launch), **inputs, params=params
        )
        if not isinstance(summary, stage.summary):
            raise TypeError(f"stage {name} built a {type(summary).__name__}, not a {stage.summary.__name__}")
        return summary

    ref = store.materialize(
        stage=name,
        key=key,
        params=keyed,
        inputs=digests,
        code=stage.fingerprint,
        libraries=stage.libraries_now,
        build=build,
    )
    # A resumable build's checkpoints are of no use once its artifact is published.
    shutil.rmtree(store.work_folder(name, key), ignore_errors=True)
    return ref
