"""One resolver for every way to name an artifact: a key, a unique key prefix, its folder, or
`corpus@version/stage` (version: a number, v-number or `latest`; or an alias, `corpus@champion/train`)."""

from __future__ import annotations

from pathlib import Path

from artifacts.aliases import aliases_of, is_alias
from artifacts.catalog import Catalog
from artifacts.manifest import MANIFEST_NAME, read_manifest
from artifacts.stages import STAGES
from artifacts.store import ArtifactRef, Store
from tasks.errors import CharflowError

SYNTAX = "a key, a key prefix, an artifact folder or corpus@version/stage (version: a number, latest or an alias)"
# What an alias names besides its model: the model's own inputs.
ALIAS_STAGES = ("train", "batches", "vocab")


class RefError(CharflowError, LookupError):
    """A reference that names no artifact, or more than one."""


def _versions(catalog: Catalog, corpus: str) -> list[int]:
    """The corpus's version numbers; refused when the catalog has no such corpus."""
    versions = sorted(v.version for v in catalog.versions(corpus))
    if not versions:
        known = sorted({v.corpus for v in catalog.versions()})
        raise RefError(f"no corpus {corpus!r} in the catalog; known corpora: {', '.join(known) or 'none'}")
    return versions


def version_number(catalog: Catalog, corpus: str, version: str) -> int:
    """A version of `corpus` by number (3, v3) or `latest`: the newest complete one."""
    versions = _versions(catalog, corpus)
    if version in ("", "latest"):
        # Only a version whose prepare finished counts as the latest (a killed run's does not).
        complete = catalog.complete(corpus)
        if not complete:
            raise RefError(
                f"{corpus} has no complete version yet ({', '.join(f'v{v}' for v in versions)} did not finish "
                "preparing); run prepare again, or name a version"
            )
        return complete[-1]
    number = int(version.lstrip("v")) if version.lstrip("v").isdigit() else None
    if number not in versions:
        raise RefError(f"{corpus} has no version {version}; versions: {', '.join(f'v{v}' for v in versions)}")
    return number


def _alias_key(store: Store, catalog: Catalog, corpus: str, name: str, stage: str) -> str:
    """The model `corpus@name` names, or its batches or vocabulary."""
    aliases = aliases_of(catalog.entries(), corpus)
    model = aliases.get((corpus, name))
    if model is None:
        have = ", ".join(sorted(n for _, n in aliases)) or "none"
        versions = ", ".join(f"v{v}" for v in _versions(catalog, corpus))
        raise RefError(
            f"{corpus} has no version or alias {name!r}; versions: {versions}; aliases: {have} (set one with "
            f"charflow promote MODEL --as {name})"
        )
    if stage in ("", "train"):
        return model
    if stage not in ALIAS_STAGES:
        raise RefError(f"an alias names a model: {corpus}@{name}/train, /batches or /vocab, not /{stage}")
    manifest = store.lookup("train", model)
    if manifest is None:
        raise RefError(f"{corpus}@{name} names model {model[:12]}, which is missing or damaged; promote another")
    return manifest.inputs[stage]


def _catalog_key(store: Store, catalog: Catalog, ref: str) -> str:
    corpus, _, rest = ref.partition("@")
    version, _, stage = rest.partition("/")
    if is_alias(version):
        return _alias_key(store, catalog, corpus, version, stage)
    number = version_number(catalog, corpus, version)
    runs = catalog.outputs(corpus, number)
    models = list(dict.fromkeys(run["train"] for run in runs if "train" in run))
    if stage == "train" and len(models) > 1:
        listed = ", ".join(key[:12] for key in models)
        raise RefError(
            f"{corpus}@v{number} has {len(models)} models ({listed}): name one by its key, or promote one "
            f"(charflow promote KEY --as champion) and use {corpus}@champion/train; charflow inspect runs {corpus} "
            "compares them"
        )
    # The latest run's key per stage.
    outputs = {name: key for run in runs for name, key in run.items()}
    if stage not in outputs:
        have = ", ".join(s for s in STAGES if s in outputs) or "none"
        raise RefError(f"{corpus}@v{number} has no {stage or '(no stage given)'} artifact; it has: {have}")
    return outputs[stage]


def resolve(store: Store, catalog: Catalog, ref: str, stage: str | None = None, verify: bool = False) -> ArtifactRef:
    """The one artifact `ref` names (of `stage`, when given); with `verify`, re-hashed and refused if damaged."""
    key = ref
    if "@" in ref:
        key = _catalog_key(store, catalog, ref)
    elif ref and Path(ref).is_dir() and (Path(ref) / MANIFEST_NAME).is_file():
        key = read_manifest(Path(ref)).key
    stages = [stage] if stage else list(STAGES)
    everything = store.entries(stages)
    matches = [e for e in everything if e.key.startswith(key)] if key else []
    what = f"{stage} artifact" if stage else "artifact"
    if len(matches) != 1:
        shown = ", ".join(f"{e.stage}/{e.key[:12]}" for e in (matches or everything)[:12]) or "none"
        problem = "is ambiguous" if matches else f"names no {what}"
        raise RefError(
            f"{ref!r} {problem}; candidates: {shown}. Give a longer key prefix, a folder or corpus@version/stage"
        )
    found = matches[0]
    # With a shared store the artifact may be listed there only: looking it up fetches this machine's copy.
    if (verify or store.remote is not None) and store.lookup(found.stage, found.key) is None:
        raise RefError(
            f"{found.stage} artifact {found.key[:12]} is missing or damaged; run the pipeline again to rebuild it"
        )
    return found.ref()
