"""Layer `oci`: the push engine behind ``trustkit push`` and ``trustkit tag``.

The order of work, each step only when the previous one succeeded:

1. :func:`plan_image` reads the source: the top manifest, child manifests of an index, every
   blob's descriptor, and checks each blob is present with the declared size (local sources).
2. A :class:`PushSigning` (content trust on, ``trustkit.ops.PreparedSigning``): the trust data is
   loaded (or the repository is initialised in memory, the server's keys fetched), the keys that
   will sign are decrypted, and a tag that an immutable repository already signed for another
   digest is refused.  Nothing has been uploaded yet.  This module never imports the trust code.
3. :func:`upload` pushes the blobs, at most ``max_concurrent_uploads`` at once: ``HEAD`` first
   ("Layer already exists"), then a cross-repository mount from a repository known to hold the
   blob (the ``docker://`` source's, or one recorded in :class:`BlobLocationCache`), else an
   upload that streams and verifies the digest.  Child manifests, then the top manifest, go
   last, only when every blob is in.
4. The tag is signed with the manifest's digest and size.  A failure here raises
   ``PushedNotSignedError``: the image is in the registry but must not be reported as a
   success (docker/cli #2721).

Progress goes to a callback; nothing here prints.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trustkit.errors import PushedNotSignedError, TrustkitError
from trustkit.oci.registry import Manifest, RegistryClient
from trustkit.oci.sources import Descriptor, ImageSource, RegistrySource, SourceError, image_blobs, index_children
from trustkit.reference import ImageReference

__all__ = [
    "DEFAULT_MAX_CONCURRENT_UPLOADS",
    "BlobLocationCache",
    "Plan",
    "PushSigning",
    "PushEvent",
    "PushSummary",
    "plan_image",
    "push_image",
    "tag_image",
    "upload",
]

DEFAULT_MAX_CONCURRENT_UPLOADS = 5
MOUNT_CANDIDATES = 3  # repositories tried for a mount before uploading, as docker does


# --------------------------------------------------------------------------------------------
# progress and results


@dataclass(frozen=True)
class PushEvent:
    """One step of a push, for the progress display.

    ``kind``: ``blob-start`` (an upload begins; ``size``), ``blob-bytes`` (``done`` of
    ``size`` sent), ``blob-exists``, ``blob-mounted`` (``detail``: from which repository),
    ``blob-pushed``, ``manifest-pushed`` (``detail``: the tag or digest), ``compressing`` and
    ``compressed`` (a docker-archive layer being gzipped; ``digest`` is its diff_id).
    ``layer`` is False for config blobs."""

    kind: str
    digest: str = ""
    size: int = 0
    done: int = 0
    detail: str = ""
    layer: bool = True


Progress = Callable[[PushEvent], None]


@dataclass
class PushSummary:
    """What ``--format json`` prints (``signed`` is filled in by the caller's signing step)."""

    repository: str
    tag: str
    digest: str
    size: int
    media_type: str
    layers_uploaded: int = 0
    layers_skipped: int = 0
    layers_mounted: int = 0
    bytes_uploaded: int = 0
    manifests: int = 1
    signed: bool = False
    signed_roles: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# where blobs were pushed


class BlobLocationCache:
    """A small JSON file: which repositories of which registry received a digest (for mounts),
    and which gzip digest a docker-archive layer's diff_id compressed to.  A cache only: lost
    or unreadable, it is rebuilt; bounded to ``limit`` entries each."""

    def __init__(self, path: Path | None, *, limit: int = 5000) -> None:
        self.path = path
        self.limit = limit
        self._lock = threading.Lock()
        self._locations: dict[str, dict[str, list[str]]] = {}
        self._compressed: dict[str, list[Any]] = {}
        self._dirty = False
        if path is not None:
            try:
                data = json.loads(path.read_bytes())
            except (OSError, ValueError):
                data = {}
            if isinstance(data, dict):
                if isinstance(data.get("locations"), dict):
                    self._locations = data["locations"]
                if isinstance(data.get("compressed"), dict):
                    self._compressed = data["compressed"]

    def repositories(self, registry: str, digest: str) -> list[str]:
        with self._lock:
            repos = self._locations.get(digest, {}).get(registry, [])
            return [r for r in repos if isinstance(r, str)] if isinstance(repos, list) else []

    def remember(self, registry: str, repository: str, digests: Iterable[str]) -> None:
        with self._lock:
            for digest in digests:
                entry = self._locations.pop(digest, {})
                if not isinstance(entry, dict):
                    entry = {}
                known = entry.get(registry)
                repos = [r for r in known if r != repository] if isinstance(known, list) else []
                entry[registry] = ([repository] + repos)[:MOUNT_CANDIDATES]
                self._locations[digest] = entry  # re-inserted: newest last
                # Only news makes the file worth rewriting (a re-push of the same image has none;
                # the new order is written with the next change).
                self._dirty = self._dirty or entry[registry] != known
            self._trim(self._locations)

    def compressed(self, diff_id: str) -> tuple[str, int] | None:
        with self._lock:
            entry = self._compressed.get(diff_id)
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], int):
            return entry[0], entry[1]
        return None

    def remember_compressed(self, diff_id: str, digest: str, size: int) -> None:
        with self._lock:
            self._compressed.pop(diff_id, None)
            self._compressed[diff_id] = [digest, size]
            self._trim(self._compressed)
            self._dirty = True

    def forget_compressed(self, diff_id: str) -> None:
        with self._lock:
            self._compressed.pop(diff_id, None)
            self._dirty = True
        self.save()

    def _trim(self, table: dict[str, Any]) -> None:
        while len(table) > self.limit:
            del table[next(iter(table))]

    def save(self) -> None:
        """Write the file if anything changed (never raises: it is only a cache)."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            data = json.dumps(
                {"locations": self._locations, "compressed": self._compressed}, separators=(",", ":")
            ).encode()
            self._dirty = False
        with contextlib.suppress(OSError):
            from trustkit.keys.store import atomic_write  # here: the keys package loads cryptography

            atomic_write(self.path, data, 0o600)


# --------------------------------------------------------------------------------------------
# 1. the plan


@dataclass
class Plan:
    """Everything to push: the manifests in the order they must go (children before the
    index, the top one last) and the unique blobs, with whether each is a layer."""

    root: Manifest
    manifests: list[Manifest]  # children first, root last
    blobs: list[tuple[Descriptor, bool]]  # (descriptor, is_layer), unique by digest
    foreign: int = 0  # non-distributable layers left to their URLs


def plan_image(source: ImageSource) -> Plan:
    """Read the source's manifests and check every blob is there (see the module docstring)."""
    root = source.root()
    ordered: list[Manifest] = []
    blobs: dict[str, tuple[Descriptor, bool]] = {}
    foreign = 0
    seen: set[str] = set()

    def visit(manifest: Manifest, depth: int) -> None:
        nonlocal foreign
        if depth > 4:
            raise SourceError(f"index {manifest.digest} nests indexes more than 4 levels deep")
        if manifest.digest in seen:
            return
        seen.add(manifest.digest)
        if manifest.is_index:
            for child in index_children(manifest):
                visit(source.manifest(child), depth + 1)
        else:
            config, layers = image_blobs(manifest)
            for descriptor, is_layer in [(config, False)] + [(layer, True) for layer in layers]:
                if descriptor.foreign:
                    foreign += 1
                    continue
                source.check(descriptor)
                known = blobs.get(descriptor.digest)
                if known is None or (is_layer and not known[1]):
                    blobs[descriptor.digest] = (descriptor, is_layer)
        ordered.append(manifest)

    visit(root, 0)
    return Plan(root, ordered, list(blobs.values()), foreign)


