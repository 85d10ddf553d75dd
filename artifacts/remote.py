"""The shared artifact store: what one machine publishes, every machine finds.

`RemoteStore` is what `Store` asks of it; two implementations hold the bytes: `artifacts.remote_s3.S3Remote`
on an S3-compatible object store (`s3://BUCKET/PREFIX`) and `artifacts.remote_folder.FolderRemote` in a folder
every machine mounts (`file:///PATH`, an NFS share say). Both keep one layout:

    blobs/<sha256>                   each file's bytes, named by their own digest: written once, never replaced
    <stage>/<key>/_manifest.json     written last, by a conditional create (it fails when one is there)

A reader trusts an artifact only once its manifest exists, and a manifest names only blobs uploaded before it:
a writer killed mid-upload leaves blobs that no manifest names, never half an artifact. Two machines that
publish the same key at once both succeed; one manifest wins, and the other machine adopts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from artifacts.manifest import MANIFEST_NAME, FileEntry, Manifest
from tasks.errors import CharflowError

BLOBS = "blobs"


class RemoteError(CharflowError):
    """The shared store is unreachable, refuses the credentials, or holds something it should not."""


def blob_path(sha256: str) -> str:
    return f"{BLOBS}/{sha256}"


def manifest_path(stage: str, key: str) -> str:
    return f"{stage}/{key}/{MANIFEST_NAME}"


def adopted(remote: RemoteStore, manifest: Manifest, created: bool) -> Manifest:
    """The published manifest: ours where our conditional create made it, else the one that won."""
    if created:
        return manifest
    winner = remote.manifest(manifest.stage, manifest.key)
    if winner is None:
        raise RemoteError(f"{manifest.stage}/{manifest.key[:12]}: the manifest vanished from {remote.url}")
    return winner


def missing_blob(url: str, manifest: Manifest, sha256: str) -> RemoteError:
    return RemoteError(
        f"{url}: blob {sha256[:12]} of {manifest.stage}/{manifest.key[:12]} is missing though its manifest names "
        "it; remove the manifest and publish again"
    )


def check_digest(url: str, holder: str, manifest: Manifest, entry: FileEntry, digest: str) -> None:
    """A downloaded file is the blob its manifest names, or the error says which store holds a damaged copy."""
    if digest != entry.sha256:
        raise RemoteError(
            f"{url}: blob {entry.sha256[:12]} of {manifest.stage}/{manifest.key[:12]}/{entry.name} does not match "
            f"its digest; {holder} holds a damaged copy: remove it and publish again"
        )


class RemoteStore(Protocol):
    """The shared store as `Store` uses it; every failure is a `RemoteError` naming the store and the fix."""

    url: str  # what messages name

    def check(self) -> None:
        """Before any work: the store is there and answers."""
        ...

    def manifest(self, stage: str, key: str) -> Manifest | None:
        """The published manifest of the artifact, or None."""
        ...

    def manifests(self, stage: str) -> list[Manifest]:
        """Every published artifact of the stage."""
        ...

    def publish(self, folder: Path, manifest: Manifest) -> Manifest:
        """Upload the blobs the manifest names, then the manifest, unless one is there already: the published
        manifest (ours, or the one that won)."""
        ...

    def download(self, manifest: Manifest, folder: Path) -> None:
        """The artifact's files into `folder`, each checked against its digest, then its manifest."""
        ...
