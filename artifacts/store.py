"""The artifact store: one folder per content key, published by an atomic rename."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from artifacts.manifest import MANIFEST_NAME, Manifest, describe_file, problems, read_manifest

log = logging.getLogger("charflow.store")


class ArtifactRef(BaseModel):
    """The small reference a stage returns: never the data itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str
    key: str
    path: str
    cache_hit: bool = False
    summary: dict[str, Any] = {}

    def file(self, name: str) -> Path:
        return Path(self.path) / name


class Store:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def folder(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def lookup(self, stage: str, key: str) -> Manifest | None:
        """The artifact's manifest when every file matches it; None (logged) otherwise."""
        folder = self.folder(stage, key)
        if not folder.exists():
            return None
        try:
            manifest = read_manifest(folder)
        except (OSError, ValueError) as exc:
            log.warning("artifact %s/%s has an unreadable manifest (%s): recomputing", stage, key[:12], exc)
            return None
        if found := problems(folder, manifest):
            log.warning("artifact %s/%s is damaged (%s): recomputing", stage, key[:12], "; ".join(found))
            return None
        return manifest

    def ref(self, manifest: Manifest, cache_hit: bool) -> ArtifactRef:
        folder = self.folder(manifest.stage, manifest.key)
        return ArtifactRef(
            stage=manifest.stage, key=manifest.key, path=str(folder), cache_hit=cache_hit, summary=manifest.summary
        )

    def find(self, stage: str, ref: str) -> ArtifactRef:
        """An intact artifact of `stage` by key, unique key prefix or folder path; a clear error otherwise."""
        folder = Path(ref)
        if folder.is_dir() and (folder / MANIFEST_NAME).is_file():
            key = read_manifest(folder).key
        else:
            root = self.root / stage
            matches = sorted(p.name for p in root.glob(f"{ref}*")) if ref and root.is_dir() else []
            if len(matches) != 1:
                shown = ", ".join(m[:12] for m in matches[:10]) or "none"
                raise LookupError(
                    f"{ref!r} names {len(matches)} {stage} artifacts in {self.root} (candidates: {shown}); "
                    "give a longer key prefix or the artifact's folder"
                )
            key = matches[0]
        manifest = self.lookup(stage, key)
        if manifest is None:
            raise LookupError(
                f"{stage} artifact {key[:12]} is missing or damaged; run the pipeline again to rebuild it"
            )
        return self.ref(manifest, cache_hit=True)

    def materialize(
        self,
        *,
        stage: str,
        key: str,
        params: Mapping[str, Any],
        inputs: Mapping[str, str],
        code: str,
        libraries: Mapping[str, str],
        build: Callable[[Path], Mapping[str, Any]],
    ) -> ArtifactRef:
        """Return the stored artifact, or build it in a private folder and publish it whole.

        `build(folder)` writes the artifact's files into `folder` and returns its summary.
        """
        if manifest := self.lookup(stage, key):
            return self.ref(manifest, cache_hit=True)
        staging = self.root / ".staging" / f"{stage}-{key[:16]}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            summary = build(staging)
            files = [describe_file(p) for p in sorted(staging.iterdir())]
            manifest = Manifest(
                stage=stage,
                key=key,
                params=dict(params),
                inputs=dict(inputs),
                code=code,
                libraries=dict(libraries),
                created=datetime.now(UTC).isoformat(timespec="milliseconds"),
                files=files,
                summary=dict(summary),
            )
            # Written last: a folder with a manifest is complete.
            _write_durably(staging / MANIFEST_NAME, manifest.model_dump_json(indent=2))
            return self.ref(self._publish(staging, manifest), cache_hit=False)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _publish(self, staging: Path, manifest: Manifest) -> Manifest:
        final = self.folder(manifest.stage, manifest.key)
        final.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                os.rename(staging, final)
                return manifest
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            # Another writer published first, or a damaged copy is in the way.
            if existing := self.lookup(manifest.stage, manifest.key):
                return existing
            self._quarantine(final)
        raise RuntimeError(f"could not publish {manifest.stage}/{manifest.key}: the folder keeps reappearing damaged")

    def _quarantine(self, folder: Path) -> None:
        target = self.root / ".damaged" / f"{folder.parent.name}-{folder.name}-{uuid.uuid4().hex[:8]}"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(folder, target)
            log.warning("moved damaged artifact %s aside to %s", folder, target)
        except FileNotFoundError:
            pass


def _write_durably(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
