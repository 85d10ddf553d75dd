"""The artifact store: one folder per content key, published by an atomic rename."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from artifacts.manifest import (
    MANIFEST_NAME,
    Manifest,
    describe_file,
    problems,
    read_manifest,
    record_stat,
    stat_unchanged,
)
from artifacts.owner import gone, me
from artifacts.remote import RemoteStore
from artifacts.settings import environment
from tasks.errors import CharflowError

log = logging.getLogger("charflow.store")


class StoreError(CharflowError):
    """The store cannot do what was asked (an artifact keeps reappearing damaged, say)."""


class DiskFull(StoreError):
    """No room on the disk for an artifact: refused before writing, or stopped when the disk filled."""


# Room left beside an artifact whose size is known: Prefect's database and logs share the disk.
DISK_MARGIN_BYTES = 64 * 2**20


class ArtifactRef(BaseModel):
    """The small reference a stage returns: never the data itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str
    key: str
    path: Path
    cache_hit: bool = False
    summary: dict[str, Any] = {}

    def file(self, name: str) -> Path:
        return self.path / name


@dataclass(frozen=True)
class Entry:
    """A stored artifact as listed: its folder and manifest (the files are not re-hashed: see `verify`)."""

    path: Path
    manifest: Manifest

    @property
    def stage(self) -> str:
        return self.manifest.stage

    @property
    def key(self) -> str:
        return self.manifest.key

    @property
    def rows(self) -> int:
        return sum(f.rows or 0 for f in self.manifest.files)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.manifest.files)

    def ref(self, cache_hit: bool = True) -> ArtifactRef:
        return ArtifactRef(
            stage=self.stage, key=self.key, path=self.path, cache_hit=cache_hit, summary=self.manifest.summary
        )


