"""One resolver for every way to name an artifact: a key, a unique key prefix, its folder, or
`corpus@version/stage` (version: a number, v-number or `latest`)."""

from __future__ import annotations

from pathlib import Path

from artifacts.catalog import Catalog
from artifacts.manifest import MANIFEST_NAME, read_manifest
from artifacts.stages import STAGES
from artifacts.store import ArtifactRef, Store
from tasks.errors import CharflowError

SYNTAX = "a key, a key prefix, an artifact folder or corpus@version/stage"


class RefError(CharflowError, LookupError):
    """A reference that names no artifact, or more than one."""


def version_number(catalog: Catalog, corpus: str, version: str) -> int:
    """A version of `corpus` by number (3, v3) or `latest`: the newest complete one."""
    versions = sorted(v.version for v in catalog.versions(corpus))
    if not versions:
        known = sorted({v.corpus for v in catalog.versions()})
        raise RefError(f"no corpus {corpus!r} in the catalog; known corpora: {', '.join(known) or 'none'}")
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


def _catalog_key(catalog: Catalog, ref: str) -> str:
    corpus, _, rest = ref.partition("@")
    version, _, stage = rest.partition("/")
    number = version_number(catalog, corpus, version)
    # The latest run's key per stage.
    outputs = {name: key for run in catalog.outputs(corpus, number) for name, key in run.items()}
    if stage not in outputs:
        have = ", ".join(s for s in STAGES if s in outputs) or "none"
        raise RefError(f"{corpus}@v{number} has no {stage or '(no stage given)'} artifact; it has: {have}")
    return outputs[stage]


def resolve(store: Store, catalog: Catalog, ref: str, stage: str | None = None, verify: bool = False) -> ArtifactRef:
    """The one artifact `ref` names (of `stage`, when given); with `verify`, re-hashed and refused if damaged."""
    key = ref
    if "@" in ref:
        key = _catalog_key(catalog, ref)
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
