"""The shared artifact store on an S3-compatible object store, under `s3://BUCKET/PREFIX` (the layout and the
publishing order are `artifacts.remote`'s); the manifest's conditional create is S3's If-None-Match: *.

The client is obstore: its `put(..., mode="create")` is the conditional create (s3fs has one too; pyarrow's
S3 filesystem has none). An `http://` endpoint needs its client option `allow_http`, set here for such URLs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from artifacts.manifest import MANIFEST_NAME, Manifest
from artifacts.remote import BLOBS, RemoteError, adopted, blob_path, check_digest, manifest_path, missing_blob
from artifacts.secrets import redact

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config


@dataclass
class S3Remote:
    """`RemoteStore` on an S3-compatible object store."""

    url: str  # s3://BUCKET/PREFIX
    store: Any  # obstore.store.S3Store
    endpoint: str

    @classmethod
    def from_url(cls, url: str) -> S3Remote:
        """`s3://BUCKET/PREFIX`, configured by the standard AWS variables; refused (naming the variable) when
        malformed."""
        from obstore.store import S3Store

        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise RemoteError(f"CHARFLOW_STORE_URL={redact(url)!r} is not s3://BUCKET/PREFIX; fix CHARFLOW_STORE_URL")
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        config = {
            name: os.environ[variable]
            for name, variable in (
                ("endpoint", "AWS_ENDPOINT_URL"),
                ("access_key_id", "AWS_ACCESS_KEY_ID"),
                ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                ("region", "AWS_DEFAULT_REGION"),
            )
            if os.environ.get(variable)
        }
        options: ClientConfig = {"allow_http": True} if endpoint.startswith("http://") else {}
        prefix = parts.path.strip("/") or None
        # The names above are S3Config's keys.
        store = S3Store(parts.netloc, prefix=prefix, config=cast("S3Config", config), client_options=options)
        return cls(url=url, store=store, endpoint=endpoint or "AWS's default endpoint")

    def _failed(self, what: str, exc: Exception) -> RemoteError:
        message = str(exc).splitlines()[0][:300]
        if "NoSuchBucket" in str(exc):
            return RemoteError(
                f"the bucket of CHARFLOW_STORE_URL={self.url} does not exist at {self.endpoint}; create it or fix "
                "CHARFLOW_STORE_URL"
            )
        refusals = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403 Forbidden")
        if any(code in str(exc) for code in refusals):
            return RemoteError(
                f"the object store at {self.endpoint} refused the credentials while {what} ({self.url}); fix "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        return RemoteError(
            f"the object store at {self.endpoint} failed while {what} ({self.url}): {message}; check that it is up "
            "and reachable (AWS_ENDPOINT_URL)"
        )

    def check(self) -> None:
        """Before any work: the bucket exists and the credentials are good."""
        import obstore

        try:
            next(iter(obstore.list(self.store, BLOBS, chunk_size=1)), None)
        except Exception as exc:
            raise self._failed("listing its blobs", exc) from None

    def manifest(self, stage: str, key: str) -> Manifest | None:
        import obstore

        try:
            data = obstore.get(self.store, manifest_path(stage, key)).bytes()
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._failed(f"reading the manifest of {stage}/{key[:12]}", exc) from None
        return Manifest.model_validate(json.loads(bytes(data)))

    def manifests(self, stage: str) -> list[Manifest]:
        """Every published artifact of the stage."""
        import obstore

        try:
            paths = [m["path"] for batch in obstore.list(self.store, f"{stage}/") for m in batch]
        except Exception as exc:
            raise self._failed(f"listing the {stage} artifacts", exc) from None
        found = []
        for path in paths:
            if path.endswith("/" + MANIFEST_NAME):
                _, key, _ = path.rsplit("/", 2)
                if manifest := self.manifest(stage, key):
                    found.append(manifest)
        return found

    def _has_blob(self, sha256: str) -> bool:
        import obstore

        try:
            obstore.head(self.store, blob_path(sha256))
            return True
        except FileNotFoundError:
            return False

    def publish(self, folder: Path, manifest: Manifest) -> Manifest:
        """Upload the blobs the manifest names, then the manifest, unless one is there already: the published
        manifest (ours, or the one that won)."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            for entry in manifest.files:
                if not self._has_blob(entry.sha256):
                    with contextlib.suppress(AlreadyExistsError, PreconditionError):  # another writer uploaded it
                        obstore.put(self.store, blob_path(entry.sha256), folder / entry.name, mode="create")
            path = manifest_path(manifest.stage, manifest.key)
            try:
                obstore.put(self.store, path, manifest.model_dump_json(indent=2).encode("utf-8"), mode="create")
                created = True
            except (AlreadyExistsError, PreconditionError):
                created = False
        except RemoteError:
            raise
        except Exception as exc:
            raise self._failed(f"publishing {manifest.stage}/{manifest.key[:12]}", exc) from None
        return adopted(self, manifest, created)

    def download(self, manifest: Manifest, folder: Path) -> None:
        """The artifact's files into `folder`, each checked against its digest as it arrives."""
        import obstore

        for entry in manifest.files:
            digest = hashlib.sha256()
            try:
                with (folder / entry.name).open("wb") as out:
                    for chunk in obstore.get(self.store, blob_path(entry.sha256)).stream(min_chunk_size=8 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except FileNotFoundError as exc:
                raise missing_blob(self.url, manifest, entry.sha256) from exc
            except Exception as exc:
                raise self._failed(f"downloading {manifest.stage}/{manifest.key[:12]}/{entry.name}", exc) from None
            check_digest(self.url, "the object store", manifest, entry, digest.hexdigest())
        (folder / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