# --------------------------------------------------------------------------------------------
# 2. content trust, prepared before the first byte goes up


class PushSigning(Protocol):
    """Content trust as the push needs it, prepared before the first byte goes up (the ops layer's
    ``PushSigning``): the push itself never imports the trust code."""

    def check_immutable(self, digest: str) -> None:
        """Raise when the repository is immutable and the tag is signed for another digest."""

    def sign(self, digest: str, size: int) -> list[str]:
        """Sign the tag for ``digest`` (``sha256:HEX``) and ``size``, publish; return the roles."""


# --------------------------------------------------------------------------------------------
# 3. the upload


def _mount_candidates(
    target: ImageReference, digest: str, source: ImageSource | None, cache: BlobLocationCache | None
) -> list[str]:
    candidates: list[str] = []
    mount_from = source.mount_from if source is not None else None
    if mount_from is not None and mount_from[0] == target.registry and mount_from[1] != target.repository:
        candidates.append(mount_from[1])
    if cache is not None:
        for repo in cache.repositories(target.registry, digest):
            if repo != target.repository and repo not in candidates:
                candidates.append(repo)
    return candidates[:MOUNT_CANDIDATES]


def _push_blob(
    client: RegistryClient,
    target: ImageReference,
    source: ImageSource,
    descriptor: Descriptor,
    *,
    is_layer: bool,
    cache: BlobLocationCache | None,
    emit: Progress,
) -> tuple[str, int]:
    """One blob: exists, mounted or uploaded.  Returns (outcome, bytes uploaded)."""
    repo, digest, size = target.repository, descriptor.digest, descriptor.size
    if client.blob_size(repo, digest) is not None:
        emit(PushEvent("blob-exists", digest, size, size, layer=is_layer))
        return "exists", 0
    location = None
    candidates = _mount_candidates(target, digest, source, cache)
    for number, candidate in enumerate(candidates):
        location = client.mount_blob(repo, digest, candidate)
        if location is None:
            emit(PushEvent("blob-mounted", digest, size, size, detail=candidate, layer=is_layer))
            return "mounted", 0
        if number + 1 < len(candidates):
            client.cancel_upload(location)
            location = None
    try:
        opener = source.opener(descriptor)
    except BaseException:
        if location is not None:
            client.cancel_upload(location)
        raise
    emit(PushEvent("blob-start", digest, size, 0, layer=is_layer))

    def bytes_sent(done: int) -> None:
        emit(PushEvent("blob-bytes", digest, size, done, layer=is_layer))

    client.upload_blob(repo, digest, size, opener, progress=bytes_sent, location=location)
    emit(PushEvent("blob-pushed", digest, size, size, layer=is_layer))
    return "uploaded", size


