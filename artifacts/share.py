"""Moving a home's local store and catalog into the shared backends, and checking the copy.

Artifacts keep their keys (a key is their content). Corpus versions keep their numbers where the shared catalog
has none for that corpus yet; where another machine registered the corpus first, the same content keeps the
number it has there and new content takes the next ones: the report says which numbers changed.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

from artifacts import aliases, runs
from artifacts.catalog import Catalog
from artifacts.manifest import problems
from artifacts.stages import STAGES
from artifacts.store import Store


def share(local_store: Store, local_catalog: Catalog, shared_store: Store, shared_catalog: Catalog) -> dict[str, Any]:
    """Publish every intact local artifact on the shared store, register every version and its outputs in the
    shared catalog, then download every artifact back and check its digests."""
    remote = shared_store.remote
    if remote is None:
        raise ValueError("the shared store has no object store behind it")
    report: dict[str, Any] = {"published": [], "already_there": [], "damaged": [], "versions": [], "verified": 0}
    entries = local_store.entries(STAGES)
    for entry in entries:
        if found := problems(entry.path, entry.manifest):
            report["damaged"].append({"stage": entry.stage, "key": entry.key, "problems": found})
            continue
        there = remote.manifest(entry.stage, entry.key)
        if there is None:
            remote.publish(entry.path, entry.manifest)
            report["published"].append(entry.key)
        else:
            report["already_there"].append(entry.key)
    numbers: dict[tuple[str, int], int] = {}
    for version in local_catalog.versions():
        shared = shared_catalog.register(
            version.corpus, version.sha256, version.size, version.source, version.ingest_key
        )
        numbers[(version.corpus, version.version)] = shared.version
        report["versions"].append({"corpus": version.corpus, "local": version.version, "shared": shared.version})
    for event in local_catalog.entries():
        if event.get("event") == "outputs":
            number = numbers[(event["corpus"], event["version"])]
            shared_catalog.record_outputs(event["corpus"], number, event["outputs"])
    shared_catalog.record_collected(sorted(local_catalog.collected()))
    _share_runs_and_aliases(local_catalog, shared_catalog, numbers, report)
    scratch = Path(tempfile.mkdtemp(prefix="charflow-share-check-"))
    try:
        for entry in entries:
            if entry.key in report["published"] or entry.key in report["already_there"]:
                folder = scratch / entry.key
                folder.mkdir()
                there = remote.manifest(entry.stage, entry.key)
                assert there is not None  # published or found there above
                remote.download(there, folder)  # checks every digest
                shutil.rmtree(folder)
                report["verified"] += 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def _share_runs_and_aliases(
    local: Catalog, shared: Catalog, numbers: dict[tuple[str, int], int], report: dict[str, Any]
) -> None:
    """Each local run under its version's shared number (a model already there is left as it is), and each alias
    the shared catalog does not have yet for that corpus; one it has names the other machines' choice: kept, and
    reported."""
    report.update(runs=0, aliases=[], aliases_kept_there=[])
    entries = local.entries()
    for run in runs.runs_of(entries):
        moved = run.model_copy(update={"version": numbers.get((run.corpus, run.version), run.version)})
        if shared.append(functools.partial(runs.run_entry, run=moved)) is not None:
            report["runs"] += 1
    there = aliases.aliases_of(shared.entries())
    for (corpus, name), model in sorted(aliases.aliases_of(entries).items()):
        if (corpus, name) in there:
            if there[(corpus, name)] != model:
                report["aliases_kept_there"].append({"corpus": corpus, "alias": name, "shared": there[(corpus, name)]})
            continue
        aliases.move(shared, corpus, name, model, "shared from a home's catalog (charflow share)")
        report["aliases"].append({"corpus": corpus, "alias": name, "model": model})
