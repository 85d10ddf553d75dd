"""The shared artifact store in a folder every machine mounts (`file:///PATH`: an NFS share, say), in
`artifacts.remote`'s layout.

The conditional create is a hard link: the file is written whole under a name of its own, then linked to its
real name, which fails when that name exists (atomic on local file systems and on NFS; obstore's LocalStore
does the same for its `mode="create"`). A writer killed before the link leaves only its `.partial` file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from artifacts.manifest import MANIFEST_NAME, Manifest
from artifacts.remote import RemoteError, adopted, blob_path, check_digest, manifest_path, missing_blob
from artifacts.secrets import redact

CHUNK = 8 << 20


@dataclass
class FolderRemote:
    """`RemoteStore` in a shared folder."""

    url: str  # file:///PATH
    root: Path

    @classmethod
    def from_url(cls, url: str) -> FolderRemote:
        """`file:///PATH` (an absolute path); refused (naming the variable) when malformed."""
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise RemoteError(f"CHARFLOW_STORE_URL={redact(url)!r} is not file:///PATH; fix CHARFLOW_STORE_URL")
        return cls(url=url, root=Path(unquote(parts.path)))

    def _failed(self, what: str, exc: OSError) -> RemoteError:
        message = f"{exc.strerror} ({exc.filename})" if exc.strerror else str(exc).splitlines()[0][:300]
        return RemoteError(
            f"the shared folder {self.root} failed while {what} ({self.url}): {message}; check that it is mounted "
            "and writable"
        )

    def check(self) -> None:
        """Before any work: the folder is there (a share that is not mounted is refused, not filled)."""
        if not self.root.is_dir():
            raise RemoteError(
                f"the folder of CHARFLOW_STORE_URL={self.url} does not exist; mount or create it, or fix "
                "CHARFLOW_STORE_URL"
            )

    def manifest(self, stage: str, key: str) -> Manifest | None:
        try:
            data = (self.root / manifest_path(stage, key)).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._failed(f"reading the manifest of {stage}/{key[:12]}", exc) from None
        return Manifest.model_validate(json.loads(data))

    def manifests(self, stage: str) -> list[Manifest]:
        """Every published artifact of the stage."""
        folder = self.root / stage
        try:
            keys = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        except OSError as exc:
            raise self._failed(f"listing the {stage} artifacts", exc) from None
        return [manifest for key in keys if (manifest := self.manifest(stage, key))]

    def _create(self, path: Path, source: Path | bytes) -> bool:
        """`path` written whole from `source`, unless it exists: False when another writer's is there."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            with partial.open("wb") as out:
                if isinstance(source, bytes):
                    out.write(source)
                else:
                    with source.open("rb") as data:
                        shutil.copyfileobj(data, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(partial, path)
            except FileExistsError:
                return False
            return True
        finally:
            partial.unlink(missing_ok=True)

    def publish(self, folder: Path, manifest: Manifest) -> Manifest:
        """Upload the blobs the manifest names, then the manifest, unless one is there already: the published
        manifest (ours, or the one that won)."""
        try:
            for entry in manifest.files:
                blob = self.root / blob_path(entry.sha256)
                if not blob.exists():
                    self._create(blob, folder / entry.name)  # False: another writer put the same bytes
            body = manifest.model_dump_json(indent=2).encode("utf-8")
            created = self._create(self.root / manifest_path(manifest.stage, manifest.key), body)
        except OSError as exc:
            raise self._failed(f"publishing {manifest.stage}/{manifest.key[:12]}", exc) from None
        return adopted(self, manifest, created)

    def download(self, manifest: Manifest, folder: Path) -> None:
        """The artifact's files into `folder`, each checked against its digest as it arrives."""
        for entry in manifest.files:
            digest = hashlib.sha256()
            try:
                blob = (self.root / blob_path(entry.sha256)).open("rb")
            except FileNotFoundError as exc:
                raise missing_blob(self.url, manifest, entry.sha256) from exc
            except OSError as exc:
                raise self._failed(f"downloading {manifest.stage}/{manifest.key[:12]}/{entry.name}", exc) from None
            try:
                with blob, (folder / entry.name).open("wb") as out:
                    while chunk := blob.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except OSError as exc:
                raise self._failed(f"downloading {manifest.stage}/{manifest.key[:12]}/{entry.name}", exc) from None
            check_digest(self.url, "the shared folder", manifest, entry, digest.hexdigest())
        (folder / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