class Store:
    """Artifacts in a local folder; with a `remote` (a shared object store) the folder is this machine's copy
    of what is published there: a key missing here is fetched from there, and what is built here is published
    there too."""

    def __init__(self, root: Path | str, remote: RemoteStore | None = None):
        self.root = Path(root)
        self.remote = remote

    def folder(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def folders(self, stages: Iterable[str]) -> list[Path]:
        """Every artifact folder of these stages, readable or not."""
        return [folder for s in stages if (self.root / s).is_dir() for folder in sorted((self.root / s).iterdir())]

    def entries(self, stages: Iterable[str], shared: bool = True) -> list[Entry]:
        """Every artifact of these stages with a readable manifest, newest first; with a remote (and `shared`),
        every one published there too (its folder here exists once it is fetched)."""
        stages = list(stages)
        found = {}
        for folder in self.folders(stages):
            try:
                manifest = read_manifest(folder)
            except (OSError, ValueError):
                continue
            found[(manifest.stage, manifest.key)] = Entry(folder, manifest)
        if self.remote is not None and shared:
            for stage in stages:
                for manifest in self.remote.manifests(stage):
                    found.setdefault((stage, manifest.key), Entry(self.folder(stage, manifest.key), manifest))
        return sorted(found.values(), key=lambda e: e.manifest.created, reverse=True)

    def lookup(self, stage: str, key: str, thorough: bool = False) -> Manifest | None:
        """The artifact's manifest when its files match it; None (logged) otherwise.

        Files whose size, mtime, ctime and inode are those recorded when they were last checked whole are trusted
        without reading them (O(1) in their size); others are re-hashed (`thorough` always does).
        """
        folder = self.folder(stage, key)
        if not folder.exists():
            return self._fetch(stage, key)
        try:
            manifest = read_manifest(folder)
        except (OSError, ValueError) as exc:
            log.warning("artifact %s/%s has an unreadable manifest (%s): recomputing", stage, key[:12], exc)
            return None
        if self.remote is not None:
            _touch(folder)  # the cache's recency: what was used last is evicted last
        if not thorough and stat_unchanged(folder, manifest):
            return manifest
        if found := problems(folder, manifest):
            if self.remote is not None:  # this machine's copy is damaged: the shared store's may not be
                log.warning("artifact %s/%s is damaged here (%s): fetching it again", stage, key[:12], "; ".join(found))
                self._quarantine(folder)
                return self._fetch(stage, key)
            log.warning("artifact %s/%s is damaged (%s): recomputing", stage, key[:12], "; ".join(found))
            return None
        record_stat(folder, manifest)
        return manifest

    def local(self, ref: ArtifactRef) -> ArtifactRef:
        """The same artifact in this machine's folder (fetched from the shared store when it is not here): a
        reference made on another machine (a Dask worker) names that machine's folder."""
        manifest = self.lookup(ref.stage, ref.key)
        if manifest is None:
            where = f" or in {self.remote.url}" if self.remote is not None else ""
            raise StoreError(
                f"the {ref.stage} artifact {ref.key[:12]} is not in {self.root}{where}; run the pipeline again to "
                "rebuild it"
            )
        return self.ref(manifest, cache_hit=ref.cache_hit)

    def evictable(self) -> list[Entry]:
        """With a remote: this machine's copies beyond CHARFLOW_CACHE_BYTES (default 20 GiB), least recently
        used first, each also published on the remote (so that nothing is lost by removing it here)."""
        if self.remote is None:
            return []
        limit = environment().cache_bytes
        stages = [d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")]
        local = self.entries(stages, shared=False)
        local.sort(key=lambda e: e.path.stat().st_mtime if e.path.exists() else 0)
        total, evict = sum(e.size for e in local), []
        for entry in local:
            if total <= limit:
                break
            if self.remote.manifest(entry.stage, entry.key) is not None:
                evict.append(entry)
                total -= entry.size
        return evict

    def _fetch(self, stage: str, key: str) -> Manifest | None:
        """The artifact from the remote into this machine's folder, once, published here by a rename."""
        if self.remote is None or (manifest := self.remote.manifest(stage, key)) is None:
            return None
        staging = self._staging(stage, key)
        try:
            self.remote.download(manifest, staging)
            return self._publish(staging, manifest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _staging(self, stage: str, key: str) -> Path:
        self.clear_stale_staging()
        host, pid, started = me()
        # The owner in the name: a folder left by a killed run is known as such, and removed.
        staging = self.root / ".staging" / f"{stage}-{key[:16]}@{host}@{pid}@{started or ''}@{uuid.uuid4().hex[:8]}"
        try:
            staging.mkdir(parents=True)
        except OSError as exc:
            raise self.unwritable(exc) or exc from None
        return staging

    def unwritable(self, exc: OSError) -> StoreError | None:
        """What to tell of a write the store's folder refused (read-only, immutable, a mount inside it)."""
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return StoreError(
                f"the store folder {self.root} cannot be written ({exc.strerror}: {exc.filename}); make it writable "
                "(a read-write mount, chattr -i, its owner) or set CHARFLOW_HOME to a folder that is"
            )
        if exc.errno == errno.EXDEV:
            return StoreError(
                f"{exc.filename} and {exc.filename2} are on different file systems (a mount inside the store "
                f"{self.root}): publishing is a rename within one; mount the whole store folder, not a part of it"
            )
        return None

    def ref(self, manifest: Manifest, cache_hit: bool) -> ArtifactRef:
        return Entry(self.folder(manifest.stage, manifest.key), manifest).ref(cache_hit)

    def ensure_free(self, stage: str, needed: int) -> None:
        """Refuse to start an artifact of about `needed` bytes that the disk cannot hold."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.unwritable(exc) or exc from None
        free = shutil.disk_usage(self.root).free
        if free < needed + DISK_MARGIN_BYTES:
            raise DiskFull(
                f"the {stage} artifact needs about {_mb(needed)} and {_mb(free)} are free on the disk holding "
                f"{self.root} (keeping {_mb(DISK_MARGIN_BYTES)} spare); free space or set CHARFLOW_HOME to a "
                "larger disk"
            )

    def staging_folders(self) -> list[tuple[Path, bool]]:
        """Every folder being built, and whether its owner process is gone (a leftover of a killed run)."""
        staging = self.root / ".staging"
        found = []
        for folder in sorted(staging.iterdir()) if staging.is_dir() else []:
            parts = folder.name.split("@")
            owned = len(parts) == 5 and parts[2].isdigit()
            found.append((folder, not owned or gone(parts[1], int(parts[2]), parts[3] or None)))
        return found

    def clear_stale_staging(self) -> None:
        for folder, stale in self.staging_folders():
            if stale:
                shutil.rmtree(folder, ignore_errors=True)

    def materialize(
        self,
        *,
        stage: str,
        key: str,
        params: Mapping[str, Any],
        inputs: Mapping[str, str],
        code: str,
        libraries: Mapping[str, str],
        build: Callable[[Path], BaseModel],
    ) -> ArtifactRef:
        """Return the stored artifact, or build it in a private folder and publish it whole.

        `build(folder)` writes the artifact's files into `folder` and returns its summary.
        """
        if manifest := self.lookup(stage, key):
            if self.remote is not None and self.remote.manifest(stage, key) is None:
                # Built here while the remote was away (or before it was set).
                manifest = self._share(self.remote, manifest)
            return self.ref(manifest, cache_hit=True)
        staging = self._staging(stage, key)
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
                summary=summary.model_dump(mode="json"),
            )
            # Written last: a folder with a manifest is complete.
            _write_durably(staging / MANIFEST_NAME, manifest.model_dump_json(indent=2))
            published = self._publish(staging, manifest)
            if self.remote is not None:
                published = self._share(self.remote, published)
            return self.ref(published, cache_hit=False)
        except OSError as exc:
            if (refused := self.unwritable(exc)) is not None:
                raise refused from None
            # pyarrow's write errors carry the message but no errno.
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) and "No space left" not in str(exc):
                raise
            shutil.rmtree(staging, ignore_errors=True)
            raise DiskFull(
                f"the disk holding {self.root} filled up while writing the {stage} artifact ({exc.strerror}); "
                f"nothing was published and {_mb(shutil.disk_usage(self.root).free)} are free again: free space "
                "or set CHARFLOW_HOME to a larger disk"
            ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _publish(self, staging: Path, manifest: Manifest) -> Manifest:
        final = self.folder(manifest.stage, manifest.key)
        final.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                os.rename(staging, final)
                record_stat(final, manifest)
                return manifest
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            # Another writer published first, or a damaged copy is in the way.
            if existing := self.lookup(manifest.stage, manifest.key):
                return existing
            self._quarantine(final)
        raise StoreError(f"could not publish {manifest.stage}/{manifest.key}: the folder keeps reappearing damaged")

    def _share(self, remote: RemoteStore, manifest: Manifest) -> Manifest:
        """Publish the local artifact on the remote; where another machine's manifest won, take its copy."""
        winner = remote.publish(self.folder(manifest.stage, manifest.key), manifest)
        if winner == manifest:
            return manifest
        log.info("%s/%s was published by another machine first: taking its copy", manifest.stage, manifest.key[:12])
        shutil.rmtree(self.folder(manifest.stage, manifest.key), ignore_errors=True)
        fetched = self._fetch(manifest.stage, manifest.key)
        if fetched is None:
            raise StoreError(f"{manifest.stage}/{manifest.key[:12]} vanished from {remote.url}")
        return fetched

    def _quarantine(self, folder: Path) -> None:
        target = self.root / ".damaged" / f"{folder.parent.name}-{folder.name}-{uuid.uuid4().hex[:8]}"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(folder, target)
            log.warning("moved damaged artifact %s aside to %s", folder, target)
        except FileNotFoundError:
            pass

    def work_folder(self, stage: str, key: str) -> Path:
        """Where a long build keeps what lets it resume (checkpoints), outside staging, under the key."""
        return self.root / ".work" / f"{stage}-{key[:32]}"


def _touch(folder: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(folder)


def _mb(size: int) -> str:
    return f"{size / 2**20:,.0f} MB"


def _write_durably(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