def upload(
    plan: Plan,
    source: ImageSource,
    client: RegistryClient,
    target: ImageReference,
    *,
    max_concurrent_uploads: int = DEFAULT_MAX_CONCURRENT_UPLOADS,
    progress: Progress | None = None,
    cache: BlobLocationCache | None = None,
) -> PushSummary:
    """Push every blob (at most ``max_concurrent_uploads`` at once), then the manifests, the
    top one under ``target.tag``.  The first failure stops the push before any manifest."""
    if max_concurrent_uploads < 1:
        raise TrustkitError("--max-concurrent-uploads must be at least 1")
    if target.tag is None:
        raise TrustkitError(f"{target} has no tag to push to")
    lock = threading.Lock()

    def emit(event: PushEvent) -> None:
        if progress is not None:
            with lock:
                progress(event)

    summary = PushSummary(
        target.name, target.tag, plan.root.digest, plan.root.size, plan.root.media_type, manifests=len(plan.manifests)
    )
    if plan.blobs:
        pool = ThreadPoolExecutor(
            max_workers=min(max_concurrent_uploads, len(plan.blobs)), thread_name_prefix="trustkit-upload"
        )
        try:
            futures = {
                pool.submit(
                    _push_blob, client, target, source, descriptor, is_layer=is_layer, cache=cache, emit=emit
                ): (descriptor, is_layer)
                for descriptor, is_layer in plan.blobs
            }
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                pool.shutdown(wait=True, cancel_futures=True)
                failed[0].result()  # raises that upload's exception
            for future, (_descriptor, is_layer) in futures.items():
                outcome, sent = future.result()
                summary.bytes_uploaded += sent
                if is_layer:
                    if outcome == "uploaded":
                        summary.layers_uploaded += 1
                    elif outcome == "mounted":
                        summary.layers_mounted += 1
                    else:
                        summary.layers_skipped += 1
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    for manifest in plan.manifests:
        reference = target.tag if manifest is plan.root else manifest.digest
        client.put_manifest(target.repository, reference, manifest)
        emit(PushEvent("manifest-pushed", manifest.digest, manifest.size, manifest.size, detail=reference, layer=False))
    if cache is not None:
        cache.remember(target.registry, target.repository, [d.digest for d, _ in plan.blobs])
        if source.mount_from is not None:
            cache.remember(source.mount_from[0], source.mount_from[1], [d.digest for d, _ in plan.blobs])
    return summary


