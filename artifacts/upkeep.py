"""Keeping a store healthy: `verify` (damage, catalog references the store lost, leftovers of killed runs)
and `gc` (what no kept version or model reaches, and the leftovers), with what was kept and why."""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from artifacts.aliases import aliases_of
from artifacts.catalog import Catalog
from artifacts.manifest import MANIFEST_NAME, problems, read_manifest
from artifacts.stages import STAGES
from artifacts.store import Entry, Store
from tasks.errors import CharflowError

GRACE_SECONDS = 3600.0  # a run may have published an artifact and not yet recorded it


class GcRefused(CharflowError):
    """gc asked to delete while a build runs in the store."""


class GcParams(BaseModel):
    """What `inspect gc` keeps besides what a kept version or model reaches."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    keep: int = Field(1, ge=0, description="complete versions kept per corpus")
    grace: float = Field(
        GRACE_SECONDS, ge=0, description="seconds: younger artifacts stay (a run may not have recorded them yet)"
    )
    checkpoints: bool = Field(False, description="also remove resumable checkpoints")


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def leftovers(store: Store) -> list[dict[str, Any]]:
    """Folders no artifact is: builds in progress or abandoned, checkpoints, damaged copies set aside."""
    found = [
        {"kind": "staging", "path": str(folder), "size": _size(folder), "abandoned": stale}
        for folder, stale in store.staging_folders()
    ]
    for kind, hidden in (("checkpoint", ".work"), ("damaged copy", ".damaged")):
        folder = store.root / hidden
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            found.append({"kind": kind, "path": str(path), "size": _size(path), "abandoned": kind == "damaged copy"})
    return found


def missing_references(store: Store, catalog: Catalog) -> list[dict[str, Any]]:
    """Outputs the catalog records that neither this machine's folder nor the shared store holds (a damaged
    one is `verify`'s too)."""
    missing, collected = [], catalog.collected()
    for entry in catalog.entries():
        if entry.get("event") != "outputs":
            continue
        for stage, key in entry["outputs"].items():
            if key in collected or store.folder(stage, key).is_dir():
                continue
            if store.remote is None or store.remote.manifest(stage, key) is None:
                missing.append({"corpus": entry["corpus"], "version": entry["version"], "stage": stage, "key": key})
    return missing


def verify(store: Store, catalog: Catalog) -> dict[str, Any]:
    """Re-hash every artifact; check the catalog's references; list leftovers. `ok` when nothing is damaged
    or missing (leftovers are reported, and removed by gc)."""
    damaged = []
    for folder in store.folders(STAGES):
        try:
            found = problems(folder, read_manifest(folder))
        except (OSError, ValueError) as exc:
            found = [f"{MANIFEST_NAME}: unreadable ({exc.__class__.__name__})"]
        if found:
            damaged.append({"stage": folder.parent.name, "key": folder.name, "problems": found})
    missing = missing_references(store, catalog)
    lost = lost_aliases(store, catalog)
    return {
        "ok": not damaged and not missing and not lost,
        "damaged": damaged,
        "missing": missing,
        "aliases": lost,
        "leftovers": leftovers(store),
    }


def lost_aliases(store: Store, catalog: Catalog) -> list[dict[str, Any]]:
    """Aliases naming a model that neither this machine's folder nor the shared store holds: `corpus@NAME/train`
    would fail until one is promoted again."""
    return [
        {"corpus": corpus, "name": name, "model": model}
        for (corpus, name), model in sorted(aliases_of(catalog.entries()).items())
        if not store.folder("train", model).is_dir()
        and (store.remote is None or store.remote.manifest("train", model) is None)
    ]


def kept(store: Store, catalog: Catalog, keep: int, grace: float) -> dict[str, str]:
    """Key -> why it stays: named by an alias, in one of the `keep` latest complete versions of its corpus, a
    model, younger than `grace` seconds, or an input of one of those (an aliased model's vocabulary and clean
    settings, which `evaluate` applies, among them)."""
    why: dict[str, str] = {}
    for (corpus, name), model in sorted(aliases_of(catalog.entries()).items()):
        why.setdefault(model, f"alias {corpus}@{name}")
    for corpus in sorted({v.corpus for v in catalog.versions()}):
        for version in catalog.complete(corpus)[-keep:] if keep > 0 else []:
            for run in catalog.outputs(corpus, version):
                for key in run.values():
                    why.setdefault(key, f"{corpus} v{version}")
    entries = store.entries(STAGES)
    now = time.time()
    for entry in entries:
        if entry.stage == "train":
            why.setdefault(entry.key, "a model")
        elif now - datetime.fromisoformat(entry.manifest.created).timestamp() < grace:
            why.setdefault(entry.key, "younger than the grace period")
    by_key = {e.key: e for e in entries}
    todo = list(why)
    while todo:
        key = todo.pop()
        for input_key in by_key[key].manifest.inputs.values() if key in by_key else ():
            if input_key not in why:
                why[input_key] = f"input of {by_key[key].stage} {key[:12]}"
                todo.append(input_key)
    return why


def gc(
    store: Store,
    catalog: Catalog,
    delete: bool,
    keep: int = 1,
    grace: float = GRACE_SECONDS,
    checkpoints: bool = False,
) -> dict[str, Any]:
    """What no kept version or model reaches, abandoned builds and damaged copies (and checkpoints when asked);
    removed only when `delete`. Also says what stays and why. Deleting artifacts is refused while a build runs in
    this store: what it reads, or what its run published a moment ago for the next stage, would go from under it."""
    why = kept(store, catalog, keep, grace)
    # With a shared store, gc clears this machine's copies only: the shared store keeps every artifact for the
    # other machines (and this one, which fetches again what it needs).
    entries = store.entries(STAGES, shared=store.remote is None)
    doomed: list[Entry] = [e for e in entries if e.key not in why]
    if store.remote is not None:
        doomed += [e for e in store.evictable() if e.key in why]
    removed_leftovers = [
        item for item in leftovers(store) if item["abandoned"] or (checkpoints and item["kind"] == "checkpoint")
    ]
    building = [folder.name.split("@")[0] for folder, stale in store.staging_folders() if not stale]
    if delete and doomed and building:
        raise GcRefused(
            f"{len(building)} build{'s' * (len(building) > 1)} in progress in {store.root} ({', '.join(building)}): "
            "gc --yes would delete what a running command reads; run it once they end (a dry run is fine now)"
        )
    if delete:
        if store.remote is None:
            catalog.record_collected([e.key for e in doomed])
        for entry in doomed:
            shutil.rmtree(entry.path, ignore_errors=True)
        for item in removed_leftovers:
            shutil.rmtree(item["path"], ignore_errors=True)
    return {
        "deleted": delete,
        "artifacts": [{"stage": e.stage, "key": e.key, "size": e.size, "created": e.manifest.created} for e in doomed],
        "leftovers": removed_leftovers,
        "kept": [{"stage": e.stage, "key": e.key, "why": why[e.key]} for e in entries if e.key in why],
    }