# --------------------------------------------------------------------------------------------
# the whole job


def _sign_after_push(signing: PushSigning, summary: PushSummary, target: ImageReference) -> None:
    try:
        summary.signed_roles = signing.sign(summary.digest, summary.size)
    except TrustkitError as exc:
        error = PushedNotSignedError(
            f"{target.familiar}:{target.tag} was pushed ({summary.digest}) but is NOT signed: {exc}",
            hint=f"fix the cause, then run `trustkit sign {target.familiar}:{target.tag} --digest {summary.digest} "
            f"--size {summary.size}`",
        )
        error.summary = summary
        raise error from exc
    summary.signed = True


def push_image(
    source: ImageSource,
    target: ImageReference,
    client: RegistryClient,
    *,
    signing: Callable[[], PushSigning] | None = None,
    max_concurrent_uploads: int = DEFAULT_MAX_CONCURRENT_UPLOADS,
    progress: Progress | None = None,
    cache: BlobLocationCache | None = None,
) -> PushSummary:
    """Plan, prepare signing (``signing`` builds the PushSigning), check immutability,
    upload, sign.  See the module docstring for the guarantees."""
    return _upload_and_sign(
        plan_image(source),
        source,
        client,
        target,
        signing=signing,
        max_concurrent_uploads=max_concurrent_uploads,
        progress=progress,
        cache=cache,
    )


def _upload_and_sign(
    plan: Plan,
    source: ImageSource,
    client: RegistryClient,
    target: ImageReference,
    *,
    signing: Callable[[], PushSigning] | None,
    max_concurrent_uploads: int,
    progress: Progress | None,
    cache: BlobLocationCache | None,
) -> PushSummary:
    """What push and tag share: signing prepared (and immutability checked) before the first
    upload, the upload, the blob-location cache saved, then the signature."""
    prepared = signing() if signing is not None else None
    if prepared is not None:
        prepared.check_immutable(plan.root.digest)
    summary = upload(
        plan, source, client, target, max_concurrent_uploads=max_concurrent_uploads, progress=progress, cache=cache
    )
    if cache is not None:
        cache.save()
    if prepared is not None:
        _sign_after_push(prepared, summary, target)
    return summary


class _MountOnlySource(RegistrySource):
    """The source repository of ``trustkit tag``: blobs can only be mounted from it (the
    registry client is the target's, so it is not closed here)."""

    def __init__(self, client: RegistryClient, reference: ImageReference) -> None:
        super().__init__(client, reference)
        self.description = str(reference)

    def opener(self, descriptor: Descriptor) -> Any:
        raise TrustkitError(
            f"blob {descriptor.digest} could not be mounted from {self.reference.name}",
            hint=f"the registry refused the cross-repository mount; copy the image with "
            f"`trustkit push docker://{self.reference} IMAGE:TAG` instead",
        )

    def close(self) -> None:
        pass


def tag_image(
    client: RegistryClient,
    source: ImageReference,
    target: ImageReference,
    *,
    signing: Callable[[], PushSigning] | None = None,
    progress: Progress | None = None,
    cache: BlobLocationCache | None = None,
) -> PushSummary:
    """Give the manifest of ``source`` the tag of ``target`` in the same registry, without
    uploading: blobs of another repository are mounted.  Signed when ``signing`` is given."""
    if source.registry != target.registry:
        raise TrustkitError(
            f"{source.familiar} and {target.familiar} are in different registries; "
            "`trustkit tag` only works within one",
            hint=f"copy it with `trustkit push docker://{source} {target}`",
        )
    origin = _MountOnlySource(client, source)
    if source.repository == target.repository:
        root = origin.root()
        plan = Plan(root, [root], [])
    else:
        plan = plan_image(origin)
    return _upload_and_sign(
        plan,
        origin,
        client,
        target,
        signing=signing,
        max_concurrent_uploads=DEFAULT_MAX_CONCURRENT_UPLOADS,
        progress=progress,
        cache=cache,
    )
